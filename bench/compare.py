"""Side-by-side: the plain keras.io / tutorial MNIST code against this project's runner.

Reference A is what a user would copy: the seed's Sequential MLP with `model.fit(x, y, epochs=5)`
at Keras' default batch size (32), and keras.io's `mnist_convnet` (batch 128, 15 epochs,
validation_split=0.1). B is `python -m apps mnist train --model <same model>` with the app's
default options. Both train on the shipped sample (8,000 real digits) and are scored on its 2,000
held-out digits. A and B runs alternate; for each pair, the target is A's final test accuracy and
each side's time-to-target is the training wall time (all callbacks, validation and both phases
included) until the end of the first epoch whose test accuracy reaches it. The test accuracy is
measured after every epoch outside the timed span. The reported figure is the median ratio
A time / B time over the pairs.

    python -m bench.compare [--pairs 3] [--models mnist_mlp mnist_cnn] [--option augment=False]
"""

import argparse
import ast
import statistics
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from apps import get_app
from apps.core import resolve_config, train
from apps.mnist import SAMPLE_DIR, SAMPLE_TRAIN_SIZE, read_split
from bench.results import write_results

RESULTS = Path(__file__).with_name("compare.json")


class TestAccuracyClock(keras.callbacks.Callback):
    """Per epoch: the training wall time so far (excluding its own evaluations) and the test
    accuracy. Listed last, so every other callback's work of the epoch is inside the time."""

    def __init__(self, test_images, test_labels):
        super().__init__()
        self.images, self.labels = test_images, test_labels
        self.rows, self.started = [], None

    def on_train_begin(self, logs=None):  # a second phase continues the first one's clock
        self.started = time.perf_counter() - (self.rows[-1]["seconds"] if self.rows else 0.0)

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        evaluation_started = time.perf_counter()
        probabilities = self.model.predict(self.images, batch_size=1000, verbose=0)
        accuracy = float((probabilities.argmax(axis=1) == self.labels).mean())
        self.started += time.perf_counter() - evaluation_started
        self.rows.append({"epoch": epoch + 1, "seconds": seconds, "test_accuracy": accuracy})


def time_to(rows: list[dict], target: float) -> float | None:
    return next((row["seconds"] for row in rows if row["test_accuracy"] >= target), None)


def sample():
    images, labels = read_split(SAMPLE_DIR, "t10k")
    labels = labels.astype("int64")
    return ((images[:SAMPLE_TRAIN_SIZE], labels[:SAMPLE_TRAIN_SIZE]),
            (images[SAMPLE_TRAIN_SIZE:], labels[SAMPLE_TRAIN_SIZE:]))


def reference(model_name: str, seed: int) -> list[dict]:
    """The tutorial code as written (plus the clock)."""
    (x_train, y_train), (x_test, y_test) = sample()
    keras.utils.set_random_seed(seed)
    if model_name == "mnist_mlp":  # the seed's MLP, as in the TensorFlow beginner tutorial
        x_train, x_test = x_train / 255.0, x_test / 255.0
        model = keras.Sequential([
            keras.Input(shape=(28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ])
        fit_options = {"epochs": 5}
    else:  # keras.io/examples/vision/mnist_convnet
        x_train = np.expand_dims(x_train.astype("float32") / 255, -1)
        x_test = np.expand_dims(x_test.astype("float32") / 255, -1)
        model = keras.Sequential([
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ])
        fit_options = {"batch_size": 128, "epochs": 15, "validation_split": 0.1}
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    clock = TestAccuracyClock(x_test, y_test)
    model.fit(x_train, y_train, verbose=0, callbacks=[clock], **fit_options)
    return clock.rows


def ours(model_name: str, seed: int, options: dict) -> list[dict]:
    """`python -m apps mnist train --model <model_name>` with the app's defaults, or `options`
    where given (plus the clock)."""
    _, (x_test, y_test) = sample()
    app = get_app("mnist")
    clock = TestAccuracyClock(x_test[..., np.newaxis], y_test)
    with tempfile.TemporaryDirectory() as folder:
        train(app, resolve_config(app, data="sample", model=model_name, seed=seed,
                                  run_dir=f"{folder}/run", export_dir=f"{folder}/exports",
                                  **options), callbacks=(clock,))
    return clock.rows


def compare(model_name: str, pairs: int, options: dict) -> dict:
    runs = []
    for pair in range(pairs):
        baseline = reference(model_name, seed=pair)
        runner = ours(model_name, seed=pair, options=options)
        target = baseline[-1]["test_accuracy"]
        baseline_seconds, runner_seconds = time_to(baseline, target), time_to(runner, target)
        runs.append({
            "target_accuracy": target, "reference_seconds": round(baseline_seconds, 2),
            "runner_seconds": None if runner_seconds is None else round(runner_seconds, 2),
            "runner_final_accuracy": runner[-1]["test_accuracy"],
            "runner_epochs_to_target": next((row["epoch"] for row in runner
                                             if row["test_accuracy"] >= target), None),
            "ratio": None if runner_seconds is None else round(baseline_seconds / runner_seconds, 2),
        })
        print(f"[{model_name} pair {pair + 1}] {runs[-1]}", flush=True)
    ratios = [run["ratio"] or 0.0 for run in runs]
    return {"model": model_name, "runner_options": options or "app defaults",
            "median_ratio": statistics.median(ratios), "pairs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="alternating A/B run pairs")
    parser.add_argument("--models", nargs="+", default=["mnist_mlp", "mnist_cnn"],
                        choices=["mnist_mlp", "mnist_cnn"])
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a runner option instead of the app default, to measure a lever "
                             "(e.g. augment=False); repeatable")
    arguments = parser.parse_args()
    options = {key: ast.literal_eval(value) for key, _, value in
               (pair.partition("=") for pair in arguments.option)}
    results = [compare(name, arguments.pairs, options) for name in arguments.models]
    write_results(RESULTS, results)
    for result in results:
        print(f"{result['model']}: median time-to-equal-accuracy ratio (reference / runner) "
              f"{result['median_ratio']:.2f} over {len(result['pairs'])} pairs")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
