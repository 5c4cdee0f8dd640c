"""Multi-layer perceptrons: the seed's MNIST and binary MLPs and a general one."""

import keras
from keras import layers

from zoo.outputs import classification_output
from zoo.registry import register_model


def _perceptron(name, input_shape, hidden_units, num_outputs, dropout_rate=0.0, batch_norm=False):
    inputs = keras.Input(shape=tuple(input_shape), name="features")
    x = layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
    for units in hidden_units:
        if batch_norm:
            x = layers.Dense(units, use_bias=False)(x)
            x = layers.Activation("relu")(layers.BatchNormalization()(x))
        else:
            x = layers.Dense(units, activation="relu")(x)
        if dropout_rate:
            x = layers.Dropout(dropout_rate)(x)
    return keras.Model(inputs, classification_output(num_outputs)(x), name=name)


@register_model(task="image_classification", inputs="float32 [batch, 28, 28, 1] pixels in [0, 1]",
                search={"hidden_units": [64, 128, 256], "dropout_rate": (0.0, 0.5)})
def mnist_mlp(input_shape=(28, 28, 1), num_classes=10, hidden_units=128, dropout_rate=0.2):
    """The seed's MNIST MLP with the TF beginner tutorial's dropout: Flatten, Dense 128 relu,
    Dropout 0.2, Dense softmax."""
    return _perceptron("mnist_mlp", input_shape, [hidden_units], num_classes, dropout_rate)


@register_model(task="binary_classification", inputs="float32 [batch, 20] features")
def binary_mlp(num_features=20, hidden_units=64):
    """The seed's binary MLP: Dense 64 relu on 20 features, one sigmoid output."""
    return _perceptron("binary_mlp", (num_features,), [hidden_units], 1)


@register_model(task="tabular", inputs="float32 [batch, *input_shape] features",
                search={"dropout_rate": (0.0, 0.5)})
def mlp(input_shape=(20,), hidden_units=(64, 64), num_outputs=2, dropout_rate=0.0, batch_norm=False):
    """A general MLP: any hidden sizes, dropout, batch norm; softmax (or sigmoid for 1 output)."""
    return _perceptron("mlp", input_shape, hidden_units, num_outputs, dropout_rate, batch_norm)
