"""Shared fine-tuning of pretrained backbones, per the keras.io transfer-learning guide.

Phase 1 trains the head on a frozen backbone (BatchNorm in inference mode). Phase 2 unfreezes the
backbone's top N layers (or all), BatchNorm excepted, and continues at a lower learning rate.
"""

import keras

BACKBONE_NAME = "backbone"
FEATURES_NAME = "features"


def _sublayers(layer):
    """Every layer nested inside `layer` (through models' `.layers`), depth first."""
    for sublayer in getattr(layer, "layers", []):
        yield sublayer
        yield from _sublayers(sublayer)


def find_backbone(model: keras.Model):
    """The layer named "backbone" anywhere inside `model` (zoo transfer heads name theirs so)."""
    return next((layer for layer in _sublayers(model) if layer.name == BACKBONE_NAME), None)


def split_at_features(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(extractor, head): `model` up to its top-level layer named "features" (the pooled backbone
    output), and from there on. Both share their layers and weights with `model`, so training
    the head on cached features trains the model's own head."""
    names = [layer.name for layer in model.layers]
    if FEATURES_NAME not in names:
        raise ValueError(f"model {model.name} has no top-level layer named {FEATURES_NAME!r} "
                         f"after a backbone (image_transfer has one).")
    features = model.get_layer(FEATURES_NAME).output
    return keras.Model(model.inputs, features), keras.Model(features, model.output)


def parse_fine_tune(value: str) -> int | None:
    """`--fine-tune`: "0" -> 0 layers, "all" -> None (every layer), "N" -> N."""
    if value == "all":
        return None
    if not value.isdigit():
        raise ValueError(f"--fine-tune {value}: expected 0, a number of layers, or all.")
    return int(value)


def unfreeze_top(backbone, num_layers: int | None) -> None:
    """Makes the top `num_layers` sublayers of `backbone` trainable (all if None), keeping every
    BatchNormalization frozen so its statistics stay those of pretraining.

    A TF Hub backbone is one layer: it is unfrozen whole, and runs in inference mode anyway."""
    backbone.trainable = True
    if num_layers is not None and hasattr(backbone, "layers"):
        for layer in backbone.layers[: max(len(backbone.layers) - num_layers, 0)]:
            layer.trainable = False
    for layer in _sublayers(backbone):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
