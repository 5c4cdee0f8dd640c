"""Training speed of zoo models on random data, with Keras and the zoo only (no TensorFlow, no
apps): the benchmark to run on a GPU machine with the JAX backend, where TensorFlow is absent.

For each workload: steady-state samples/s (the first epoch, with compilation, excluded), the
model's training FLOPs per sample (3 x the forward pass, from XLA's cost analysis on JAX), and,
given `--peak-tflops` (989 for an H100 or H200 in dense bf16), the fraction of that peak reached.
Results go to bench/zoo_speed.json and a table.

    KERAS_BACKEND=jax python -m bench.zoo_speed --dtype-policy mixed_bfloat16 --peak-tflops 989
"""

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np

import zoo
from bench.results import write_backend_results

RESULTS = Path(__file__).with_name("zoo_speed.json")

# name -> (zoo model, its options, input shape, classes, batch size)
WORKLOADS = {
    "mnist_cnn": ("mnist_cnn", {}, (28, 28, 1), 10, 1024),
    "mnist_mlp": ("mnist_mlp", {}, (28, 28, 1), 10, 1024),
    "resnet50": ("image_transfer", {"backbone": "resnet50"}, (224, 224, 3), 1000, 256),
    "mobilenet_v2": ("image_transfer", {"backbone": "mobilenet_v2"}, (224, 224, 3), 1000, 256),
}


class StepClock(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["seconds"] = time.perf_counter() - self.started


def forward_flops(model, batch) -> float | None:
    """FLOPs of one forward pass over `batch`, from XLA's cost analysis (JAX backend only)."""
    if keras.backend.backend() != "jax":
        return None
    import jax

    def forward(trainable, non_trainable, inputs):
        outputs, _ = model.stateless_call(trainable, non_trainable, inputs)
        return outputs

    compiled = jax.jit(forward).lower(
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables], batch).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis.get("flops", 0.0)) or None


def measure(name: str, steps: int, epochs: int, peak_tflops: float | None) -> dict:
    model_name, options, shape, classes, batch_size = WORKLOADS[name]
    options = {**options, "input_shape": shape, "num_classes": classes}
    if model_name == "image_transfer":
        options["weights"] = None  # random weights: the speed is the same, nothing to download
    model = zoo.build(model_name, **options)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    images = rng.random((batch_size * steps, *shape), dtype=np.float32)
    labels = rng.integers(0, classes, batch_size * steps)
    history = model.fit(images, labels, batch_size=batch_size, epochs=epochs, verbose=0,
                        callbacks=[StepClock()])
    seconds = history.history["seconds"]
    samples_per_second = batch_size * steps * (len(seconds) - 1) / sum(seconds[1:])
    flops = forward_flops(model, images[:batch_size])
    train_flops_per_sample = 3 * flops / batch_size if flops else None
    row = {
        "workload": name, "model": model_name, "batch_size": batch_size,
        "dtype_policy": keras.config.dtype_policy().name,
        "first_epoch_seconds": round(seconds[0], 2),
        "samples_per_second": round(samples_per_second, 1),
        "train_gflops_per_sample": (round(train_flops_per_sample / 1e9, 3)
                                    if train_flops_per_sample else None),
    }
    if train_flops_per_sample and peak_tflops:
        row["fraction_of_peak"] = round(
            train_flops_per_sample * samples_per_second / (peak_tflops * 1e12), 4)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--steps", type=int, default=50, help="training steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs (the first is not timed)")
    parser.add_argument("--dtype-policy", default="float32",
                        help="keras dtype policy, e.g. mixed_bfloat16 on a GPU")
    parser.add_argument("--peak-tflops", type=float,
                        help="the device's peak TFLOP/s at that precision (H100/H200 dense "
                             "bf16: 989), for the fraction of peak")
    arguments = parser.parse_args()
    keras.config.set_dtype_policy(arguments.dtype_policy)
    rows = []
    for name in arguments.workloads:
        rows.append(measure(name, arguments.steps, max(arguments.epochs, 2),
                            arguments.peak_tflops))
        print(json.dumps(rows[-1]), flush=True)
    write_backend_results(RESULTS, rows)


if __name__ == "__main__":
    main()
