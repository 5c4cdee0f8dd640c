"""Images with segmentation masks: `images/` and `masks/` folders side by side (a PNG index mask
per image, same file stem, each pixel its class id; 0 is the background), optionally inside
train/ and test/, with an optional `classes.txt` (one class name per line, the line number its
id). Each pair is checked before training: an image without a mask, an unreadable file, a mask
whose size differs from its image's, or a class id beyond `classes.txt` is skipped, counted
(`skipped_files`) and named in the run's output. Images are resized bilinearly, masks with nearest
neighbour only (interpolating class ids would invent classes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from apps.core.app import DataSplits
from apps.core.errors import DataError
from apps.core.sources import hold_out
from apps.core.sources.images import IMAGE_SUFFIXES, decode, stored

SHOWN_PROBLEMS = 5


def _class_names(folder: Path) -> list[str] | None:
    """`classes.txt`'s names, or None (then the largest id in the masks decides)."""
    listed = folder / "classes.txt"
    if not listed.exists():
        return None
    names = [line.strip() for line in listed.read_text().splitlines() if line.strip()]
    if len(names) < 2:
        raise DataError(f"{listed}: expected one class name per line (the background first), "
                        f"at least two; found {len(names)}.")
    return names


def _checked_pairs(part: Path, class_count: int | None) -> tuple[list, list[str], int]:
    """(image path, mask path) pairs of `part/images` and `part/masks` that pass the checks, the
    problems of the others ("file: why"), and the largest class id seen."""
    from PIL import Image

    pairs, problems, largest = [], [], 0
    images = sorted(path for path in (part / "images").iterdir()
                    if path.suffix.lower() in IMAGE_SUFFIXES)
    for image_path in images:
        mask_path = part / "masks" / f"{image_path.stem}.png"
        if not mask_path.exists():
            problems.append(f"{image_path}: no mask {mask_path.name} in {part / 'masks'}")
            continue
        try:
            with Image.open(image_path) as image:
                image_size = image.size
            with Image.open(mask_path) as mask_image:
                mask = np.asarray(mask_image)
        except OSError as error:
            problems.append(f"{image_path}: unreadable ({error})")
            continue
        if mask.ndim != 2 or mask.shape[::-1] != image_size:
            problems.append(f"{mask_path}: mask {mask.shape[1::-1]} is not one channel of the "
                            f"image's size {image_size}")
            continue
        if class_count is not None and mask.max() >= class_count:
            problems.append(f"{mask_path}: class id {mask.max()} but classes.txt names "
                            f"{class_count} classes")
            continue
        largest = max(largest, int(mask.max()))
        pairs.append((str(image_path), str(mask_path)))
    return pairs, problems, largest


def resized_mask(mask, size: int):
    """uint8 mask [h, w] -> [size, size], nearest neighbour."""
    return tf.image.resize(mask[..., None], (size, size), method="nearest")[..., 0]


def _dataset(pairs: list, image_size: int) -> tf.data.Dataset:
    def read(image_path, mask_path):
        mask = tf.io.decode_png(tf.io.read_file(mask_path), channels=1)[..., 0]
        return (stored(decode(tf.io.read_file(image_path)), image_size),
                resized_mask(mask, image_size))

    return tf.data.Dataset.from_tensor_slices(
        ([image for image, _ in pairs], [mask for _, mask in pairs])).map(
        read, num_parallel_calls=tf.data.AUTOTUNE)


def mask_folder_splits(folder: Path, image_size: int, seed: int, reason: str,
                       source: str | None = None) -> DataSplits:
    """The image/mask pairs of `folder` as (uint8 image [size, size, 3], uint8 mask [size, size])
    splits: the folder's own train/ and test/, or a seeded test split."""
    halves = (folder / "train" / "images").is_dir() and (folder / "test" / "images").is_dir()
    parts = [folder / "train", folder / "test"] if halves else [folder]
    for part in parts:
        if not (part / "images").is_dir() or not (part / "masks").is_dir():
            missing = "images/" if not (part / "images").is_dir() else "masks/"
            raise DataError(f"--data {folder}: expected images/ and masks/ folders (a PNG index "
                            f"mask per image, same name), optionally inside train/ and test/; "
                            f"{part} has no {missing}.")
    class_names = _class_names(folder)
    checked = [_checked_pairs(part, class_names and len(class_names)) for part in parts]
    problems = [problem for _, part_problems, _ in checked for problem in part_problems]
    for problem in problems[:SHOWN_PROBLEMS]:
        print(f"[data] skipped {problem}", flush=True)
    if len(problems) > SHOWN_PROBLEMS:
        print(f"[data] ... and {len(problems) - SHOWN_PROBLEMS} more skipped", flush=True)
    if halves:
        train_pairs, test_pairs = checked[0][0], checked[1][0]
    else:
        pairs = checked[0][0]
        kept, held_out = hold_out(len(pairs), seed) if pairs else ([], [])
        train_pairs, test_pairs = [pairs[i] for i in kept], [pairs[i] for i in held_out]
    if not train_pairs or not test_pairs:
        raise DataError(f"--data {folder}: {len(train_pairs)} training and {len(test_pairs)} test "
                        f"image/mask pairs passed the checks ({len(problems)} skipped); at least "
                        f"one of each is needed.")
    if class_names is None:
        largest = max(part_largest for _, _, part_largest in checked)
        if largest == 0:
            raise DataError(f"--data {folder}: every mask is background (0): nothing to segment.")
        class_names = ["background", *(f"class_{index}" for index in range(1, largest + 1))]
    return DataSplits(train=_dataset(train_pairs, image_size),
                      test=_dataset(test_pairs, image_size), class_names=class_names,
                      source=source or f"image/mask folder {folder} ({reason})",
                      facts={"skipped_files": len(problems)})
