"""Semantic segmentation: RGB pixels -> zoo U-Net -> a class for every pixel (0 = background).

Data: a local folder of `images/` and `masks/` (PNG index masks, same names; optionally inside
train/ and test/, with `classes.txt`): `--data PATH`, checked pair by pair (bad pairs skipped,
counted and named), or `--data tfds` for TFDS's oxford_iiit_pet (background, pet, outline);
offline by default, scenes of the shipped MNIST digits on paper with their masks
(`apps.core.sources.digit_scenes`, composed once in seconds): 11 classes, the background and the
ten digits. Pictures are resized bilinearly to `--image-size`, masks with nearest
neighbour only.
Default model: `unet` trained from scratch, on the cross-entropy plus the Dice loss of the
foreground (`zoo.CrossentropyDiceLoss`).
Export: `serving_default(pixels: uint8 [batch, height, width, 3], any size)` -> `mask` uint8
[batch, height, width] (class ids at the input's own size: the probabilities are resized back
before the argmax, never the mask) and `probabilities` [batch, height, width, classes];
`serving_bytes(image_bytes: string [batch])` the same from encoded pictures; class names in
assets/labels.txt.
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
from apps.core.outputs.segmentation import Segmentation, chosen_object_class
from apps.core.sources import digit_scenes, generated_once, resolve_source
from apps.core.sources.images import (
    decoded_at_first_size,
    model_sized,
    read_pictures,
    square_pixel_model,
)
from apps.core.sources.masks import mask_folder_splits
from apps.core.sources.tfds_dense import tfds_mask_splits


@dataclasses.dataclass
class SegmentationConfig(DensePictureConfig):
    # The 96-pixel scenes halved: their digits (16-56 px) become MNIST's size, and a 2-core CPU
    # runs four times the epochs (20 at 96 px: mIoU 0.57 in 3.6 min; at 48 px 0.82 after 35
    # epochs of 1,080 scenes in 1.7 min, 0.86 after 18 epochs of 2,160).
    image_size: int = option(48, "pictures are resized to this square size inside the model "
                                 "(divisible by 8 for the default unet); the export answers at "
                                 "each picture's own size")
    dataset: str = option("oxford_iiit_pet", "TFDS dataset for --data tfds: oxford_iiit_pet "
                                             "(pets, their outlines and the background)")


def load_data(config) -> DataSplits:
    source, reason = resolve_source(config.data, None)
    if source == "sample":
        folder = generated_once(digit_scenes.DEFAULT_DIR, digit_scenes.generate,
                                "composing the digit scenes sample", "a few seconds")
        return mask_folder_splits(folder, config.image_size, config.seed, reason,
                                  f"generated digit scenes sample {folder} ({reason})")
    if source == "tfds":
        return tfds_mask_splits(config.dataset, config.image_size,
                                f"TFDS {config.dataset} ({reason})")
    return mask_folder_splits(Path(source), config.image_size, config.seed, reason)


def build_model(config, splits: DataSplits) -> keras.Model:
    """The zoo model on pixels in [0, 255] (its own rescaling, or its backbone's preprocessing)."""
    return square_pixel_model(config, len(splits.class_names))


def segment(model, pixels) -> dict:
    """The export's answer at the picture's own size: the probabilities resized back
    (bilinearly, as probabilities may be), then the argmax."""
    probabilities = model(model_sized(pixels, model), training=False)
    probabilities = tf.image.resize(probabilities, tf.shape(pixels)[1:3])
    return {"mask": tf.cast(tf.argmax(probabilities, axis=-1), tf.uint8),
            "probabilities": probabilities}


def segment_bytes(model, image_bytes) -> dict:
    """`segment` on each encoded picture (JPEG/PNG/GIF/BMP) at its own size; a batch of
    pictures of different sizes answers with the first picture's size, so send one per call or
    pictures of one size."""
    return segment(model, decoded_at_first_size(image_bytes))


APP = App(
    name="segmentation",
    summary="a class for every pixel of RGB pictures (semantic segmentation)",
    output=Segmentation(),
    models=("unet",),
    load_data=load_data,
    build_model=build_model,
    # Cross-entropy plus 0.2 x the foreground's Dice loss: foreground IoU 0.912-0.917 ->
    # 0.925-0.928 over three seeds at the same cost and mean IoU (bench/RESULTS.md).
    loss=lambda: zoo.CrossentropyDiceLoss(0.2),
    metrics=("accuracy",),
    signatures={"serving_default": Signature(
        TensorInput("pixels", "uint8", (None, None, None, 3)),
        to_model_input=model_sized, outputs=segment,
        description="pixels of any size -> `mask` of class ids at that size, `probabilities`"),
        "serving_bytes": Signature(
            TensorInput("image_bytes", "string", (None,)), outputs=segment_bytes,
            description="JPEG/PNG/GIF/BMP bytes -> the same, at the (first) picture's size")},
    read_inputs=read_pictures,
    explanation=Explanation(target=chosen_object_class,
                            choice=TensorInput("class_id", "int32", (None,)),
                            subject="the pixels predicted as {name}, mean probability {score:.2f}"),
    config_class=SegmentationConfig,
    app_model_options={"input_shape": "--image-size", "num_classes": "the masks' classes",
                       "backbone": "--backbone", "weights": "--weights"},
    option_flags={"backbone": "--backbone", "weights": "--weights"},
    defaults={"model": "unet", "epochs": 18, "batch_size": 32,
              "learning_rate": 2e-3, "augment": False, "patience": 5},
)
