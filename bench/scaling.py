"""`make bench`, scaling section: cost as an image folder grows.

Generated class folders of 1k, 10k and 50k small PNGs (10 classes, 64x64) are trained on by
`python -m apps vision train --model small_cnn --image-size 64 --epochs 2`, each in its own
process, once with the default memory budget for the decoded cache (`--cache-budget-mb`, a
quarter of the machine's memory) and once with a 100 MB budget, under which the larger folders
are cached in files in the run directory. Per run: the first epoch's seconds (decoding and cache
filling), the second epoch's samples/s (read from the cache), and the process's peak resident
memory (`os.wait4`). Results go to bench/scaling.json.

    python -m bench.scaling [--sizes 1000 10000 50000]
"""

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.results import write_results

RESULTS = Path(__file__).with_name("scaling.json")
REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE_SIZE, CLASSES, SMALL_BUDGET_MB = 64, 10, 100


def write_folder(folder: Path, size: int) -> None:
    """`size` PNGs in `CLASSES` class folders: a class's own colour plus noise."""
    import tensorflow as tf

    rng = np.random.default_rng(size)
    colours = rng.integers(0, 256, size=(CLASSES, 3))
    for index in range(size):
        label = index % CLASSES
        (folder / f"class_{label}").mkdir(parents=True, exist_ok=True)
        pixels = np.clip(colours[label] + rng.normal(0, 50, (IMAGE_SIZE, IMAGE_SIZE, 3)), 0, 255)
        (folder / f"class_{label}" / f"{index}.png").write_bytes(
            tf.io.encode_png(pixels.astype("uint8")).numpy())


def train_once(folder: Path, work: Path, budget_mb: int | None) -> dict:
    """One training run in a fresh process: its epoch times, cache choice and peak memory."""
    run_dir = work / f"run_{budget_mb or 'default'}"
    command = [sys.executable, "-m", "apps", "vision", "train", "--data", str(folder),
               "--model", "small_cnn", "--image-size", str(IMAGE_SIZE), "--epochs", "2",
               "--patience", "5", "--run-dir", str(run_dir),
               "--export-dir", str(work / "exports")]
    if budget_mb:
        command += ["--cache-budget-mb", str(budget_mb)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    with (run_dir / "history.csv").open() as handle:
        epochs = list(csv.DictReader(handle))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    train_size = metrics["examples"]["train"]
    return {"budget_mb": budget_mb or "default", "train_examples": train_size,
            "cache": metrics["cache"]["train"],
            "first_epoch_seconds": round(float(epochs[0]["epoch_seconds"]), 1),
            "cached_epoch_samples_per_second": round(
                train_size / float(epochs[1]["epoch_seconds"]), 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "test_accuracy": round(metrics["test_accuracy"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 50_000])
    arguments = parser.parse_args()
    rows = []
    for size in arguments.sizes:
        with tempfile.TemporaryDirectory() as work:
            folder = Path(work) / "images"
            write_folder(folder, size)
            for budget_mb in (None, SMALL_BUDGET_MB):
                rows.append({"images": size, **train_once(folder, Path(work), budget_mb)})
                print(", ".join(f"{key}={value}" for key, value in rows[-1].items()), flush=True)
                write_results(RESULTS, rows)
    print(f"wrote {RESULTS}; this process's own peak: "
          f"{round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)} MB")


if __name__ == "__main__":
    main()
