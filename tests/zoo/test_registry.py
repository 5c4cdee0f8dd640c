"""The registry: names, descriptions, options and their errors."""

import keras
import numpy as np
import pytest

import zoo

SEED_MODELS = {"mnist_mlp", "binary_mlp", "mlp", "small_cnn", "mnist_cnn", "resnet_cnn",
               "simple_rnn_forecaster", "lstm_forecaster", "gru_forecaster",
               "bilstm_classifier", "transformer_classifier"}


def test_every_seed_architecture_is_registered():
    assert SEED_MODELS <= set(zoo.list_models())


def test_list_models_filters_by_task():
    assert zoo.list_models("forecasting") == [
        "gru_forecaster", "lstm_forecaster", "simple_rnn_forecaster"]


def test_describe_gives_task_inputs_defaults_and_summary():
    description = zoo.describe("lstm_forecaster")
    assert description["task"] == "forecasting"
    assert "window" in description["inputs"]
    assert description["defaults"]["units"] == 50
    assert description["summary"].startswith("The seed's LSTM forecaster")


def test_unknown_model_lists_the_registered_names():
    with pytest.raises(ValueError, match=r"Unknown model 'resnet9000'.*mnist_cnn"):
        zoo.build("resnet9000")


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown option\(s\) width.*hidden_units"):
        zoo.build("mnist_mlp", width=3)


def test_duplicate_name_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        @zoo.register_model(task="tabular", inputs="anything")
        def mnist_mlp():
            return keras.Sequential()


def test_builder_options_need_defaults():
    with pytest.raises(ValueError, match="needs a default"):
        @zoo.register_model(task="tabular", inputs="anything")
        def model_without_defaults(units):
            return keras.Sequential()


