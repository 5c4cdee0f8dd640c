"""Every registered model: built, called, config and .keras round-trips, and trained on JAX.

Parametrized over `zoo.list_models()`, so a new builder is tested without a new test.
"""

import json

import keras
import numpy as np
import pytest

import zoo
from tests.conftest import run_python


def example_inputs(model: keras.Model, batch_size: int = 3, steps: int = 12):
    """A random batch matching the model's inputs (undefined steps get `steps`): one array, or a
    dict by input name for models with several (a padding mask is all ones)."""
    rng = np.random.default_rng(0)
    batch = {}
    for spec in model.inputs:
        shape = [batch_size] + [steps if size is None else size for size in spec.shape[1:]]
        name = spec.name
        if "mask" in name:
            batch[name] = np.ones(shape, dtype=spec.dtype)
        elif "int" in spec.dtype:
            batch[name] = rng.integers(0, 50, size=shape).astype(spec.dtype)
        else:
            batch[name] = rng.random(shape, dtype=np.float32)
    return next(iter(batch.values())) if len(batch) == 1 else batch


def expected_output_shape(name: str) -> tuple:
    defaults = zoo.describe(name)["defaults"]
    width = (defaults.get("horizon") or defaults.get("num_classes") or defaults.get("num_outputs")
             or 1)
    return (3, width)


@pytest.mark.parametrize("name", zoo.list_models())
def test_builds_with_its_name_and_right_output_shape(name):
    model = zoo.build(name)
    assert model.name == name
    assert not model.compiled
    assert tuple(model(example_inputs(model)).shape) == expected_output_shape(name)


@pytest.mark.parametrize("name", zoo.list_models())
def test_config_round_trip_gives_identical_outputs(name):
    model = zoo.build(name)
    inputs = example_inputs(model)
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(inputs), model(inputs), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", zoo.list_models())
def test_keras_file_round_trip_gives_identical_outputs(name, tmp_path):
    model = zoo.build(name)
    inputs = example_inputs(model)
    model.save(tmp_path / f"{name}.keras")
    reloaded = keras.saving.load_model(tmp_path / f"{name}.keras")
    np.testing.assert_allclose(reloaded(inputs), model(inputs), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,options", [
    ("mlp", {"input_shape": (8,), "hidden_units": (16, 8, 4), "num_outputs": 1,
             "dropout_rate": 0.2, "batch_norm": True}),
    ("lstm_forecaster", {"units": 16, "num_layers": 3, "num_features": 3, "horizon": 6,
                         "steps": 24}),
    ("resnet_cnn", {"input_shape": (64, 64, 1), "num_classes": 5, "stage_filters": (8, 16)}),
    ("transformer_classifier", {"vocab_size": 100, "sequence_length": 16, "num_layers": 2,
                                "num_classes": 4}),
])
def test_options_shape_the_model(name, options):
    model = zoo.build(name, **options)
    outputs = model(example_inputs(model))
    width = options.get("horizon") or options.get("num_classes") or options.get("num_outputs")
    assert tuple(outputs.shape) == (3, width)


def test_transformer_ignores_padding():
    """Five tokens padded to 16 classify exactly as the same five tokens in a 5-step model."""
    padded_model = zoo.build("transformer_classifier", vocab_size=100, sequence_length=16)
    short_model = zoo.build("transformer_classifier", vocab_size=100, sequence_length=5)
    short_model.set_weights([
        weight[:5] if weight.shape != target.shape else weight
        for weight, target in zip(padded_model.get_weights(), short_model.get_weights())
    ])
    tokens = np.array([[5, 8, 13, 21, 34]], dtype="int32")
    padded = np.pad(tokens, [(0, 0), (0, 11)])
    np.testing.assert_allclose(padded_model(padded), short_model(tokens), atol=1e-5)


# Cheaper configurations of the pretrained heads: the builder's code and the step's mechanics are
# the same, and JAX on the CPU compiles a MobileNetV2 or MiniLM for ten to twenty seconds each.
CHEAP_OPTIONS = {"image_transfer": {"backbone": "convnet", "input_shape": (32, 32, 3)},
                 "text_transfer": {"sequence_length": 16}}

JAX_TRAIN_STEP = """
import json, tempfile, keras, numpy as np, zoo
from tests.conftest import write_tiny_bert_preset
from tests.zoo.test_models import CHEAP_OPTIONS, example_inputs
assert keras.backend.backend() == "jax"
CHEAP_OPTIONS["text_transfer"]["backbone"] = write_tiny_bert_preset(
    tempfile.mkdtemp(), [f"word{index}" for index in range(60)])  # example ids go up to 50
losses = {}
for name in zoo.list_models():
    model = zoo.build(name, **CHEAP_OPTIONS.get(name, {}))
    inputs = example_inputs(model)
    outputs = model(inputs)
    targets = np.zeros(outputs.shape, dtype="float32")
    model.compile(optimizer="adam", loss="mse")
    before = [weight.copy() for weight in model.get_weights()]
    losses[name] = float(model.train_on_batch(inputs, targets))
    changed = any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert changed, name
print(json.dumps(losses))
"""


def test_every_model_trains_a_step_on_the_jax_backend():
    result = run_python(JAX_TRAIN_STEP, env={"KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr[-3000:]
    losses = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(losses) == set(zoo.list_models())
    assert all(np.isfinite(loss) for loss in losses.values())
