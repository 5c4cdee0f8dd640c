"""Where an app's data comes from, and one reader per data format, each returning `DataSplits`
or the arrays an app builds them from. Apps, bench and tests read data only through here.

Here: choosing the source (`--data auto | tfds | sample | PATH`), TFDS, seeded hold-outs.
Readers: `digits` (IDX files and the shipped MNIST sample), `images` (class folders), `masks`
(images/ and masks/ folders), `coco` and `voc` (object boxes; `boxes` converts box formats),
`speech_commands` (Speech Commands folders, WAV files), `series` (CSV columns), `reviews` (review
CSV/TSV files and aclImdb folders), `sentence_pairs` (tab-separated translation pairs, and the
number words num2words writes), `texts` (text files and folders, Debian's fortunes, and the
SentencePiece tokenizer trained on them). Generators of offline samples, each writing a reader's
layout: `spoken_words` (the espeak-ng corpus), `digit_pictures` (class folders) and
`digit_scenes` (images, masks and COCO boxes) from the shipped MNIST digits.
"""

import argparse
import contextlib
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np

from apps.core.errors import DataError

REPO_ROOT = Path(__file__).resolve().parents[3]
SAMPLES_DIR = REPO_ROOT / "data"


def google_storage_reachable(timeout_seconds: float = 3.0) -> bool:
    """Whether storage.googleapis.com answers: TFDS's datasets and keras.applications' weights
    download from it."""
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=timeout_seconds).close()
        return True
    except OSError:
        return False


def resolve_source(data: str, tfds_name: str | None) -> tuple[str, str]:
    """Turns `--data` into "tfds", "sample" or a path, with the reason for `auto`'s choice."""
    if data in ("tfds", "sample"):
        return data, f"--data {data}"
    if data != "auto":
        path = Path(data).expanduser()
        if not path.exists():
            raise DataError(
                f"--data {data}: no such file or folder. Give an existing path, or "
                f"--data tfds / --data sample."
            )
        return str(path), f"--data {data}"
    if tfds_name is None:
        return "sample", "auto: this app has no TFDS dataset"
    import tensorflow_datasets as tfds

    if tfds.builder(tfds_name).is_prepared():
        return "tfds", f"auto: TFDS {tfds_name} is already prepared on disk"
    if google_storage_reachable():
        return "tfds", f"auto: TFDS {tfds_name} is not on disk but can be downloaded"
    return "sample", (f"auto: TFDS {tfds_name} is not prepared on disk and cannot be downloaded "
                      f"(no network)")


def load_tfds(name: str, splits: list[str], as_supervised: bool = True):
    """Loads TFDS splits (downloading and preparing once), as `(input, label)` pairs."""
    import tensorflow_datasets as tfds

    datasets, info = tfds.load(name, split=splits, as_supervised=as_supervised, with_info=True)
    return datasets, info


def texts_or_files(inputs: list[str]) -> tuple[list[str], np.ndarray]:
    """`predict`'s text inputs (a review, a sentence): each argument as given, or where it names
    a file, the file's non-blank lines; (the texts, the same as a string batch)."""
    texts = []
    for item in inputs:
        path = Path(item)
        if path.is_file():
            texts.extend(line for line in path.read_text(encoding="utf-8").splitlines()
                         if line.strip())
        else:
            texts.append(item)
    return texts, np.array(texts, dtype=object)


def read_utf8(path: Path) -> str:
    """A text file's content, or a DataError naming the file and the first byte that is not
    UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start}). Save it as UTF-8.") from error


TEST_FRACTION = 0.15


def hold_out(count: int, seed: int, fraction: float = TEST_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded random split of `count` items: (kept, held out), at least one held
    out; for data that comes without a test split of its own."""
    order = np.random.default_rng(seed).permutation(count)
    held_out = max(1, int(count * fraction))
    return order[held_out:], order[:held_out]


@contextlib.contextmanager
def written_in_place(out_dir: Path):
    """A temporary folder beside `out_dir` for a generator to write a dataset into, renamed into
    place (replacing `out_dir`) only when the block ends without error, so an interrupted
    generation never leaves a half-written dataset where an app would read it."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)


def generated_once(folder: Path, generate, announcement: str, duration: str) -> Path:
    """`folder`, written by `generate(folder)` where an app looks for its offline sample, on
    first use only, announced as "`announcement` in `folder` (`duration`, once)"."""
    if not folder.exists():
        print(f"{announcement} in {folder} ({duration}, once)", flush=True)
        generate(folder)
    return folder


def generator_command(generate, default_dir: Path, description: str) -> None:
    """`python -m apps.core.sources.<generator> [--out DIR] [--seed N]`."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=default_dir, help="dataset folder to write")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    print(f"wrote {generate(arguments.out, arguments.seed)}")
