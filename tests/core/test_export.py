"""The SavedModel export: TF Serving's version folders, written atomically, labels as an asset."""

import pytest
import tensorflow as tf

from apps import get_app
from apps.core.app import DataSplits
from apps.core.config import resolve_config
from apps.core.export import export_saved_model, resolve_version_dir

APP = get_app("mnist")
DIGITS = [str(digit) for digit in range(10)]


@pytest.fixture(scope="module")
def untrained_model():
    """The MNIST app's MLP with its random initial weights: export mechanics need no training."""
    empty = tf.data.Dataset.from_tensor_slices(([[0]], [0]))
    splits = DataSplits(train=empty, test=empty, source="none", class_names=DIGITS)
    return APP.build_model(resolve_config(APP, model="mnist_mlp"), splits)


def test_versions_count_up_and_stale_staging_folders_are_ignored(untrained_model, tmp_path):
    first = export_saved_model(untrained_model, APP, DIGITS, tmp_path)
    (tmp_path / ".export-stale").mkdir()
    second = export_saved_model(untrained_model, APP, DIGITS, tmp_path)
    assert (first.name, second.name) == ("1", "2")
    assert resolve_version_dir(str(tmp_path)) == second
    assert resolve_version_dir(str(first)) == first
    assert (first / "assets" / "labels.txt").read_text().split() == DIGITS
    served = tf.saved_model.load(str(second)).signatures["serving_default"](
        pixels=tf.zeros([2, 28, 28], tf.uint8))
    assert served["probabilities"].shape == (2, 10)
    assert [name.decode() for name in served["class_name"].numpy()] == [
        DIGITS[index] for index in served["class_id"].numpy()]


def test_a_failed_export_leaves_no_version_folder(untrained_model, tmp_path, monkeypatch):
    def crash_midway(module, path, signatures):
        tf.io.gfile.makedirs(f"{path}/variables")
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(untrained_model, APP, DIGITS, tmp_path / "exports")
    assert list((tmp_path / "exports").iterdir()) == []


def test_a_folder_without_an_export_says_what_to_give(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--model-dir .*: no SavedModel there"):
        resolve_version_dir(str(tmp_path))
