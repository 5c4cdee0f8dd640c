"""`train()`: a killed run resumes, a finished one is kept, a diverging one stops clearly, the
same run goes over two devices with MirroredStrategy, each phase traces its step once, and
TensorBoard logs each epoch."""

import dataclasses
import json
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from apps import get_app
from apps.core import RunError, resolve_config, rundir, train
from apps.core.callbacks import BestWeightsCheckpoint
from apps.core.runner import resolve_run_dir
from tests.conftest import REPO_ROOT, cli_in_process, read_json, run_python

APP = get_app("mnist")


def _history_epochs(run_dir):
    history = run_dir / "history.csv"
    rows = history.read_text().split()[1:] if history.exists() else []
    return [int(row.split(",")[0]) for row in rows]


@pytest.mark.long
def test_killed_run_resumes_from_the_last_finished_epoch_and_is_then_kept(tmp_path, capsys):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "apps", "mnist", "train", "--data", "sample", "--model",
               "mnist_mlp", "--explain-examples", "0", "--epochs", "6", "--max-examples",
               "2000", "--backup-seconds", "0",  # a backup every epoch, however short
               "--run-dir", str(run_dir), "--export-dir", str(tmp_path / "exports")]
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

    status, _, error = cli_in_process(capsys, *command[3:-4], "--epochs", "7", *command[-4:])
    assert status == 2
    assert "interrupted run with other options (epochs)" in error

    status, output, error = cli_in_process(capsys, *command[3:])  # resumed in this process
    assert status == 0, error
    assert _history_epochs(run_dir) == list(range(6))
    assert f"Epoch {len(finished_before_kill) + 1}/6" in output
    assert "Epoch 1/6" not in output
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["resumed"] is True and metrics["epochs_trained"] == 6

    with pytest.raises(RunError, match="holds a finished run"):
        train(APP, resolve_config(APP, data="sample", model="mnist_mlp", epochs=6,
                                  max_examples=2000, run_dir=str(run_dir),
                                  export_dir=str(tmp_path / "exports")))


