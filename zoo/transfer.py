"""Transfer learning: one generic head on a pretrained backbone, for images and text.

A model with a pretrained backbone is a `TransferClassifier`: its `backbone` and its pooled
`features` are attributes, so training code freezes, unfreezes and caches features without
looking layers up by name. Each backbone's own preprocessing (pixel scaling, the image converter,
the tokenizer) is inside the model, so callers feed plain pixels, token ids or strings.
"""

import keras
from keras import layers

from zoo import backbones
from zoo.outputs import classification_output, gradcam_maps
from zoo.registry import register_model

BACKBONE, FEATURES = "backbone", "features"


@keras.saving.register_keras_serializable(package="zoo")
class BackboneModel(keras.Model):
    """A Functional model whose graph holds a pretrained layer named "backbone": the runner
    trains the rest with it frozen, then fine-tunes its top layers (zoo.finetune). Saves and
    loads like any Functional model."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

    @property
    def backbone(self) -> keras.layers.Layer:
        return self.get_layer(BACKBONE)


@keras.saving.register_keras_serializable(package="zoo")
class TransferClassifier(BackboneModel):
    """A BackboneModel classifier whose graph holds, after the backbone, the pooled "features"
    the head reads (so the head can train on features computed once)."""

    def feature_extractor(self) -> keras.Model:
        """The model from its inputs to the pooled features (sharing layers and weights)."""
        return keras.Model(self.inputs, self.get_layer(FEATURES).output)

    def head(self) -> keras.Model:
        """The model from the pooled features to the outputs (sharing layers and weights), so
        training it on cached features trains this model's own head."""
        return keras.Model(self.get_layer(FEATURES).output, self.output)


def _pooled(features):
    """Feature maps [batch, h, w, c] -> average over positions; token sequences -> first token."""
    if len(features.shape) == 4:
        return layers.GlobalAveragePooling2D()(features)
    if len(features.shape) == 3:
        return features[:, 0]
    return features


def _classifier(inputs, features, num_classes, dropout_rate, name):
    features = layers.Identity(name=FEATURES)(features)
    outputs = classification_output(num_classes)(layers.Dropout(dropout_rate)(features))
    return TransferClassifier(inputs, outputs, name=name)


@register_model(task="image_classification",
                inputs="float32 [batch, height, width, 3] RGB pixels in [0, 255]",
                search={"dropout_rate": (0.0, 0.5)})
def image_transfer(backbone="mobilenet_v2", weights=None, input_shape=(224, 224, 3),
                   num_classes=2, dropout_rate=0.2):
    """A pretrained image backbone (pooled), dropout, softmax; the backbone's preprocessing inside.

    `backbone`: a keras.applications name (or the zoo's own `convnet`), `kerashub:<preset or
    folder>`, or `hub:<TF Hub handle, URL or reusable SavedModel folder>`. `weights`, for the
    built-in backbones: "imagenet" (downloaded once and cached by Keras), None, or a local weights
    file; KerasHub and TF Hub backbones bring their own.
    """
    source = backbones.image_source(backbone)
    pixels = keras.Input(shape=tuple(input_shape), name="pixels")
    if source.kind != "builtin" and weights not in (None, "imagenet"):
        raise ValueError(f"weights={weights}: backbone={backbone} brings its own weights; leave "
                         f"weights out (or use a built-in backbone with a weights file).")
    if source.kind == "kerashub":
        encoder, converter = backbones.keras_hub_image_backbone(source.location)
        features = encoder(converter(pixels))
    elif source.kind == "hub":
        from zoo.hub import HubLayer

        encoder = HubLayer(source.location, name=BACKBONE)
        features = encoder(layers.Rescaling(1 / 255)(pixels))  # TF Hub's image convention
    else:
        encoder, preprocessing = backbones.builtin_image_backbone(backbone, weights, input_shape)
        features = encoder(preprocessing(pixels) if preprocessing else pixels)
    if len(features.shape) == 4:
        features = gradcam_maps(features)
    return _classifier(pixels, _pooled(features), num_classes, dropout_rate, "image_transfer")


@register_model(task="text_classification",
                inputs="{token_ids, padding_mask}: int [batch, sequence_length] from the "
                       "backbone's own tokenizer; with raw_text=True, strings [batch]",
                search={"dropout_rate": (0.0, 0.3)})
def text_transfer(backbone="all-minilm-l6-v2", num_classes=2, sequence_length=128,
                  dropout_rate=0.1, raw_text=False):
    """A pretrained KerasHub text backbone, masked mean pooling, dropout, softmax.

    `backbone`: the packaged MiniLM checkpoint (offline), or `kerashub:<preset or folder>`.
    Mean pooling over real tokens is how sentence-transformers checkpoints such as MiniLM were
    trained to embed a sentence, so the frozen features are already useful. `raw_text=True` puts
    the backbone's own tokenizer inside the model (TensorFlow backend: it runs TF Text ops).
    """
    source = backbones.text_source(backbone)
    encoder = backbones.text_backbone(source)
    if raw_text:
        inputs = keras.Input(shape=(), dtype="string", name="text")
        token_ids, padding_mask = backbones.BackboneTokenizer.from_source(
            source, sequence_length)(inputs)
    else:
        token_ids = keras.Input(shape=(sequence_length,), dtype="int32", name="token_ids")
        padding_mask = keras.Input(shape=(sequence_length,), dtype="int32", name="padding_mask")
        inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    sequence = encoder({"token_ids": token_ids, "padding_mask": padding_mask,
                        "segment_ids": keras.ops.zeros_like(token_ids)})["sequence_output"]
    pooled = layers.GlobalAveragePooling1D()(sequence, mask=padding_mask)
    return _classifier(inputs, pooled, num_classes, dropout_rate, "text_transfer")
