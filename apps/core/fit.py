"""How a run fits its model: one loop over the training phases, one optimizer factory, one set of
callbacks (early stopping, best weights, history, backup), and two ways to run the epochs:
Keras' `fit`, or a custom step for `MultiWorkerMirroredStrategy`, under which Keras 3's `fit`
fails in TF 2.21 (keras-team/keras#20585). Both use the model's `compute_loss` and the app's
metrics.

Phase "head" trains for `--epochs` (a pretrained backbone frozen); phase "fine_tune" follows for
`--fine-tune-epochs` with the backbone's top `--fine-tune` layers unfrozen at
`--fine-tune-learning-rate-ratio` times the learning rate. Each phase resumes on its own backup;
a finished phase leaves a marker and is not run again.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

import zoo
from apps.core import rundir
from apps.core.callbacks import (
    AtomicBackupAndRestore,
    BackupClock,
    BestWeightsCheckpoint,
    EpochTensorBoard,
    EpochTimer,
)
from apps.core.errors import RunError
from apps.core.pipeline import input_pipeline

_JIT_COMPILE = {"auto": "auto", "on": True, "off": False}


def learning_rate_schedule(config, peak: float, total_steps: int):
    """`--schedule` over `total_steps` (warm-up included) peaking at `peak`; a float for plateau,
    whose rate ReduceLROnPlateau changes between epochs."""
    if config.schedule == "plateau":
        return peak
    warmup = config.warmup_steps
    start, alpha = 0.0, {"cosine": 0.01, "constant": 1.0}.get(config.schedule, 1e-4)
    if config.schedule == "onecycle":  # fastai's fit_one_cycle: up from peak/25 over 30%
        start, warmup = peak / 25, max(warmup, int(0.3 * total_steps))
    if not warmup:
        return keras.optimizers.schedules.CosineDecay(peak, max(total_steps, 1), alpha=alpha)
    return keras.optimizers.schedules.CosineDecay(
        start, max(total_steps - warmup, 1), alpha=alpha, warmup_target=peak, warmup_steps=warmup)


# The zoo's output layers take the AdamW step, as Muon's authors advise.
MUON_EXCLUDED = [f"(^|/){name}/" for name in zoo.OUTPUT_LAYERS]


def attention_matrix_shape(variable) -> tuple[int, int] | None:
    """The matrix a multi-head attention kernel is, split by heads: query, key and value [width,
    heads, head size] are [width, heads x head size]; the output [heads, head size, width] is
    [heads x head size, width]. None for any other weight."""
    shape = tuple(variable.shape)
    if len(shape) != 3:
        return None
    if re.search(r"(^|/)attention_output/kernel$", variable.path):
        return shape[0] * shape[1], shape[2]
    if re.search(r"(^|/)(query|key|value)/kernel$", variable.path):
        return shape[0], shape[1] * shape[2]
    return None


@keras.saving.register_keras_serializable(package="apps.core")
class Adam(keras.optimizers.Adam):
    """Keras' Adam (AdamW with `weight_decay`) whose TensorFlow step is TensorFlow's fused
    `ResourceApplyAdam`, the same update in one op a variable where Keras traces about 25.
    Tracing a training step is most of a short run's first epoch: 0.3-0.4 s less for the
    20-variable sentiment Transformer's first step (1.3-1.4 s instead of 1.6-1.7 s), about 15 ms
    a variable. Other backends, and `amsgrad`, take Keras' step."""

    def update_step(self, gradient, variable, learning_rate):
        if keras.backend.backend() != "tensorflow" or self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle,
            v=self._velocities[index].handle, beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype), beta1=beta_1,
            beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))


