"""The MNIST races on the JAX backend, for a GPU machine where TensorFlow is absent.

The apps read and export through TensorFlow, which cannot be carried to the GPU machine, so the
race is split in two. `prepare` runs here, with TensorFlow: it takes each seed's splits from the
mnist app (`load_splits`: the shipped sample, validation carved as a run carves it), the app's
model as `build_model` makes it (initial weights included) and its optimizer and schedule as
`compile_model` makes them, and writes them to a folder. `run` needs Keras and NumPy only: A is
the reference (`bench.references_keras`, as in `bench.compare`), B the app's model, optimizer,
schedule, batch size, steps per execution, validation split and early stopping on `fit`; both are
timed by `bench.race_clock` from before the data is read. B here has none of a run's
checkpoints, backups, logs or export, so it measures the zoo model and the app's recipe on JAX,
not the whole app.

    python -m bench.jax_race prepare                      # here: writes runs/jax_race/
    KERAS_BACKEND=jax python -m bench.jax_race run --pairs 3 --out bench/jax_race.json
"""

import argparse
import json
import math
from pathlib import Path

import keras
import numpy as np

from bench import references_keras
from bench.race_clock import EpochClock, pair_record, race_summary
from bench.results import write_backend_results

FOLDER = Path("runs/jax_race")
RESULTS = Path(__file__).with_name("jax_race.json")
RACES = {"mnist_cnn": "keras.io mnist_convnet, batch 128, 15 epochs",
         "mnist_mlp": "TensorFlow beginner tutorial MLP, fit(x, y, epochs=5), batch 32"}


def prepare(folder: Path, pairs: int) -> None:
    """Each seed's splits, and each race's model and recipe, from the mnist app (TensorFlow)."""
    from apps import get_app
    from apps.core import resolve_config
    from apps.core.fit import Adam, compile_model
    from apps.core.pipeline import load_splits
    from apps.core.runner import build_model
    from bench.references import arrays

    app = get_app("mnist")
    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(pairs):
        config = resolve_config(app, data="sample", seed=seed)
        (reference_x, reference_y) = arrays(app.load_data(config).train)
        splits, sizes = load_splits(app, config)
        (train_x, train_y), (validation_x, validation_y) = (arrays(splits.train),
                                                            arrays(splits.validation))
        test_x, test_y = arrays(splits.test)
        np.savez_compressed(folder / f"mnist-{seed}.npz", reference_x=reference_x,
                            reference_y=reference_y, train_x=train_x, train_y=train_y,
                            validation_x=validation_x, validation_y=validation_y, test_x=test_x,
                            test_y=test_y)
        for race in RACES:
            config = resolve_config(app, data="sample", model=race, seed=seed)
            keras.utils.set_random_seed(seed)
            model = build_model(app, config, splits)
            total_steps = config.epochs * math.ceil(sizes["train"] / config.batch_size)
            compile_model(model, app, config, config.learning_rate, total_steps)
            optimizer = model.optimizer
            if isinstance(optimizer, Adam):  # Keras' Adam, with a step fused for TensorFlow
                optimizer = keras.optimizers.Adam.from_config(optimizer.get_config())
            optimizer = keras.optimizers.serialize(optimizer)
            if not optimizer["module"].startswith("keras"):
                raise SystemExit(f"{race}: the optimizer {optimizer['class_name']} is not "
                                 f"Keras' own; it cannot be rebuilt without the apps")
            model.save(folder / f"{race}-{seed}.keras", include_optimizer=False)
            (folder / f"{race}-{seed}.json").write_text(json.dumps({
                "optimizer": optimizer, "loss": model.loss, "batch_size": config.batch_size,
                "epochs": config.epochs, "patience": config.patience,
                "steps_per_execution": config.steps_per_execution}, indent=2))
    print(f"wrote {folder}")


def reference(folder: Path, race: str, seed: int) -> list[dict]:
    keras.utils.set_random_seed(seed)
    clock = EpochClock()
    data = np.load(folder / f"mnist-{seed}.npz")
    references_keras.mnist(race, (data["reference_x"], data["reference_y"]),
                           (data["test_x"], data["test_y"]), clock)
    return clock.rows


def ours(folder: Path, race: str, seed: int) -> list[dict]:
    keras.utils.set_random_seed(seed)
    clock = EpochClock()
    data = np.load(folder / f"mnist-{seed}.npz")
    recipe = json.loads((folder / f"{race}-{seed}.json").read_text())
    model = keras.saving.load_model(folder / f"{race}-{seed}.keras", compile=False)
    model.compile(optimizer=keras.optimizers.deserialize(recipe["optimizer"]),
                  loss=recipe["loss"], metrics=["accuracy"],
                  steps_per_execution=recipe["steps_per_execution"])
    clock.score_inputs(data["test_x"].astype("float32"), data["test_y"])
    model.fit(data["train_x"].astype("float32"), data["train_y"],
              batch_size=recipe["batch_size"], epochs=recipe["epochs"], verbose=0,
              validation_data=(data["validation_x"].astype("float32"), data["validation_y"]),
              callbacks=[keras.callbacks.EarlyStopping(patience=recipe["patience"]), clock])
    return clock.rows


def run(folder: Path, pairs: int, races: list[str], out: Path) -> None:
    results = []
    for race in races:
        runs = []
        for seed in range(pairs):
            runs.append(pair_record(reference(folder, race, seed), ours(folder, race, seed),
                                    "accuracy"))
            print(f"[{race} pair {seed + 1}] {runs[-1]}", flush=True)
        results.append({"race": race, "app": "mnist", "model": race,
                        "reference": RACES[race], "metric": "accuracy", **race_summary(runs),
                        "pairs": runs})
        print(f"{race}: median ratio {results[-1]['ratio_median']}, final accuracy reference "
              f"{results[-1]['reference_quality']}, project {results[-1]['project_quality']}",
              flush=True)
    write_backend_results(out, results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["prepare", "run"])
    parser.add_argument("--folder", type=Path, default=FOLDER,
                        help="where prepare writes and run reads the splits, models and recipes")
    parser.add_argument("--pairs", type=int, default=3, help="alternating A/B run pairs")
    parser.add_argument("--races", nargs="+", default=list(RACES), choices=list(RACES))
    parser.add_argument("--out", type=Path, default=RESULTS, help="run's results file")
    arguments = parser.parse_args()
    if arguments.command == "prepare":
        prepare(arguments.folder, arguments.pairs)
    else:
        run(arguments.folder, arguments.pairs, arguments.races, arguments.out)


if __name__ == "__main__":
    main()
