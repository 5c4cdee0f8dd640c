"""`make bench-floors`: every quality floor of `make test`, measured on its default run with
several seeds, so each floor sits below the worst seed by a stated margin.

Each run is the command a user types (`python -m apps APP train --data sample --seed S ...`) in
its own process; its metrics.json gives the figures. Writes bench/floors.json (the rows of the
floors measured replace their earlier rows) and prints a Markdown table (seed by seed, the
worst, the floor and the margin) for bench/RESULTS.md.

    python -m bench.floors [--seeds 42 1 2] [--floors mnist_cnn cgan] [--runs-dir runs/floors]

Each finished run stays in --runs-dir and is not trained again, so an interrupted measurement
picks up where it stopped (delete the folder to measure afresh).
"""

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

from bench.results import write_results

RESULTS = Path(__file__).with_name("floors.json")
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Floor:
    """One floor of the test suite: the run it is measured on (app and options beyond the app's
    defaults), the figure it bounds, and the bound."""

    name: str
    app: str
    options: tuple[str, ...]
    figure: str
    value: Callable[[dict], float]
    floor: float
    at_least: bool = True  # False: the figure must stay at or below the floor
    lr_find: bool = False  # trained at the rate `lr-find` suggests (same seed), as its test does

    def margin(self, worst: float) -> float:
        return worst - self.floor if self.at_least else self.floor - worst


def _rank_correlation(method: str) -> Callable[[dict], float]:
    """Randomisation check: the maps' signed rank correlation with the re-initialised model's."""
    return lambda metrics: metrics["explanations"][method]["rank_correlation_with_reinitialised_model"]


def _drop_ratio(method: str) -> Callable[[dict], float]:
    """Deletion check of an attribution method: the drop when the most-attributed positions are
    blanked over the drop when as many random ones are."""
    def ratio(metrics):
        figures = metrics["explanations"][method]
        return figures["deletion_drop_most_attributed"] / max(figures["deletion_drop_random"], 1e-9)
    return ratio


FLOORS = [
    Floor("mnist_cnn", "mnist", (), "test_accuracy", lambda m: m["test_accuracy"], 0.98),
    Floor("mnist_mlp", "mnist", ("--model", "mnist_mlp"), "test_accuracy",
          lambda m: m["test_accuracy"], 0.95),
    Floor("mnist_cnn", "mnist", (), "integrated gradients deletion ratio",
          _drop_ratio("integrated_gradients"), 2.0),
    Floor("mnist_cnn", "mnist", (), "integrated gradients rank correlation, re-initialised",
          _rank_correlation("integrated_gradients"), 0.5, at_least=False),
    Floor("mnist_cnn at lr-find's rate", "mnist", (), "test_accuracy",
          lambda m: m["test_accuracy"], 0.98, lr_find=True),
    Floor("speech_cnn", "speech", (), "test_accuracy", lambda m: m["test_accuracy"], 0.90),
    Floor("sentiment MiniLM", "sentiment", (), "test_accuracy", lambda m: m["test_accuracy"],
          0.90),
    Floor("sentiment MiniLM", "sentiment", (), "unseen_accuracy", lambda m: m["unseen_accuracy"],
          0.80),
    Floor("sentiment MiniLM", "sentiment", (), "integrated gradients deletion ratio",
          _drop_ratio("integrated_gradients"), 2.0),
    Floor("sentiment MiniLM", "sentiment", (), "integrated gradients rank correlation, "
          "re-initialised", _rank_correlation("integrated_gradients"), 0.5, at_least=False),
    Floor("sentiment bilstm_classifier", "sentiment",
          ("--model", "bilstm_classifier", "--epochs", "6", "--learning-rate", "1e-3"),
          "test_accuracy", lambda m: m["test_accuracy"], 0.8),
    Floor("sentiment transformer_classifier", "sentiment", ("--model", "transformer_classifier"),
          "test_accuracy", lambda m: m["test_accuracy"], 0.8),
    Floor("lstm_forecaster", "forecast", (), "test MAE / naive MAE", lambda m: m["mae_vs_naive"],
          0.6, at_least=False),
    Floor("lstm_forecaster", "forecast", (), "test MAE / seasonal-naive MAE",
          lambda m: m["test_mae"] / m["seasonal_naive_mae"], 1.0, at_least=False),
    Floor("vae", "generative", (), "reconstruction_accuracy",
          lambda m: m["reconstruction_accuracy"], 0.90),
    Floor("vae", "generative", (), "FID / untrained FID", lambda m: m["fid"] / m["fid_untrained"],
          0.5, at_least=False),
    Floor("cgan", "generative", ("--model", "cgan"), "class_consistency",
          lambda m: m["class_consistency"], 0.90),
    Floor("cgan", "generative", ("--model", "cgan"), "FID / untrained FID",
          lambda m: m["fid"] / m["fid_untrained"], 0.5, at_least=False),
    Floor("dcgan", "generative", ("--model", "dcgan"), "FID / untrained FID",
          lambda m: m["fid"] / m["fid_untrained"], 0.5, at_least=False),
    # #24's goals: mean IoU 0.80 and foreground IoU 0.90.
    Floor("unet", "segmentation", (), "mean_iou", lambda m: m["mean_iou"], 0.80),
    Floor("unet", "segmentation", (), "foreground_iou", lambda m: m["foreground_iou"], 0.90),
    Floor("centernet (detection)", "detection", (), "mAP@0.5", lambda m: m["map_50"], 0.90),
    Floor("centernet (detection)", "detection", (), "class-agnostic AP@0.5",
          lambda m: m["class_agnostic_ap_50"], 0.95),
    # #25's goal: exact match 0.97 on each held-out class of values.
    Floor("transformer_seq2seq (translate)", "translate", (), "exact match, values = 3 mod 7",
          lambda m: m["exact_match_by_group"]["value = 3 mod 7"], 0.97),
    Floor("transformer_seq2seq (translate)", "translate", (),
          "exact match, values in [740,000, 760,000)",
          lambda m: m["exact_match_by_group"]["value in [740,000, 760,000)"], 0.97),
    # #25's textgen: held-out bits per character, below the character n-gram's on the same
    # documents, and continuations of 20 held-out documents' first words holding a 12-word run
    # of the training text no more often than those documents themselves do.
    Floor("gpt (textgen)", "textgen", (), "bits per character", lambda m: m["bits_per_character"],
          2.35, at_least=False),
    Floor("gpt (textgen)", "textgen", (), "bits per character less the character n-gram's",
          lambda m: m["bits_per_character"] - m["ngram_bits_per_character"], 0.0, at_least=False),
    Floor("gpt (textgen)", "textgen", (), "share of continuations with a copied 12-word run, "
          "less the held-out documents'", lambda m: (m["continuations_with_a_copied_run"]
                                                    - m["held_out_with_a_copied_run"]), 0.0,
          at_least=False),
]


