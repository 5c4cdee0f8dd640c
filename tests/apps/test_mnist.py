"""The MNIST app: accuracy floors on the sample, TFDS, the IDX folder layout and its errors."""

import gzip
import struct

import numpy as np
import pytest

from apps import get_app
from apps.core import DataError, resolve_config, train
from apps.core.sources.digits import SAMPLE_DIR, read_split
from tests.conftest import REPO_ROOT

APP = get_app("mnist")
# The same worker runs every test that shares this app's session runs (pytest-xdist).
pytestmark = pytest.mark.xdist_group("mnist")


@pytest.mark.floor
@pytest.mark.parametrize("model,floor", [("mnist_cnn", 0.98), ("mnist_mlp", 0.95)])
def test_default_options_reach_the_accuracy_floor_on_the_sample(model, floor, sample_run):
    config, metrics = sample_run("mnist", **({} if model == APP.defaults["model"] else
                                             {"model": model}))
    assert metrics["test_accuracy"] >= floor, metrics["test_accuracy"]
    assert metrics["examples"] == {"train": 7200, "validation": 800, "test": 2000}
    assert "shipped sample" in metrics["data_source"]
    assert metrics["class_names"] == [str(digit) for digit in range(10)]
    assert np.array(metrics["confusion_matrix"]).sum() == 2000


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


def test_local_idx_folder_is_read_in_the_usual_layout(tmp_path):
    images, labels = read_split(SAMPLE_DIR, "t10k")
    folder = tmp_path / "mnist_idx"
    folder.mkdir()
    _write_idx(folder / "train-images-idx3-ubyte.gz", images[:200])
    _write_idx(folder / "train-labels-idx1-ubyte.gz", labels[:200])
    (folder / "t10k-images-idx3-ubyte").write_bytes(
        gzip.decompress((SAMPLE_DIR / "t10k-images-idx3-ubyte.gz").read_bytes()))
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    splits = APP.load_data(resolve_config(APP, data=str(folder)))
    assert splits.source.startswith(f"local IDX folder {folder}")
    assert int(splits.train.cardinality()) == 200 and int(splits.test.cardinality()) == 10_000
    first_image, first_label = next(iter(splits.test))
    np.testing.assert_array_equal(first_image.numpy()[..., 0], images[0])
    assert int(first_label) == labels[0]


def test_local_folder_missing_a_file_names_it(tmp_path):
    with pytest.raises(DataError, match=r"missing train-images-idx3-ubyte \(or .*\.gz\)"):
        APP.load_data(resolve_config(APP, data=str(tmp_path)))


def test_corrupt_idx_file_names_the_file(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(DataError, match="train-images-idx3-ubyte: not a readable IDX file"):
        APP.load_data(resolve_config(APP, data=str(tmp_path)))


def test_inverted_digit_files_are_read_like_mnist(tmp_path):
    import tensorflow as tf

    images, _ = read_split(SAMPLE_DIR, "t10k")
    dark, light = tmp_path / "dark.png", tmp_path / "light.png"
    dark.write_bytes(tf.io.encode_png(images[0][..., None]).numpy())
    light.write_bytes(tf.io.encode_png(255 - images[0][..., None]).numpy())
    _, batch = APP.read_inputs([str(dark), str(light)])
    assert batch.shape == (2, 28, 28) and batch.dtype == np.uint8
    np.testing.assert_allclose(batch[0], batch[1], atol=2)
    with pytest.raises(DataError, match="not a readable PNG/JPEG/GIF/BMP image"):
        APP.read_inputs([str(SAMPLE_DIR / "README.md")])


@pytest.mark.floor
def test_litert_conversions_match_the_saved_model(sample_run, capsys, tmp_path):
    import json
    import shutil

    from tests.conftest import cli_in_process

    _, metrics = sample_run("mnist")
    version_dir = shutil.copytree(metrics["export_path"], tmp_path / "mnist" / "1")
    reports = {}
    for quantize in ("none", "float16", "dynamic", "int8"):
        status, out, err = cli_in_process(capsys, "mnist", "export-litert", "--model-dir",
                                          str(version_dir), "--quantize", quantize,
                                          "--data", "sample")
        assert status == 0, err
        reports[quantize] = json.loads(out.strip().splitlines()[-1])
        assert (version_dir / f"model_{quantize}.tflite").stat().st_size == \
            reports[quantize]["tflite_bytes"]
        assert json.loads((version_dir / f"litert_{quantize}.json").read_text()) == \
            reports[quantize]
    for quantize, report in reports.items():
        assert report["examples"] == 1000
        drop = report["saved_model_accuracy"] - report["litert_accuracy"]
        assert drop <= (0.01 if quantize != "int8" else 0.03), (quantize, report)
    assert reports["float16"]["tflite_bytes"] < 0.6 * reports["none"]["tflite_bytes"]
    assert reports["int8"]["tflite_bytes"] < 0.35 * reports["none"]["tflite_bytes"]


@pytest.mark.floor
def test_explanations_are_faithful_and_depend_on_the_training(sample_run):
    """On 100 held-out digits of the default run: blanking the 10% most-attributed pixels drops
    the true class's probability at least twice as much as blanking 10% random ones, for every
    method; and the maps of the trained model and of the re-initialised architecture have a
    signed rank correlation well below 1 (Adebayo et al., 2018)."""
    config, metrics = sample_run("mnist")
    assert metrics["explained_examples"] == 100
    assert set(metrics["explanations"]) == {"integrated_gradients", "gradcam", "saliency"}
    for method, figures in metrics["explanations"].items():
        assert figures["deleted"] == "10% of positions"
        assert figures["deletion_drop_most_attributed"] > 0, (method, figures)
        assert (figures["deletion_drop_most_attributed"]
                >= 2 * figures["deletion_drop_random"]), (method, figures)
        assert figures["rank_correlation_with_reinitialised_model"] < 0.5, (method, figures)
    run_dir = REPO_ROOT / config.run_dir
    assert "## Explanations" in (run_dir / "MODEL_CARD.md").read_text()
    assert len(list((run_dir / "explained_mistakes").glob("*.png"))) == len(
        metrics["explained_mistakes"]) > 0


def test_a_runs_model_keras_reloads_with_its_optimizer_state(tiny_run):
    """model.keras keeps the runner's optimizer (its Adam, a step fused for TensorFlow), which
    `keras.saving.load_model` reads once `apps.core.fit` is imported (as the README says; this
    process has), its state included."""
    import keras

    config, _ = tiny_run("mnist")
    model = keras.saving.load_model(REPO_ROOT / config.run_dir / "model.keras")
    assert type(model.optimizer).__module__ == "apps.core.fit"
    assert int(model.optimizer.iterations) > 0  # a new optimizer would be at 0
