"""The shared runner: data -> model -> compile -> fit -> evaluate -> export -> report.

Every app goes through `train`; nothing here knows which app it runs.
"""

import dataclasses
import datetime
import json
import math
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from apps import export, report
from apps.app import App, DataSplits
from apps.data import DataError
from apps.finetune import find_backbone, parse_fine_tune, split_at_features, unfreeze_top

AUTOTUNE = tf.data.AUTOTUNE
_JIT_COMPILE = {"auto": "auto", "on": True, "off": False}
BEST_WEIGHTS = "best.weights.h5"


class RunError(ValueError):
    """A run that cannot start as asked; the message says what to do instead."""


def _count(dataset: tf.data.Dataset) -> int:
    size = int(dataset.cardinality())
    if size >= 0:
        return size
    return int(dataset.reduce(0, lambda count, _: count + 1))


def _carve_validation(splits: DataSplits, fraction: float, seed: int, train_size: int):
    """Holds out a seeded random `fraction` of the training data for validation."""
    if not 0 < fraction < 1:
        raise RunError(f"--validation-fraction {fraction}: must lie strictly between 0 and 1.")
    validation_size = max(1, int(round(train_size * fraction)))
    shuffled = splits.train.shuffle(train_size, seed=seed, reshuffle_each_iteration=False)
    return shuffled.skip(validation_size), shuffled.take(validation_size)


def training_augmentation(app: App, config):
    """The app's augmentation layers when it has some and `--augment` is on, else None."""
    return app.augmentation(config) if app.augmentation and config.augment else None


def input_pipeline(dataset, batch_size, seed=None, augmentation=None):
    """Cache, shuffle (training only, seeded), batch, augment (training only), prefetch."""
    dataset = dataset.cache()
    if seed is not None:
        dataset = dataset.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if augmentation is not None:
        dataset = dataset.map(lambda x, y: (augmentation(x, training=True), y),
                              num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)


def resolve_run_dir(app: App, config) -> tuple[Path, bool]:
    """The run directory, and whether this run resumes an interrupted one there."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(config.run_dir or f"runs/{app.name}/{stamp}")
    config_path = run_dir / "config.json"
    if (run_dir / "metrics.json").exists():
        raise RunError(f"--run-dir {run_dir} holds a finished run (metrics.json). Choose a new "
                       f"--run-dir, or leave it out for a fresh timestamped one.")
    if not config_path.exists():
        return run_dir, False
    saved = json.loads(config_path.read_text())["options"]
    current = dataclasses.asdict(config)
    changed = sorted(key for key in current if saved.get(key) != current[key])
    if changed:
        raise RunError(f"--run-dir {run_dir} holds an interrupted run with other options "
                       f"({', '.join(changed)}). Re-run with the same options to resume it, or "
                       f"choose a new --run-dir.")
    return run_dir, True


def _device_setup(config) -> tuple[str, tf.distribute.Strategy]:
    """Mixed precision on GPUs; MirroredStrategy over all GPUs (or, with `--distribute
    mirrored` and no GPU, over the logical CPU devices); else the default strategy."""
    gpus = tf.config.list_logical_devices("GPU")
    if gpus and config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    devices = [device.name for device in gpus or tf.config.list_logical_devices("CPU")]
    kind = "gpu" if gpus else "cpu"
    if config.distribute == "mirrored" or (config.distribute == "auto" and len(gpus) > 1):
        return f"mirrored over {len(devices)} {kind}", tf.distribute.MirroredStrategy(devices)
    return f"1 {kind}", tf.distribute.get_strategy()


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` to each epoch's logs, so history.csv carries the training time of
    every epoch, including those of runs that were interrupted and resumed."""

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self.started


