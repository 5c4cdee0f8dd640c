"""`--distribute multiworker`: data-parallel training across processes or hosts.

The cluster and this process's place in it come from `TF_CONFIG` (as Kubeflow's TFJob and
Vertex AI set it), and `tf.distribute.MultiWorkerMirroredStrategy` all-reduces the gradients.
Keras 3's `fit` fails under that strategy in TF 2.21 (keras-team/keras#20585), so the training
step here is a custom loop: Keras layers and optimizer, `tf.GradientTape`, `strategy.run`, and the
loss averaged over the global batch. Every worker keeps identical weights; the chief (task
"chief", or worker 0 when there is none) alone evaluates, reports and exports, through the same
code as a single-process run. Other workers write to a temporary folder that they delete.

Not supported here: models with a pretrained backbone (the two-phase fine-tuning runs on one
machine, or with `--distribute mirrored`), and resuming a killed multi-worker run.
"""

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from apps import report
from apps.app import App
from apps.finetune import find_backbone
from apps.runner import (RunError, compile_model, finish_run, input_pipeline, load_splits,
                         resolve_run_dir, training_augmentation)


def cluster_role() -> tuple[str, int, int, bool]:
    """(task type, task index, number of workers, whether this task is the chief) from TF_CONFIG,
    or a RunError saying what to set. The chief is task "chief", or worker 0 when there is none."""
    text = os.environ.get("TF_CONFIG", "")
    try:
        tf_config = json.loads(text)
        cluster, task = tf_config["cluster"], tf_config["task"]
        workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
        task_type, task_index = task["type"], int(task["index"])
        chief = task_type == "chief" or (not cluster.get("chief") and task_type == "worker"
                                         and task_index == 0)
        role = (task_type, task_index, workers, chief)
    except (ValueError, KeyError, TypeError) as error:
        raise RunError(
            f"--distribute multiworker reads the cluster from TF_CONFIG, which is "
            f"{'unset' if not text else 'not valid (' + str(error) + ')'}. Set it on every "
            f"worker, e.g. TF_CONFIG='{{\"cluster\": {{\"worker\": [\"host1:12345\", "
            f"\"host2:12345\"]}}, \"task\": {{\"type\": \"worker\", \"index\": 0}}}}' (index 1 on "
            f"the second host).") from error
    return role


