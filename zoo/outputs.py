"""Output layers shared by the model families."""

from keras import layers

# The names of the zoo's output layers: a classifier's probabilities, a language model's or
# translator's logits over the vocabulary (Muon leaves both to its AdamW step).
PROBABILITIES_LAYER = "probabilities"
LOGITS_LAYER = "logits"
OUTPUT_LAYERS = (PROBABILITIES_LAYER, LOGITS_LAYER)


def classification_output(num_outputs: int, name: str = PROBABILITIES_LAYER):
    """Softmax over classes, or one sigmoid unit for a binary task.

    Kept in float32 so a model trained under mixed precision still returns float32 probabilities.
    """
    activation = "sigmoid" if num_outputs == 1 else "softmax"
    return layers.Dense(num_outputs, activation=activation, dtype="float32", name=name)


GRADCAM_LAYER = "gradcam"


def gradcam_maps(feature_maps):
    """Names a convolutional model's last feature maps for Grad-CAM (apps.core.explain weighs
    them by their gradients): an identity layer, so the builder declares where, not how."""
    return layers.Identity(name=GRADCAM_LAYER)(feature_maps)