class BestWeightsCheckpoint(keras.callbacks.Callback):
    """Keeps the weights of the lowest `val_loss` so far, across resumes.

    Unlike `ModelCheckpoint`, it writes a temporary file and renames it into place, so a run
    killed mid-write keeps its previous best checkpoint intact. It saves the weights of
    `full_model`, which may be more than the model being fitted (a head on cached features).
    """

    def __init__(self, full_model, path: Path, best: float = math.inf):
        super().__init__()
        self.full_model, self.path, self.best = full_model, path, best

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("val_loss", math.inf)
        if loss < self.best:
            self.best = loss
            partial = self.path.with_name(f".partial-{self.path.name}")
            self.full_model.save_weights(partial)
            os.replace(partial, self.path)


def _committed_history(run_dir: Path, backup_dir: Path, committed: int) -> list[dict]:
    """The history of the epochs the phase's last backup holds (at least `committed`, the epochs
    of finished phases), with rows of any later epoch dropped.

    CSVLogger writes an epoch's row just before BackupAndRestore saves that epoch; a run killed
    in between retrains the epoch on resume, so its first row must go.
    """
    history = report.read_history(run_dir / "history.csv")
    metadata = backup_dir / "training_metadata.json"
    if metadata.exists():
        committed = json.loads(metadata.read_text())["epoch"]
    kept = [row for row in history if row["epoch"] < committed]
    if len(kept) != len(history):
        report.write_history(run_dir / "history.csv", kept)
    return kept


def _callbacks(model, run_dir: Path, backup_dir: Path, config, history: list[dict]):
    best_loss = min((row["val_loss"] for row in history if "val_loss" in row), default=math.inf)
    return [
        EpochTimer(),
        keras.callbacks.TerminateOnNaN(raise_error=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience),
        BestWeightsCheckpoint(model, run_dir / BEST_WEIGHTS, best_loss),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False),
        keras.callbacks.BackupAndRestore(str(backup_dir), double_checkpoint=True),
    ]


def load_splits(app: App, config) -> tuple[DataSplits, dict[str, int]]:
    """The app's data with a validation split carved where it has none; refuses empty splits."""
    splits = app.load_data(config)
    print(f"[{app.name}] data: {splits.source}", flush=True)
    train_size = _count(splits.train)
    if splits.validation is None:
        splits.train, splits.validation = _carve_validation(
            splits, config.validation_fraction, config.seed, train_size)
        train_size -= _count(splits.validation)
    sizes = {"train": train_size, "validation": _count(splits.validation),
             "test": _count(splits.test)}
    empty = [name for name, size in sizes.items() if size == 0]
    if empty:
        raise DataError(f"{splits.source}: the {', '.join(empty)} split(s) are empty; "
                        f"check --data and the dataset's layout.")
    print(f"[{app.name}] examples: {sizes}", flush=True)
    return splits, sizes


def compile_model(model, app: App, config, learning_rate: float, decay_steps: int) -> None:
    """Adam with cosine decay. Under a tf.distribute strategy one step runs per call: Keras 3.15's
    multi-step loop fails on a distributed iterator (a graph error in `has_next`)."""
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps, alpha=0.01)
    steps_per_execution = config.steps_per_execution
    if tf.distribute.has_strategy() and steps_per_execution > 1:
        print(f"[{app.name}] --steps-per-execution {steps_per_execution} -> 1 under "
              f"{type(tf.distribute.get_strategy()).__name__}", flush=True)
        steps_per_execution = 1
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=app.loss,
                  metrics=list(app.metrics), jit_compile=_JIT_COMPILE[config.jit_compile],
                  steps_per_execution=steps_per_execution)


def _load_best_weights(model, run_dir: Path) -> None:
    """The lowest-val_loss weights so far; none exist if no validation loss was ever finite."""
    if (run_dir / BEST_WEIGHTS).exists():
        model.load_weights(run_dir / BEST_WEIGHTS)


