"""`make bench`: steady-state training speed of each app's default model on its shipped sample.

For each workload: compile + first-epoch seconds, steady-state samples/s (epochs after the first),
the process's peak resident memory so far (it only grows), backend, device, batch size and
package versions, written to bench/results.json and printed as a table. `--jit-compile` and
`--batch-size` compare levers.

    python -m bench.run [--apps mnist speech] [--epochs 3] [--jit-compile auto|on|off]
"""

import argparse
import resource
from pathlib import Path

import keras

from apps import get_app
from apps.core import resolve_config
from apps.core.callbacks import EpochTimer
from apps.core.fit import compile_model
from apps.core.pipeline import input_pipeline, load_splits, training_augmentation
from bench.results import write_results

WORKLOADS = {"mnist": ["mnist_cnn", "mnist_mlp"], "forecast": ["lstm_forecaster"],
             "speech": ["speech_cnn"], "sentiment": ["text_transfer"],
             "generative": ["vae", "cgan"]}
RESULTS = Path(__file__).with_name("results.json")


def measure(app_name: str, model_name: str, epochs: int, overrides: dict) -> dict:
    app = get_app(app_name)
    config = resolve_config(app, data="sample", model=model_name, **overrides)
    keras.utils.set_random_seed(config.seed)
    splits, sizes = load_splits(app, config)
    model = app.build_model(config, splits)
    compile_model(model, app, config, config.learning_rate, 1000)
    augmentation = training_augmentation(app, config)
    train_data = input_pipeline(splits.train, config.batch_size, config.seed, augmentation)
    history = model.fit(train_data, epochs=epochs, callbacks=[EpochTimer()], verbose=0,
                        shuffle=False)
    seconds = history.history["epoch_seconds"]
    steady = seconds[1:]
    return {
        "app": app_name, "model": model_name, "batch_size": config.batch_size,
        "jit_compile": config.jit_compile, "train_examples": sizes["train"],
        "first_epoch_seconds": round(seconds[0], 2),
        "steady_samples_per_second": round(sizes["train"] * len(steady) / sum(steady), 1),
        "process_peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "backend": keras.backend.backend(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--epochs", type=int, default=3, help="epochs per workload (>= 2)")
    parser.add_argument("--jit-compile", choices=("auto", "on", "off"))
    parser.add_argument("--batch-size", type=int)
    arguments = parser.parse_args()
    overrides = {key: value for key, value in (("jit_compile", arguments.jit_compile),
                                               ("batch_size", arguments.batch_size)) if value}
    import tensorflow as tf

    device = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    rows = [measure(app, model, max(arguments.epochs, 2), overrides)
            for app in arguments.apps for model in WORKLOADS[app]]
    write_results(RESULTS, rows, device)
    print(f"{'app':10s} {'model':18s} {'batch':>5s} {'jit':>4s} {'first epoch s':>13s} "
          f"{'samples/s':>10s} {'peak MB':>8s}")
    for row in rows:
        print(f"{row['app']:10s} {row['model']:18s} {row['batch_size']:5d} "
              f"{row['jit_compile']:>4s} {row['first_epoch_seconds']:13.1f} "
              f"{row['steady_samples_per_second']:10.1f} {row['process_peak_memory_mb']:8d}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
