"""Keyword spotting: a one-second 16 kHz waveform -> log-mel spectrogram -> zoo CNN -> 12 classes.

Data: TFDS `speech_commands` (12 classes: the ten commands, silence, unknown), a local folder in the
Speech Commands layout, or a dataset espeak-ng speaks offline (`make data-speech`, or generated on
first use of `--data sample`), split by voice so that test voices are never heard in training.
Expected: >= 90% test accuracy on the generated dataset's held-out voices; about 90%+ on TFDS.
Export: `serving_default(waveform: float32 [batch, 16000] in [-1, 1])` -> `probabilities
[batch, 12]`, `class_id`, `class_name`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import zoo
from apps.core import (
    App,
    Classification,
    DataSplits,
    Explanation,
    Signature,
    TensorInput,
    TrainConfig,
    option,
    plots,
)
from apps.core.sources import generated_once, resolve_source, speech_commands, spoken_words
from apps.core.sources.spoken_words import SAMPLE_RATE


@dataclasses.dataclass
class SpeechConfig(TrainConfig):
    validation_percentage: float = option(10.0, "a folder without list files: the percentage of "
                                                "speakers held out for validation (Speech "
                                                "Commands' rule)")
    testing_percentage: float = option(10.0, "a folder without list files: the percentage of "
                                             "speakers held out for testing")


def load_data(config) -> DataSplits:
    source, reason = resolve_source(config.data, "speech_commands")
    if source == "tfds":
        return speech_commands.tfds_splits(reason)
    if source == "sample":
        folder = generated_once(spoken_words.DEFAULT_DIR, spoken_words.generate,
                                "generating the espeak-ng dataset", "about 15 seconds")
        description = f"generated espeak-ng sample {folder} ({reason})"
    else:
        folder = Path(source)
        description = f"local Speech Commands folder {folder} ({reason})"
    return speech_commands.folder_splits(folder, config.seed, config.validation_percentage,
                                         config.testing_percentage, description)


def save_split_lists(model, splits: DataSplits, run_dir: Path, config) -> dict:
    """The validation and test lists a folder run used, in Speech Commands' format (paths
    relative to the folder, one per line), so the split can be checked and reused."""
    saved = {}
    for split, file_name in (("validation", "validation_list.txt"), ("test", "testing_list.txt")):
        if "split_lists" in splits.context:
            (run_dir / file_name).write_text("".join(
                f"{name}\n" for name in splits.context["split_lists"][split]))
            saved[file_name.replace(".", "_")] = str(run_dir / file_name)
    return saved


def log_mel_spectrogram() -> keras.layers.MelSpectrogram:
    """40 ms windows every 20 ms, 40 mel bins, in dB: the front end of "Hello Edge" (Zhang et
    al., 2017); half the frames of 10 ms hops, so half the convolution work, for the same
    accuracy on the sample."""
    return keras.layers.MelSpectrogram(fft_length=1024, sequence_stride=320, sequence_length=640,
                                       num_mel_bins=40, sampling_rate=SAMPLE_RATE,
                                       name="log_mel_spectrogram")


def build_model(config, splits: DataSplits) -> keras.Model:
    """Waveform -> log-mel spectrogram -> normalisation adapted on training clips -> zoo CNN."""
    waveform = keras.Input(shape=(SAMPLE_RATE,), name="waveform")
    spectrogram = keras.layers.Permute((2, 1))(log_mel_spectrogram()(waveform))
    spectrogram = keras.layers.Reshape((*spectrogram.shape[1:], 1), name="log_mel")(spectrogram)
    frontend = keras.Model(waveform, spectrogram)
    normalization = keras.layers.Normalization(axis=None)
    normalization.adapt(splits.train.batch(256).map(lambda x, y: frontend(x)))
    classifier = zoo.build(config.model, input_shape=tuple(spectrogram.shape[1:]),
                           num_classes=len(splits.class_names), **config.model_options())
    return keras.Model(waveform, classifier(normalization(spectrogram)),
                       name=f"speech_{config.model}")


def augmentation(config):
    """Random circular time shifts up to 100 ms and added white noise at a random level, per
    clip. The noise is uniform with the level's standard deviation: drawing it costs 3-4 ms for
    a batch of 64 clips here against 7-10 for Gaussian noise, and on a CPU the augmentation runs
    in turn with the training step. (Shifts in 5 ms steps, 0.6 ms against 5.2, cost 1.3 points
    of held-out accuracy: bench/RESULTS.md.)"""
    max_shift = SAMPLE_RATE // 10

    def augment(waveforms, training=True):
        batch = tf.shape(waveforms)[0]
        shifts = tf.random.uniform([batch, 1], -max_shift, max_shift + 1, tf.int32)
        length = tf.shape(waveforms)[1]
        rolled = tf.math.floormod(tf.range(length)[None, :] - shifts, length)  # per-clip tf.roll
        shifted = tf.gather(waveforms, rolled, batch_dims=1)
        noise_level = tf.random.uniform([batch, 1], 0.0, 0.05 * 3 ** 0.5)
        noise = tf.random.uniform(tf.shape(waveforms), -1.0, 1.0)  # standard deviation 1 / sqrt(3)
        return tf.clip_by_value(shifted + noise_level * noise, -1.0, 1.0)

    return augment


def extra_report(model, splits: DataSplits, run_dir: Path, config, predictions) -> dict:
    """Log-mel spectrograms of a few test clips, one per class where the test split has it."""
    waveforms, labels = next(iter(splits.test.shuffle(1000, seed=config.seed).batch(256)))
    picks = [int(np.flatnonzero(labels.numpy() == label)[0])
             for label in range(len(splits.class_names)) if (labels.numpy() == label).any()][:6]
    spectrograms = log_mel_spectrogram()(tf.gather(waveforms, picks)).numpy()
    plots.plot_heatmaps(spectrograms, [splits.class_names[int(labels[pick])] for pick in picks],
                         "20 ms frames", "mel bin", run_dir / "spectrograms.png")
    return {}


def read_inputs(paths: list[str]) -> tuple[list[str], np.ndarray]:
    """WAV files -> float32 [batch, 16000]."""
    return paths, np.stack([speech_commands.read_wav(Path(path)) for path in paths])


APP = App(
    name="speech",
    summary="spoken keywords (yes, no, up, down, left, right, on, off, stop, go, silence, "
            "unknown) from one-second 16 kHz waveforms",
    output=Classification(),
    models=("speech_cnn", "speech_ds_cnn"),
    load_data=load_data,
    build_model=build_model,
    loss="sparse_categorical_crossentropy",
    metrics=("accuracy",),
    signatures={"serving_default": Signature(
        TensorInput("waveform", "float32", (None, SAMPLE_RATE)))},
    explanation=Explanation(layer="log_mel", baseline="minimum"),
    read_inputs=read_inputs,
    app_model_options={"input_shape": "the log-mel spectrogram's frames and bins",
                       "num_classes": "the 12 keyword classes"},
    augmentation=augmentation,
    extra_report=extra_report,
    save_artifacts=save_split_lists,
    config_class=SpeechConfig,
    defaults={"model": "speech_cnn", "epochs": 8, "batch_size": 64, "learning_rate": 1e-2,
              "patience": 8},
)
