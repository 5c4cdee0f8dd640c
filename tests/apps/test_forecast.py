"""The forecast app: CO2 sample, CSVs with gaps, baselines, export in original units, errors."""

import keras
import numpy as np
import pytest

from apps import get_app
from apps.core import DataError, resolve_config, train
from apps.core.outputs import baselines
from apps.forecast import load_data
from tests.conftest import REPO_ROOT

APP = get_app("forecast")
# The same worker runs every test that shares this app's session runs (pytest-xdist).
pytestmark = pytest.mark.xdist_group("forecast")


@pytest.mark.floor
def test_default_model_beats_both_baselines_on_co2(sample_run):
    config, metrics = sample_run("forecast")
    assert metrics["test_mae"] <= 0.6 * metrics["naive_mae"], metrics
    assert metrics["test_mae"] < metrics["seasonal_naive_mae"], metrics
    assert (REPO_ROOT / config.run_dir / "forecast.png").stat().st_size > 0
    assert metrics["missing_values_filled"] == 59
    assert metrics["examples"]["test"] == 340
    assert 0.3 < metrics["naive_mae"] < 2 and 0.3 < metrics["seasonal_naive_mae"] < 2
    assert metrics["mae_vs_naive"] == pytest.approx(metrics["test_mae"] / metrics["naive_mae"],
                                                    rel=1e-3)


def test_export_forecasts_in_original_units(tiny_run):
    import tensorflow as tf

    config, metrics = tiny_run("forecast")
    windows, targets = next(iter(load_data(config).test.batch(16)))
    served = tf.saved_model.load(metrics["export_path"]).signatures["serving_default"](
        window=windows)["forecast"].numpy()
    assert served.shape == (16, 4)
    assert np.abs(served - targets.numpy()).mean() < 2.0
    assert 340 < served.mean() < 380


@pytest.mark.parametrize("model", ["gru_forecaster", "simple_rnn_forecaster"])
def test_other_recurrent_forecasters_train(model, run_paths):
    metrics = train(APP, resolve_config(APP, data="sample", model=model, epochs=1,
                                        model_arg=["units=8"], **run_paths))
    assert np.isfinite(metrics["test_mae"]) and metrics["epochs_trained"] == 1


def test_seasonal_naive_with_drift_is_exact_on_trend_plus_season():
    steps = np.arange(400, dtype="float64")
    series = 0.1 * steps + np.sin(2 * np.pi * steps / 52)
    truth, naive, seasonal = baselines(series, first_target=300, window=52, horizon=4, season=52)
    assert truth.shape == naive.shape == seasonal.shape == (97, 4)
    np.testing.assert_allclose(seasonal, truth, atol=1e-9)
    np.testing.assert_allclose(naive, np.repeat(series[299:396, None], 4, axis=1))


def _csv(path, rows, header="when,temperature,note"):
    path.write_text(header + "\n" + "".join(rows))
    return path


def test_csv_with_gaps_and_text_cells_is_interpolated(tmp_path, run_paths):
    rows = [f"{step},{'' if step % 17 == 0 else f'{20 + np.sin(step / 8):.3f}'},x\n"
            for step in range(600)]
    rows[100] = "100,n/a,x\n"
    path = _csv(tmp_path / "weather.csv", rows)
    config = resolve_config(APP, data=str(path), column="temperature", epochs=2, season=24,
                            window=24, horizon=2, **run_paths)
    metrics = train(APP, config)
    assert metrics["missing_values_filled"] == 37
    assert "column 'temperature'" in metrics["data_source"]
    assert np.isfinite(metrics["test_mae"])


def test_the_only_numeric_column_is_found_without_column_flag(tmp_path):
    path = _csv(tmp_path / "one.csv", [f"day {step},{step * 0.5},x\n" for step in range(300)])
    config = resolve_config(APP, data=str(path), window=10, horizon=2)
    assert "column 'temperature'" in load_data(config).source
    two_numeric = _csv(tmp_path / "two.csv", [f"{step},{step * 0.5},x\n" for step in range(300)])
    with pytest.raises(DataError, match="give --column; numeric columns: when, temperature"):
        load_data(resolve_config(APP, data=str(two_numeric)))


def test_unknown_column_lists_the_columns(tmp_path):
    path = _csv(tmp_path / "one.csv", [f"{step},{step},x\n" for step in range(300)])
    with pytest.raises(DataError, match=r"no column 'pressure' \(--column\). Columns: when, "
                                        r"temperature, note"):
        load_data(resolve_config(APP, data=str(path), column="pressure"))


def test_too_short_series_says_what_to_change(tmp_path):
    path = _csv(tmp_path / "short.csv", [f"{step},{step},x\n" for step in range(60)])
    with pytest.raises(DataError, match="too few for --window 52 and --horizon 4"):
        load_data(resolve_config(APP, data=str(path), column="temperature"))


def test_jena_download_failure_offers_the_local_alternative(monkeypatch):
    def offline(**kwargs):
        raise Exception("URL fetch failure: Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(DataError, match=r"--data jena: could not download .*--data PATH"):
        load_data(resolve_config(APP, data="jena"))
