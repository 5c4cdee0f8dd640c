"""Object detection as CenterNet does it (Zhou et al. 2019, "Objects as Points"): a box is a peak
of its class's heatmap at the box's centre, with the box's size and the centre's offset within the
cell regressed there. Decoding keeps each cell's most probable class, then takes a 3x3 max-pool
(the peaks) and a top-k, with no non-maximum suppression: a few fixed-shape ops that a SavedModel
and LiteRT both run.

The model's output is one map [batch, grid_h, grid_w, classes + 4] at a quarter of the input's
size: per cell the classes' heatmap logits, the box's width and height in cells, and the centre's
(x, y) offset within the cell. Boxes everywhere else are (x_min, y_min, x_max, y_max) relative to
the picture (`apps.core.sources.boxes`); targets are rows (class id, relative corners) padded
with class id -1.
"""

import math

import keras
from keras import layers, ops

from zoo.backbones import image_pyramid
from zoo.cnn import conv_bn_relu
from zoo.outputs import gradcam_maps
from zoo.registry import register_model
from zoo.transfer import BackboneModel

OUTPUT_STRIDE = 4
PRIOR = 0.01  # the heatmaps' starting probability (RetinaNet's prior: the loss starts calm)


@register_model(task="object_detection",
                inputs="float32 [batch, height, width, 3] RGB pixels in [0, 255], height and "
                       "width divisible by 2 ** len(filters) (by 16 with a backbone)",
                search={"head_filters": [32, 64, 128]})
def centernet(input_shape=(96, 96, 3), num_classes=10, filters=(32, 64, 128), head_filters=64,
              backbone=None, weights="imagenet"):
    """A CenterNet on a small encoder-decoder: per level of `filters` a stride-2 conv-BN-relu and
    a conv-BN-relu (down to 1/2 ** len(filters) of the input), the deepest level's features
    refined twice more, then up (2x nearest, concatenated with the encoder's level of that size,
    conv-BN-relu) to a quarter of the input; three heads (heatmaps, sizes, offsets), each a 3x3
    conv-relu then a 1x1 conv, concatenated into the output map (the heads' input is named for
    Grad-CAM).

    `backbone` (a name in zoo.backbones.PYRAMID_LAYERS, with its `weights`: imagenet, None or a
    weights file): the encoder is that pretrained network instead; from its map at 1/16, up to
    1/8 and 1/4 through its maps there (`filters[-1]`, `filters[-2]` wide); the model is a
    zoo.BackboneModel, fine-tuned in two phases."""
    height, width = input_shape[:2]
    levels = 2 ** len(filters)
    if backbone is None and (len(filters) < 2 or height % levels or width % levels):
        raise ValueError(f"centernet: input_shape {tuple(input_shape)} with filters {filters}: "
                         f"needs at least two levels and height and width divisible by "
                         f"{levels} (2 ** len(filters)).")
    inputs = keras.Input(shape=tuple(input_shape), name="pixels")
    if backbone is not None:
        encoder, preprocessing = image_pyramid(backbone, weights, input_shape)
        _, quarter, eighth, x = encoder(preprocessing(inputs) if preprocessing else inputs)
        x = conv_bn_relu(x, filters[-1])
        for level_filters, skip in ((filters[-1], eighth), (filters[-2], quarter)):
            x = layers.UpSampling2D(2)(x)
            x = conv_bn_relu(layers.Concatenate()([x, skip]), level_filters)
    else:
        x, skips = layers.Rescaling(1 / 255)(inputs), []
        for level_filters in filters:
            x = conv_bn_relu(conv_bn_relu(x, level_filters, strides=2), level_filters)
            skips.append(x)
        x = conv_bn_relu(conv_bn_relu(x, filters[-1]), filters[-1])
        for level_filters, skip in zip(reversed(filters[1:-1]), reversed(skips[1:-1])):
            x = layers.UpSampling2D(2)(x)
            x = conv_bn_relu(layers.Concatenate()([x, skip]), level_filters)
    x = gradcam_maps(x)
    prior_bias = keras.initializers.Constant(-math.log((1 - PRIOR) / PRIOR))
    heads = []
    for name, channels, bias in (("heatmaps", num_classes, prior_bias), ("sizes", 2, "zeros"),
                                 ("offsets", 2, "zeros")):
        head = layers.Conv2D(head_filters, 3, padding="same", activation="relu")(x)
        heads.append(layers.Conv2D(channels, 1, bias_initializer=bias, name=name)(head))
    outputs = layers.Concatenate(name="detection_maps", dtype="float32")(heads)
    model_class = keras.Model if backbone is None else BackboneModel
    return model_class(inputs, outputs, name="centernet")


