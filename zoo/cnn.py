"""Convolutional image classifiers, from the seed's small CNN to a residual network."""

import keras
from keras import layers

from zoo.outputs import classification_output, gradcam_maps
from zoo.registry import register_model


def _batch_norm(**options):
    """BatchNorm whose moving statistics settle within an epoch or two of a small dataset
    (Keras' default momentum of 0.99 needs hundreds of steps; 0.9 is PyTorch's and timm's)."""
    return layers.BatchNormalization(momentum=0.9, **options)


def conv_bn_relu(x, filters, kernel_size=3, strides=1):
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False)(x)
    x = _batch_norm()(x)
    return layers.Activation("relu")(x)


def _pooled_stages(x, stage_filters, convs_per_stage=None):
    """Per stage: conv-BN-relu `convs_per_stage[i]` times (twice by default), then 2x2 max
    pooling (a VGG-style stack)."""
    for filters, convs in zip(stage_filters, convs_per_stage or (2,) * len(stage_filters)):
        for _ in range(convs):
            x = conv_bn_relu(x, filters)
        x = layers.MaxPooling2D(2)(x)
    return x


@register_model(task="image_classification", inputs="float32 [batch, 28, 28, 1] pixels in [0, 1]",
                search={"dense_units": [64, 128, 256]})
def small_cnn(input_shape=(28, 28, 1), num_classes=10, filters=32, dense_units=128):
    """The seed's small CNN: Conv2D 32 3x3 relu, MaxPool 2, Flatten, Dense 128 relu, softmax."""
    inputs = keras.Input(shape=tuple(input_shape), name="pixels")
    x = gradcam_maps(layers.Conv2D(filters, 3, activation="relu")(inputs))
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense_units, activation="relu")(x)
    return keras.Model(inputs, classification_output(num_classes)(x), name="small_cnn")


@register_model(task="image_classification", inputs="float32 [batch, 28, 28, 1] pixels in [0, 1]",
                search={"dropout_rate": (0.2, 0.6)})
def mnist_cnn(input_shape=(28, 28, 1), num_classes=10, filters=(32, 64), dropout_rate=0.5):
    """keras.io's MNIST convnet: (Conv2D 3x3 relu, MaxPool 2) per filter count, dropout, softmax."""
    inputs = keras.Input(shape=tuple(input_shape), name="pixels")
    x = inputs
    for index, block_filters in enumerate(filters):
        x = layers.Conv2D(block_filters, 3, activation="relu")(x)
        if index == len(filters) - 1:
            x = gradcam_maps(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(dropout_rate)(x)
    return keras.Model(inputs, classification_output(num_classes)(x), name="mnist_cnn")


def _residual_block(x, filters, strides):
    shortcut = x
    x = conv_bn_relu(x, filters, strides=strides)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = _batch_norm(gamma_initializer="zeros")(x)
    if strides != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False)(shortcut)
        shortcut = _batch_norm()(shortcut)
    return layers.Activation("relu")(layers.Add()([shortcut, x]))


@register_model(task="image_classification", inputs="float32 [batch, 32, 32, 3] pixels in [0, 1]",
                search={"dropout_rate": (0.0, 0.5), "blocks_per_stage": [1, 2, 3]})
def resnet_cnn(input_shape=(32, 32, 3), num_classes=10, stage_filters=(32, 64, 128),
               blocks_per_stage=2, dropout_rate=0.2):
    """A small ResNet for CIFAR-sized images: residual stages, batch norm, global pooling.

    Each residual branch ends in a zero-initialised BatchNorm so every block starts as the identity.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="pixels")
    x = conv_bn_relu(inputs, stage_filters[0])
    for stage, filters in enumerate(stage_filters):
        for block in range(blocks_per_stage):
            x = _residual_block(x, filters, strides=2 if stage > 0 and block == 0 else 1)
    x = layers.GlobalAveragePooling2D()(gradcam_maps(x))
    x = layers.Dropout(dropout_rate)(x)
    return keras.Model(inputs, classification_output(num_classes)(x), name="resnet_cnn")


def convnet_features(weights=None, input_shape=(32, 32, 3), stage_filters=(16, 32, 64),
                     name="convnet_features"):
    """A small convolutional backbone (conv-BN-relu twice and max pooling per stage, global
    average pooling) for pixels in [0, 1]: pretrained here on one dataset, it is fine-tuned on
    another through `image_transfer(backbone="convnet", weights=PATH)` or, saved with
    `zoo.hub.save_hub_module`, through `backbone="hub:DIR"`. `weights`: a `.weights.h5` file of
    the same backbone, or None."""
    inputs = keras.Input(shape=tuple(input_shape), name="pixels")
    x = _pooled_stages(inputs, stage_filters)
    model = keras.Model(inputs, layers.GlobalAveragePooling2D()(x), name=name)
    if weights is not None:
        model.load_weights(weights)
    return model


_SPEECH_INPUTS = "float32 [batch, frames, mel_bins, 1] normalised log-mel spectrogram"


@register_model(task="audio_classification", inputs=_SPEECH_INPUTS,
                search={"dropout_rate": (0.0, 0.5)})
def speech_cnn(input_shape=(101, 40, 1), num_classes=12, filters=(16, 32, 64), dropout_rate=0.3,
               convs_per_stage=None):
    """A keyword-spotting CNN on log-mel spectrograms: conv-BN-relu-pool stages, global pooling.
    `convs_per_stage`: one count per stage of `filters`; by default one convolution at full
    resolution and two in each later stage (a second one at full size costs a quarter of each
    training step: bench/RESULTS.md, "Levers measured")."""
    convs_per_stage = tuple(convs_per_stage or (1,) + (2,) * (len(filters) - 1))
    if len(convs_per_stage) != len(filters):
        raise ValueError(f"speech_cnn: convs_per_stage {tuple(convs_per_stage)} needs one count "
                         f"per stage of filters {tuple(filters)}.")
    inputs = keras.Input(shape=tuple(input_shape), name="spectrogram")
    x = layers.GlobalAveragePooling2D()(gradcam_maps(_pooled_stages(inputs, filters, convs_per_stage)))
    x = layers.Dropout(dropout_rate)(x)
    return keras.Model(inputs, classification_output(num_classes)(x), name="speech_cnn")


@register_model(task="audio_classification", inputs=_SPEECH_INPUTS,
                search={"dropout_rate": (0.0, 0.5), "num_blocks": [2, 4, 6]})
def speech_ds_cnn(input_shape=(101, 40, 1), num_classes=12, filters=64, num_blocks=4,
                  dropout_rate=0.2):
    """DS-CNN ("Hello Edge", Zhang et al. 2017): a strided conv, then depthwise-separable blocks."""
    inputs = keras.Input(shape=tuple(input_shape), name="spectrogram")
    x = conv_bn_relu(inputs, filters, kernel_size=(10, 4), strides=2)
    for _ in range(num_blocks):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = layers.Activation("relu")(_batch_norm()(x))
        x = conv_bn_relu(x, filters, kernel_size=1)
    x = layers.GlobalAveragePooling2D()(gradcam_maps(x))
    x = layers.Dropout(dropout_rate)(x)
    return keras.Model(inputs, classification_output(num_classes)(x), name="speech_ds_cnn")