def _cached_features(model, data: tuple, config) -> tuple:
    """The head after the model's "features" layer, and the training and validation data as that
    layer's outputs, computed once with the frozen backbone (no augmentation, so they never
    change). Returns (head, (train, validation), seconds the extraction took)."""
    started = time.perf_counter()
    extractor, head = split_at_features(model)

    def extracted(batches):
        features, targets = [], []
        for inputs, target in batches:
            features.append(extractor(inputs, training=False))
            targets.append(target)
        return tf.data.Dataset.from_tensor_slices((tf.concat(features, 0), tf.concat(targets, 0)))

    train, validation = extracted(data[0]), extracted(data[1])
    data = (input_pipeline(train, config.batch_size, config.seed),
            input_pipeline(validation, config.batch_size))
    return head, data, time.perf_counter() - started


def _fit_phases(app: App, config, model, run_dir: Path, data: tuple, steps_per_epoch: int,
                extra_callbacks: tuple = ()):
    """Phase "head" (`--epochs`; the backbone frozen, if the model has one), then phase
    "fine_tune" (`--fine-tune-epochs` with the backbone's top `--fine-tune` layers unfrozen at
    `--fine-tune-learning-rate-ratio` times the learning rate). Each phase resumes on its own
    backup; a finished phase leaves a marker and is not run again. With `--cache-features` the
    head phase fits the head alone on features computed once. Returns the seconds spent on
    feature extraction, which count as training time."""
    backbone = find_backbone(model)
    unfrozen_layers = parse_fine_tune(config.fine_tune)
    phases = [("head", config.epochs, config.learning_rate)]
    if backbone is not None:
        backbone.trainable = False
        if unfrozen_layers != 0 and config.fine_tune_epochs > 0:
            phases.append(("fine_tune", config.fine_tune_epochs,
                           config.learning_rate * config.fine_tune_learning_rate_ratio))
    finished_epochs, feature_seconds = 0, 0.0
    for name, epochs, learning_rate in phases:
        marker = run_dir / f"phase_{name}.json"
        if name == "fine_tune":
            unfreeze_top(backbone, unfrozen_layers)
            _load_best_weights(model, run_dir)
        if marker.exists():
            finished = json.loads(marker.read_text())
            finished_epochs = finished["epochs"]
            feature_seconds += finished.get("feature_seconds", 0.0)
            continue
        backup_dir = run_dir / f"backup_{name}"
        history = _committed_history(run_dir, backup_dir, finished_epochs)
        fitted, fitted_data, phase_feature_seconds = model, data, 0.0
        if name == "head" and config.cache_features:
            fitted, fitted_data, phase_feature_seconds = _cached_features(model, data, config)
        compile_model(fitted, app, config, learning_rate, steps_per_epoch * epochs)
        try:
            fitted.fit(fitted_data[0], validation_data=fitted_data[1],
                       initial_epoch=finished_epochs, epochs=finished_epochs + epochs,
                       shuffle=False, verbose=2,
                       callbacks=[*_callbacks(model, run_dir, backup_dir, config, history),
                                  *extra_callbacks])
        except RuntimeError as error:
            if "NaN or Inf loss" not in str(error):
                raise
            raise RunError(
                f"training diverged in epoch {len(history) + 1} ({error}). Nothing was exported; "
                f"{run_dir} keeps the last finished epoch's backup and the best weights "
                f"({BEST_WEIGHTS}). Re-run with a lower --learning-rate and a new --run-dir."
            ) from error
        finished_epochs = len(report.read_history(run_dir / "history.csv"))
        feature_seconds += phase_feature_seconds
        marker.write_text(json.dumps({"epochs": finished_epochs,
                                      "feature_seconds": phase_feature_seconds}))
    _load_best_weights(model, run_dir)
    if not model.compiled:  # only its head was fitted, on cached features: compile to evaluate
        compile_model(model, app, config, config.learning_rate, 1)
    return feature_seconds


def _test_metrics(app: App, model, splits: DataSplits, test_data) -> dict:
    evaluation = model.evaluate(test_data, return_dict=True, verbose=0)
    metrics = {f"test_{name}": float(value) for name, value in evaluation.items()}
    if app.is_classifier:
        probabilities = model.predict(test_data, verbose=0)
        labels = np.concatenate([y for _, y in test_data.as_numpy_iterator()])
        metrics["class_names"] = splits.class_names
        metrics["confusion_matrix"] = report.confusion_matrix(
            labels, probabilities.argmax(axis=1), len(splits.class_names)).tolist()
    return metrics


