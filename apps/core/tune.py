"""Hyperparameter search with KerasTuner: each trial is one ordinary `train()` run.

The search space: the learning rate (a tenth to ten times the given one, log scale), the batch
size (half, as given, double), the schedule, and the options the zoo model declares searchable
(`@register_model(search=...)`) that `--model-arg` does not fix. The objective is the lowest
validation loss of the trial's run. Trials live under the tuning directory
(`<run dir>/trials/<id>/`, each a full run with its report); the same command resumes an
interrupted search there. The end: `best_config.json`, a `--config` file for `train`, and
TUNE_REPORT.md, a table of the trials.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path

import keras_tuner

import zoo
from apps.core import rundir
from apps.core.errors import RunError
from apps.core.runner import check_options, train

SEARCHED_SCHEDULES = ["cosine", "constant", "onecycle"]
NOT_IN_A_CONFIG_FILE = ("run_dir", "export_dir")


def search_space(app, config) -> keras_tuner.HyperParameters:
    space = keras_tuner.HyperParameters()
    space.Float("learning_rate", config.learning_rate / 10, config.learning_rate * 10,
                sampling="log", default=config.learning_rate)
    space.Choice("batch_size", sorted({max(config.batch_size // 2, 1), config.batch_size,
                                       config.batch_size * 2}), default=config.batch_size)
    space.Choice("schedule", SEARCHED_SCHEDULES,
                 default=config.schedule if config.schedule in SEARCHED_SCHEDULES else "cosine")
    fixed = set(config.model_options()) | set(app.app_model_options)
    defaults = zoo.describe(config.model)["defaults"]
    for name, values in zoo.get_entry(config.model).search.items():
        if name in fixed:
            continue
        if isinstance(values, list):
            space.Choice(f"model_arg.{name}", values, default=defaults[name]
                         if defaults[name] in values else None)
        elif all(isinstance(bound, int) for bound in values):
            space.Int(f"model_arg.{name}", *values, default=defaults[name])
        else:
            space.Float(f"model_arg.{name}", *values, default=defaults[name])
    return space


def trial_config(config, values: dict, trial_dir: Path, export_dir: Path):
    """The options of one trial: the searched values over the given options (a trial's
    explanations are not measured: only the best options matter)."""
    model_args = [f"{name.split('.', 1)[1]}={value!r}" for name, value in values.items()
                  if name.startswith("model_arg.")]
    return dataclasses.replace(
        config, learning_rate=float(values["learning_rate"]), batch_size=values["batch_size"],
        schedule=values["schedule"], model_arg=[*config.model_arg, *model_args],
        run_dir=str(trial_dir), export_dir=str(export_dir), explain_examples=0)


class _TrainingTuner(keras_tuner.RandomSearch):
    """Random search whose trials are `train()` runs of the app."""

    def __init__(self, app, config, tune_dir: Path, max_trials: int):
        self.app, self.config, self.tune_dir = app, config, tune_dir
        super().__init__(objective=keras_tuner.Objective("val_loss", "min"),
                         max_trials=max_trials, seed=config.seed,
                         hyperparameters=search_space(app, config), tune_new_entries=False,
                         allow_new_entries=False, directory=str(tune_dir), project_name="search")

    def run_trial(self, trial, *args, **kwargs):
        trial_dir = self.tune_dir / "trials" / trial.trial_id
        config = trial_config(self.config, trial.hyperparameters.values, trial_dir,
                              self.tune_dir / "exports")
        if not (trial_dir / "metrics.json").exists():
            train(self.app, config)
        history = rundir.read_history(trial_dir / "history.csv")
        return {"val_loss": min(row["val_loss"] for row in history)}


def _trial_rows(tuner) -> list[dict]:
    rows = []
    for trial in tuner.oracle.trials.values():
        metrics_path = tuner.tune_dir / "trials" / trial.trial_id / "metrics.json"
        test = {key: value for key, value in (json.loads(metrics_path.read_text()).items()
                                              if metrics_path.exists() else [])
                if key.startswith("test_")}
        rows.append({"trial": trial.trial_id, **trial.hyperparameters.values,
                     "val_loss": trial.score, "status": trial.status, **test})
    return sorted(rows, key=lambda row: (row["val_loss"] is None, row["val_loss"]))


def _write_report(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["# Trials, best first", "", "| " + " | ".join(columns) + " |",
             "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row.get(key):.4g}" if isinstance(row.get(key), float) else str(row.get(key, ""))
                 for key in columns]
        lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def tune(app, config, max_trials: int) -> dict:
    """Runs (or resumes) the search; returns the best options, also written as best_config.json."""
    if max_trials < 1:
        raise RunError(f"--max-trials {max_trials}: must be at least 1.")
    check_options(app, config)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    tune_dir = Path(config.run_dir or f"runs/{app.name}/tune-{stamp}")
    tuner = _TrainingTuner(app, config, tune_dir, max_trials)
    tuner.search()
    best = tuner.oracle.get_best_trials(1)[0]
    best_options = {key: value for key, value in dataclasses.asdict(trial_config(
        config, best.hyperparameters.values, tune_dir, tune_dir)).items()
        if key not in NOT_IN_A_CONFIG_FILE}
    (tune_dir / "best_config.json").write_text(json.dumps(best_options, indent=2) + "\n")
    rows = _trial_rows(tuner)
    _write_report(tune_dir / "TUNE_REPORT.md", rows)
    print(f"[{app.name}] best of {len(rows)} trials: trial {best.trial_id}, validation loss "
          f"{best.score:.4f}; train with it: python -m apps {app.name} train --config "
          f"{tune_dir / 'best_config.json'} (table: {tune_dir / 'TUNE_REPORT.md'})", flush=True)
    return best_options
