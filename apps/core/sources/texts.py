"""Plain text for language models: a UTF-8 file or a folder of them, a TFDS text dataset, or the
offline default, Debian's `fortunes` (`make fortunes`; the BSD licence of fortune(6), its
copyright file in /usr/share/doc/fortunes/copyright): English quotations, jokes and verse,
15,207 entries and 2.5 MB without the ascii-art file, no offensive part (that is the separate
`fortunes-off`).

A text is one document: a fortune file's entries are separated by lines holding only "%", any
other file's paragraphs by blank lines. Repeated documents are kept once; a seeded 5% of them is
the test part and 5% the validation part, never trained on.

`token_windows` turns documents into the training examples of a language model: each document's
token ids after the start token, all of them end to end, cut into windows of the model's length
(inputs, and the same shifted by one as the targets).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from apps.core.errors import DataError
from apps.core.sources import read_utf8

FORTUNES_DIR = Path("/usr/share/games/fortunes")
FORTUNES_LICENCE = Path("/usr/share/doc/fortunes/copyright")
FORTUNES_LEFT_OUT = ("ascii-art",)  # pictures drawn in characters, not text
HELD_OUT_FRACTION = 0.05
MINIMUM_DOCUMENTS = 20


def documents_in(text: str) -> list[str]:
    """A file's documents: fortune entries between "%" lines, else paragraphs."""
    separator = r"\n%\n" if re.search(r"^%$", text, re.MULTILINE) else r"\n\s*\n"
    parts = re.split(separator, text.replace("\r\n", "\n"))
    return [part.strip("\n") for part in parts if part.strip() and part.strip() != "%"]


def read_text(path: Path) -> str:
    text = read_utf8(path)
    if not text.strip():
        raise DataError(f"{path}: the file is empty; give a file with text in it.")
    return text


def read_documents(path: Path) -> list[str]:
    """The documents of a file, or of every file in a folder (hidden files, fortune index files
    `.dat` and links left out)."""
    if path.is_dir():
        files = sorted(file for file in path.iterdir()
                       if file.is_file() and not file.is_symlink() and not file.name.startswith(".")
                       and file.suffix != ".dat" and file.name not in FORTUNES_LEFT_OUT)
        if not files:
            raise DataError(f"--data {path}: a folder without text files.")
    else:
        files = [path]
    return [document for file in files for document in documents_in(read_text(file))]


def fortunes() -> list[str]:
    if not FORTUNES_DIR.is_dir():
        raise DataError(f"{FORTUNES_DIR} is missing: the offline text is Debian's fortunes. "
                        f"Install it with `make fortunes` (or apt-get install fortunes), or give "
                        f"--data PATH to a text file or folder.")
    return read_documents(FORTUNES_DIR)


def without_repeats(documents: list[str]) -> list[str]:
    """The documents less each one that repeats an earlier one word for word (letter case,
    punctuation and spacing aside): a copy on both sides of the split would be scored as held out
    while it was trained on (Debian's fortunes hold 219 such copies among 15,207 entries)."""
    seen, kept = set(), []
    for document in documents:
        words = " ".join(re.findall(r"\w+", document.lower()))
        if words not in seen:
            seen.add(words)
            kept.append(document)
    return kept


def split_documents(documents: list[str], seed: int, source: str) -> tuple[list, list, list]:
    """(train, validation, test) documents, repeats dropped: a seeded 5% each held out."""
    documents = without_repeats(documents)
    if len(documents) < MINIMUM_DOCUMENTS:
        raise DataError(f"{source}: {len(documents)} distinct documents (paragraphs, or fortune "
                        f"entries); at least {MINIMUM_DOCUMENTS} are needed to hold some out.")
    order = np.random.default_rng(seed).permutation(len(documents))
    held_out = max(1, int(len(documents) * HELD_OUT_FRACTION))
    test, validation, train = (order[:held_out], order[held_out:2 * held_out],
                               order[2 * held_out:])
    return tuple([documents[index] for index in sorted(part)] for part in (train, validation, test))


def token_windows(documents: list[str], tokenize, start_id: int, length: int):
    """`tf.data` examples (token ids [length], the next ids [length]) covering `documents` end to
    end, each after the start token; the last partial window is padded with 0."""
    import tensorflow as tf

    stream = np.concatenate([np.concatenate([[start_id], ids]) for ids in tokenize(documents)]
                            + [[start_id]]).astype("int32")
    windows = max(1, -(-(len(stream) - 1) // length))
    padded = np.zeros(windows * length + 1, "int32")
    padded[:len(stream)] = stream
    inputs = padded[:-1].reshape(windows, length)
    targets = padded[1:].reshape(windows, length)
    return tf.data.Dataset.from_tensor_slices((inputs, targets))


def sentence_piece_proto(documents: list[str], vocabulary_size: int) -> bytes:
    """A SentencePiece unigram model trained on `documents`, lossless: no normalisation, spaces
    and newlines kept as written, characters outside its pieces as UTF-8 bytes. Ids 0-3 are
    padding, unknown, `<s>` (the start of a text) and `</s>`, as KerasHub's tokenizers expect.
    (KerasHub's `compute_sentence_piece_proto` normalises text, which would drop newlines.)"""
    import io

    import sentencepiece

    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(documents), model_writer=model, vocab_size=vocabulary_size,
            model_type="unigram", normalization_rule_name="identity",
            remove_extra_whitespaces=False, byte_fallback=True, user_defined_symbols=["\n"],
            allow_whitespace_only_pieces=True, max_sentence_length=1 << 20, hard_vocab_limit=False,
            pad_id=0, unk_id=1, bos_id=2, eos_id=3, num_threads=2, minloglevel=2)
    except RuntimeError as error:
        found = re.search(r"smaller than required_chars. (\d+) vs (\d+)", str(error))
        if not found:
            raise
        raise DataError(f"--vocabulary-size {vocabulary_size}: this text needs at least "
                        f"{found.group(2)} pieces (its characters, the 256 bytes others fall back "
                        f"to, and 4 special tokens).") from None
    return model.getvalue()