def test_seed_architectures_are_exact():
    mlp = zoo.build("mnist_mlp", dropout_rate=0.0)  # the seed's; by default the TF tutorial's
    assert [type(layer).__name__ for layer in mlp.layers] == [
        "InputLayer", "Flatten", "Dense", "Dense"]
    assert mlp.layers[2].units == 128 and mlp.layers[2].activation.__name__ == "relu"
    assert mlp.layers[3].units == 10 and mlp.layers[3].activation.__name__ == "softmax"
    tutorial = zoo.build("mnist_mlp")
    assert [type(layer).__name__ for layer in tutorial.layers] == [
        "InputLayer", "Flatten", "Dense", "Dropout", "Dense"]
    assert tutorial.layers[3].rate == 0.2
    binary = zoo.build("binary_mlp")
    assert binary.input_shape == (None, 20)
    assert [layer.units for layer in binary.layers[1:]] == [64, 1]
    assert binary.layers[-1].activation.__name__ == "sigmoid"
    rnn = zoo.build("simple_rnn_forecaster")
    assert [type(layer).__name__ for layer in rnn.layers[1:]] == ["SimpleRNN", "SimpleRNN", "Dense"]
    assert all(layer.units == 50 for layer in rnn.layers[1:3])
    small = zoo.build("small_cnn")  # an identity layer names its maps for Grad-CAM
    assert type(small.get_layer(zoo.GRADCAM_LAYER)).__name__ == "Identity"
    assert [type(layer).__name__ for layer in small.layers[1:]
            if layer.name != zoo.GRADCAM_LAYER] == [
        "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]
    assert small.layers[1].filters == 32 and small.layers[1].kernel_size == (3, 3)


def test_recurrent_defaults_keep_the_cudnn_conditions():
    for name, cell in (("lstm_forecaster", "LSTM"), ("gru_forecaster", "GRU")):
        layer = next(layer for layer in zoo.build(name, num_layers=2, dropout_rate=0.2).layers
                     if type(layer).__name__ == cell)
        assert layer.cell.activation.__name__ == "tanh"
        assert layer.cell.recurrent_activation.__name__ == "sigmoid"
        assert layer.cell.recurrent_dropout == 0 and layer.cell.dropout == 0
        assert not layer.unroll and layer.cell.use_bias
        assert layer.use_cudnn == "auto"
        assert cell == "LSTM" or layer.cell.reset_after


def test_image_transfer_refuses_to_fall_back_to_random_weights(monkeypatch):
    from zoo import backbones

    def offline(**options):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: no network")

    monkeypatch.setitem(backbones.IMAGE_BACKBONES, "mobilenet_v2", (offline, None))
    with pytest.raises(ValueError, match=r"could not be downloaded .*~/.keras/models/.*"
                                         r"weights=PATH.*backbone=efficientnet_lite0"):
        zoo.build("image_transfer", weights="imagenet")


def test_image_transfer_loads_a_local_weights_file(tmp_path):
    source = zoo.build("image_transfer", backbone="mobilenet_v3_small", input_shape=(96, 96, 3))
    source.backbone.save_weights(tmp_path / "backbone.weights.h5")
    loaded = zoo.build("image_transfer", backbone="mobilenet_v3_small", input_shape=(96, 96, 3),
                       weights=str(tmp_path / "backbone.weights.h5"))
    for expected, actual in zip(source.backbone.get_weights(), loaded.backbone.get_weights()):
        np.testing.assert_array_equal(expected, actual)
    with pytest.raises(ValueError, match="no such file"):
        zoo.build("image_transfer", weights=str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match="backbone=vgg99: unknown backbone"):
        zoo.build("image_transfer", backbone="vgg99")


def test_transfer_models_expose_backbone_features_and_head(tmp_path):
    model = zoo.build("image_transfer", backbone="convnet", input_shape=(32, 32, 3),
                      num_classes=3)
    assert isinstance(model, zoo.TransferClassifier)
    assert model.backbone.name == "backbone" and isinstance(model.backbone, keras.Model)
    pixels = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32) * 255
    features = model.feature_extractor()(pixels)
    assert tuple(features.shape) == (2, 64)
    np.testing.assert_allclose(model.head()(features), model(pixels), rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(reloaded, zoo.TransferClassifier)
    assert reloaded.backbone.count_params() == model.backbone.count_params()


def test_unfreeze_top_keeps_batch_norm_frozen():
    backbone = zoo.build("image_transfer", backbone="convnet", input_shape=(32, 32, 3)).backbone
    backbone.trainable = False
    zoo.unfreeze_top(backbone, 3)
    trainable = [layer.trainable for layer in backbone.layers]
    assert trainable[-3:] == [True] * 3 and not any(trainable[:-3])
    zoo.unfreeze_top(backbone, None)
    for layer in backbone.layers:
        if layer.weights:
            assert layer.trainable is not isinstance(layer, keras.layers.BatchNormalization)


def test_one_parser_for_backbone_sources():
    assert zoo.image_source("resnet50") == zoo.BackboneSource("builtin", "resnet50")
    assert zoo.image_source("kerashub:resnet_18_imagenet").kind == "kerashub"
    assert zoo.image_source("hub:/models/feature_vector") == zoo.BackboneSource(
        "hub", "/models/feature_vector")
    assert zoo.text_source("kerashub:bert_tiny_en_uncased").location == "bert_tiny_en_uncased"
    assert zoo.text_source("all-minilm-l6-v2").kind == "builtin"
    with pytest.raises(ValueError, match="TF Hub text encoders are not supported"):
        zoo.text_source("hub:https://tfhub.dev/some/encoder")
    with pytest.raises(ValueError, match="backbone=bert_base: unknown backbone.*all-minilm-l6-v2"):
        zoo.text_source("bert_base")


def test_resnet50_gets_caffe_preprocessing_inside_the_model():
    model = zoo.build("image_transfer", backbone="resnet50", input_shape=(64, 64, 3))
    assert type(model.layers[1]).__name__ == "CaffePreprocessing"
    pixels = np.full((1, 2, 2, 3), [10.0, 20.0, 30.0], dtype="float32")
    bgr_centred = model.layers[1](pixels)
    np.testing.assert_allclose(bgr_centred[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68],
                               rtol=1e-5)
