"""Semantic segmentation: a class for every pixel."""

import keras
from keras import layers

from zoo.cnn import conv_bn_relu
from zoo.outputs import classification_output
from zoo.registry import register_model


@register_model(task="semantic_segmentation",
                inputs="float32 [batch, height, width, 3] pixels in [0, 1], height and width "
                       "divisible by 2 ** (len(filters) - 1)",
                search={"dropout_rate": (0.0, 0.3)})
def unet(input_shape=(96, 96, 3), num_classes=11, filters=(16, 32, 64, 128), dropout_rate=0.0):
    """U-Net (Ronneberger et al., 2015), narrow: each level of the encoder is conv-BN-relu twice
    then 2x2 max pooling; each level of the decoder a 2x transposed convolution, concatenated with
    the encoder's features of that size (the skip connection), then conv-BN-relu twice; a softmax
    over `num_classes` per pixel, at the input's size. `dropout_rate` drops features at the
    bottleneck."""
    height, width = input_shape[:2]
    levels = 2 ** (len(filters) - 1)
    if height % levels or width % levels:
        raise ValueError(f"unet: input_shape {tuple(input_shape)}: height and width must be "
                         f"divisible by {levels} (2 ** (len(filters) - 1)).")
    inputs = keras.Input(shape=tuple(input_shape), name="pixels")
    x, skips = inputs, []
    for level_filters in filters[:-1]:
        x = conv_bn_relu(conv_bn_relu(x, level_filters), level_filters)
        skips.append(x)
        x = layers.MaxPooling2D(2)(x)
    x = conv_bn_relu(conv_bn_relu(x, filters[-1]), filters[-1])
    x = layers.Dropout(dropout_rate)(x)
    for level_filters, skip in zip(reversed(filters[:-1]), reversed(skips)):
        x = layers.Conv2DTranspose(level_filters, 2, strides=2, padding="same")(x)
        x = layers.Concatenate()([x, skip])
        x = conv_bn_relu(conv_bn_relu(x, level_filters), level_filters)
    return keras.Model(inputs, classification_output(num_classes)(x), name="unet")
