"""Training on several workers (`--distribute multiworker`, TF's MultiWorkerMirroredStrategy):
each process's role from TF_CONFIG, the custom step that runs the epochs (Keras 3's `fit` fails
under this strategy in TF 2.21: keras-team/keras#20585), and the checks and copies that let every
worker resume from the chief's run dir after one of them was killed."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from apps.core import rundir
from apps.core.errors import RunError
from apps.core.fit import batch_sums


@dataclasses.dataclass(frozen=True)
class Role:
    """This process's place in the run: `workers` processes train; the chief writes the run."""

    task_type: str = "local"
    task_index: int = 0
    workers: int = 1
    chief: bool = True


def cluster_role() -> Role:
    """This task's role from TF_CONFIG, or a RunError saying what to set. The chief is task
    "chief", or worker 0 when there is none."""
    text = os.environ.get("TF_CONFIG", "")
    try:
        tf_config = json.loads(text)
        cluster, task = tf_config["cluster"], tf_config["task"]
        task_type, task_index = task["type"], int(task["index"])
        return Role(task_type, task_index,
                    len(cluster.get("chief", [])) + len(cluster.get("worker", [])),
                    task_type == "chief" or (not cluster.get("chief") and task_type == "worker"
                                             and task_index == 0))
    except (ValueError, KeyError, TypeError) as error:
        raise RunError(
            f"--distribute multiworker reads the cluster from TF_CONFIG, which is "
            f"{'unset' if not text else 'not valid (' + str(error) + ')'}. Set it on every "
            f"worker, e.g. TF_CONFIG='{{\"cluster\": {{\"worker\": [\"host1:12345\", "
            f"\"host2:12345\"]}}, \"task\": {{\"type\": \"worker\", \"index\": 0}}}}' (index 1 on "
            f"the second host).") from error


def distributed_epochs(strategy, app, config, name: str):
    """Epochs with a custom step under `strategy` (tf.GradientTape in `strategy.run`, the
    model's compiled optimizer), driving the same Keras callbacks as `fit`: they see one
    `on_train_batch_end` per epoch with the epoch's logs.

    The loss is the model's own `compute_loss`, as in Keras' `train_step`: the compiled loss for
    most models, the whole objective of the zoo's VAE and GANs. It is each replica's mean over
    its part of the batch, so its gradient is divided by the replicas in sync before the
    optimizer sums them."""

    def run_epochs(model, data, first_epoch, end_epoch, callbacks):
        def replica_step(inputs, targets):
            with tf.GradientTape() as tape:
                totals, loss = batch_sums(model, app, inputs, targets,
                                          model(inputs, training=True), True)
                scaled = loss / strategy.num_replicas_in_sync
            gradients = tape.gradient(scaled, model.trainable_variables)
            model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return totals

        @tf.function
        def train_step(inputs, targets):
            totals = strategy.run(replica_step, args=(inputs, targets))
            return {key: strategy.reduce("SUM", value, axis=None) for key, value in totals.items()}

        @tf.function
        def evaluate_step(inputs, targets):
            return batch_sums(model, app, inputs, targets, model(inputs, training=False),
                              False)[0]

        def epoch_logs(dataset, step, prefix=""):
            totals = {}
            for inputs, targets in dataset:  # validation: every worker alone, weights are equal
                for key, value in step(inputs, targets).items():
                    totals[key] = totals.get(key, 0.0) + float(value)
            count = totals.pop("count")
            return {f"{prefix}{key}": value / count for key, value in totals.items()}

        callback_list = keras.callbacks.CallbackList(callbacks, model=model)
        model.stop_training = False
        callback_list.on_train_begin()
        first_epoch = model._initial_epoch or first_epoch  # set by BackupAndRestore, as in `fit`
        for epoch in range(first_epoch, end_epoch):
            try:  # a peer that stopped aborts the collectives of training and of callbacks alike
                callback_list.on_epoch_begin(epoch)
                logs = epoch_logs(_distributed(data[0], strategy), train_step)
                callback_list.on_train_batch_end(0, logs)
                logs.update(epoch_logs(data[1], evaluate_step, "val_"))
                callback_list.on_epoch_end(epoch, logs)
            except tf.errors.UnavailableError as error:
                raise RunError(
                    f"[{name}] lost a worker in epoch {epoch + 1}: "
                    f"{str(error).splitlines()[0][:200]}. The run dir keeps every finished epoch: "
                    f"run the same command on every worker again to resume.") from error
            print(f"[{name}] epoch {epoch + 1}/{end_epoch}: " + ", ".join(
                f"{key}={value:.4f}" for key, value in logs.items()), flush=True)
            if model.stop_training:
                break
        model.optimizer.finalize_variable_values(model.trainable_variables)  # as `fit` ends:
        callback_list.on_train_end()  # with --ema-momentum, the weights' average

    return run_epochs


def check_workers_agree(strategy, run_dir: Path, name: str) -> None:
    """Refuses to start when the workers hold different resume states (they would wait on each
    other forever): a worker that cannot read the chief's --run-dir would start afresh. Called
    before any variable exists, as creating one already waits on every worker."""
    epochs = len(rundir.read_history(run_dir / "history.csv"))
    total = strategy.reduce("SUM", strategy.run(tf.function(lambda: tf.constant(float(epochs)))),
                            axis=None)
    if float(total) != epochs * strategy.num_replicas_in_sync:
        raise RunError(
            f"[{name}] would resume after epoch {epochs}, the workers on average after epoch "
            f"{float(total) / strategy.num_replicas_in_sync:g}: to resume, every worker must read "
            f"the chief's --run-dir (a shared folder); or start afresh with a new --run-dir.")


def copy_resume_state(run_dir: Path, private_dir: Path) -> None:
    """Copies what `fit_phases` resumes from (history, phase markers, backups, best weights) from
    the chief's run dir into a worker's private folder, so every worker restores the same epoch
    and weights while only the chief writes the run dir."""
    for path in run_dir.glob("*") if run_dir.is_dir() else ():
        if path.name in ("history.csv", rundir.BEST_WEIGHTS) or path.name.startswith("phase_"):
            shutil.copy2(path, private_dir / path.name)
        elif path.name.startswith("backup_"):
            shutil.copytree(path, private_dir / path.name)


def _distributed(dataset: tf.data.Dataset, strategy) -> tf.distribute.DistributedDataset:
    """Every worker reads the data and keeps its share of each global batch (DATA sharding: the
    data are in memory, not in files that could be split between workers)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


