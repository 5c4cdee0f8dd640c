"""Output layers shared by the model families."""

from keras import layers


def classification_output(num_outputs: int, name: str = "probabilities"):
    """Softmax over classes, or one sigmoid unit for a binary task.

    Kept in float32 so a model trained under mixed precision still returns float32 probabilities.
    """
    activation = "sigmoid" if num_outputs == 1 else "softmax"
    return layers.Dense(num_outputs, activation=activation, dtype="float32", name=name)