@keras.saving.register_keras_serializable(package="apps.core")
class Muon(keras.optimizers.Muon):
    """Keras' Muon with the Newton-Schulz step on the matrices a Transformer stores in other
    shapes. Keras orthogonalises every 2-D weight and gives the rest the AdamW step, so in a
    multi-head attention layer the query/key/value biases [heads, head size] got the Muon step
    and the kernels (3-D) did not. Here every bias takes the AdamW step, and each attention
    kernel is flattened to its matrix (`attention_matrix_shape`) for the Muon step and reshaped
    back; excluded layers and embeddings stay as Keras excludes them."""

    def _should_use_adamw(self, variable):
        if re.search(r"(^|/)bias$", variable.path):
            return True
        if attention_matrix_shape(variable):
            return any(re.search(pattern, variable.path) for pattern in self.exclude_layers)
        return super()._should_use_adamw(variable)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._matrix_shapes = {}  # by variable index: the attention kernels that take Muon's step
        for variable in var_list:
            index, matrix = self._get_variable_index(variable), attention_matrix_shape(variable)
            if matrix and self.adam_velocities[index] is None:  # Keras' mark of a Muon weight
                self._matrix_shapes[index] = matrix

    def _muon_update_step(self, gradient, variable, lr, m):
        matrix = self._matrix_shapes.get(self._get_variable_index(variable))
        if matrix is None:
            return super()._muon_update_step(gradient, variable, lr, m)
        self.assign_add(m, ops.add(gradient, m * (self.momentum - 1)))  # Keras' step, on the matrix
        momentum = ops.add(gradient, self.momentum * m) if self.nesterov else m
        update = self.zeropower_via_newtonschulz5(ops.reshape(momentum, matrix), self.ns_steps)
        self.assign_sub(variable, ops.reshape(self.lr_adjust(lr * update), variable.shape))


def ema_momentum(config, model) -> float:
    """`--ema-momentum`, or where it is 0 the model's own (`ema_momentum` of the zoo's GANs)."""
    return config.ema_momentum or getattr(model, "ema_momentum", 0.0)


def make_optimizer(config, learning_rate, model=None):
    """Adam, or AdamW with `--weight-decay`, with `--adam-beta-1`; or with `--optimizer muon`
    Muon (Keras', reaching attention kernels too), which orthogonalises the momentum of the
    hidden layers' weight matrices and leaves embeddings, the output layer (the zoo's `logits` or
    `probabilities`), biases and norms to its AdamW step (at `--muon-adam-lr-ratio` times the
    learning rate). Gradients clipped to `--clip-norm` (global norm); with `--ema-momentum` the
    weights' moving average, which Keras' `fit` leaves in the model at its end (models trained
    to their last epoch only: `fit_phases` refuses it where the best epoch is chosen by
    validation loss)."""
    options = {"global_clipnorm": config.clip_norm or None}
    if ema_momentum(config, model):
        options.update(use_ema=True, ema_momentum=ema_momentum(config, model))
    if config.optimizer == "muon":
        return Muon(
            learning_rate, adam_beta_1=config.adam_beta_1, weight_decay=config.weight_decay,
            adam_weight_decay=config.weight_decay, adam_lr_ratio=config.muon_adam_lr_ratio,
            exclude_layers=MUON_EXCLUDED, **options)
    return Adam(learning_rate, beta_1=config.adam_beta_1, weight_decay=config.weight_decay or None,
                **options)


