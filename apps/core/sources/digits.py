"""Digits in the IDX format (MNIST's): a local folder of the four files, and the shipped sample
(data/mnist: the 10,000 real MNIST test digits; the first 8,000 train and validate, the last
2,000 test)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import tensorflow as tf

from apps.core.app import DataSplits
from apps.core.errors import DataError
from apps.core.sources import SAMPLES_DIR

CLASS_NAMES = [str(digit) for digit in range(10)]
SAMPLE_DIR = SAMPLES_DIR / "mnist"
SAMPLE_TRAIN_SIZE = 8000


def read_idx(path: Path) -> np.ndarray:
    """Reads an IDX file (the MNIST format), gzip-compressed or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            content = handle.read()
        magic, = struct.unpack(">I", content[:4])
        if magic >> 8 != 0x08:
            raise ValueError(f"magic number {magic:#x} is not an unsigned-byte IDX file")
        num_dims = magic & 0xFF
        dims = struct.unpack(">" + "I" * num_dims, content[4 : 4 + 4 * num_dims])
        return np.frombuffer(content[4 + 4 * num_dims :], dtype=np.uint8).reshape(dims)
    except (OSError, ValueError, struct.error) as error:
        raise DataError(f"{path}: not a readable IDX file ({error}).") from error


def find_file(folder: Path, stem: str) -> Path:
    """`folder/stem` or `folder/stem.gz`, or a DataError naming both."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise DataError(f"{folder}: missing {stem} (or {stem}.gz). Expected the dataset's usual layout.")


def _pairs(images: np.ndarray, labels: np.ndarray) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((images[..., np.newaxis], labels.astype("int64")))


def read_split(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, 28, 28] and labels [N] of one split ("train" or "t10k") of IDX files."""
    images = read_idx(find_file(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find_file(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise DataError(f"{folder}: {prefix} images {images.shape} and labels {labels.shape} "
                        f"are not N x 28 x 28 digits with N labels.")
    return images, labels


def sample_splits(reason: str) -> DataSplits:
    """The shipped sample: uint8 images [28, 28, 1] and int64 labels."""
    images, labels = read_split(SAMPLE_DIR, "t10k")
    return DataSplits(train=_pairs(images[:SAMPLE_TRAIN_SIZE], labels[:SAMPLE_TRAIN_SIZE]),
                      test=_pairs(images[SAMPLE_TRAIN_SIZE:], labels[SAMPLE_TRAIN_SIZE:]),
                      class_names=CLASS_NAMES, source=f"shipped sample {SAMPLE_DIR} ({reason})")


def idx_folder_splits(folder: Path, reason: str) -> DataSplits:
    """A local folder with MNIST's four IDX files (train-* and t10k-*, gzipped or not)."""
    if not folder.is_dir():
        raise DataError(f"--data {folder}: expected a folder holding the MNIST IDX files "
                        f"(train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-...).")
    return DataSplits(train=_pairs(*read_split(folder, "train")),
                      test=_pairs(*read_split(folder, "t10k")),
                      class_names=CLASS_NAMES, source=f"local IDX folder {folder} ({reason})")
