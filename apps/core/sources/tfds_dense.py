"""TFDS's object-detection and segmentation datasets as the dense-vision apps' splits, for
`--data tfds --dataset NAME` (downloaded and prepared once by TFDS; offline runs use the digit
scenes or a local folder instead).

Detection: any TFDS dataset whose `objects` carry a `bbox` (TFDS's BBoxFeature: relative
(y_min, x_min, y_max, x_max)) and a class `label`, as `voc/2007`, `voc/2012` and `coco/2017` do;
boxes become the code's relative corners (`boxes.from_tfds`), crowd and difficult boxes are left
out (as COCO's and VOC's evaluations ignore them), and so are boxes without area. Segmentation:
`oxford_iiit_pet`, whose trimaps (1 pet, 2 background, 3 outline) become classes 0 background,
1 pet, 2 outline (keras.io's U-Net example trains on the same masks).
"""

import tensorflow as tf

from apps.core.app import DataSplits
from apps.core.errors import DataError
from apps.core.sources import TEST_FRACTION, load_tfds
from apps.core.sources.boxes import PADDING_CLASS, from_tfds
from apps.core.sources.images import stored
from apps.core.sources.masks import resized_mask

MAX_BOXES = 100  # rows a picture's boxes are padded to (COCO's evaluation counts up to 100)
LEFT_OUT_FLAGS = ("is_crowd", "is_difficult")
# name -> (the mask feature, its value of each class in order, the class names)
MASK_DATASETS = {"oxford_iiit_pet": ("segmentation_mask", (2, 1, 3),
                                     ["background", "pet", "outline"])}


def _parts(name: str) -> list[str]:
    """The TFDS splits that train and test: `train`, and `validation` where there is one (COCO's
    and VOC's `test` parts may come without labels), else `test`, else 15% of `train`."""
    import tensorflow_datasets as tfds

    parts = tfds.builder(name).info.splits
    if "validation" in parts or "test" in parts:
        return ["train", "validation" if "validation" in parts else "test"]
    kept = 100 - int(TEST_FRACTION * 100)
    return [f"train[:{kept}%]", f"train[{kept}%:]"]


def _box_rows(objects):
    """float32 [MAX_BOXES, 5] rows (class id, relative corners) of a picture's kept objects."""
    kept = tf.ones_like(objects["label"], tf.bool)
    for flag in LEFT_OUT_FLAGS:
        if flag in objects:
            kept &= ~tf.cast(objects[flag], tf.bool)
    corners = from_tfds(tf.boolean_mask(objects["bbox"], kept))
    kept_area = (corners[:, 2] > corners[:, 0]) & (corners[:, 3] > corners[:, 1])
    labels = tf.cast(tf.boolean_mask(tf.boolean_mask(objects["label"], kept), kept_area),
                     tf.float32)[:MAX_BOXES]
    corners = tf.boolean_mask(corners, kept_area)[:MAX_BOXES]
    missing = MAX_BOXES - tf.shape(labels)[0]
    rows = tf.concat([tf.pad(labels, [[0, missing]], constant_values=PADDING_CLASS)[:, None],
                      tf.pad(corners, [[0, missing], [0, 0]])], axis=1)
    return tf.ensure_shape(rows, [MAX_BOXES, 5])


def tfds_box_splits(name: str, image_size: int, source: str) -> DataSplits:
    """A TFDS detection dataset's `train` and `validation` (or `test`) parts: pictures resized
    to `image_size` with their boxes as padded rows."""
    (train, test), info = load_tfds(name, _parts(name), as_supervised=False)
    objects = info.features["objects"] if "objects" in info.features else None
    if objects is None or not {"bbox", "label"} <= set(objects.feature.keys()):
        raise DataError(f"--dataset {name}: not a detection dataset (its examples have no "
                        f"objects with a bbox and a label); try voc/2007 or coco/2017.")

    def example(features):
        return stored(features["image"], image_size), _box_rows(features["objects"])

    return DataSplits(train=train.map(example, num_parallel_calls=tf.data.AUTOTUNE),
                      test=test.map(example, num_parallel_calls=tf.data.AUTOTUNE),
                      class_names=list(objects["label"].names), source=source)


def tfds_mask_splits(name: str, image_size: int, source: str) -> DataSplits:
    """A TFDS segmentation dataset (MASK_DATASETS) as pictures and index masks resized to
    `image_size` (masks by nearest neighbour only)."""
    if name not in MASK_DATASETS:
        raise DataError(f"--dataset {name}: the segmentation app reads the TFDS datasets "
                        f"{', '.join(MASK_DATASETS)}; give --data PATH to a folder of images/ "
                        f"and masks/ for others.")
    feature, values, class_names = MASK_DATASETS[name]
    (train, test), _ = load_tfds(name, _parts(name), as_supervised=False)

    def example(features):
        trimap = tf.cast(features[feature][..., 0], tf.int32)
        mask = tf.zeros_like(trimap)
        for index, value in enumerate(values):
            mask += index * tf.cast(trimap == value, tf.int32)
        return (stored(features["image"], image_size),
                tf.cast(resized_mask(mask, image_size), tf.uint8))

    return DataSplits(train=train.map(example, num_parallel_calls=tf.data.AUTOTUNE),
                      test=test.map(example, num_parallel_calls=tf.data.AUTOTUNE),
                      class_names=class_names, source=source)
