"""Sentence pairs for translation: a tab-separated file (`source<TAB>target` per line, the
Anki/ManyThings format keras.io's translation examples read; columns after the second, such as
Anki's attribution, are ignored), or the offline number words: English number words and their
translation by `num2words` for 0-999,999, whole value classes held out.

The number words' hold-out: no value that is 3 modulo 7 and no value in [740,000, 760,000) is
ever trained on, so a model that only recalls training pairs cannot pass; the test part is drawn
from both (`facts["test_groups"]` names each test pair's class).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from apps.core.app import DataSplits
from apps.core.errors import DataError
from apps.core.sources import hold_out, read_utf8

HELD_OUT_RANGE = (740_000, 760_000)
HELD_OUT_MODULUS, HELD_OUT_RESIDUE = 7, 3


def _pairs_dataset(pairs: list[tuple[str, str]]) -> tf.data.Dataset:
    """`({"text": source text, "target": text}, target)`: the model reads the target to learn from
    (teacher forcing); Keras is given it again as the label."""
    sources = tf.constant([source for source, _ in pairs], tf.string)
    targets = tf.constant([target for _, target in pairs], tf.string)
    return tf.data.Dataset.from_tensor_slices(({"text": sources, "target": targets}, targets))


def read_tsv(path: Path) -> tuple[list[tuple[str, str]], int]:
    """The pairs of a tab-separated file and the count of lines skipped (blank, no tab, or an
    empty side)."""
    text = read_utf8(path)
    pairs, skipped = [], 0
    for line in text.splitlines():
        columns = line.split("\t")
        if len(columns) < 2 or not columns[0].strip() or not columns[1].strip():
            skipped += 1
            continue
        pairs.append((columns[0].strip(), columns[1].strip()))
    if not pairs:
        raise DataError(f"{path}: no sentence pairs (lines of source<TAB>target); "
                        f"{skipped} line(s) skipped.")
    return pairs, skipped


def tsv_splits(path: Path, seed: int, source: str) -> DataSplits:
    """A seeded 15% of the file's pairs held out as the test part; the runner carves the
    validation part out of the rest."""
    files = sorted(path.glob("*.tsv")) + sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if not files:
        raise DataError(f"--data {path}: a folder without .tsv or .txt files of sentence pairs.")
    pairs, skipped = [], 0
    for file in files:
        file_pairs, file_skipped = read_tsv(file)
        pairs += file_pairs
        skipped += file_skipped
    if len(pairs) < 10:
        raise DataError(f"--data {path}: {len(pairs)} sentence pairs; at least 10 are needed to "
                        f"hold some out for testing.")
    kept, held_out = hold_out(len(pairs), seed)
    return DataSplits(train=_pairs_dataset([pairs[index] for index in kept]),
                      test=_pairs_dataset([pairs[index] for index in held_out]), source=source,
                      facts={"skipped_lines": skipped})


def held_out(values: np.ndarray) -> np.ndarray:
    """Whether each value belongs to a class that is never trained on."""
    in_range = (values >= HELD_OUT_RANGE[0]) & (values < HELD_OUT_RANGE[1])
    return in_range | (values % HELD_OUT_MODULUS == HELD_OUT_RESIDUE)


def number_words(value: int, language: str) -> str:
    from num2words import num2words

    return num2words(int(value), lang=language)


def number_word_splits(language: str, train_size: int, seed: int, source: str) -> DataSplits:
    """English number words -> `language` number words: for training every value below 10,000
    and `train_size` more drawn from the rest, for validation 2,000 others, none of a held-out
    class; for testing 1,000 values that are 3 modulo 7 (all of them below 1,000, the rest drawn
    above) and 1,000 drawn from the held-out range."""
    rng = np.random.default_rng(seed)
    values = np.arange(1_000_000)
    allowed = values[~held_out(values)]
    drawn = rng.permutation(allowed[allowed >= 10_000])[:train_size + 2_000]
    train_values = np.concatenate([allowed[allowed < 10_000], drawn[:train_size]])
    residue = values[values % HELD_OUT_MODULUS == HELD_OUT_RESIDUE]
    small = residue[residue < 1_000]
    test_residue = np.concatenate(
        [small, rng.choice(residue[residue >= 1_000], 1_000 - len(small), replace=False)])
    in_range = values[HELD_OUT_RANGE[0]:HELD_OUT_RANGE[1]]
    test_range = rng.choice(in_range[in_range % HELD_OUT_MODULUS != HELD_OUT_RESIDUE], 1_000,
                            replace=False)

    def pairs(chosen):
        return [(number_words(value, "en"), number_words(value, language)) for value in chosen]

    groups = ([f"value = {HELD_OUT_RESIDUE} mod {HELD_OUT_MODULUS}"] * len(test_residue)
              + [f"value in [{HELD_OUT_RANGE[0]:,}, {HELD_OUT_RANGE[1]:,})"] * len(test_range))
    return DataSplits(
        train=_pairs_dataset(pairs(train_values)),
        validation=_pairs_dataset(pairs(drawn[train_size:])),
        test=_pairs_dataset(pairs(np.concatenate([test_residue, test_range]))),
        source=source, context={"test_groups": groups})
