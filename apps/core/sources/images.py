"""Images in class folders (`image_dataset_from_directory`'s layout, optionally inside train/
and test/), decoded and resized as the data pipeline keeps them; and what the apps on pictures of
any size share: reading them for `predict`, decoding a `serving_bytes` batch, the square model."""

from pathlib import Path

import tensorflow as tf

import zoo
from apps.core.app import DataSplits
from apps.core.errors import DataError
from apps.core.sources import hold_out

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp")


def stored(pixels, size: int):
    """An image [h, w, 3] as the data pipeline keeps it: resized, and uint8 again, so a cached
    split takes a quarter of the memory of float32 (the model casts its input)."""
    image = resized(pixels[None], size)[0]
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def resized(pixels, size: int):
    """uint8 or float pixels [batch, h, w, 3] -> float32 [batch, size, size, 3] in [0, 255].
    Plain bilinear, as `image_dataset_from_directory` resizes, and a LiteRT built-in op (the
    antialiased resize is not)."""
    return tf.image.resize(tf.cast(pixels, tf.float32), (size, size))


def model_sized(pixels, model):
    """Pixels of any size -> `resized` to the square input of `model` (a dense-vision app's)."""
    return resized(pixels, model.input_shape[1])


def square_pixel_model(config, num_classes: int):
    """The zoo model of `--model` on uint8-range pixels [batch, --image-size, --image-size, 3],
    with the `--backbone` options (apps.core.config.DensePictureConfig): the model the
    dense-vision apps train and export."""
    size = config.image_size
    return zoo.build(config.model, input_shape=(size, size, 3), num_classes=num_classes,
                     **config.model_options(), **config.backbone_options())


def decode(image_bytes):
    return tf.io.decode_image(image_bytes, channels=3, expand_animations=False)


def decoded_at_first_size(image_bytes):
    """Encoded pictures (JPEG/PNG/GIF/BMP) [batch] -> float32 pixels [batch, h, w, 3] at the first
    picture's size (the others resized to it): for exports that answer at the picture's size."""
    first = decode(image_bytes[0])
    return tf.map_fn(lambda one: tf.image.resize(decode(one), tf.shape(first)[:2]), image_bytes,
                     fn_output_signature=tf.TensorSpec([None, None, 3], tf.float32))


def read_pictures(paths: list[str]) -> tuple[list[str], list]:
    """Image files -> (the paths, uint8 pictures [height, width, 3], each at its own size), for
    `predict`; a file that is not a picture is a DataError naming it."""
    pictures = []
    for path in paths:
        try:
            pictures.append(decode(tf.io.read_file(path)).numpy())
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
            raise DataError(f"{path}: not a readable PNG/JPEG/GIF/BMP image ({error.message}).")
    return paths, pictures


def _class_files(folder: Path, class_names: list[str]) -> list[tuple[str, int]]:
    return [(str(path), label) for label, name in enumerate(class_names) if (folder / name).is_dir()
            for path in sorted((folder / name).iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES]


def folder_splits(folder: Path, image_size: int, seed: int, reason: str,
                  min_classes: int = 2) -> DataSplits:
    """Class folders split by `seed`, or the folder's own train/ and test/ (and optional
    validation/) parts; corrupt images dropped where they are decoded and counted in the facts
    (`skipped_files`). With `min_classes` 1, a folder of images without class folders is one
    class named after it. Images are RGB uint8 resized to `image_size`."""
    given = folder
    halves = (folder / "train").is_dir() and (folder / "test").is_dir()
    class_root = folder / "train" if halves else folder
    class_names = sorted(path.name for path in class_root.iterdir()
                         if path.is_dir() and not path.name.startswith("."))
    if not class_names and min_classes == 1:
        folder, class_names = folder.parent, [folder.name]
    validation_files = []
    if halves:
        train_files = _class_files(folder / "train", class_names)
        test_files = _class_files(folder / "test", class_names)
        validation_files = _class_files(folder / "validation", class_names)
    else:
        files = _class_files(folder, class_names)
        kept, held_out = hold_out(len(files), seed)
        train_files = [files[index] for index in kept]
        test_files = [files[index] for index in held_out]
    if len(class_names) < min_classes or not train_files or not test_files:
        raise DataError(f"--data {folder}: expected one subfolder of images per class (at least "
                        f"{min_classes}), optionally inside train/ and test/; found "
                        f"{len(class_names)} class folders, {len(train_files)} training and "
                        f"{len(test_files)} test images.")

    def images(files):
        paths = tf.constant([path for path, _ in files])
        labels = tf.constant([label for _, label in files], tf.int64)
        dataset = tf.data.Dataset.from_tensor_slices((paths, labels)).map(
            lambda path, label: (
                stored(decode(tf.io.read_file(path)), image_size), label),
            num_parallel_calls=tf.data.AUTOTUNE)
        return dataset.ignore_errors(log_warning=True)

    train, test = images(train_files), images(test_files)
    validation = images(validation_files) if validation_files else None
    readable = sum(1 for split in (train, test, validation) if split is not None for _ in split)
    total = len(train_files) + len(test_files) + len(validation_files)
    return DataSplits(train=train, test=test, validation=validation, class_names=class_names,
                      source=f"image folder {given} ({reason})",
                      facts={"skipped_files": total - readable})
