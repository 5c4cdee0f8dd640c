"""The next steps of a series, in its own units, measured against the baselines a forecaster must
beat: the naive last-value forecast and the seasonal naive forecast with drift."""

import numpy as np

from apps.core import plots
from apps.core.errors import DataError
from apps.core.outputs.base import OutputKind


def baselines(series: np.ndarray, first_target: int, window: int, horizon: int, season: int):
    """Naive (last value) and seasonal-naive-with-drift forecasts and truth for each test window.

    Seasonal naive with drift: the value one season before each target step, plus the change over
    the last full season (y[t+h-s] + y[t] - y[t-s]).
    """
    last_inputs = np.arange(max(first_target, window), len(series) - horizon + 1) - 1
    steps = np.arange(1, horizon + 1)
    truth = series[last_inputs[:, None] + steps]
    naive = np.repeat(series[last_inputs][:, None], horizon, axis=1)
    seasonal = (series[last_inputs[:, None] + steps - season]
                + (series[last_inputs] - series[last_inputs - season])[:, None])
    return truth, naive, seasonal


class Forecast(OutputKind):
    """The next `horizon` values of a series [batch, horizon], in the series' own units. Its data
    keep the series (`context["series"]`) and where the test part starts
    (`facts["split_steps"]`); its config gives `window`, `horizon` and `season`."""

    name = "forecast"
    card_outputs = "`forecast` [batch, horizon] in original units"
    card_metrics = ("naive_mae", "seasonal_naive_mae", "mae_vs_naive")
    model_output_name = "forecast"

    def serving_outputs(self, forecast, labels):
        return {"forecast": forecast}

    def report(self, model, predictions, splits, run_dir, config, rebuild) -> dict:
        """Baseline MAEs on the same test windows (original units), and forecast-vs-truth
        plots one step and `horizon` steps ahead."""
        series, (_, test_start) = splits.context["series"], splits.facts["split_steps"]
        if test_start - config.window - config.season < 0:
            raise DataError(f"--season {config.season}: needs {config.season} steps before the "
                            f"first test window; the series is too short for it.")
        truth, naive, seasonal = baselines(series, test_start, config.window, config.horizon,
                                           config.season)
        predicted = predictions.outputs
        naive_mae = float(np.abs(naive - truth).mean())
        time_steps = np.arange(test_start, test_start + len(truth))
        plots.plot_series([
            (f"{step + 1} step(s) ahead, test part", time_steps + step,
             {"truth": truth[:, step], config.model: predicted[:, step],
              "seasonal naive + drift": seasonal[:, step]})
            for step in (0, config.horizon - 1)], run_dir / "forecast.png")
        return {"naive_mae": naive_mae,
                "seasonal_naive_mae": float(np.abs(seasonal - truth).mean()),
                "mae_vs_naive": float(np.abs(predicted - truth).mean()) / naive_mae}

    def predict_line(self, outputs: dict, index: int) -> dict:
        return {"forecast": outputs["forecast"][index].numpy().tolist()}

    def litert_comparison(self, saved: dict, litert: dict, targets: np.ndarray) -> dict:
        """Test MAE of the SavedModel and of its LiteRT conversion, and their largest gap."""
        return {"metric": "mae",
                "saved_model_mae": round(float(np.abs(saved["forecast"] - targets).mean()), 4),
                "litert_mae": round(float(np.abs(litert["forecast"] - targets).mean()), 4),
                "largest_difference": round(float(np.abs(saved["forecast"]
                                                         - litert["forecast"]).max()), 4)}