def _box_geometry(rows, grid_h: int, grid_w: int):
    """Of box rows [batch, boxes, 5]: whether each is a box, its centre in cells, its centre's
    cell, and its width and height in cells."""
    valid = ops.cast(rows[..., 0] >= 0, "float32")
    x_min, y_min, x_max, y_max = (rows[..., index] for index in range(1, 5))
    centre_x, centre_y = (x_min + x_max) / 2 * grid_w, (y_min + y_max) / 2 * grid_h
    cell_x = ops.clip(ops.floor(centre_x), 0, grid_w - 1)
    cell_y = ops.clip(ops.floor(centre_y), 0, grid_h - 1)
    return valid, centre_x, centre_y, cell_x, cell_y, (x_max - x_min) * grid_w, \
        (y_max - y_min) * grid_h


def heatmap_targets(rows, grid_h: int, grid_w: int, num_classes: int):
    """float32 [batch, grid_h, grid_w, classes]: at each box's centre cell 1 in its class's
    channel, falling off as a Gaussian whose deviation is a sixth of the box's side (CenterNet's
    targets; the largest where two overlap)."""
    valid, _, _, cell_x, cell_y, box_w, box_h = _box_geometry(rows, grid_h, grid_w)
    sigma_x, sigma_y = ops.maximum(box_w / 6, 0.5), ops.maximum(box_h / 6, 0.5)
    xs = ops.arange(grid_w, dtype="float32")[None, None, None, :]
    ys = ops.arange(grid_h, dtype="float32")[None, None, :, None]
    gaussians = ops.exp(-(xs - cell_x[..., None, None]) ** 2 / (2 * sigma_x[..., None, None] ** 2)
                        - (ys - cell_y[..., None, None]) ** 2
                        / (2 * sigma_y[..., None, None] ** 2)) * valid[..., None, None]
    classes = ops.one_hot(ops.cast(ops.maximum(rows[..., 0], 0), "int32"), num_classes)
    classes = classes * valid[..., None]
    heatmaps = ops.zeros((ops.shape(rows)[0], grid_h, grid_w, num_classes))
    for box in range(rows.shape[1]):  # one box at a time: [batch, h, w, classes] in memory
        heatmaps = ops.maximum(heatmaps, gaussians[:, box, :, :, None]
                               * classes[:, box, None, None, :])
    return heatmaps


