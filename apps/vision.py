"""Image classification by fine-tuning a pretrained backbone: RGB pixels -> zoo image model ->
class probabilities.

Data: a TFDS image-classification dataset (`--dataset tf_flowers` by default; cats_vs_dogs,
cifar10, fashion_mnist, ...), or a local folder with one subfolder of images per class
(`--data PATH`), with a seeded held-out test split. Corrupt or unreadable images are skipped and
counted (`skipped_files`). Default model: `image_transfer` on `--backbone mobilenet_v2` with
`--weights imagenet`, frozen then fine-tuned; `resnet_cnn` and `small_cnn` train from scratch.
Export: `serving_default(pixels: uint8 [batch, height, width, 3], any size)` and
`serving_bytes(image_bytes: string [batch] of JPEG/PNG/GIF/BMP)`, both resized inside and both
returning `probabilities`, `class_id` and `class_name`.
"""

import dataclasses
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import zoo
from apps.app import App, DataSplits, Signature
from apps.config import TrainConfig, option
from apps.data import DataError, load_tfds, resolve_source

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
TEST_FRACTION = 0.15


@dataclasses.dataclass
class VisionConfig(TrainConfig):
    dataset: str = option("tf_flowers", "TFDS image dataset for --data tfds/auto")
    image_size: int = option(224, "images are resized to this square size inside the model")
    backbone: str = option("mobilenet_v2", "image_transfer backbone (keras.applications name)")
    weights: str = option("imagenet", "image_transfer weights: imagenet, none, or a weights file")
    augment_strength: float = option(0.1, "rotation/zoom/contrast factor of the augmentation")


def _resized(pixels, size: int):
    """uint8 or float pixels [batch, h, w, 3] -> float32 [batch, size, size, 3] in [0, 255]."""
    return tf.image.resize(tf.cast(pixels, tf.float32), (size, size), antialias=True)


def _decode(image_bytes):
    return tf.io.decode_image(image_bytes, channels=3, expand_animations=False)


def _folder_splits(folder: Path, config) -> tuple[tf.data.Dataset, tf.data.Dataset, list, int]:
    class_names = sorted(path.name for path in folder.iterdir()
                         if path.is_dir() and not path.name.startswith("."))
    files = [(str(path), label) for label, name in enumerate(class_names)
             for path in sorted((folder / name).iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES]
    if len(class_names) < 2 or not files:
        raise DataError(f"--data {folder}: expected one subfolder of images per class (at least "
                        f"two classes); found {len(class_names)} class folders, {len(files)} "
                        f"images.")
    order = np.random.default_rng(config.seed).permutation(len(files))
    test_size = max(1, int(len(files) * TEST_FRACTION))

    def images(indices):
        paths = tf.constant([files[index][0] for index in indices])
        labels = tf.constant([files[index][1] for index in indices], tf.int64)
        dataset = tf.data.Dataset.from_tensor_slices((paths, labels)).map(
            lambda path, label: (
                _resized(_decode(tf.io.read_file(path))[None], config.image_size)[0], label),
            num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.ignore_errors(log_warning=True)

    train, test = images(order[test_size:]), images(order[:test_size])
    readable = sum(1 for _ in train) + sum(1 for _ in test)
    return train, test, class_names, len(files) - readable


def load_data(config) -> DataSplits:
    source, reason = resolve_source(config.data, config.dataset)
    if source == "tfds":
        import tensorflow_datasets as tfds

        splits = tfds.builder(config.dataset).info.splits
        train_percent = 100 - int(TEST_FRACTION * 100)
        names = (["train", "test"] if "test" in splits
                 else [f"train[:{train_percent}%]", f"train[{train_percent}%:]"])
        (train, test), info = load_tfds(config.dataset, names)
        resize = lambda image, label: (_resized(image[None], config.image_size)[0], label)
        if info.features["image"].shape[-1] == 1:
            resize = lambda image, label: (
                _resized(tf.image.grayscale_to_rgb(image)[None], config.image_size)[0], label)
        return DataSplits(train=train.map(resize, num_parallel_calls=tf.data.AUTOTUNE),
                          test=test.map(resize, num_parallel_calls=tf.data.AUTOTUNE),
                          class_names=info.features["label"].names,
                          source=f"TFDS {config.dataset} ({reason})")
    if source == "sample":
        raise DataError("The vision app ships no sample: give --data PATH to a folder with one "
                        "subfolder of images per class, or --data tfds on a machine with network.")
    train, test, class_names, skipped = _folder_splits(Path(source), config)
    return DataSplits(train=train, test=test, class_names=class_names,
                      source=f"local image folder {source} ({reason})",
                      facts={"skipped_files": skipped})


def build_model(config, splits: DataSplits) -> keras.Model:
    """Pixels in [0, 255]: image_transfer applies its backbone's own preprocessing; the models
    trained from scratch get them rescaled to [0, 1]."""
    size, options = config.image_size, config.model_options()
    if config.model == "image_transfer":
        options = {"backbone": config.backbone,
                   "weights": None if config.weights == "none" else config.weights, **options}
    classifier = zoo.build(config.model, input_shape=(size, size, 3),
                           num_classes=len(splits.class_names), **options)
    pixels = keras.Input(shape=(size, size, 3), name="pixels")
    scaled = pixels if config.model == "image_transfer" else keras.layers.Rescaling(1 / 255)(pixels)
    return keras.Model(pixels, classifier(scaled), name=f"vision_{config.model}")


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
    return _resized(pixels, model.input_shape[1])


def _bytes_to_model_input(image_bytes, model):
    size = model.input_shape[1]
    return tf.map_fn(lambda one: _resized(_decode(one)[None], size)[0], image_bytes,
                     fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))


APP = App(
    name="vision",
    summary="image classes from RGB pictures, by fine-tuning a pretrained backbone",
    task="classification",
    models=("image_transfer", "resnet_cnn", "small_cnn"),
    load_data=load_data,
    build_model=build_model,
    loss="sparse_categorical_crossentropy",
    metrics=("accuracy",),
    signatures={
        "serving_default": Signature(tf.TensorSpec([None, None, None, 3], tf.uint8, "pixels"),
                                     _pixels_to_model_input),
        "serving_bytes": Signature(tf.TensorSpec([None], tf.string, "image_bytes"),
                                   _bytes_to_model_input),
    },
    read_inputs=read_inputs,
    predict_signature="serving_bytes",
    config_class=VisionConfig,
    augmentation=augmentation,
    defaults={"model": "image_transfer", "epochs": 10, "batch_size": 32, "fine_tune": "20",
              "fine_tune_epochs": 5, "fine_tune_learning_rate_ratio": 0.1},
)
