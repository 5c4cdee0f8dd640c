"""Fine-tuning rules for pretrained backbones, written once for every backbone source.

Phase 1 trains a head on a frozen backbone; phase 2 unfreezes the backbone's top layers, BatchNorm
excepted, and continues at a lower learning rate (the keras.io transfer-learning guide).
"""

import keras


def _sublayers(layer):
    """Every layer nested inside `layer` (through models' `.layers`), depth first."""
    for sublayer in getattr(layer, "layers", []):
        yield sublayer
        yield from _sublayers(sublayer)


def unfreeze_top(backbone, num_layers: int | None) -> None:
    """Makes the top `num_layers` sublayers of `backbone` trainable (all if None), keeping every
    BatchNormalization frozen so its statistics stay those of pretraining (the keras.io
    transfer-learning guide's advice). A TF Hub backbone is one layer: it is unfrozen whole."""
    backbone.trainable = True
    for layer in _sublayers(backbone):  # explicitly: a second call finds the parent trainable already
        layer.trainable = True
    if num_layers is not None and hasattr(backbone, "layers"):
        for layer in backbone.layers[: max(len(backbone.layers) - num_layers, 0)]:
            layer.trainable = False
    for layer in _sublayers(backbone):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def fine_tunable_variables(model: keras.Model) -> list:
    """The variables that `unfreeze_top(model, None)` would train, with every layer's
    `trainable` flag left as it was."""
    saved = [(layer, layer.trainable) for layer in [model, *_sublayers(model)]]
    unfreeze_top(model, None)
    variables = list(model.trainable_variables)
    for layer, trainable in saved:  # parents first: a parent's setter also sets its children
        layer.trainable = trainable
    return variables
