"""Labelled reviews: a CSV/TSV with text and label columns (and an optional split column), or
an aclImdb folder (train/pos, train/neg, test/pos, test/neg, one review per file)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import tensorflow as tf

from apps.core.app import DataSplits
from apps.core.errors import DataError
from apps.core.sources import TEST_FRACTION, hold_out

LABELS = {"negative": 0, "neg": 0, "0": 0, "positive": 1, "pos": 1, "1": 1}
TEXT_COLUMNS, LABEL_COLUMNS = ("text", "review", "sentence"), ("label", "sentiment", "polarity")


def _texts_dataset(texts: list[str], labels: list[int]) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((tf.constant(texts, tf.string),
                                               np.array(labels, dtype="int64")))


def keep(text: str | None) -> bool:
    """Whether a text is worth a review: not missing, not blank."""
    return bool(text and text.strip())


def read_table(path: Path) -> dict[str, tuple[list, list]]:
    """A CSV/TSV with text and label columns (and an optional split column) -> split -> pairs."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        columns = reader.fieldnames or []
        text_column = next((name for name in TEXT_COLUMNS if name in columns), None)
        label_column = next((name for name in LABEL_COLUMNS if name in columns), None)
        if text_column is None or label_column is None:
            raise DataError(f"{path}: needs a text column ({'/'.join(TEXT_COLUMNS)}) and a label "
                            f"column ({'/'.join(LABEL_COLUMNS)}); found {', '.join(columns)}.")
        splits = {"train": ([], []), "test": ([], [])}
        skipped = 0
        for row in reader:
            label = LABELS.get(str(row[label_column]).strip().lower())
            if label is None or not keep(row[text_column]):
                skipped += 1
                continue
            split = "test" if row.get("split") == "test" else "train"
            splits[split][0].append(row[text_column])
            splits[split][1].append(label)
    return splits, skipped


def read_aclimdb(folder: Path) -> tuple[dict, int]:
    """The aclImdb layout: {train,test}/{pos,neg}/*.txt, one review per file."""
    splits, skipped = {"train": ([], []), "test": ([], [])}, 0
    for split in splits:
        for label_name, label in (("neg", 0), ("pos", 1)):
            label_folder = folder / split / label_name
            if not label_folder.is_dir():
                raise DataError(f"--data {folder}: missing {label_folder}; expected the aclImdb "
                                f"layout (train/pos, train/neg, test/pos, test/neg).")
            for path in sorted(label_folder.glob("*.txt")):
                try:
                    text = path.read_text(encoding="utf-8")
                except (UnicodeDecodeError, OSError):
                    text = None
                if not keep(text):
                    skipped += 1
                    continue
                splits[split][0].append(text)
                splits[split][1].append(label)
    return splits, skipped


def review_splits(path: Path, seed: int, class_names: list[str], source: str) -> DataSplits:
    """A review table (`read_table`) or an aclImdb folder (`read_aclimdb`) as DataSplits of
    (text, label); without test rows a seeded TEST_FRACTION is held out (said in the facts)."""
    splits, skipped = read_aclimdb(path) if path.is_dir() else read_table(path)
    facts = {"skipped_texts": skipped}
    if not splits["test"][0]:
        texts, labels = splits["train"]
        kept, held_out = hold_out(len(texts), seed)
        splits = {part: ([texts[i] for i in indices], [labels[i] for i in indices])
                  for part, indices in (("train", kept), ("test", held_out))}
        facts["split_rule"] = (f"no split column: a seeded {TEST_FRACTION:.0%} of the rows "
                               f"(--seed {seed}), {len(held_out)} reviews")
    return DataSplits(train=_texts_dataset(*splits["train"]), test=_texts_dataset(*splits["test"]),
                      class_names=class_names, source=source, facts=facts)