@keras.saving.register_keras_serializable(package="zoo")
class CenterNetLoss(keras.losses.Loss):
    """CenterNet's objective per picture: the penalty-reduced focal loss on the heatmaps (alpha 2,
    beta 4) plus L1 on the sizes (weight 0.1, in cells) and the offsets (weight 1) at each box's
    centre cell, each over the picture's number of boxes. `y_true` box rows [batch, boxes, 5],
    `y_pred` the model's output map (its channels say the number of classes)."""

    def __init__(self, size_weight: float = 0.1, offset_weight: float = 1.0,
                 name="centernet_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.size_weight, self.offset_weight = size_weight, offset_weight

    def call(self, y_true, y_pred):
        y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
        grid_h, grid_w, num_classes = y_pred.shape[1], y_pred.shape[2], y_pred.shape[3] - 4
        logits = y_pred[..., :num_classes]
        targets = heatmap_targets(y_true, grid_h, grid_w, num_classes)
        positive = ops.cast(targets >= 1.0, "float32")
        probability = ops.sigmoid(logits)
        focal = -(positive * (1 - probability) ** 2 * ops.log_sigmoid(logits)
                  + (1 - positive) * (1 - targets) ** 4 * probability ** 2
                  * ops.log_sigmoid(-logits))
        valid, centre_x, centre_y, cell_x, cell_y, box_w, box_h = _box_geometry(
            y_true, grid_h, grid_w)
        boxes = ops.maximum(ops.sum(valid, axis=1), 1.0)
        cells = ops.cast(cell_y * grid_w + cell_x, "int32")
        regressions = ops.reshape(y_pred[..., num_classes:], (-1, grid_h * grid_w, 4))
        at_centres = ops.take_along_axis(regressions, cells[..., None], axis=1)
        size_error = (ops.abs(at_centres[..., 0] - box_w) + ops.abs(at_centres[..., 1] - box_h))
        offset_error = (ops.abs(at_centres[..., 2] - (centre_x - cell_x))
                        + ops.abs(at_centres[..., 3] - (centre_y - cell_y)))
        regression = ops.sum((self.size_weight * size_error + self.offset_weight * offset_error)
                             * valid, axis=1)
        return (ops.sum(focal, axis=(1, 2, 3)) + regression) / boxes

    def get_config(self):
        return {**super().get_config(), "size_weight": self.size_weight,
                "offset_weight": self.offset_weight}


def decode_detections(maps, num_classes: int, max_detections: int = 100) -> dict:
    """The model's output map -> the `max_detections` highest peaks, best first: `boxes` float32
    [batch, k, 4] relative corners clipped to the picture, `scores` float32 [batch, k] and
    `class_id` int32 [batch, k]. Each cell keeps only its most probable class (one box per
    object, not one per class it might be: class-agnostic AP@0.5 0.964-0.983 -> 0.987-0.998 on
    the digit scenes, mAP@0.5 0.949-0.968 -> 0.938-0.963; bench/RESULTS.md); a peak is then a
    cell whose probability is the largest of its class's 3x3 neighbourhood."""
    maps = ops.cast(maps, "float32")
    grid_h, grid_w = maps.shape[1], maps.shape[2]
    heatmaps = ops.sigmoid(maps[..., :num_classes])
    heatmaps = ops.where(heatmaps == ops.max(heatmaps, axis=-1, keepdims=True), heatmaps, 0.0)
    peaks = ops.where(ops.max_pool(heatmaps, 3, strides=1, padding="same") == heatmaps,
                      heatmaps, 0.0)
    count = min(max_detections, grid_h * grid_w * num_classes)
    scores, indices = ops.top_k(ops.reshape(peaks, (-1, grid_h * grid_w * num_classes)), count)
    cells, class_id = indices // num_classes, indices % num_classes
    regressions = ops.take_along_axis(ops.reshape(maps[..., num_classes:], (-1, grid_h * grid_w, 4)),
                                      cells[..., None], axis=1)
    centre_x = (ops.cast(cells % grid_w, "float32") + regressions[..., 2]) / grid_w
    centre_y = (ops.cast(cells // grid_w, "float32") + regressions[..., 3]) / grid_h
    # A size regressed below zero (an untrained or unsure head) is a point, never an inverted box.
    half_w = ops.maximum(regressions[..., 0], 0.0) / grid_w / 2
    half_h = ops.maximum(regressions[..., 1], 0.0) / grid_h / 2
    boxes = ops.clip(ops.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w,
                                centre_y + half_h], axis=-1), 0.0, 1.0)
    return {"boxes": boxes, "scores": scores, "class_id": ops.cast(class_id, "int32")}