def weights_digest(model) -> str:
    """A short SHA-256 of every weight's bytes: equal on workers whose weights are identical."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]


def _distributed(dataset: tf.data.Dataset, strategy) -> tf.distribute.DistributedDataset:
    """Every worker reads the data and keeps its share of each global batch (DATA sharding: the
    data are in memory, not in files that could be split between workers)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def _train_loop(app: App, config, strategy, model, data: tuple, steps_per_epoch: int, name: str):
    """Epochs of the custom training step; returns history rows (loss, accuracy for classifiers,
    the same on validation, epoch_seconds). Keeps the weights of the lowest validation loss and
    stops after `--patience` epochs without improvement, like the single-process run."""
    loss_function = keras.losses.get(app.loss)
    with strategy.scope():
        schedule = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, steps_per_epoch * config.epochs, alpha=0.01)
        optimizer = keras.optimizers.Adam(schedule)
        optimizer.build(model.trainable_variables)

    def replica_step(inputs, targets):
        with tf.GradientTape() as tape:
            outputs = model(inputs, training=True)
            per_example = loss_function(targets, outputs)
            loss = tf.nn.compute_average_loss(per_example)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return _sums(per_example, targets, outputs)

    def _sums(per_example, targets, outputs):
        sums = {"loss": tf.reduce_sum(per_example), "count": tf.cast(tf.size(per_example),
                                                                      tf.float32)}
        if app.is_classifier:
            predicted = tf.argmax(outputs, axis=-1, output_type=tf.int64)
            correct = tf.equal(predicted, tf.cast(tf.reshape(targets, [-1]), tf.int64))
            sums["correct"] = tf.reduce_sum(tf.cast(correct, tf.float32))
        return sums

    @tf.function
    def train_step(inputs, targets):
        sums = strategy.run(replica_step, args=(inputs, targets))
        return {key: strategy.reduce("SUM", value, axis=None) for key, value in sums.items()}

    @tf.function
    def evaluate_step(inputs, targets):
        outputs = model(inputs, training=False)
        return _sums(loss_function(targets, outputs), targets, outputs)

    def averages(totals, prefix=""):
        row = {f"{prefix}loss": totals["loss"] / totals["count"]}
        if "correct" in totals:
            row[f"{prefix}accuracy"] = totals["correct"] / totals["count"]
        return row

    history, best_loss, best_weights, waited = [], math.inf, None, 0
    train_data = _distributed(data[0], strategy)
    for epoch in range(config.epochs):
        started = time.perf_counter()
        totals = {}
        for inputs, targets in train_data:
            for key, value in train_step(inputs, targets).items():
                totals[key] = totals.get(key, 0.0) + value
        totals = {key: float(value) for key, value in totals.items()}
        seconds = time.perf_counter() - started
        validation = {}
        for inputs, targets in data[1]:  # each worker evaluates alone: the weights are equal
            for key, value in evaluate_step(inputs, targets).items():
                validation[key] = validation.get(key, 0.0) + value
        validation = {key: float(value) for key, value in validation.items()}
        row = {"epoch": epoch, **averages(totals), **averages(validation, "val_"),
               "epoch_seconds": seconds}
        history.append(row)
        print(f"[{name}] epoch {epoch + 1}/{config.epochs}: " + ", ".join(
            f"{key}={value:.4f}" for key, value in row.items() if key != "epoch"), flush=True)
        if row["val_loss"] < best_loss:
            best_loss, best_weights, waited = row["val_loss"], model.get_weights(), 0
        else:
            waited += 1
            if waited >= config.patience:
                break
    if best_weights is not None:
        model.set_weights(best_weights)
    return history


def train(app: App, config) -> dict:
    """Trains on every worker of the TF_CONFIG cluster; the chief evaluates, reports, exports and
    returns the metrics, the other workers return {}."""
    task_type, task_index, workers, chief = cluster_role()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before anything else starts TF
    name = f"{app.name} {task_type} {task_index}"
    run_dir, resuming = (resolve_run_dir(app, config) if chief
                         else (Path(tempfile.mkdtemp(prefix=f"{app.name}-worker-")), False))
    if resuming:
        raise RunError(f"--run-dir {run_dir} holds an interrupted run; multi-worker runs do not "
                       f"resume: choose a new --run-dir.")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        report.write_config(run_dir / "config.json", app, config)
        keras.utils.set_random_seed(config.seed)
        splits, sizes = load_splits(app, config)
        augmentation = training_augmentation(app, config)
        global_batch = config.batch_size * strategy.num_replicas_in_sync
        train_data = input_pipeline(splits.train, global_batch, config.seed, augmentation)
        validation_data = input_pipeline(splits.validation, config.batch_size)
        with strategy.scope():
            model = app.build_model(config, splits)
        if find_backbone(model) is not None:
            raise RunError(f"--distribute multiworker trains models from scratch; {config.model} "
                           f"has a pretrained backbone: fine-tune it with --distribute mirrored "
                           f"or none.")
        history = _train_loop(app, config, strategy, model, (train_data, validation_data),
                              math.ceil(sizes["train"] / global_batch), name)
        print(f"[{name}] of {workers}: weights sha256 {weights_digest(model)}", flush=True)
        if not chief:
            return {}
        report.write_history(run_dir / "history.csv", history)
        # Evaluation and export run on a copy outside the strategy, as in a single-process run.
        single = app.build_model(config, splits)
        single.set_weights(model.get_weights())
        compile_model(single, app, config, config.learning_rate, 1)
        test_data = input_pipeline(splits.test, config.batch_size)
        facts = {"device": f"multiworker over {workers} workers", "resumed": False,
                 "workers": workers}
        return finish_run(app, config, single, splits, sizes, run_dir, test_data, facts)
    finally:
        if not chief:
            shutil.rmtree(run_dir, ignore_errors=True)
