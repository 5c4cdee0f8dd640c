"""Speech Commands (Warden, 2018): one-second 16 kHz clips in one folder per word, the ten
commands and "unknown" words, silence cut from `_background_noise_/`, split by speaker with the
dataset's own hash rule or its list files; WAV files of any format read as float32 mono 16 kHz."""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf
from scipy.io import wavfile

from apps.core.app import DataSplits
from apps.core.errors import DataError
from apps.core.sources import load_tfds
from apps.core.sources.spoken_words import COMMANDS, SAMPLE_RATE, to_sample_rate

CLASS_NAMES = [*COMMANDS, "silence", "unknown"]


NOISE_FOLDER = "_background_noise_"


SILENCE_FRACTION = 0.1


def read_audio(path: Path) -> np.ndarray:
    """A WAV file of any length as float32 mono 16 kHz: down-mixed and resampled. Reads what
    recorders, DAWs and sox write (scipy.io.wavfile): 8-, 16-, 24- and 32-bit PCM, 32- and 64-bit
    float, WAVE_FORMAT_EXTENSIBLE, any number of channels, any rate."""
    try:
        with warnings.catch_warnings():  # unknown chunks (LIST, cue) are skipped, not errors
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            rate, samples = wavfile.read(path)
    except (ValueError, EOFError, OSError) as error:
        raise DataError(f"{path}: not a readable WAV file ({error}).") from error
    if samples.dtype == np.uint8:  # 8-bit PCM is unsigned, centred on 128
        samples = (samples.astype("float64") - 128) / 128
    elif np.issubdtype(samples.dtype, np.integer):  # left-justified: full scale is the dtype's
        samples = samples.astype("float64") / -float(np.iinfo(samples.dtype).min)
    samples = samples.reshape(len(samples), -1).mean(axis=1)
    return to_sample_rate(samples, rate).astype("float32")


def read_wav(path: Path) -> np.ndarray:
    """A WAV file as one second of float32 mono 16 kHz audio, padded or trimmed."""
    samples = read_audio(path)
    clip = np.zeros(SAMPLE_RATE, dtype="float32")
    clip[: min(len(samples), SAMPLE_RATE)] = samples[:SAMPLE_RATE]
    return clip


MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # Speech Commands' constant: the hash's range


def which_set(relative_name: str, validation_percentage: float,
              testing_percentage: float) -> str:
    """Speech Commands' own split rule (`which_set` in TensorFlow's speech_commands example): the
    SHA-1 of the file name before `_nohash_` (the speaker), modulo 2**27, as a percentage;
    validation below `validation_percentage`, test in the next `testing_percentage`. One
    speaker's clips all land in one split, whatever other files are added."""
    speaker = re.sub(r"_nohash_.*$", "", Path(relative_name).name)
    bucket = int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % (MAX_NUM_WAVS_PER_CLASS + 1)
    percentage = bucket * (100.0 / MAX_NUM_WAVS_PER_CLASS)
    if percentage < validation_percentage:
        return "validation"
    return "test" if percentage < validation_percentage + testing_percentage else "train"


