"""How a race is timed and scored, in Keras and NumPy alone (no TensorFlow), so the same clock
times the races on the CPU with TensorFlow (`bench.compare`) and on a GPU with JAX
(`bench.jax_race`)."""

import contextlib
import statistics
import time

import keras
import numpy as np

LOWER_IS_BETTER = ("mae", "bits_per_character")


def accuracy(predicted: np.ndarray, targets: np.ndarray) -> float:
    """Top-1 accuracy of class probabilities (or one sigmoid) against integer targets."""
    classes = (predicted[:, 0] > 0.5) if predicted.shape[-1] == 1 else predicted.argmax(axis=-1)
    return float((classes == targets).mean())


class EpochClock(keras.callbacks.Callback):
    """Per epoch: the wall time since the clock was made (its own scoring excluded) and the test
    accuracy. Listed last, so every other callback's work of the epoch is inside the time."""

    def __init__(self, metric: str = "accuracy"):
        super().__init__()
        self.metric, self.rows, self.started = metric, [], time.perf_counter()
        self.inputs = self.targets = None

    @contextlib.contextmanager
    def paused(self):
        paused_at = time.perf_counter()
        yield
        self.started += time.perf_counter() - paused_at

    def score_inputs(self, inputs, targets) -> None:
        """The test split as the scored model takes it."""
        self.inputs, self.targets = np.asarray(inputs), np.asarray(targets)

    def quality(self, model) -> float:
        return accuracy(np.asarray(model.predict(self.inputs, batch_size=256, verbose=0)),
                        self.targets)

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        with self.paused():
            quality = self.quality(self.model)
        self.rows.append({"epoch": len(self.rows) + 1, "seconds": round(seconds, 2),
                          self.metric: round(quality, 4)})


def reached(quality: float, target: float, metric: str) -> bool:
    return quality <= target if metric in LOWER_IS_BETTER else quality >= target


def time_to(rows: list[dict], target: float, metric: str) -> float | None:
    return next((row["seconds"] for row in rows if reached(row[metric], target, metric)), None)


def pair_record(baseline: list[dict], runner: list[dict], metric: str) -> dict:
    """One A/B pair: the target is A's final quality; each side's time to it, and the ratio."""
    target = baseline[-1][metric]
    baseline_seconds, runner_seconds = time_to(baseline, target, metric), time_to(runner, target,
                                                                                   metric)
    return {
        "target": target, "reference_seconds": baseline_seconds,
        "runner_seconds": runner_seconds, "runner_final": runner[-1][metric],
        "reference_epochs": len(baseline), "runner_epochs": len(runner),
        # Whole runs (to the end of each one's last epoch), for the default-run table.
        "reference_whole_seconds": baseline[-1]["seconds"],
        "runner_whole_seconds": runner[-1]["seconds"],
        "runner_epochs_to_target": next((row["epoch"] for row in runner
                                         if reached(row[metric], target, metric)), None),
        "ratio": None if runner_seconds is None else round(baseline_seconds / runner_seconds, 2),
    }


def race_summary(runs: list[dict]) -> dict:
    """The pairs' median ratio (a pair whose runner never reached the target counts 0) and
    median final qualities."""
    ratios = [run["ratio"] or 0.0 for run in runs]
    return {"ratio_median": statistics.median(ratios), "ratios": ratios,
            "reference_quality": statistics.median(run["target"] for run in runs),
            "project_quality": statistics.median(run["runner_final"] for run in runs)}
