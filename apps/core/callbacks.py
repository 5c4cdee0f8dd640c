"""The runner's own Keras callbacks: each epoch's training time in its logs, the best weights
and the phase's backup written so that a run killed while saving keeps its last whole copy, and
TensorBoard's logs once an epoch. `apps.core.fit` puts them together for every phase."""

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


class BestWeightsCheckpoint(keras.callbacks.Callback):
    """Keeps the weights of the lowest `val_loss` so far, across resumes.

    Unlike `ModelCheckpoint`, it writes a temporary file and renames it into place, so a run
    killed mid-write keeps its previous best checkpoint intact. It saves the weights of
    `full_model`, which may be more than the model being fitted (a head on cached features).
    """

    def __init__(self, full_model, path: Path, best: float = math.inf):
        super().__init__()
        self.full_model, self.path, self.best = full_model, path, best

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("val_loss", math.inf)
        if loss < self.best:
            self.best = loss
            partial = self.path.with_name(f".partial-{self.path.name}")
            self.full_model.save_weights(partial)
            os.replace(partial, self.path)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore whose weights and metadata files are each written beside and
    renamed into place, so a run killed while saving keeps its last whole backup. (Keras'
    `double_checkpoint` keeps a copy of the previous save, which cannot help when the first save
    is cut off: the next start then fails on a half-written weights file.)"""

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        partial = f"{self._weights_path}.partial.weights.h5"
        self.model.save_weights(partial, overwrite=True)
        os.replace(partial, self._weights_path)
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