def _silence(folder: Path, counts: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The background-noise recordings end to end, and per split the (start, gain) of one-second
    chunks of them at random gains: the silence class, about SILENCE_FRACTION of each split, as
    in the Speech Commands benchmark."""
    noises = [read_audio(path) for path in sorted((folder / NOISE_FOLDER).glob("*.wav"))]
    noises = [noise for noise in noises if len(noise) > SAMPLE_RATE]
    offsets = np.cumsum([0, *map(len, noises)])
    chunks = {split: [] for split in counts}
    for split, count in counts.items():
        for _ in range(int(count * SILENCE_FRACTION) if noises else 0):
            index = rng.integers(len(noises))
            start = offsets[index] + rng.integers(0, len(noises[index]) - SAMPLE_RATE)
            chunks[split].append((start, rng.uniform(0, 0.5)))
    return np.concatenate(noises or [np.zeros(0, "float32")]), chunks


def load_folder(folder: Path, seed: int, validation_percentage: float = 10.0,
                testing_percentage: float = 10.0) -> tuple[dict, int, dict]:
    """A Speech Commands folder -> {split: tf.data.Dataset of (waveform, label)} that reads and
    resamples the clips as it goes (file paths in memory, not audio), the count of unreadable
    files (checked once here and left out), and the validation and test lists used (the
    folder's own list files, or `which_set`)."""
    lists = {name: set((folder / f"{name}_list.txt").read_text().split())
             if (folder / f"{name}_list.txt").exists() else set()
             for name in ("validation", "testing")}
    listed = bool(lists["validation"] or lists["testing"])
    files = {"train": ([], []), "validation": ([], []), "test": ([], [])}
    skipped = 0
    word_folders = sorted(path for path in folder.iterdir()
                          if path.is_dir() and not path.name.startswith((".", "_")))
    if not word_folders:
        raise DataError(f"--data {folder}: no word folders; expected the Speech Commands layout "
                        f"(one folder of WAV files per word).")
    for word_folder in word_folders:
        label = CLASS_NAMES.index(word_folder.name if word_folder.name in COMMANDS else "unknown")
        for path in sorted(word_folder.glob("*.wav")):
            try:
                read_audio(path)
            except DataError as error:
                print(f"skipped {error}", flush=True)
                skipped += 1
                continue
            name = f"{word_folder.name}/{path.name}"
            if listed:
                split = ("validation" if name in lists["validation"] else
                         "test" if name in lists["testing"] else "train")
            else:
                split = which_set(name, validation_percentage, testing_percentage)
            files[split][0].append(str(path))
            files[split][1].append(label)
    noise, silence = _silence(folder, {split: len(pair[1]) for split, pair in files.items()},
                              np.random.default_rng(seed))
    datasets = {split: stream_clips(*files[split], silence[split], noise) for split in files}
    used = {split: [str(Path(path).relative_to(folder)) for path in files[split][0]]
            for split in ("validation", "test")}
    return datasets, skipped, used


def _read_clip(path: bytes) -> np.ndarray:
    return read_wav(Path(path.decode()))


def stream_clips(paths: list, labels: list, silence: list, noise: np.ndarray) -> tf.data.Dataset:
    """(waveform, label) pairs: the clips read from their files inside tf.data, then the silence
    chunks cut from the noise recordings."""
    spoken = tf.data.Dataset.from_tensor_slices(
        (tf.constant(paths, tf.string), np.array(labels, "int64"))).map(
        lambda path, label: (tf.ensure_shape(
            tf.numpy_function(_read_clip, [path], tf.float32, stateful=False), [SAMPLE_RATE]),
            label), num_parallel_calls=tf.data.AUTOTUNE)
    starts = np.array([start for start, _ in silence], "int64")
    gains = np.array([gain for _, gain in silence], "float32")
    noise = tf.constant(noise.astype("float32"))
    quiet = tf.data.Dataset.from_tensor_slices((starts, gains)).map(
        lambda start, gain: (noise[start:start + SAMPLE_RATE] * gain,
                             tf.constant(CLASS_NAMES.index("silence"), tf.int64)))
    return spoken.concatenate(quiet)


def from_tfds(audio, label):
    """A TFDS speech_commands example: int16 audio of any length -> one second of float32."""
    audio = tf.cast(audio, tf.float32) / 32768.0
    audio = tf.pad(audio[:SAMPLE_RATE], [[0, tf.maximum(0, SAMPLE_RATE - tf.shape(audio)[0])]])
    return tf.ensure_shape(audio, [SAMPLE_RATE]), label


def tfds_splits(reason: str) -> DataSplits:
    """TFDS speech_commands' train, validation and test splits as one-second float32 clips."""
    (train, validation, test), info = load_tfds("speech_commands", ["train", "validation", "test"])
    return DataSplits(train=train.map(from_tfds, num_parallel_calls=tf.data.AUTOTUNE),
                      validation=validation.map(from_tfds, num_parallel_calls=tf.data.AUTOTUNE),
                      test=test.map(from_tfds, num_parallel_calls=tf.data.AUTOTUNE),
                      class_names=[name.strip("_") for name in info.features["label"].names],
                      source=f"TFDS speech_commands ({reason})")


def folder_splits(folder: Path, seed: int, validation_percentage: float,
                  testing_percentage: float, source: str) -> DataSplits:
    """A Speech Commands folder (`load_folder`) as DataSplits described as `source`; the facts
    count the unreadable files, the context keeps the validation and test lists used."""
    if not folder.is_dir():
        raise DataError(f"--data {folder}: expected a folder in the Speech Commands layout.")
    clips, skipped, lists = load_folder(folder, seed, validation_percentage, testing_percentage)
    return DataSplits(train=clips["train"], validation=clips["validation"], test=clips["test"],
                      class_names=CLASS_NAMES, source=source, facts={"skipped_files": skipped},
                      context={"split_lists": lists})