def check_options(app: App, config) -> None:
    if config.model not in app.models:
        raise RunError(f"--model {config.model}: not a model for the {app.name} app. "
                       f"Choose one of: {', '.join(app.models)}.")
    if config.epochs < 1 or config.batch_size < 1:
        raise RunError(f"--epochs {config.epochs} / --batch-size {config.batch_size}: "
                       f"both must be at least 1.")


def train(app: App, config, callbacks: tuple = ()) -> dict:
    """Trains, evaluates, exports and reports one run; returns the metrics it wrote.

    `callbacks`: Keras callbacks added after the runner's own to every `fit` (the benchmark
    times the runs with one).

    `--distribute multiworker` goes through `apps.multiworker` instead (a custom training loop
    under MultiWorkerMirroredStrategy), which ends in the same evaluation, report and export.
    """
    check_options(app, config)
    if config.distribute == "multiworker":
        from apps import multiworker

        return multiworker.train(app, config)
    run_dir, resuming = resolve_run_dir(app, config)
    run_dir.mkdir(parents=True, exist_ok=True)
    report.write_config(run_dir / "config.json", app, config)
    keras.utils.set_random_seed(config.seed)
    device, strategy = _device_setup(config)
    splits, sizes = load_splits(app, config)
    augmentation = training_augmentation(app, config)
    if config.cache_features and augmentation is not None:
        raise RunError("--cache-features needs --no-augment: augmented images change every "
                       "epoch, so their backbone features cannot be computed once.")
    train_data = input_pipeline(splits.train, config.batch_size, config.seed, augmentation)
    validation_data = input_pipeline(splits.validation, config.batch_size)
    test_data = input_pipeline(splits.test, config.batch_size)
    with strategy.scope():
        model = app.build_model(config, splits)
        if config.cache_features and find_backbone(model) is None:
            raise RunError(f"--cache-features: model {config.model} has no pretrained backbone "
                           f"to compute features with (image_transfer has).")
        if config.cache_features:
            try:
                split_at_features(model)
            except ValueError as error:
                raise RunError(f"--cache-features: {error}") from error
        feature_seconds = _fit_phases(app, config, model, run_dir, (train_data, validation_data),
                                      math.ceil(sizes["train"] / config.batch_size), callbacks)
    return finish_run(app, config, model, splits, sizes, run_dir, test_data,
                      {"device": device, "resumed": resuming}, feature_seconds)


def finish_run(app: App, config, model, splits: DataSplits, sizes: dict, run_dir: Path,
               test_data, facts: dict, extra_train_seconds: float = 0.0) -> dict:
    """Saves the trained (compiled) model, evaluates it on the test split, exports it and writes
    the report from history.csv; returns the metrics."""
    model.save(run_dir / "model.keras")
    history = report.read_history(run_dir / "history.csv")
    train_seconds = extra_train_seconds + sum(row["epoch_seconds"] for row in history)
    metrics = _test_metrics(app, model, splits, test_data)
    metrics.update(
        data_source=splits.source, examples=sizes, **facts, backend=keras.backend.backend(),
        epochs_trained=len(history), train_seconds=round(train_seconds, 2),
        samples_per_second=round(sizes["train"] * len(history) / train_seconds, 1),
        **splits.facts,
    )
    if app.extra_report:
        metrics.update(app.extra_report(model, splits, run_dir, config))
    version_dir = export.export_saved_model(
        model, app, splits.class_names, Path(config.export_dir or f"saved_models/{app.name}"))
    metrics["export_path"] = str(version_dir)
    report.write_report(run_dir, app, config, metrics, history)
    print(f"[{app.name}] test: " + ", ".join(
        f"{key}={value:.4f}" for key, value in metrics.items() if key.startswith("test_")))
    print(f"[{app.name}] exported {version_dir}; report in {run_dir}", flush=True)
    return metrics
