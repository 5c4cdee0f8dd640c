"""image_transfer's three backbone sources (built-in with a weights file, a KerasHub preset folder,
a TF Hub SavedModel folder): round trips, trainable hub variables, and offline errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from apps import get_app
from apps.core.export import export_saved_model
from zoo.cnn import convnet_features

SIZE = 32


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """backbone option -> weights option, for each source, all written here offline."""
    import keras_hub

    root = tmp_path_factory.mktemp("backbones")
    convnet = convnet_features(input_shape=(SIZE, SIZE, 3), name="backbone")
    convnet.save_weights(root / "convnet.weights.h5")
    zoo.save_hub_module(convnet, root / "hub")
    resnet = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(None, None, 3))
    resnet.save_to_preset(str(root / "kerashub"))
    keras_hub.layers.ResNetImageConverter(image_size=(SIZE, SIZE), scale=1 / 255).save_to_preset(
        str(root / "kerashub"))
    return {"convnet": str(root / "convnet.weights.h5"), f"hub:{root / 'hub'}": None,
            f"kerashub:{root / 'kerashub'}": None}


def build(backbone, weights):
    return zoo.build("image_transfer", backbone=backbone, weights=weights,
                     input_shape=(SIZE, SIZE, 3), num_classes=3)


@pytest.mark.parametrize("source", ["convnet", "hub", "kerashub"])
def test_each_source_round_trips_through_keras_file_and_saved_model(source, sources, tmp_path):
    backbone = next(name for name in sources if name.split(":")[0] == source)
    model = build(backbone, sources[backbone])
    pixels = np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, 3)).astype("uint8")
    expected = model.predict(pixels.astype("float32"), verbose=0)

    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=False)
    np.testing.assert_allclose(reloaded.predict(pixels.astype("float32"), verbose=0), expected,
                               rtol=1e-5, atol=1e-6)

    version_dir = export_saved_model(model, get_app("vision"), ["a", "b", "c"], tmp_path / "exp")
    served = tf.saved_model.load(str(version_dir)).signatures["serving_default"](
        pixels=tf.constant(pixels))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_built_in_backbone_loads_its_weights_file(sources):
    model = build("convnet", sources["convnet"])
    expected = convnet_features(input_shape=(SIZE, SIZE, 3))
    expected.load_weights(sources["convnet"])
    for want, got in zip(expected.get_weights(), model.backbone.get_weights()):
        np.testing.assert_array_equal(want, got)


def test_hub_variables_train_only_when_the_layer_is_unfrozen(sources):
    model = build(next(name for name in sources if name.startswith("hub:")), None)
    hub_layer = model.backbone
    assert len(hub_layer.trainable_weights) == 6  # the convolutions; BatchNorm stays frozen
    pixels = np.random.default_rng(1).random((8, SIZE, SIZE, 3), dtype=np.float32) * 255
    labels = np.arange(8) % 3

    def fit_once():
        before = [weight.numpy().copy() for weight in hub_layer.weights]
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
        model.fit(pixels, labels, epochs=1, verbose=0)
        return [not np.array_equal(old, new.numpy()) for old, new in zip(before, hub_layer.weights)]

    hub_layer.trainable = False
    assert not any(fit_once())
    hub_layer.trainable = True
    changed = fit_once()
    trainable = [any(weight is other for other in hub_layer.trainable_weights)
                 for weight in hub_layer.weights]
    assert changed == trainable


def test_unreachable_pretrained_weights_are_clear_errors(sources):
    with pytest.raises(ValueError, match=r"could not be downloaded .*kagglehub.*local preset"):
        build("kerashub:resnet_18_imagenet", None)
    with pytest.raises(ValueError,
                       match=r"could not be fetched .*TFHUB_CACHE_DIR.*local SavedModel"):
        build("hub:https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5", None)
    with pytest.raises(ValueError, match="brings its own weights"):
        build(next(name for name in sources if name.startswith("hub:")), sources["convnet"])
    with pytest.raises(ValueError, match="backbone=vgg99: unknown backbone.*kerashub:"):
        build("vgg99", None)
