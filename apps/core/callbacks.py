"""The runner's own Keras callbacks: each epoch's training time in its logs, the best weights
and the phase's backup written at most every few seconds and so that a run killed while saving
keeps its last whole copy, and TensorBoard's logs once an epoch. `apps.core.fit` puts them
together for every phase."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import keras


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` to each epoch's logs, so history.csv carries the training time of
    every epoch, including those of runs that were interrupted and resumed."""

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self.started


class BackupClock:
    """Which epochs end with the run's checkpoints written: those ending at least `seconds`
    after the last write (0: every epoch). Writing costs 15-40 ms a file on this 2-core CPU, a
    seventh of an 8-epoch MNIST MLP run or a 15-epoch forecaster's; an interrupted run then
    retrains at most `seconds` and an epoch. The best weights and the backup ask the same clock,
    so the files a resumed run starts from are of the same epoch."""

    def __init__(self, seconds: float):
        self.seconds, self.last, self.decided = seconds, time.monotonic(), {}

    def due(self, epoch: int) -> bool:
        if epoch not in self.decided:
            now = time.monotonic()
            self.decided[epoch] = now - self.last >= self.seconds
            if self.decided[epoch]:
                self.last = now
        return self.decided[epoch]


def _save_atomically(model, path: Path) -> None:
    """Writes beside `path` and renames into place: a run killed mid-write keeps the old file."""
    partial = path.with_name(f".partial-{path.name}")
    model.save_weights(partial)
    os.replace(partial, path)


class BestWeightsCheckpoint(keras.callbacks.Callback):
    """Keeps the weights of the lowest `val_loss` so far, across resumes.

    The best weights are written to `path` in the epochs the `clock` says (in memory between
    them) and at the end of training; written atomically, unlike `ModelCheckpoint`'s. It saves
    the weights of `full_model`, which may be more than the model being fitted (a head on cached
    features).
    """

    def __init__(self, full_model, path: Path, clock: BackupClock, best: float = math.inf):
        super().__init__()
        self.full_model, self.path, self.clock, self.best = full_model, path, clock, best
        self.unsaved = None  # the best weights, when they are newer than the file

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("val_loss", math.inf)
        if loss < self.best:
            self.best = loss
            if self.clock.due(epoch):
                _save_atomically(self.full_model, self.path)
                self.unsaved = None
            else:
                self.unsaved = self.full_model.get_weights()
        elif self.unsaved is not None and self.clock.due(epoch):
            self._save_unsaved(restore=True)

    def on_train_end(self, logs=None):
        if self.unsaved is not None:  # the runner loads the best weights after `fit` anyway
            self._save_unsaved(restore=False)

    def _save_unsaved(self, restore: bool) -> None:
        current = self.full_model.get_weights() if restore else None
        self.full_model.set_weights(self.unsaved)
        _save_atomically(self.full_model, self.path)
        self.unsaved = None
        if restore:
            self.full_model.set_weights(current)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, saving in the epochs the `clock` says, whose weights and
    metadata files are each written beside and renamed into place, so a run killed while saving
    keeps its last whole backup. (Keras' `double_checkpoint` keeps a copy of the previous save,
    which cannot help when the first save is cut off: the next start then fails on a
    half-written weights file.)"""

    def __init__(self, backup_dir: str, clock: BackupClock):
        super().__init__(backup_dir)
        self.clock = clock

    def _save_model(self):
        if not self.clock.due(self._current_epoch - 1):  # Keras counts finished epochs here
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        _save_atomically(self.model, Path(self._weights_path))
        partial = f"{self._training_metadata_path}.partial"
        Path(partial).write_text(json.dumps({"epoch": self._current_epoch,
                                             "batch": self._last_batch_seen}))
        os.replace(partial, self._training_metadata_path)


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard logging once an epoch. With `update_freq="epoch"` Keras 3.15 still
    builds a summary of every logged value after each training call, then drops it (no writer
    is open between epochs): under cProfile, 0.36 s of a 12-epoch MNIST MLP run of 7 s, 0.15 s
    of two U-Net epochs of 28 s. Without a graph to write or batches to profile
    (`write_graph=False`, `profile_batch=0`), the batch's end has nothing else to do."""

    def __init__(self, log_dir: str):
        super().__init__(log_dir, write_graph=False, profile_batch=0, update_freq="epoch")

    def on_train_batch_end(self, batch, logs=None):
        pass
