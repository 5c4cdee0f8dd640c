"""Keyword spotting: a one-second 16 kHz waveform -> log-mel spectrogram -> zoo CNN -> 12 classes.

Data: TFDS `speech_commands` (12 classes: the ten commands, silence, unknown), a local folder in the
Speech Commands layout, or a dataset espeak-ng speaks offline (`make data-speech`, or generated on
first use of `--data sample`), split by voice so that test voices are never heard in training.
Expected: >= 90% test accuracy on the generated dataset's held-out voices; about 90%+ on TFDS.
Export: `serving_default(waveform: float32 [batch, 16000] in [-1, 1])` -> `probabilities
[batch, 12]`, `class_id`, `class_name`.
"""

import dataclasses
import hashlib
import re
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from scipy.io import wavfile

import zoo
from apps.core import (
    App,
    Classification,
    DataError,
    DataSplits,
    Explanation,
    Signature,
    TrainConfig,
    option,
    plots,
)
from apps.core.data import load_tfds, resolve_source
from apps.speech_corpus import COMMANDS, DEFAULT_DIR, SAMPLE_RATE, generate, to_sample_rate

CLASS_NAMES = [*COMMANDS, "silence", "unknown"]


@dataclasses.dataclass
class SpeechConfig(TrainConfig):
    validation_percentage: float = option(10.0, "a folder without list files: the percentage of "
                                                "speakers held out for validation (Speech "
                                                "Commands' rule)")
    testing_percentage: float = option(10.0, "a folder without list files: the percentage of "
                                             "speakers held out for testing")
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


def _from_tfds(audio, label):
    audio = tf.cast(audio, tf.float32) / 32768.0
    audio = tf.pad(audio[:SAMPLE_RATE], [[0, tf.maximum(0, SAMPLE_RATE - tf.shape(audio)[0])]])
    return tf.ensure_shape(audio, [SAMPLE_RATE]), label


def load_data(config) -> DataSplits:
    source, reason = resolve_source(config.data, "speech_commands")
    if source == "tfds":
        (train, validation, test), info = load_tfds(
            "speech_commands", ["train", "validation", "test"])
        names = info.features["label"].names
        return DataSplits(train=train.map(_from_tfds, num_parallel_calls=tf.data.AUTOTUNE),
                          validation=validation.map(_from_tfds, num_parallel_calls=tf.data.AUTOTUNE),
                          test=test.map(_from_tfds, num_parallel_calls=tf.data.AUTOTUNE),
                          class_names=[name.strip("_") for name in names],
                          source=f"TFDS speech_commands ({reason})")
    folder = DEFAULT_DIR if source == "sample" else Path(source)
    if source == "sample" and not folder.exists():
        print(f"generating the espeak-ng dataset in {folder} (about a minute, once)", flush=True)
        generate(folder)
    if not folder.is_dir():
        raise DataError(f"--data {source}: expected a folder in the Speech Commands layout.")
    clips, skipped, lists = load_folder(folder, config.seed, config.validation_percentage,
                                        config.testing_percentage)
    kind = "generated espeak-ng sample" if source == "sample" else "local Speech Commands folder"
    return DataSplits(train=clips["train"], validation=clips["validation"], test=clips["test"],
                      class_names=CLASS_NAMES,
                      source=f"{kind} {folder} ({reason})", facts={"skipped_files": skipped},
                      context={"split_lists": lists})


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
    """Random time shifts up to 100 ms and added noise at a random level, per clip."""
    max_shift = SAMPLE_RATE // 10

    def augment(waveforms, training=True):
        shifts = tf.random.uniform([tf.shape(waveforms)[0], 1], -max_shift, max_shift + 1,
                                   tf.int32)
        length = tf.shape(waveforms)[1]
        rolled = tf.math.floormod(tf.range(length)[None, :] - shifts, length)  # per-clip tf.roll
        shifted = tf.gather(waveforms, rolled, batch_dims=1)
        noise_level = tf.random.uniform([tf.shape(waveforms)[0], 1], 0.0, 0.05)
        return tf.clip_by_value(shifted + noise_level * tf.random.normal(tf.shape(waveforms)),
                                -1.0, 1.0)

    return augment


def extra_report(model, splits: DataSplits, run_dir: Path, config) -> dict:
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
    return paths, np.stack([read_wav(Path(path)) for path in paths])


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
        tf.TensorSpec([None, SAMPLE_RATE], tf.float32, "waveform"))},
    explanation=Explanation(layer="log_mel", baseline="minimum"),
    read_inputs=read_inputs,
    app_model_options={"input_shape": "the log-mel spectrogram's frames and bins",
                       "num_classes": "the 12 keyword classes"},
    augmentation=augmentation,
    extra_report=extra_report,
    save_artifacts=save_split_lists,
    config_class=SpeechConfig,
    defaults={"model": "speech_cnn", "epochs": 20, "batch_size": 64, "learning_rate": 3e-3,
              "patience": 8},
)
