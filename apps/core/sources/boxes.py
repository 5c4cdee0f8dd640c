"""The one box format inside the code: (x_min, y_min, x_max, y_max) relative to the picture's width
and height, so resizing a picture never changes its boxes. Every other format is converted here, at
the boundaries: COCO's (x, y, width, height) in pixels (its annotation files and pycocotools),
Pascal VOC's 1-based pixel corners (its XML files), TFDS's relative (y_min, x_min, y_max, x_max),
and the export's corners in the input's pixels.

A picture's boxes travel as rows (class id, x_min, y_min, x_max, y_max), padded to a fixed count
with rows of class id -1 (`padded`), so a batch of pictures with different counts has one shape.
`box_splits` is what the box readers (`coco`, `voc`) share: their problems reported, their
pictures and rows made into DataSplits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from apps.core.app import DataSplits
from apps.core.errors import DataError
from apps.core.sources.images import decode, stored

PADDING_CLASS = -1
EDGE_TOLERANCE = 1.0  # pixels a box may cross its picture's edge by (rounding in the tools)
SHOWN_PROBLEMS = 5


def from_coco(boxes, width, height) -> np.ndarray:
    """COCO [n, 4] (x, y, width, height) in pixels -> relative corners."""
    x, y, box_width, box_height = np.asarray(boxes, "float64").reshape(-1, 4).T
    return np.stack([x / width, y / height, (x + box_width) / width,
                     (y + box_height) / height], axis=-1)


def to_coco(boxes, width, height) -> np.ndarray:
    """Relative corners [n, 4] -> COCO (x, y, width, height) in pixels."""
    x_min, y_min, x_max, y_max = np.asarray(boxes, "float64").reshape(-1, 4).T
    return np.stack([x_min * width, y_min * height, (x_max - x_min) * width,
                     (y_max - y_min) * height], axis=-1)


def from_voc(boxes, width, height) -> np.ndarray:
    """Pascal VOC [n, 4] (xmin, ymin, xmax, ymax), 1-based pixel indices with the last pixel
    included -> relative corners (pixel edges)."""
    x_min, y_min, x_max, y_max = np.asarray(boxes, "float64").reshape(-1, 4).T
    return np.stack([(x_min - 1) / width, (y_min - 1) / height, x_max / width, y_max / height],
                    axis=-1)


def from_tfds(boxes):
    """TFDS's BBoxFeature [..., 4] (y_min, x_min, y_max, x_max), relative -> relative corners;
    NumPy arrays or tensors (TFDS pipelines), answered as a tensor."""
    return tf.gather(boxes, [1, 0, 3, 2], axis=-1)


def to_pixels(boxes, width, height):
    """Relative corners [..., 4] -> corners in pixels of a `width` x `height` picture; works on
    NumPy arrays and on tensors (the export's graph), `width` and `height` scalars of either."""
    return boxes * (np.array([1, 0, 1, 0], "float32") * width
                    + np.array([0, 1, 0, 1], "float32") * height)


def padded(class_ids, boxes, count: int) -> np.ndarray:
    """float32 [count, 5] rows (class id, relative corners), rows past the boxes given padding
    (class id -1, zeros)."""
    rows = np.zeros((count, 5), "float32")
    rows[:, 0] = PADDING_CLASS
    rows[:len(class_ids), 0] = class_ids
    rows[:len(class_ids), 1:] = np.asarray(boxes, "float32").reshape(-1, 4)
    return rows


def inside(x_min, y_min, x_max, y_max, width, height) -> bool:
    """Whether pixel corners lie within a `width` x `height` picture (give or take a pixel)."""
    return (x_min >= -EDGE_TOLERANCE and y_min >= -EDGE_TOLERANCE
            and x_max <= width + EDGE_TOLERANCE and y_max <= height + EDGE_TOLERANCE)


def _dataset(pictures: list, image_size: int, max_boxes: int) -> tf.data.Dataset:
    """(uint8 picture [size, size, 3], float32 box rows [max_boxes, 5]) per picture."""
    rows = np.stack([padded(ids, corners, max_boxes) for _, ids, corners in pictures])
    paths = [path for path, _, _ in pictures]
    return tf.data.Dataset.from_tensor_slices((paths, rows)).map(
        lambda path, row: (stored(decode(tf.io.read_file(path)), image_size), row),
        num_parallel_calls=tf.data.AUTOTUNE)


def box_splits(folder: Path, train: list, test: list, class_names: list[str], problems: list,
               image_size: int, source: str) -> DataSplits:
    """A box reader's splits from its checked pictures, [(path, class ids, relative corners)]
    each, and its problems, [("box" or "image", "file: why")]: the first few problems printed,
    all counted (`skipped_boxes`, `skipped_images`), the pictures resized to `image_size` with
    their boxes as rows padded to the most boxes of a picture."""
    for _, problem in problems[:SHOWN_PROBLEMS]:
        print(f"[data] skipped {problem}", flush=True)
    if len(problems) > SHOWN_PROBLEMS:
        print(f"[data] ... and {len(problems) - SHOWN_PROBLEMS} more skipped", flush=True)
    if not train or not test or not any(ids for _, ids, _ in train):
        raise DataError(f"--data {folder}: {len(train)} training and {len(test)} test pictures "
                        f"passed the checks ({len(problems)} boxes or pictures skipped), with "
                        f"{sum(len(ids) for _, ids, _ in train)} training boxes; at least one "
                        f"picture in each and one box to learn from are needed.")
    max_boxes = max(1, max(len(ids) for _, ids, _ in train + test))
    return DataSplits(train=_dataset(train, image_size, max_boxes),
                      test=_dataset(test, image_size, max_boxes), class_names=class_names,
                      source=source,
                      facts={"skipped_boxes": sum(kind == "box" for kind, _ in problems),
                             "skipped_images": sum(kind == "image" for kind, _ in problems)})
