"""Pretrained against from scratch: the sentiment app's MiniLM default beside the BiLSTM and the
Transformer trained from scratch, each through `train()` with the app's defaults on the same
sample split, scored on its test part and on 40 hand-written reviews in words the sample never
uses (`unseen_accuracy`: does the model generalise beyond the sample's vocabulary?).

    python -m bench.transfer_vs_scratch [--models text_transfer bilstm_classifier ...]
"""

import argparse
import tempfile
from pathlib import Path

from apps import get_app
from apps.core import resolve_config, train
from bench.results import write_results

RESULTS = Path(__file__).with_name("transfer_vs_scratch.json")
MODELS = ("text_transfer", "bilstm_classifier", "transformer_classifier")
# The models from scratch have no backbone whose features could be cached.
SCRATCH_OPTIONS = {"epochs": 6, "learning_rate": 1e-3, "cache_features": False}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    arguments = parser.parse_args()
    app, rows = get_app("sentiment"), []
    for model in arguments.models:
        options = {} if model == "text_transfer" else SCRATCH_OPTIONS
        with tempfile.TemporaryDirectory() as folder:
            metrics = train(app, resolve_config(app, data="sample", model=model,
                                                run_dir=f"{folder}/run",
                                                export_dir=f"{folder}/exports", **options))
        rows.append({"model": model, "test_accuracy": round(metrics["test_accuracy"], 4),
                     "unseen_accuracy": round(metrics["unseen_accuracy"], 4),
                     "train_seconds": metrics["train_seconds"]})
    write_results(RESULTS, rows)
    print(f"{'model':24s} {'test acc':>9s} {'unseen acc':>11s} {'train s':>8s}")
    for row in rows:
        print(f"{row['model']:24s} {row['test_accuracy']:9.3f} {row['unseen_accuracy']:11.3f} "
              f"{row['train_seconds']:8.1f}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
