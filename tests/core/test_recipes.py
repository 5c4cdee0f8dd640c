"""Training recipes: gradient clipping, schedules with warm-up, AdamW, label smoothing, `--config`
files, the learning-rate range test and hyperparameter search, each tested for its effect."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo  # (also registers the zoo GAN class for load_model)
from apps import get_app
from apps.core import RunError, resolve_config, train
from apps.core.fit import (
    SmoothedSparseCategoricalCrossentropy,
    learning_rate_schedule,
    make_optimizer,
    schedule_callbacks,
)
from tests.conftest import cli_in_process, read_json

APP = get_app("mnist")


def config(**options):
    return resolve_config(APP, **options)


def test_clipping_bounds_the_gradient_that_reaches_the_optimizer():
    weights = keras.Variable(np.zeros(100, "float32"))
    huge = [np.full(100, 1e3, "float32")]
    for clip_norm, expected in ((0.5, 0.5), (0.0, 1e4)):
        optimizer = make_optimizer(config(clip_norm=clip_norm), 1e-3)
        optimizer.build([weights])
        optimizer.apply_gradients(zip(huge, [weights]))
        first_moment = optimizer.variables[2]  # Adam's m = (1 - beta_1) * gradient after one step
        assert np.linalg.norm(first_moment.numpy()) == pytest.approx(0.1 * expected, rel=1e-4)


def test_schedules_change_the_learning_rate_as_stated():
    def rates(schedule, warmup=0, steps=(0, 50, 100, 300, 999)):
        lr = learning_rate_schedule(config(schedule=schedule, warmup_steps=warmup), 1e-2, 1000)
        return [float(lr(step)) for step in steps]

    cosine = rates("cosine", warmup=100)
    assert cosine[0] == 0 and cosine[1] == pytest.approx(5e-3) and cosine[2] == pytest.approx(1e-2)
    assert cosine[3] < 1e-2 and cosine[4] == pytest.approx(1e-4, rel=0.01)
    assert rates("constant", warmup=100)[2:] == pytest.approx([1e-2] * 3)
    assert rates("constant") == pytest.approx([1e-2] * 5)
    onecycle = rates("onecycle", steps=(0, 150, 300, 999))
    assert onecycle[0] == pytest.approx(4e-4) and onecycle[1] < onecycle[2] == pytest.approx(1e-2)
    assert onecycle[3] < 1e-5
    assert learning_rate_schedule(config(schedule="plateau"), 1e-2, 1000) == 1e-2


def test_plateau_divides_the_rate_when_validation_stalls():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=make_optimizer(config(schedule="plateau"), 1e-9),
                  loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 4), dtype=np.float32), rng.integers(0, 2, 32)
    model.fit(x, y, validation_data=(x, y), epochs=6, verbose=0,
              callbacks=schedule_callbacks(config(schedule="plateau")))
    assert float(model.optimizer.learning_rate) < 1e-9 / 4


def test_weight_decay_shrinks_weights_with_adamw():
    weights = keras.Variable(np.ones(10, "float32"))
    optimizer = make_optimizer(config(weight_decay=0.1), 1e-2)
    optimizer.apply_gradients([(np.zeros(10, "float32"), weights)])
    np.testing.assert_allclose(weights.numpy(), 1 - 1e-2 * 0.1, rtol=1e-6)
    assert make_optimizer(config(), 1e-2).weight_decay is None


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_the_fused_adam_step_trains_as_keras_adam_does(weight_decay):
    """The runner's Adam (one `ResourceApplyAdam` op a variable) against Keras' Adam / AdamW:
    the same weights after 20 steps of `fit` with a decaying rate and clipping, Embedding's
    sparse gradients included."""
    rng = np.random.default_rng(0)
    words, labels = rng.integers(0, 50, (64, 6)), rng.integers(0, 3, 64)

    def trained(optimizer):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(50, 8),
                                  keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(3)])
        model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(words, labels, batch_size=16, epochs=5, verbose=0)
        return model.get_weights()

    schedule = keras.optimizers.schedules.CosineDecay(1e-2, 20)
    options = {"beta_1": 0.8, "global_clipnorm": 1.0}
    fused = trained(make_optimizer(config(weight_decay=weight_decay, adam_beta_1=0.8,
                                          clip_norm=1.0), schedule))
    reference = trained(keras.optimizers.AdamW(schedule, weight_decay=weight_decay, **options)
                        if weight_decay else keras.optimizers.Adam(schedule, **options))
    assert not np.allclose(fused[0], trained(keras.optimizers.Adam(schedule, beta_1=0.9))[0])
    for ours, keras_weights in zip(fused, reference):
        np.testing.assert_allclose(ours, keras_weights, rtol=1e-5, atol=1e-6)
    variable, optimizer = keras.Variable(np.ones(3, "float32")), make_optimizer(config(), 1e-2)
    optimizer.build([variable])
    step = tf.function(lambda: optimizer.apply([tf.ones(3)], [variable])).get_concrete_function()
    assert "ResourceApplyAdam" in {op.type for op in step.graph.get_operations()}


def test_muon_orthogonalises_hidden_and_attention_weights_and_leaves_the_rest_to_adamw():
    # the zoo's own GPT, so that the output layer's name in the zoo and the exclusion agree
    model = zoo.build("gpt", vocab_size=50, sequence_length=4, embedding_dim=64,
                      feed_forward_dim=128, num_layers=1)
    optimizer = make_optimizer(config(optimizer="muon", muon_adam_lr_ratio=2.0), 1e-2)
    assert isinstance(optimizer, keras.optimizers.Muon)
    variables = model.trainable_variables
    gradients = {variable.path: np.random.default_rng(index).normal(size=variable.shape)
                 .astype("float32") for index, variable in enumerate(variables)}
    before = {variable.path: variable.numpy() for variable in variables}
    optimizer.apply_gradients([(gradients[variable.path], variable) for variable in variables])
    steps = {variable.path: variable.numpy() - before[variable.path] for variable in variables}
    for adam in ("token_embedding/embeddings", "logits/kernel",  # Adam's first step: its lr,
                 "decoder_0/self_attention/query/bias"):  # 2e-2, each (2-D: [heads, head size])
        assert np.mean(np.isclose(np.abs(steps[adam]), 2e-2, rtol=0.01)) > 0.99  # (epsilon aside)
    attention = "decoder_0/self_attention/"
    for hidden, matrix in [("decoder_0/feedforward_intermediate_dense/kernel", (64, 128)),
                           (attention + "value/kernel", (64, 64)),
                           (attention + "attention_output/kernel", (64, 64))]:
        singular = np.linalg.svd(steps[hidden].reshape(matrix), compute_uv=False)
        gradient_singular = np.linalg.svd(gradients[hidden].reshape(matrix), compute_uv=False)
        assert singular.max() / singular.min() < 3 < gradient_singular.max() / gradient_singular.min()


def test_label_smoothing_spreads_the_targets():
    probabilities = np.array([[1 - 2e-7, 1e-7, 1e-7]], "float32")
    sharp = float(SmoothedSparseCategoricalCrossentropy(0.0)(np.array([0]), probabilities))
    smoothed = float(SmoothedSparseCategoricalCrossentropy(0.3)(np.array([0]), probabilities))
    assert sharp < 1e-5 and smoothed > 1.0
    expected = keras.losses.sparse_categorical_crossentropy(np.array([1]), probabilities)
    assert float(SmoothedSparseCategoricalCrossentropy(0.0)(np.array([1]), probabilities)) == (
        pytest.approx(float(expected[0]), rel=1e-5))


def test_recipe_options_are_checked(run_paths):
    forecast = get_app("forecast")
    with pytest.raises(RunError, match="--label-smoothing 0.1: the forecast app is no classifier"):
        train(forecast, resolve_config(forecast, label_smoothing=0.1, **run_paths))
    with pytest.raises(RunError, match="--schedule plateau takes no --warmup-steps"):
        train(APP, config(schedule="plateau", warmup_steps=10, **run_paths))
    with pytest.raises(RunError, match="--ema-momentum 1.0 .* momentum lie in \\[0, 1\\)"):
        train(APP, config(ema_momentum=1.0, **run_paths))
    with pytest.raises(RunError, match="--muon-adam-lr-ratio 0.0: .* the ratio above 0"):
        train(APP, config(optimizer="muon", muon_adam_lr_ratio=0.0, **run_paths))


def test_ema_ends_training_on_the_weights_moving_average(run_paths):
    """With --ema-momentum, Keras' optimizer keeps the weights' average and `fit` leaves it in
    the model: a GAN's saved weights are the average, not the last step's. A model whose best
    epoch is chosen by validation loss refuses it (its best weights would replace the average)."""
    generative = get_app("generative")
    metrics = train(generative, resolve_config(generative, model="cgan", epochs=1,
                                               max_examples=256, judge_epochs=0,
                                               ema_momentum=0.9, **run_paths))
    model = keras.saving.load_model(Path(run_paths["run_dir"]) / "model.keras")
    average = model.optimizer._model_variables_moving_average
    assert len(average) == len(model.trainable_weights) and metrics["epochs_trained"] == 1
    for weight, averaged in zip(model.trainable_weights, average):
        np.testing.assert_allclose(weight.numpy(), averaged.numpy(), atol=1e-6)
    with pytest.raises(RunError, match="--ema-momentum 0.9: mnist_mlp keeps the weights of its "
                                       "best epoch"):
        train(APP, config(model="mnist_mlp", epochs=1, max_examples=200, ema_momentum=0.9,
                          run_dir=str(Path(run_paths["run_dir"]) / "refused")))


def test_a_runs_config_file_reproduces_it_and_flags_override_files(capsys, tmp_path):
    recipe = ["--model", "mnist_mlp", "--epochs", "1", "--learning-rate", "0.002",
              "--schedule", "onecycle", "--warmup-steps", "20", "--label-smoothing", "0.1",
              "--clip-norm", "1.0", "--weight-decay", "0.01", "--max-examples", "1000",
              "--explain-examples", "0", "--export-dir", str(tmp_path / "exports")]
    first, _, err = cli_in_process(capsys, "mnist", "train", *recipe, "--data", "sample",
                                   "--run-dir", str(tmp_path / "first"))
    assert first == 0, err
    again, _, err = cli_in_process(capsys, "mnist", "train", "--config",
                                   str(tmp_path / "first" / "config.json"),
                                   "--run-dir", str(tmp_path / "again"))
    assert again == 0, err
    options = [read_json(tmp_path / name / "config.json")["options"] for name in ("first", "again")]
    assert {**options[0], "run_dir": ""} == {**options[1], "run_dir": ""}
    accuracies = [read_json(tmp_path / name / "metrics.json")["test_accuracy"]
                  for name in ("first", "again")]
    assert accuracies[1] == pytest.approx(accuracies[0], abs=0.01)

    yaml_file = tmp_path / "recipe.yaml"
    yaml_file.write_text("model: mnist_mlp\nepochs: 3\nschedule: constant\n")
    status, _, err = cli_in_process(capsys, "mnist", "train", "--config", str(yaml_file),
                                    "--epochs", "1", "--data", "sample", "--max-examples", "1000",
                                    "--explain-examples", "0", "--run-dir",
                                    str(tmp_path / "yaml"), "--export-dir",
                                    str(tmp_path / "exports"))
    assert status == 0, err
    saved = read_json(tmp_path / "yaml" / "config.json")["options"]
    assert (saved["epochs"], saved["schedule"], saved["model"]) == (1, "constant", "mnist_mlp")


@pytest.mark.parametrize("content,message", [
    ("epoch: 3\n", "unknown option 'epoch'. Options: model, data, epochs"),
    ("epochs: ten\n", "option 'epochs' must be a whole number, not 'ten'."),
    ("schedule: linear\n", "option 'schedule' must be one of cosine, constant, onecycle, plateau"),
    ("- epochs\n", "expected a mapping of option names to values."),
])
def test_bad_config_files_are_one_line_errors(capsys, tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    status, _, err = cli_in_process(capsys, "mnist", "train", "--config", str(path))
    assert status == 2
    assert err.strip().startswith(f"python -m apps mnist train: error: --config {path}: {message}")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.floor
def test_lr_find_suggests_a_rate_the_default_model_trains_to_its_floor_with(capsys, tmp_path):
    status, out, err = cli_in_process(capsys, "mnist", "lr-find", "--data", "sample",
                                      "--run-dir", str(tmp_path / "lr_find"))
    assert status == 0, err
    found = read_json(tmp_path / "lr_find" / "lr_find.json")
    assert (tmp_path / "lr_find" / "lr_find.png").stat().st_size > 0
    rate = found["suggested_learning_rate"]
    assert f"suggested --learning-rate {rate:.2g}" in out
    losses = found["smoothed_losses"]
    assert min(losses) < 0.8 * losses[0]  # the range covers rates that learn
    assert 1e-5 < rate < 1e-1
    metrics = train(APP, config(data="sample", learning_rate=rate,
                                run_dir=str(tmp_path / "run"),
                                export_dir=str(tmp_path / "exports")))
    assert metrics["test_accuracy"] >= 0.98, (rate, metrics["test_accuracy"])


def test_tune_runs_its_trials_resumes_and_writes_a_config_that_trains(capsys, tmp_path):
    tune_dir = tmp_path / "tune"
    search = ["mnist", "tune", "--model", "mnist_mlp", "--epochs", "2", "--data", "sample",
              "--max-examples", "2000", "--run-dir", str(tune_dir)]
    status, _, err = cli_in_process(capsys, *search, "--max-trials", "2")
    assert status == 0, err
    first_trials = {path.name: path.stat().st_mtime for path in (tune_dir / "trials").iterdir()}
    # The same command with a larger budget picks the search up: two trials kept, one more run.
    status, out, err = cli_in_process(capsys, *search, "--max-trials", "3")
    assert status == 0, err
    assert "Reloading Tuner" in out
    assert all((tune_dir / "trials" / name).stat().st_mtime == mtime
               for name, mtime in first_trials.items())
    trials = sorted(path.name for path in (tune_dir / "trials").iterdir())
    assert len(trials) == 3
    assert all((tune_dir / "trials" / name / "metrics.json").exists() for name in trials)
    best = read_json(tune_dir / "best_config.json")
    assert best["model"] == "mnist_mlp" and "run_dir" not in best
    assert any(arg.startswith("hidden_units=") for arg in best["model_arg"])
    report = (tune_dir / "TUNE_REPORT.md").read_text().splitlines()
    assert report[2].startswith("| trial | learning_rate | batch_size | schedule")
    assert len(report) == 4 + 3
    status, _, err = cli_in_process(capsys, "mnist", "train", "--config",
                                    str(tune_dir / "best_config.json"), "--epochs", "1",
                                    "--run-dir", str(tmp_path / "best"), "--export-dir",
                                    str(tmp_path / "exports"))
    assert status == 0, err
    assert json.loads((tmp_path / "best" / "config.json").read_text())["options"][
        "learning_rate"] == best["learning_rate"]
