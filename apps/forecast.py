"""Time-series forecasting: a window of past values -> zoo recurrent forecaster -> next steps.

Data: the shipped sample (data/co2: Mauna Loa weekly CO2, 1958-2001, gaps interpolated), any CSV
(`--data PATH --column NAME`), or keras.io's Jena climate CSV (`--data jena`, downloaded once).
Split chronologically 70/15/15; scaling is fitted on the training part and lives in the model.
Expected on the CO2 sample at horizon 4: test MAE at most 60% of the naive last-value forecast's
and below the seasonal-naive-with-drift forecast's.
Export: `serving_default(window: float32 [batch, steps, 1] in original units)` ->
`forecast [batch, horizon]` in original units.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np

import zoo
from apps.core import (
    App,
    DataError,
    DataSplits,
    Forecast,
    Signature,
    TensorInput,
    TrainConfig,
    option,
)
from apps.core.sources import SAMPLES_DIR, resolve_source
from apps.core.sources.series import fill_gaps, read_column

SAMPLE_CSV = SAMPLES_DIR / "co2" / "co2_weekly.csv"
JENA_URL = ("https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
            "jena_climate_2009_2016.csv.zip")
DEFAULT_COLUMNS = {"sample": "co2", "jena": "T (degC)"}
SPLIT_FRACTIONS = (0.70, 0.15)


@dataclasses.dataclass
class ForecastConfig(TrainConfig):
    column: str = option("", "CSV column to forecast; empty: co2 for the sample, T (degC) for "
                             "jena, the only numeric column of any other CSV")
    window: int = option(52, "past steps the model sees")
    horizon: int = option(4, "steps ahead to forecast")
    season: int = option(52, "steps per season, for the seasonal-naive baseline (52 weeks)")
    stride: int = option(1, "keep every Nth row of the series (6 turns Jena's 10-minute rows "
                            "hourly)")


def _download_jena() -> Path:
    try:
        folder = keras.utils.get_file(origin=JENA_URL, extract=True)
    except Exception as error:
        raise DataError(
            f"--data jena: could not download {JENA_URL} ({error}). Download and unzip it "
            f"elsewhere, then pass --data PATH/jena_climate_2009_2016.csv --column 'T (degC)'."
        ) from error
    return next(Path(folder).rglob("*.csv"))


def load_series(config) -> tuple[np.ndarray, str, int]:
    """The series to forecast (float32), a description of its source, and the gaps filled."""
    if config.data == "tfds":
        raise DataError("--data tfds: the forecast app has no TFDS dataset; use --data sample, "
                        "--data jena or --data PATH.csv.")
    if config.data == "jena":
        path, reason, default_column = _download_jena(), "--data jena", DEFAULT_COLUMNS["jena"]
    else:
        source, reason = resolve_source(config.data, None)
        path = SAMPLE_CSV if source == "sample" else Path(source)
        default_column = DEFAULT_COLUMNS["sample"] if source == "sample" else ""
    if path.is_dir():
        raise DataError(f"--data {config.data}: expected a CSV file with a header row, not a folder.")
    values, column = read_column(path, config.column or default_column)
    values, gaps = fill_gaps(values[:: config.stride], f"{path} column {column!r}")
    return values.astype("float32"), f"{path} column {column!r} ({reason})", gaps


def _windows(series: np.ndarray, first_target: int, end: int, window: int, horizon: int):
    """(window, next `horizon` values) pairs whose targets start in [first_target, end)."""
    starts = range(max(first_target - window, 0), end - horizon - window + 1)
    if len(starts) <= 0:
        return None
    targets = np.stack([series[start + window : start + window + horizon] for start in starts])
    return keras.utils.timeseries_dataset_from_array(
        series[starts[0] : starts[-1] + window, np.newaxis], targets, sequence_length=window,
        batch_size=None)


def load_data(config) -> DataSplits:
    if config.window < 1 or config.horizon < 1 or config.stride < 1:
        raise DataError(f"--window {config.window} / --horizon {config.horizon} / --stride "
                        f"{config.stride}: each must be at least 1.")
    series, source, gaps = load_series(config)
    train_end = int(len(series) * SPLIT_FRACTIONS[0])
    validation_end = int(len(series) * sum(SPLIT_FRACTIONS))
    parts = [_windows(series, first, end, config.window, config.horizon)
             for first, end in ((config.window, train_end), (train_end, validation_end),
                                (validation_end, len(series)))]
    if any(part is None for part in parts):
        raise DataError(f"{source}: {len(series)} steps are too few for --window {config.window} "
                        f"and --horizon {config.horizon} in each of the train/validation/test "
                        f"parts; use a longer series or smaller --window/--horizon.")
    return DataSplits(train=parts[0], validation=parts[1], test=parts[2], source=source,
                      facts={"missing_values_filled": gaps, "split_steps": [train_end, validation_end]},
                      context={"series": series})


def build_model(config, splits: DataSplits) -> keras.Model:
    """Window -> changes from the last value, scaled by the training part's step-to-step spread
    -> zoo forecaster -> changes rescaled and added to the last value."""
    series = splits.context["series"][: splits.facts["split_steps"][0]]
    scale = float(np.std(np.diff(series)) or 1.0)
    window = keras.Input(shape=(None, 1), name="window")
    x = zoo.RelativeToLast()(window)
    x = keras.layers.Normalization(mean=[0.0], variance=[scale**2])(x)
    forecaster = zoo.build(config.model, num_features=1, horizon=config.horizon,
                           **config.model_options())
    changes = keras.layers.Rescaling(scale)(forecaster(x))
    return keras.Model(window, zoo.AddLastValue()([changes, window]), name=f"forecast_{config.model}")


def read_inputs(paths: list[str]) -> tuple[list[str], np.ndarray]:
    """CSV files of recent history (the one numeric column, gaps filled) -> [batch, steps, 1]."""
    windows = [fill_gaps(read_column(Path(path), "")[0], path)[0] for path in paths]
    if len({len(window) for window in windows}) != 1:
        raise DataError(f"{', '.join(paths)}: give histories of equal length in one call.")
    return paths, np.stack(windows).astype("float32")[..., np.newaxis]


APP = App(
    name="forecast",
    summary="the next steps of a time series from a window of its past",
    output=Forecast(),
    models=("lstm_forecaster", "gru_forecaster", "simple_rnn_forecaster"),
    load_data=load_data,
    build_model=build_model,
    loss="mse",
    metrics=("mae",),
    signatures={"serving_default": Signature(TensorInput("window", "float32", (None, None, 1)))},
    read_inputs=read_inputs,
    app_model_options={"num_features": "the one series", "horizon": "--horizon"},
    config_class=ForecastConfig,
    # Batch 128, and 10 epochs at 2e-2 instead of 100 (early stopping: 56-66) at 3e-3: a test MAE
    # of 0.481-0.511 of the naive one instead of 0.450-0.4585 (seeds 42, 1, 2) in about 3 s of
    # training instead of 15-18 s, shorter than the keras.io weather LSTM's whole run
    # (bench/RESULTS.md).
    defaults={"model": "lstm_forecaster", "epochs": 10, "batch_size": 128,
              "learning_rate": 2e-2, "patience": 15, "augment": False},
)
