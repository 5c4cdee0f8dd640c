"""Object detection: RGB pixels -> zoo CenterNet -> boxes, each with a class and a score, decoded
inside the export.

Data: a COCO-format folder (`annotations/instances_<part>.json` and the pictures) or a Pascal
VOC folder (`Annotations/*.xml` and `JPEGImages/`), bad boxes, unknown categories and missing
pictures skipped, counted and named: `--data PATH`; or a TFDS detection dataset, `--data tfds
--dataset voc/2007` (or coco/2017, ...; apps.core.sources.tfds_dense); offline by
default, scenes of the shipped MNIST digits on paper with each digit's tight box
(`apps.core.sources.digit_scenes`, composed once in seconds, the segmentation app's scenes): ten
classes, the digits. Pictures are resized to `--image-size` squares; boxes are kept relative to
the picture, so they follow.
Default model: `centernet` trained from scratch.
Export: `serving_default(pixels: uint8 [batch, height, width, 3], any size)` -> `boxes` float32
[batch, 100, 4] (x_min, y_min, x_max, y_max) in the input's pixels, `scores`, `class_id`,
`class_name`, best first, and `num_detections` (how many score 0.3 or more); `serving_bytes(
image_bytes: string [batch])` the same from encoded pictures.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import tensorflow as tf

import zoo
from apps.core import App, DataSplits, Signature, TensorInput, option
from apps.core.config import DensePictureConfig
from apps.core.explain import Explanation
from apps.core.outputs.detection import Detection, best_detection, served_detections
from apps.core.sources import digit_scenes, generated_once, resolve_source
from apps.core.sources.coco import coco_splits
from apps.core.sources.images import (
    decoded_at_first_size,
    model_sized,
    read_pictures,
    square_pixel_model,
)
from apps.core.sources.tfds_dense import tfds_box_splits
from apps.core.sources.voc import voc_splits


@dataclasses.dataclass
class DetectionConfig(DensePictureConfig):
    image_size: int = option(64, "pictures are resized to this square size inside the model "
                                 "(divisible by 8 for the default centernet); the export "
                                 "answers in each picture's own pixels")
    dataset: str = option("voc/2007", "TFDS dataset for --data tfds: voc/2007, voc/2012, "
                                      "coco/2017, or another whose objects have a bbox and a "
                                      "label")


def load_data(config) -> DataSplits:
    source, reason = resolve_source(config.data, None)
    if source == "sample":
        folder = generated_once(digit_scenes.DEFAULT_DIR, digit_scenes.generate,
                                "composing the digit scenes sample", "a few seconds")
        return coco_splits(folder, config.image_size, config.seed, reason,
                           f"generated digit scenes sample {folder} ({reason})")
    if source == "tfds":
        return tfds_box_splits(config.dataset, config.image_size,
                               f"TFDS {config.dataset} ({reason})")
    folder = Path(source)
    if (folder / "Annotations").is_dir() and not (folder / "annotations").is_dir():
        return voc_splits(folder, config.image_size, config.seed, reason)
    return coco_splits(folder, config.image_size, config.seed, reason)


def build_model(config, splits: DataSplits) -> keras.Model:
    """The zoo model on pixels in [0, 255] (its own rescaling, or its backbone's preprocessing)."""
    return square_pixel_model(config, len(splits.class_names))


def detect(model, pixels, labels) -> dict:
    """The export's answer: the model on the pictures resized to its size, decoded into boxes in
    the pictures' own pixels."""
    maps = model(model_sized(pixels, model), training=False)
    return served_detections(maps, labels, tf.shape(pixels)[1], tf.shape(pixels)[2])


def detect_bytes(model, image_bytes, labels) -> dict:
    """`detect` on encoded pictures (JPEG/PNG/GIF/BMP); a batch of pictures of different sizes
    is answered in the first picture's pixels, so send one per call or pictures of one size."""
    return detect(model, decoded_at_first_size(image_bytes), labels)


APP = App(
    name="detection",
    summary="boxes around the objects in RGB pictures, with classes and scores",
    output=Detection(),
    models=("centernet",),
    load_data=load_data,
    build_model=build_model,
    loss=lambda: zoo.CenterNetLoss(),
    metrics=(),
    signatures={"serving_default": Signature(
        TensorInput("pixels", "uint8", (None, None, None, 3)),
        to_model_input=model_sized, outputs=detect,
        with_labels=True,
        description="pixels of any size -> `boxes` in those pixels, `scores`, `class_id`, "
                    "`class_name`, `num_detections`"),
        "serving_bytes": Signature(
            TensorInput("image_bytes", "string", (None,)), outputs=detect_bytes,
            with_labels=True,
            description="JPEG/PNG/GIF/BMP bytes -> the same, in the (first) picture's pixels")},
    read_inputs=read_pictures,
    explanation=Explanation(target=best_detection, activation="sigmoid",
                            subject="the best detection, {name} at {score:.2f}"),
    config_class=DetectionConfig,
    app_model_options={"input_shape": "--image-size", "num_classes": "the data's classes",
                       "backbone": "--backbone", "weights": "--weights"},
    option_flags={"backbone": "--backbone", "weights": "--weights"},
    # Chosen on seed 42 (bench/RESULTS.md): 15 epochs of 2,160 scenes with AdamW's weight decay,
    # the whole cosine schedule (a patience of 15: validation loss is noisy mid-schedule), then
    # the epoch of lowest validation loss. 1,080 scenes overfit by epoch 9 (mAP@0.5 0.89).
    defaults={"model": "centernet", "epochs": 15, "batch_size": 32, "learning_rate": 2e-3,
              "weight_decay": 0.05, "augment": False, "patience": 15},
)