@pytest.mark.parametrize("seconds,backed_up", [(0, [False, True, True]), (3600, [False] * 3)])
def test_backups_are_written_at_most_every_backup_seconds(seconds, backed_up, run_paths,
                                                          tmp_path):
    """With --backup-seconds 0 every epoch's end writes the backup (seen at the next epoch's
    end: the caller's callbacks run before it); with an hour, none in a 3-epoch run of seconds.
    The best weights reach their file by the end either way."""
    backup, seen = tmp_path / "run" / "backup_head" / "training_metadata.json", []

    class BackupSeen(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(backup.exists())

    train(APP, resolve_config(APP, data="sample", model="mnist_mlp", epochs=3, max_examples=500,
                              patience=3, backup_seconds=seconds, **run_paths),
          callbacks=(BackupSeen(),))
    assert seen == backed_up
    assert (tmp_path / "run" / rundir.BEST_WEIGHTS).exists()


def test_best_weights_kept_in_memory_are_written_when_the_clock_says_and_training_goes_on(
        tmp_path):
    """An improvement in an epoch that writes nothing is kept in memory; the next epoch the
    clock marks writes it (not that epoch's worse weights) and leaves the model as it was."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    class Clock:
        def due(self, epoch):
            return epoch == 1

    best = BestWeightsCheckpoint(model, tmp_path / "best.weights.h5", Clock())
    model.set_weights([np.ones((2, 1)), np.zeros(1)])
    best.on_epoch_end(0, {"val_loss": 1.0})  # better, not due: in memory only
    assert not (tmp_path / "best.weights.h5").exists()
    model.set_weights([np.full((2, 1), 5.0), np.zeros(1)])
    best.on_epoch_end(1, {"val_loss": 2.0})  # worse, due: epoch 0's weights written
    np.testing.assert_array_equal(model.get_weights()[0], np.full((2, 1), 5.0))
    model.load_weights(tmp_path / "best.weights.h5")
    np.testing.assert_array_equal(model.get_weights()[0], np.ones((2, 1)))


def test_a_run_stopped_by_its_data_before_training_leaves_no_run_folders(tmp_path, monkeypatch,
                                                                          capsys):
    monkeypatch.chdir(tmp_path)  # the default run dir, runs/mnist/<time stamp>, is made here
    status, _, error = cli_in_process(capsys, "mnist", "train", "--data", str(tmp_path / "none"),
                                      "--export-dir", str(tmp_path / "exports"))
    assert status == 2 and str(tmp_path / "none") in error, error
    assert not (tmp_path / "runs").exists()


def test_an_interrupted_run_from_before_a_new_option_resumes_with_its_default(tmp_path):
    """A run saved before an option existed ran with that option's default: it resumes, and a
    changed value of an option it saved still refuses to."""
    config = resolve_config(APP, data="sample", model="mnist_mlp", run_dir=str(tmp_path))
    rundir.write_config(tmp_path / "config.json", APP, config)
    saved = read_json(tmp_path / "config.json")
    del saved["options"]["muon_adam_lr_ratio"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert resolve_run_dir(APP, config) == (tmp_path, True)
    with pytest.raises(RunError, match=r"other options \(epochs\)"):
        resolve_run_dir(APP, dataclasses.replace(config, epochs=config.epochs + 1))

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


def test_cache_features_needs_a_pretrained_backbone(run_paths):
    with pytest.raises(RunError, match="--cache-features: model mnist_mlp has no head on pooled features"):
        train(APP, resolve_config(APP, data="sample", model="mnist_mlp", cache_features=True,
                                  **run_paths))


MIRRORED_ON_TWO_CPUS = """
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from apps import APP_NAMES, get_app
from apps.cli import main
sys.exit(main(APP_NAMES, get_app, sys.argv[1:]))
"""


@pytest.mark.long
@pytest.mark.full_tier  # a GPU machine's path, simulated in a process of its own: about 15 s
def test_mirrored_strategy_trains_over_two_logical_devices(tmp_path):
    result = run_python(MIRRORED_ON_TWO_CPUS, "mnist", "train", "--data", "sample", "--model",
                        "mnist_mlp", "--epochs", "2", "--distribute", "mirrored",
                        "--explain-examples", "0",
                        "--run-dir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert metrics["device"] == "mirrored over 2 cpu"
    assert "--steps-per-execution 16 -> 1 under MirroredStrategy" in result.stdout
    history = rundir.read_history(tmp_path / "run" / "history.csv")
    assert history[1]["loss"] < history[0]["loss"]  # the replicas' gradients were applied


def test_a_small_memory_budget_caches_in_files_and_the_run_still_trains(tmp_path, run_paths):
    """MNIST's 7,200 training digits take about 5.7 MB decoded: over a 1 MB budget they are cached
    in a file in the run dir; the 0.6 MB validation split fits and stays in memory."""
    metrics = train(APP, resolve_config(APP, data="sample", model="mnist_mlp", epochs=2,
                                        cache_budget_mb=1, **run_paths))
    run_dir = tmp_path / "run"
    assert metrics["cache"] == {"train": str(run_dir / "cache_train"), "validation": "memory",
                                "test": str(run_dir / "cache_test")}
    assert list(run_dir.glob("cache_train*.index")) and list(run_dir.glob("cache_test*.index"))
    assert metrics["epochs_trained"] == 2 and metrics["examples"]["train"] == 7200


def test_without_a_gpu_augmentation_runs_in_turn_with_the_training_step():
    """On a CPU the training step uses every core; the augmented training batches are made one
    at a time when the step asks (no parallel map, no prefetch, none that tf.data would add), and
    still augmented. Batches without augmentation are prefetched."""
    import tensorflow as tf

    from apps.core.pipeline import input_pipeline

    def dataset_ops(dataset):
        graph = tf.compat.v1.GraphDef.FromString(dataset._as_serialized_graph().numpy())
        return {node.op for node in graph.node}

    if tf.config.list_logical_devices("GPU"):
        pytest.skip("with a GPU the augmentation maps in parallel, ahead of the step")
    examples = tf.data.Dataset.from_tensor_slices((tf.zeros([8, 3]), tf.range(8)))
    augmented = input_pipeline(examples, 4, seed=0,
                               augmentation=lambda x, training: x + tf.random.uniform([4, 3], 1, 2))
    operations = dataset_ops(augmented)
    assert "MapDataset" in operations
    assert not operations & {"ParallelMapDataset", "ParallelMapDatasetV2", "PrefetchDataset"}
    options = augmented.options()
    assert options.autotune.enabled is False
    assert options.experimental_optimization.inject_prefetch is False
    assert options.experimental_optimization.map_parallelization is False
    assert all(batch.numpy().min() >= 1 for batch, _ in augmented)
    assert "PrefetchDataset" in dataset_ops(input_pipeline(examples, 4, seed=0))


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_each_phase_traces_its_training_step_once(steps_per_execution):
    """The optimizer's and the metrics' variables exist before `fit` traces the step: a step that
    created them would be traced again (Python's `train_step` runs once per trace), which cost
    the sentiment Transformer 2 s and the U-Net 3-7 s of their first epoch."""
    import tensorflow as tf

    import zoo
    from apps.core.fit import compile_model, keras_epochs

    config = resolve_config(APP, model="mnist_mlp", steps_per_execution=steps_per_execution)
    model = zoo.build("mnist_mlp")
    compile_model(model, APP, config, 1e-3, total_steps=8)
    traces = []

    def counted_train_step(data, original=model.train_step):
        traces.append(1)
        return original(data)

    model.train_step = counted_train_step
    examples = tf.data.Dataset.from_tensor_slices(
        (tf.random.uniform([32, 28, 28, 1]), tf.range(32) % 10)).batch(8)
    keras_epochs(model, (examples, examples), 0, 2, callbacks=[])
    assert len(traces) == 1


def test_tensorboard_logs_each_epoch_and_builds_no_batch_summaries(run_paths, monkeypatch):
    """The run's TensorBoard logs hold the loss and the metric of each epoch, for training and
    for validation; no summary is built for a batch (Keras builds them and drops them when it
    logs once an epoch)."""
    import tensorflow as tf

    built = []

    class CountedSummaries:  # TensorBoard's `summary` module, its scalars counted
        def __init__(self, module):
            self.module = module

        def __getattr__(self, name):
            return getattr(self.module, name)

        def scalar(self, name, *args, **kwargs):
            built.append(name)
            return self.module.scalar(name, *args, **kwargs)

    summary_module = keras.callbacks.TensorBoard.summary.fget
    monkeypatch.setattr(keras.callbacks.TensorBoard, "summary",
                        property(lambda callback: CountedSummaries(summary_module(callback))))
    train(APP, resolve_config(APP, data="sample", model="mnist_mlp", epochs=2, max_examples=500,
                              **run_paths))
    assert "epoch_loss" in built and not [name for name in built if name.startswith("batch_")], \
        sorted(set(built))
    for side in ("train", "validation"):
        logged = [(value.tag, event.step)
                  for path in (REPO_ROOT / run_paths["run_dir"] / "logs" / side).iterdir()
                  for event in tf.compat.v1.train.summary_iterator(str(path))
                  for value in event.summary.value]
        assert {("epoch_loss", 0), ("epoch_loss", 1), ("epoch_accuracy", 0),
                ("epoch_accuracy", 1)} <= set(logged), (side, logged)