@keras.saving.register_keras_serializable(package="apps.core")
class SmoothedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer labels whose one-hot targets are smoothed (Szegedy et al. 2016):
    Keras' sparse cross-entropy has no `label_smoothing`."""

    def __init__(self, label_smoothing: float = 0.1, name="smoothed_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        labels = keras.ops.cast(keras.ops.reshape(y_true, [-1]), "int32")
        targets = keras.ops.one_hot(labels, keras.ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(targets, y_pred,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def _per_example_metric(name: str, loss):
    """A compiled metric's name as a function giving one value per example ("accuracy" as Keras
    resolves it for the loss; "mae", "mse" and the like are loss functions)."""
    if name == "accuracy":
        return (keras.metrics.binary_accuracy if loss == "binary_crossentropy"
                else keras.metrics.sparse_categorical_accuracy)
    return keras.losses.get(name)


def batch_sums(model, app, inputs, targets, outputs, training: bool) -> tuple[dict, tf.Tensor]:
    """A batch's sums for epoch logs: `loss` (the model's `compute_loss`, the compiled loss or a
    model's own objective, times the batch's size), the app's metrics per example, and `count`;
    and the batch's mean loss, to differentiate."""
    loss = model.compute_loss(inputs, targets, outputs, training=training)
    count = tf.cast(tf.shape(tf.nest.flatten(inputs)[0])[0], tf.float32)
    sums = {"loss": loss * count, "count": count}
    for name in app.metrics:
        values = tf.cast(_per_example_metric(name, app.loss)(targets, outputs), tf.float32)
        # One value per example: a per-pixel metric (a segmentation's accuracy) is averaged over
        # the example's pixels first.
        sums[name] = tf.reduce_sum(tf.reduce_mean(tf.reshape(values, [tf.shape(values)[0], -1]),
                                                  axis=1))
    return sums, loss


def training_loss(app, config):
    """The app's loss, or with `--label-smoothing` its smoothed cross-entropy."""
    if config.label_smoothing:
        return SmoothedSparseCategoricalCrossentropy(config.label_smoothing)
    return app.loss() if callable(app.loss) else app.loss


def compile_model(model, app, config, learning_rate: float, total_steps: int) -> None:
    """The optimizer, schedule and loss of the options, the app's metrics. Under a tf.distribute
    strategy one step runs per call: Keras 3.15's multi-step loop fails on a distributed
    iterator."""
    steps_per_execution = config.steps_per_execution
    if tf.distribute.has_strategy() and steps_per_execution > 1:
        print(f"[{app.name}] --steps-per-execution {steps_per_execution} -> 1 under "
              f"{type(tf.distribute.get_strategy()).__name__}", flush=True)
        steps_per_execution = 1
    optimizer = make_optimizer(config, learning_rate_schedule(config, learning_rate, total_steps),
                               model)
    model.compile(optimizer=optimizer, loss=training_loss(app, config),
                  metrics=list(app.metrics), jit_compile=_JIT_COMPILE[config.jit_compile],
                  steps_per_execution=steps_per_execution)


def _committed_history(run_dir: Path, backup_dir: Path, committed: int) -> list[dict]:
    """The history of the epochs the phase's last backup holds (at least `committed`, the epochs
    of finished phases), with rows of any later epoch dropped.

    CSVLogger writes an epoch's row just before BackupAndRestore saves that epoch; a run killed
    in between retrains the epoch on resume, so its row must go.
    """
    history = rundir.read_history(run_dir / "history.csv")
    metadata = backup_dir / "training_metadata.json"
    if metadata.exists():
        committed = json.loads(metadata.read_text())["epoch"]
    kept = [row for row in history if row["epoch"] < committed]
    if len(kept) != len(history):
        rundir.write_history(run_dir / "history.csv", kept)
    return kept


def schedule_callbacks(config) -> list:
    """The callbacks that set the learning rate between epochs: ReduceLROnPlateau for plateau."""
    if config.schedule != "plateau":
        return []
    return [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.2, patience=2)]


def _callbacks(model, run_dir: Path, backup_dir: Path, config, history: list[dict],
               extra: tuple = ()):
    """The runner's callbacks, with `extra` ones (the app's, the caller's) before the backup, so
    an epoch is committed only once all of them are done with it. A model whose validation loss
    says nothing of its quality (a GAN's `has_validation_loss = False`) trains every epoch and
    keeps the last weights."""
    best_loss = min((row["val_loss"] for row in history if "val_loss" in row), default=math.inf)
    # Every worker of a multi-worker run must resume from the same epoch: no clock of its own.
    clock = BackupClock(0 if config.distribute == "multiworker" else config.backup_seconds)
    selecting = [
        *schedule_callbacks(config),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience),
        BestWeightsCheckpoint(model, run_dir / rundir.BEST_WEIGHTS, clock, best_loss),
    ]
    return [
        EpochTimer(),
        keras.callbacks.TerminateOnNaN(raise_error=True),
        *(selecting if getattr(model, "has_validation_loss", True) else []),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        EpochTensorBoard(str(run_dir / "logs")),
        *extra,
        AtomicBackupAndRestore(str(backup_dir), clock),
    ]


def build_training_state(model, batches: tf.data.Dataset) -> None:
    """Creates the optimizer's, the loss's and the metrics' variables before `fit` traces its
    step. On TensorFlow without a distribution strategy Keras 3 leaves them to the first trace;
    a `tf.function` that creates variables is traced a second time, so every phase paid twice
    its step's tracing (1.6 s of the sentiment Transformer's first epoch). Keras builds them
    this way itself under a strategy and on JAX."""
    model._symbolic_build(data_batch=batches.element_spec)


def keras_epochs(model, data: tuple, first_epoch: int, end_epoch: int, callbacks: list) -> None:
    """Epochs `first_epoch`..`end_epoch - 1` with Keras' `fit`."""
    build_training_state(model, data[0])
    model.fit(data[0], validation_data=data[1], initial_epoch=first_epoch, epochs=end_epoch,
              shuffle=False, verbose=2, callbacks=callbacks)


def _cached_features(model: zoo.TransferClassifier, data: tuple, config) -> tuple:
    """The model's head, and the training and validation data as its pooled features, computed
    once with the frozen backbone (no augmentation, so they never change)."""
    extractor = model.feature_extractor()

    def extracted(batches):
        features, targets = [], []
        for inputs, target in batches:
            features.append(extractor.predict_on_batch(inputs))
            targets.append(target)
        return tf.data.Dataset.from_tensor_slices((np.concatenate(features),
                                                   tf.concat(targets, 0)))

    return model.head(), (input_pipeline(extracted(data[0]), config.batch_size, config.seed),
                          input_pipeline(extracted(data[1]), config.batch_size))


def _load_best_weights(model, run_dir: Path) -> None:
    """The lowest-val_loss weights so far; none exist if no validation loss was ever finite."""
    if (run_dir / rundir.BEST_WEIGHTS).exists():
        model.load_weights(run_dir / rundir.BEST_WEIGHTS)


def fit_phases(app, config, model, run_dir: Path, data: tuple, steps_per_epoch: int,
               run_epochs=keras_epochs, extra_callbacks: tuple = ()) -> float:
    """Fits `model` phase by phase with `run_epochs`, then loads its best weights. With
    `--cache-features` the head phase fits the head alone on features computed once. Returns
    the seconds spent extracting features, which count as training time."""
    phases = [("head", config.epochs, config.learning_rate)]
    if isinstance(model, zoo.BackboneModel):
        model.backbone.trainable = False
        if config.fine_tune_layers() != 0 and config.fine_tune_epochs > 0:
            phases.append(("fine_tune", config.fine_tune_epochs,
                           config.learning_rate * config.fine_tune_learning_rate_ratio))
    finished_epochs, feature_seconds = 0, 0.0
    for name, epochs, learning_rate in phases:
        marker = run_dir / f"phase_{name}.json"
        if name == "fine_tune":
            zoo.unfreeze_top(model.backbone, config.fine_tune_layers())
            _load_best_weights(model, run_dir)
        if marker.exists():
            finished = json.loads(marker.read_text())
            finished_epochs = finished["epochs"]
            feature_seconds += finished.get("feature_seconds", 0.0)
            continue
        backup_dir = run_dir / f"backup_{name}"
        history = _committed_history(run_dir, backup_dir, finished_epochs)
        fitted, fitted_data, phase_feature_seconds = model, data, 0.0
        if (name == "head" and isinstance(model, zoo.TransferClassifier)
                and config.cache_features):
            started = time.perf_counter()
            fitted, fitted_data = _cached_features(model, data, config)
            phase_feature_seconds = time.perf_counter() - started
        if ema_momentum(config, model) and getattr(model, "has_validation_loss", True):
            raise RunError(f"--ema-momentum {config.ema_momentum}: {config.model} keeps the "
                           f"weights of its best epoch by validation loss, which the average "
                           f"would replace; use it with models trained to the last epoch (the "
                           f"GANs), or leave it at 0.")
        compile_model(fitted, app, config, learning_rate, steps_per_epoch * epochs)
        callbacks = _callbacks(model, run_dir, backup_dir, config, history, extra_callbacks)
        fitted._initial_epoch = None  # BackupAndRestore sets it; an earlier phase's must not stay
        try:
            run_epochs(fitted, fitted_data, finished_epochs, finished_epochs + epochs, callbacks)
        except RuntimeError as error:
            if "NaN or Inf loss" not in str(error):
                raise
            raise RunError(
                f"training diverged in epoch {len(history) + 1} ({error}). Nothing was exported; "
                f"{run_dir} keeps its last backup and best weights "
                f"({rundir.BEST_WEIGHTS}). Re-run with a lower --learning-rate and a new --run-dir."
            ) from error
        finished_epochs = len(rundir.read_history(run_dir / "history.csv"))
        feature_seconds += phase_feature_seconds
        marker.write_text(json.dumps({"epochs": finished_epochs,
                                      "feature_seconds": phase_feature_seconds}))
    _load_best_weights(model, run_dir)
    if not model.compiled:  # only its head was fitted, on cached features: compile to evaluate
        compile_model(model, app, config, config.learning_rate, 1)
    return feature_seconds
