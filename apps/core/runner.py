"""`train()`: the start and the end of every run, for every app, on one machine or many.

data -> model -> fit (`apps.core.fit`) -> evaluate -> export -> report. Whether this process is
the chief of a multi-worker cluster decides only where its files go and whether it evaluates,
reports and exports (as in the TF Model Garden's runner); nothing here knows which app it runs.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

import zoo
from apps.core import explain_report, export, report, rundir
from apps.core.app import App
from apps.core.config import check_model_options, in_cli_words, resolve_config
from apps.core.errors import RunError
from apps.core.fit import compile_model, fit_phases, keras_epochs
from apps.core.multiworker import (
    Role,
    check_workers_agree,
    cluster_role,
    copy_resume_state,
    distributed_epochs,
)
from apps.core.outputs import predict_test_split
from apps.core.pipeline import cache_plan, input_pipeline, load_splits, training_augmentation


def _strategy(config, role: Role) -> tuple[str, tf.distribute.Strategy]:
    """MultiWorkerMirroredStrategy for a cluster; MirroredStrategy over all GPUs (or, with
    `--distribute mirrored` and no GPU, over the logical CPU devices); else the default. Mixed
    precision on GPUs."""
    if config.distribute == "multiworker":  # created before anything else starts TF's runtime
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        return f"multiworker over {role.workers} workers", strategy
    gpus = tf.config.list_logical_devices("GPU")
    if gpus and config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    devices = [device.name for device in gpus or tf.config.list_logical_devices("CPU")]
    kind = "gpu" if gpus else "cpu"
    if config.distribute == "mirrored" or (config.distribute == "auto" and len(gpus) > 1):
        return f"mirrored over {len(devices)} {kind}", tf.distribute.MirroredStrategy(devices)
    return f"1 {kind}", tf.distribute.get_strategy()


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
    # An option newer than the saved run was, for that run, the app's default.
    defaults = dataclasses.asdict(resolve_config(app, model=config.model))
    changed = sorted(key for key in current if saved.get(key, defaults[key]) != current[key])
    if changed:
        raise RunError(f"--run-dir {run_dir} holds an interrupted run with other options "
                       f"({', '.join(changed)}). Re-run with the same options to resume it, or "
                       f"choose a new --run-dir.")
    return run_dir, True


def check_options(app: App, config) -> None:
    """Refuses options that cannot work, before anything is written or loaded."""
    if config.model not in app.models:
        raise RunError(f"--model {config.model}: not a model for the {app.name} app. "
                       f"Choose one of: {', '.join(app.models)}.")
    if config.epochs < 1 or config.batch_size < 1:
        raise RunError(f"--epochs {config.epochs} / --batch-size {config.batch_size}: "
                       f"both must be at least 1.")
    config.fine_tune_layers()
    if config.label_smoothing and not app.output.classifier:
        raise RunError(f"--label-smoothing {config.label_smoothing}: the {app.name} app is no "
                       f"classifier; leave it at 0.")
    if config.backup_seconds < 0:
        raise RunError(f"--backup-seconds {config.backup_seconds}: at least 0 (0 writes the "
                       f"backup every epoch).")
    if config.schedule == "plateau" and config.warmup_steps:
        raise RunError("--schedule plateau takes no --warmup-steps: ReduceLROnPlateau sets the "
                       "rate per epoch; use cosine, constant or onecycle for a warm-up.")
    if (not 0 <= config.label_smoothing < 1 or not 0 <= config.ema_momentum < 1
            or config.clip_norm < 0 or config.weight_decay < 0 or config.muon_adam_lr_ratio <= 0):
        raise RunError(f"--label-smoothing {config.label_smoothing} / --ema-momentum "
                       f"{config.ema_momentum} / --clip-norm {config.clip_norm} / --weight-decay "
                       f"{config.weight_decay} / --muon-adam-lr-ratio {config.muon_adam_lr_ratio}: "
                       f"smoothing and momentum lie in [0, 1), the ratio above 0, the others are "
                       f"at least 0.")
    check_model_options(config, zoo.describe(config.model)["defaults"], app.app_model_options,
                        app.name)
    if config.cache_features and training_augmentation(app, config) is not None:
        raise RunError("--cache-features needs --no-augment: augmented inputs change every "
                       "epoch, so their backbone features cannot be computed once.")


def build_model(app: App, config, splits):
    """The app's model, with the zoo's errors restated in flags."""
    try:
        model = app.build_model(config, splits)
    except ValueError as error:
        raise RunError(in_cli_words(str(error), app.option_flags,
                                    zoo.describe(config.model)["defaults"])) from error
    if (config.cache_features and not isinstance(model, zoo.TransferClassifier)
            and not app.defaults.get("cache_features")):  # an app default is for its backbones
        raise RunError(f"--cache-features: model {config.model} has no head on pooled features "
                       f"of a pretrained backbone to train on features computed once "
                       f"(image_transfer and text_transfer have).")
    return model


def train(app: App, config, callbacks: tuple = ()) -> dict:
    """Trains, evaluates, exports and reports one run; returns the metrics it wrote ({} on a
    worker that is not the chief).

    `callbacks`: Keras callbacks added after the runner's own to every phase (the benchmark
    times the runs with one).
    """
    check_options(app, config)
    role = cluster_role() if config.distribute == "multiworker" else Role()
    device, strategy = _strategy(config, role)
    worker_name = f"{app.name} {role.task_type} {role.task_index}"
    if role.chief:
        run_dir, resuming = resolve_run_dir(app, config)
    else:  # writes to a private folder, resuming from the chief's
        run_dir, resuming = Path(tempfile.mkdtemp(prefix=f"{app.name}-worker-")), False
        if config.run_dir:
            copy_resume_state(Path(config.run_dir), run_dir)
    created = [folder for folder in (run_dir, *run_dir.parents) if not folder.exists()]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        rundir.write_config(run_dir / "config.json", app, config)
        keras.utils.set_random_seed(config.seed)
        splits, sizes = load_splits(app, config)
        batch_size = config.batch_size * role.workers  # --batch-size is per worker
        cache = cache_plan({"train": splits.train, "validation": splits.validation,
                            "test": splits.test}, sizes, config, run_dir)
        # Cached before the model is built: a build that reads the training split (speech's
        # normalisation, a vocabulary) fills the cache that training then reads, so each
        # example is decoded once (speech: 1.5 s of WAV reading saved).
        splits.train = splits.train.cache(cache["train"])
        train_data = input_pipeline(splits.train, batch_size, config.seed,
                                    training_augmentation(app, config), cache_file=None)
        validation_data = input_pipeline(splits.validation, config.batch_size,
                                         cache_file=cache["validation"])
        if role.workers > 1:
            check_workers_agree(strategy, run_dir, worker_name)
        with strategy.scope():
            model = build_model(app, config, splits)
            if role.workers > 1 and isinstance(model, zoo.BackboneModel):
                raise RunError(f"--distribute multiworker trains models from scratch; "
                               f"{config.model} has a pretrained backbone: fine-tune it with "
                               f"--distribute mirrored or none.")
            run_epochs = (distributed_epochs(strategy, app, config, worker_name)
                          if role.workers > 1 else keras_epochs)
            feature_seconds = fit_phases(app, config, model, run_dir,
                                         (train_data, validation_data),
                                         math.ceil(sizes["train"] / batch_size), run_epochs,
                                         (*app.output.callbacks(run_dir, config), *callbacks))
        if role.workers > 1:
            print(f"[{worker_name}] of {role.workers}: weights "
                  f"sha256 {rundir.weights_digest(model)}", flush=True)
        if not role.chief:
            return {}
        if role.workers > 1:  # evaluated and exported outside the strategy, like a local run
            trained, model = model, build_model(app, config, splits)
            model.set_weights(trained.get_weights())
            compile_model(model, app, config, config.learning_rate, 1)
        facts = {"device": device, "resumed": resuming, "workers": role.workers,
                 "cache": {name: path or "memory" for name, path in cache.items()}}
        return finish_run(app, config, model, splits, sizes, run_dir,
                          input_pipeline(splits.test, config.batch_size, cache_file=cache["test"]),
                          facts, feature_seconds)
    except BaseException:
        # Stopped before training wrote anything (bad data, say): no run dir is left behind,
        # nor the folders this run made above it (runs/<app>/) where they are empty.
        if created and run_dir.is_dir() and [path.name for path in run_dir.iterdir()] == [
                "config.json"]:
            shutil.rmtree(run_dir, ignore_errors=True)
            for folder in created[1:]:
                try:
                    folder.rmdir()  # refused where another run has written in it meanwhile
                except OSError:
                    break
        raise
    finally:
        if not role.chief:
            shutil.rmtree(run_dir, ignore_errors=True)


def finish_run(app: App, config, model, splits, sizes: dict, run_dir: Path, test_data,
               facts: dict, extra_train_seconds: float = 0.0) -> dict:
    """Saves the trained (compiled) model, predicts the test split once (its loss and metrics,
    the output kind's report, the app's, the explanations all use these predictions), exports
    it and writes the report from history.csv; returns the metrics."""
    model.save(run_dir / "model.keras")
    history = rundir.read_history(run_dir / "history.csv")
    train_seconds = extra_train_seconds + sum(row["epoch_seconds"] for row in history)
    predictions = predict_test_split(model, app, test_data)
    metrics = {f"test_{name}": value for name, value in predictions.metrics.items()}
    metrics.update(app.output.report(model, predictions, splits, run_dir, config,
                                     lambda: build_model(app, config, splits)))
    metrics.update(
        data_source=splits.source, examples=sizes, **facts, backend=keras.backend.backend(),
        epochs_trained=len(history), train_seconds=round(train_seconds, 2),
        samples_per_second=round(sizes["train"] * len(history) / train_seconds, 1),
        **splits.facts,
    )
    if app.extra_report:
        metrics.update(app.extra_report(model, splits, run_dir, config, predictions))
    explained = config.explain_examples > 0
    if app.explanation and explained and app.output.classifier:  # its checks need true classes
        metrics.update(explain_report.report_explanations(
            app, model, splits, predictions, run_dir, lambda: build_model(app, config, splits),
            config.explain_examples))
    if app.save_artifacts:
        metrics.update(app.save_artifacts(model, splits, run_dir, config))
    version_dir = export.export_saved_model(
        model, app, splits.class_names, Path(config.export_dir or f"saved_models/{app.name}"),
        explained)
    metrics["export_path"] = str(version_dir)
    report.write_report(run_dir, app, config, metrics, history,
                        app.signatures_for(model, explained))
    print(f"[{app.name}] test: " + ", ".join(
        f"test_{key}={value:.4f}" for key, value in predictions.metrics.items()))
    print(f"[{app.name}] exported {version_dir}; report in {run_dir}", flush=True)
    return metrics
