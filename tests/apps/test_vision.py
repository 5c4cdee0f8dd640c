"""The vision app: class folders with a corrupt file, both export signatures, predict, BN frozen."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from apps import get_app
from apps.config import resolve_config
from apps.data import DataError
from apps.finetune import find_backbone
from apps.runner import train
from tests.conftest import REPO_ROOT, run_cli, run_python

APP = get_app("vision")
COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200)}


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Three classes of noisy colour pictures in assorted sizes and formats, and one corrupt file."""
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (folder / name).mkdir()
        for index in range(40):
            height, width = rng.integers(40, 90, size=2)
            image = np.clip(np.array(colour) + rng.normal(0, 40, (height, width, 3)), 0, 255)
            encode = tf.io.encode_png if index % 2 else tf.io.encode_jpeg
            suffix = "png" if index % 2 else "jpg"
            (folder / name / f"{index}.{suffix}").write_bytes(
                encode(image.astype("uint8")).numpy())
    (folder / "red" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return folder


@pytest.fixture(scope="module")
def trained(image_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("vision")
    config = resolve_config(APP, data=str(image_folder), model="small_cnn", image_size=32,
                            epochs=6, run_dir=str(root / "run"), export_dir=str(root / "exports"))
    return config, train(APP, config)


def test_class_folders_train_and_corrupt_files_are_counted(trained):
    _, metrics = trained
    assert metrics["skipped_files"] == 1
    assert metrics["class_names"] == ["blue", "green", "red"]
    assert sum(metrics["examples"].values()) == 120
    assert metrics["test_accuracy"] >= 0.9


SERVE_BOTH = """
import sys, json, numpy as np, tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
encoded = [open(path, "rb").read() for path in sys.argv[2:]]
pixels = [tf.io.decode_image(data, channels=3).numpy() for data in encoded]
from_bytes = loaded.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
from_pixels = [loaded.signatures["serving_default"](pixels=tf.constant(p[None]))
               for p in pixels]
print(json.dumps({"bytes": from_bytes["probabilities"].numpy().tolist(),
                  "pixels": [out["probabilities"].numpy()[0].tolist() for out in from_pixels]}))
"""


def test_pixels_and_bytes_signatures_agree_on_any_size(trained, image_folder):
    _, metrics = trained
    paths = [str(image_folder / "green" / "1.png"), str(image_folder / "blue" / "2.jpg")]
    result = run_python(SERVE_BOTH, metrics["export_path"], *paths)
    assert result.returncode == 0, result.stderr[-2000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(served["bytes"], served["pixels"], rtol=1e-5, atol=1e-6)
    assert np.array(served["bytes"]).shape == (2, 3)


def test_predict_takes_image_files(trained, image_folder):
    _, metrics = trained
    paths = [str(image_folder / colour / "3.png") for colour in COLOURS]
    result = run_cli("vision", "predict", "--model-dir", metrics["export_path"], *paths)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["class"] for line in result.stdout.splitlines()] == list(COLOURS)


def test_fine_tuning_keeps_batch_norm_frozen(image_folder, run_paths):
    config = resolve_config(APP, data=str(image_folder), backbone="mobilenet_v3_small",
                            weights="none", image_size=64, epochs=1, fine_tune="all",
                            fine_tune_epochs=1, augment=False, **run_paths)
    initial = find_backbone(APP.build_model(config, APP.load_data(config)))
    train(APP, config)
    tuned = find_backbone(keras.saving.load_model(REPO_ROOT / config.run_dir / "model.keras"))
    batch_norm_changed, other_changed = [], []
    for before, after in zip(initial.layers, tuned.layers):
        for weight_before, weight_after in zip(before.get_weights(), after.get_weights()):
            changed = not np.array_equal(weight_before, weight_after)
            is_batch_norm = isinstance(before, keras.layers.BatchNormalization)
            (batch_norm_changed if is_batch_norm else other_changed).append(changed)
    assert batch_norm_changed and not any(batch_norm_changed)
    assert any(other_changed)


def test_tfds_source_resizes_and_holds_out_a_test_split(run_paths):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=40):
        metrics = train(APP, resolve_config(APP, data="tfds", model="small_cnn", image_size=32,
                                            epochs=1, **run_paths))
    assert metrics["data_source"].startswith("TFDS tf_flowers")
    assert len(metrics["class_names"]) == 5


def test_no_sample_and_bad_folders_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="ships no sample: give --data PATH"):
        APP.load_data(resolve_config(APP, data="sample"))
    (tmp_path / "only_class").mkdir()
    with pytest.raises(DataError, match="one subfolder of images per class"):
        APP.load_data(resolve_config(APP, data=str(tmp_path)))
