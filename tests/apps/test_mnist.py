"""The MNIST app end to end: data sources, training, report, export, predict, errors, resume."""

import dataclasses
import gzip
import json
import signal
import struct
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from apps import get_app
from apps.config import resolve_config
from apps.data import DataError
from apps.mnist import SAMPLE_DIR, SAMPLE_TRAIN_SIZE, read_split
from apps.runner import RunError, train
from tests.conftest import REPO_ROOT, read_json, run_cli, serve_in_fresh_process, train_on_sample

APP = get_app("mnist")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short mnist_cnn run on the shipped sample, shared by the tests that inspect it."""
    return train_on_sample(APP, tmp_path_factory.mktemp("mnist"), epochs=3)


def sample_test_digits(count: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_split(SAMPLE_DIR, "t10k")
    images, labels = images[SAMPLE_TRAIN_SIZE:][:count], labels[SAMPLE_TRAIN_SIZE:][:count]
    return images, labels


def test_short_run_learns_and_writes_the_whole_report(trained):
    config, metrics = trained
    run_dir = REPO_ROOT / config.run_dir
    assert metrics["test_accuracy"] >= 0.93
    assert metrics["examples"] == {"train": 7200, "validation": 800, "test": 2000}
    assert "shipped sample" in metrics["data_source"]
    for name in ("config.json", "history.csv", "metrics.json", "learning_curves.png",
                 "confusion_matrix.png", "MODEL_CARD.md", "model.keras"):
        assert (run_dir / name).stat().st_size > 0, name
    saved = read_json(run_dir / "metrics.json")
    for key in ("test_accuracy", "test_loss", "class_names", "train_seconds",
                "samples_per_second", "export_path"):
        assert saved[key] is not None, key
    assert saved["class_names"] == [str(digit) for digit in range(10)]
    assert np.array(saved["confusion_matrix"]).sum() == 2000
    options = read_json(run_dir / "config.json")
    assert options["options"]["epochs"] == 3 and options["packages"]["keras"].startswith("3.")
    assert [line.split(",")[0] for line in (run_dir / "history.csv").read_text().split()[1:]] == [
        "0", "1", "2"]
    assert "serving_default" in (run_dir / "MODEL_CARD.md").read_text()


def test_export_reloads_in_a_fresh_process_with_equal_predictions(trained, tmp_path):
    config, metrics = trained
    export_dir = metrics["export_path"]
    assert export_dir.endswith("/1")
    assert (tf.io.gfile.GFile(f"{export_dir}/assets/labels.txt").read().split()
            == [str(digit) for digit in range(10)])
    images, labels = sample_test_digits(64)
    model = keras.saving.load_model(REPO_ROOT / config.run_dir / "model.keras")
    expected = model.predict(images[..., np.newaxis].astype("float32"), verbose=0)
    for raw in (images, images[..., np.newaxis]):
        served = serve_in_fresh_process(export_dir, raw, tmp_path)
        np.testing.assert_allclose(served["probabilities"], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(served["class_id"], expected.argmax(axis=1))
        assert [name.decode() for name in served["class_name"]] == [
            str(digit) for digit in expected.argmax(axis=1)]
    assert (expected.argmax(axis=1) == labels).mean() >= 0.9


def test_predict_prints_one_json_line_per_image_file(trained, tmp_path):
    _, metrics = trained
    images, labels = sample_test_digits(8)
    paths = []
    for index, image in enumerate(images):
        path = tmp_path / f"digit_{index}.png"
        path.write_bytes(tf.io.encode_png(image[..., np.newaxis]).numpy())
        paths.append(str(path))
    inverted = tmp_path / "black_on_white.png"
    inverted.write_bytes(tf.io.encode_png(255 - images[0][..., np.newaxis]).numpy())
    base_dir = str(metrics["export_path"]).rsplit("/", 1)[0]
    result = run_cli("mnist", "predict", "--model-dir", base_dir, *paths, str(inverted))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [line["input"] for line in lines] == paths + [str(inverted)]
    assert all(0 < line["probability"] <= 1 for line in lines)
    predicted = [int(line["class"]) for line in lines]
    assert np.mean(np.array(predicted[:8]) == labels) >= 0.75
    assert predicted[8] == predicted[0]


def test_second_export_takes_the_next_version(trained, tmp_path):
    config, metrics = trained
    from apps.export import export_saved_model

    model = keras.saving.load_model(REPO_ROOT / config.run_dir / "model.keras")
    export_dir = REPO_ROOT / config.export_dir
    (export_dir / ".export-stale").mkdir()
    version = export_saved_model(model, APP, [str(digit) for digit in range(10)], export_dir)
    assert version.name == "2"
    assert sorted(path.name for path in export_dir.iterdir() if path.name.isdigit()) == ["1", "2"]


def test_a_failed_export_leaves_no_version_folder(trained, tmp_path, monkeypatch):
    config, _ = trained
    from apps.export import export_saved_model

    model = keras.saving.load_model(REPO_ROOT / config.run_dir / "model.keras")

    def crash_midway(module, path, signatures):
        (tf.io.gfile.makedirs(f"{path}/variables"))
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(model, APP, [str(digit) for digit in range(10)], tmp_path / "exports")
    assert list((tmp_path / "exports").iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("model,floor", [("mnist_cnn", 0.98), ("mnist_mlp", 0.95)])
def test_default_options_reach_the_accuracy_floor_on_the_sample(model, floor, run_paths):
    metrics = train(APP, resolve_config(APP, data="sample", model=model, **run_paths))
    assert metrics["test_accuracy"] >= floor, metrics["test_accuracy"]


def test_tfds_source_loads_through_tfds(run_paths):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=40):
        metrics = train(APP, resolve_config(APP, data="tfds", model="mnist_mlp", epochs=1,
                                            **run_paths))
    assert metrics["data_source"].startswith("TFDS mnist")
    assert metrics["examples"] == {"train": 36, "validation": 4, "test": 40}


def _write_idx(path, array):
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(">" + "I" * array.ndim,
                                                                    *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_local_idx_folder_is_read_in_the_usual_layout(tmp_path, run_paths):
    images, labels = sample_test_digits(300)
    folder = tmp_path / "mnist_idx"
    folder.mkdir()
    _write_idx(folder / "train-images-idx3-ubyte.gz", images[:200])
    _write_idx(folder / "train-labels-idx1-ubyte.gz", labels[:200])
    (folder / "t10k-images-idx3-ubyte").write_bytes(
        gzip.decompress((SAMPLE_DIR / "t10k-images-idx3-ubyte.gz").read_bytes()))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(
        gzip.decompress((SAMPLE_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    metrics = train(APP, resolve_config(APP, data=str(folder), model="mnist_mlp", epochs=1,
                                        **run_paths))
    assert metrics["data_source"].startswith(f"local IDX folder {folder}")
    assert metrics["examples"] == {"train": 180, "validation": 20, "test": 10000}


def test_local_folder_missing_a_file_names_it(tmp_path, run_paths):
    with pytest.raises(DataError, match=r"missing train-images-idx3-ubyte \(or .*\.gz\)"):
        train(APP, resolve_config(APP, data=str(tmp_path), **run_paths))


def test_corrupt_idx_file_names_the_file(tmp_path, run_paths):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(DataError, match="train-images-idx3-ubyte: not a readable IDX file"):
        train(APP, resolve_config(APP, data=str(tmp_path), **run_paths))


def test_unknown_model_is_a_one_line_error():
    result = run_cli("mnist", "train", "--model", "resnet9000", "--data", "sample")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "python -m apps mnist train: error: --model resnet9000: not a model for the mnist app. "
        "Choose one of: mnist_cnn, mnist_mlp, small_cnn.")


def test_missing_data_path_is_a_one_line_error():
    result = run_cli("mnist", "train", "--data", "/no/such/mnist")
    assert result.returncode == 2
    assert "--data /no/such/mnist: no such file or folder" in result.stderr.strip().splitlines()[-1]


def test_unknown_app_and_flag_exit_2_with_one_line():
    unknown_app = run_cli("imagenet", "train")
    assert unknown_app.returncode == 2
    from apps import APP_NAMES

    assert unknown_app.stderr.strip() == (
        f"python -m apps: error: unknown app 'imagenet'; choose one of: list, "
        f"{', '.join(APP_NAMES)} (see --help)")
    unknown_flag = run_cli("mnist", "train", "--epochz", "3")
    assert unknown_flag.returncode == 2
    assert len(unknown_flag.stderr.strip().splitlines()) == 1
    assert "unrecognized arguments: --epochz 3" in unknown_flag.stderr


def test_help_lists_every_shared_option_with_its_default():
    result = run_cli("mnist", "train", "--help")
    assert result.returncode == 0
    for flag in ("--model", "--data", "--epochs", "--batch-size", "--learning-rate", "--seed",
                 "--run-dir", "--export-dir", "--model-arg"):
        assert flag in result.stdout
    assert "'mnist_cnn'" in result.stdout


def test_list_names_apps_and_models_with_task_and_size():
    result = run_cli("list")
    assert result.returncode == 0
    assert "app   mnist" in result.stdout
    assert any(line.startswith("model mnist_mlp") and "101,770 params" in line
               for line in result.stdout.splitlines())


def test_model_args_reach_the_builder_and_are_checked(run_paths):
    config = resolve_config(APP, data="sample", model="mnist_mlp",
                            model_arg=["hidden_units=32"], **run_paths)
    model = APP.build_model(config, APP.load_data(config))
    assert model.count_params() == 784 * 32 + 32 + 33 * 10
    config.model_arg = ["width=3"]
    with pytest.raises(ValueError, match="Unknown option.*width.*hidden_units"):
        APP.build_model(config, APP.load_data(config))


def test_finished_run_dir_is_not_overwritten(trained):
    config, _ = trained
    with pytest.raises(RunError, match="holds a finished run"):
        train(APP, config)


def _history_epochs(run_dir):
    history = run_dir / "history.csv"
    rows = history.read_text().split()[1:] if history.exists() else []
    return [int(row.split(",")[0]) for row in rows]


def test_killed_run_resumes_from_the_last_finished_epoch(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "apps", "mnist", "train", "--data", "sample", "--model",
               "mnist_mlp", "--epochs", "6", "--run-dir", str(run_dir), "--export-dir",
               str(tmp_path / "exports")]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(_history_epochs(run_dir)) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_before_kill = _history_epochs(run_dir)
    assert 2 <= len(finished_before_kill) < 6, finished_before_kill
    assert not (run_dir / "metrics.json").exists()

    changed = subprocess.run(command[:-4] + ["--epochs", "7"] + command[-4:], cwd=REPO_ROOT,
                             capture_output=True, text=True)
    assert changed.returncode == 2 and "interrupted run with other options (epochs)" in changed.stderr

    resumed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _history_epochs(run_dir) == list(range(6))
    assert f"Epoch {len(finished_before_kill) + 1}/6" in resumed.stdout
    assert "Epoch 1/6" not in resumed.stdout
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["resumed"] is True and metrics["epochs_trained"] == 6
    assert metrics["test_accuracy"] >= 0.9


def test_diverging_run_stops_with_a_clear_error_and_keeps_its_checkpoints(tmp_path, run_paths):
    def poisoned_model(config, splits):
        model = APP.build_model(config, splits)
        pixels = keras.Input(shape=(28, 28, 1), name="pixels")
        return keras.Model(pixels, keras.layers.Rescaling(float("nan"))(model(pixels)))

    app = dataclasses.replace(APP, build_model=poisoned_model)
    with pytest.raises(RunError, match=r"training diverged in epoch 1 \(NaN or Inf loss.*"
                                       r"--learning-rate and a new --run-dir"):
        train(app, resolve_config(app, data="sample", model="mnist_mlp", epochs=2, **run_paths))
    assert not (tmp_path / "exports").exists()
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert (tmp_path / "run" / "config.json").exists()


MIRRORED_ON_TWO_CPUS = """
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from apps.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_mirrored_strategy_trains_over_two_logical_devices(tmp_path):
    from tests.conftest import run_python

    result = run_python(MIRRORED_ON_TWO_CPUS, "mnist", "train", "--data", "sample", "--model",
                        "mnist_mlp", "--epochs", "2", "--distribute", "mirrored",
                        "--run-dir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert metrics["device"] == "mirrored over 2 cpu"
    assert "--steps-per-execution 16 -> 1 under MirroredStrategy" in result.stdout
    assert metrics["test_accuracy"] >= 0.85