def _run(command: list[str]) -> None:
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")


def train_metrics(floor: Floor, seed: int, folder: Path) -> dict:
    """metrics.json of `python -m apps APP train --data sample --seed SEED OPTIONS` (after
    `lr-find` with the same seed, at its suggested rate, for an lr_find floor), trained unless
    `folder` holds it already."""
    name = f"{floor.app}-{'-'.join(floor.options) or 'default'}-{floor.lr_find}-{seed}"
    run_dir, options = folder / name.replace("--", ""), list(floor.options)
    if (run_dir / "train" / "metrics.json").exists():
        return json.loads((run_dir / "train" / "metrics.json").read_text())
    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run of an earlier measurement
    common = [sys.executable, "-m", "apps", floor.app]
    if floor.lr_find:
        _run([*common, "lr-find", "--data", "sample", "--seed", str(seed), "--run-dir",
              str(run_dir / "lr_find"), *options])
        rate = json.loads((run_dir / "lr_find" / "lr_find.json").read_text())
        options += ["--learning-rate", str(rate["suggested_learning_rate"])]
    _run([*common, "train", "--data", "sample", "--seed", str(seed), "--run-dir",
          str(run_dir / "train"), "--export-dir", str(folder / "exports"), *options])
    return json.loads((run_dir / "train" / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2],
                        help="42 is the apps' default seed, the one make test runs")
    parser.add_argument("--floors", nargs="+", help="names of the runs to measure (default all)")
    parser.add_argument("--runs-dir", type=Path, default=REPO_ROOT / "runs" / "floors",
                        help="where the runs are kept (finished ones are reused)")
    arguments = parser.parse_args()
    chosen = [floor for floor in FLOORS if not arguments.floors or floor.name in arguments.floors]
    runs = {}
    for floor in chosen:
        for seed in arguments.seeds:
            key = (floor.app, floor.options, floor.lr_find, seed)
            if key not in runs:
                runs[key] = train_metrics(floor, seed, arguments.runs_dir)
                print(f"[floors] {floor.name} seed {seed}: done", flush=True)
    rows = []
    for floor in chosen:
        values = [round(floor.value(runs[(floor.app, floor.options, floor.lr_find, seed)]), 4)
                  for seed in arguments.seeds]
        worst = min(values) if floor.at_least else max(values)
        rows.append({"run": floor.name, "figure": floor.figure, "seeds": arguments.seeds,
                     "values": values, "worst": worst,
                     "floor": f"{'>=' if floor.at_least else '<='} {floor.floor}",
                     "margin": round(floor.margin(worst), 4)})
    measured = {(row["run"], row["figure"]) for row in rows}
    earlier = (json.loads(RESULTS.read_text())["results"] if RESULTS.exists() else [])
    write_results(RESULTS, [row for row in earlier if (row["run"], row["figure"]) not in measured]
                  + rows)
    print("| run | figure | " + " | ".join(f"seed {seed}" for seed in arguments.seeds)
          + " | worst | floor | margin |")
    print("|---|---|" + "---|" * (len(arguments.seeds) + 3))
    for row in rows:
        print(f"| {row['run']} | {row['figure']} | " + " | ".join(map(str, row["values"]))
              + f" | {row['worst']} | {row['floor']} | {row['margin']} |")


if __name__ == "__main__":
    main()
