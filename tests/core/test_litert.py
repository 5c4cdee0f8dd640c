"""LiteRT export on models as built: which app graphs convert to built-in ops and run in the
LiteRT interpreter like the SavedModel, and a clear error for those that do not. (The MNIST
app's trained model is compared on its test split in tests/apps/test_mnist.py.)"""

import numpy as np
import pytest
import tensorflow as tf

from apps import get_app
from apps.core import DataSplits, RunError
from apps.core.litert import export_litert
from tests.core.test_server import export_untrained


def splits_of(inputs, targets):
    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets))
    return DataSplits(train=dataset, test=dataset, source="generated")


@pytest.mark.parametrize("app_name, options, inputs", [
    ("speech", {}, np.random.default_rng(0).normal(0, 0.1, (16, 16000)).astype("float32")),
    pytest.param("vision", {"model": "image_transfer", "backbone": "mobilenet_v2",
                            "weights": "none", "image_size": 32},
                 np.random.default_rng(0).integers(0, 256, (16, 45, 40, 3), dtype=np.uint8),
                 marks=pytest.mark.full_tier),  # about 11 s; speech converts in the fast tier
])
def test_speech_and_a_keras_applications_backbone_convert_and_agree(app_name, options, inputs,
                                                                   tmp_path):
    version_dir = export_untrained(app_name, tmp_path, inputs[:4], explained=False, **options)
    targets = np.zeros(len(inputs), np.int64)
    report = export_litert(get_app(app_name), version_dir, "float16",
                           splits_of(inputs, targets), max_examples=16)
    assert report["examples"] == 16 and report["same_class"] >= 0.9
    assert (version_dir / "model_float16.tflite").stat().st_size == report["tflite_bytes"]


@pytest.mark.parametrize("app_name, options, inputs, reason", [
    ("sentiment", {"model": "transformer_classifier"}, np.array(["a fine film", "a dull one"]),
     "'tf.StringLower' op is neither a custom op nor a flex op"),
    ("forecast", {"model_arg": ["units=4"]}, np.ones((2, 52, 1), np.float32),
     "failed to legalize operation 'tf.TensorListReserve'"),
])
def test_graphs_without_builtin_ops_are_refused_by_name(app_name, options, inputs, reason,
                                                        tmp_path):
    extra = ({"context": {"series": np.arange(60, dtype="float32")},
              "facts": {"split_steps": [40, 50]}} if app_name == "forecast" else {})
    version_dir = export_untrained(app_name, tmp_path, None if app_name == "forecast" else inputs,
                                   explained=False, **extra, **options)
    with pytest.raises(RunError, match="does not convert to LiteRT built-in ops") as error:
        export_litert(get_app(app_name), version_dir, "none",
                      splits_of(inputs, np.zeros((len(inputs), 4), np.float32)), 2)
    assert reason in str(error.value)
    assert not list(version_dir.glob("*.tflite"))
