"""The speech app: the floor on generated espeak-ng data split by voice, and WAV reading."""

import hashlib
import struct
import wave

import numpy as np
import pytest
import tensorflow as tf

from apps import get_app
from apps.core import DataError, resolve_config, train
from apps.core.sources import spoken_words
from apps.core.sources.speech_commands import CLASS_NAMES, load_folder, read_wav
from tests.conftest import REPO_ROOT

APP = get_app("speech")
# The same worker runs every test that shares this app's session runs (pytest-xdist).
pytestmark = pytest.mark.xdist_group("speech")


@pytest.mark.floor
def test_default_model_recognises_held_out_voices(sample_run):
    config, metrics = sample_run("speech")
    assert metrics["test_accuracy"] >= 0.90, metrics["test_accuracy"]
    assert metrics["class_names"] == CLASS_NAMES
    assert metrics["skipped_files"] == 0
    assert (REPO_ROOT / config.run_dir / "spectrograms.png").stat().st_size > 0
    assert (REPO_ROOT / config.run_dir / "confusion_matrix.png").stat().st_size > 0
    for listed in ("validation_list.txt", "testing_list.txt"):  # the folder's own lists, used
        assert sorted((REPO_ROOT / config.run_dir / listed).read_text().split()) == sorted(
            (spoken_words.DEFAULT_DIR / listed).read_text().split())


def test_augmentation_shifts_each_clip_by_its_own_amount_and_adds_bounded_noise():
    clips = np.random.default_rng(0).uniform(-0.5, 0.5, (8, 16000)).astype("float32")
    augmented = APP.augmentation(resolve_config(APP))(tf.constant(clips)).numpy()
    shifts = []
    for clip, result in zip(clips, augmented):
        errors = {shift: np.abs(result - np.roll(clip, shift)).max()
                  for shift in range(-1600, 1601)}
        shift = min(errors, key=errors.get)
        assert errors[shift] <= 0.05 * 3 ** 0.5 + 1e-6, errors[shift]  # the noise's bound
        shifts.append(shift)
    assert len(set(shifts)) > 4, shifts  # drawn per clip, not once per batch


def test_generated_split_keeps_test_voices_out_of_training(small_speech_corpus):
    folder = small_speech_corpus
    testing = set((folder / "testing_list.txt").read_text().split())
    validation = set((folder / "validation_list.txt").read_text().split())
    every_clip = {f"{path.parent.name}/{path.name}" for path in folder.glob("*/*.wav")
                  if path.parent.name != "_background_noise_"}

    def voices(names):
        return {name.split("/")[1].split("_nohash_")[0] for name in names}

    training = every_clip - testing - validation
    assert testing and validation and training
    assert not voices(testing) & voices(training)
    assert not voices(validation) & voices(training)
    assert {name.split("/")[0] for name in testing} >= set(spoken_words.COMMANDS)


def _write(path, samples, rate=16000, channels=1, width=2):
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        if width == 1:
            handle.writeframes((samples * 127 + 128).astype(np.uint8).tobytes())
        else:
            handle.writeframes((samples * 32767).astype("<i2").tobytes())


def test_wav_reading_resamples_downmixes_pads_and_trims(tmp_path):
    def tone(rate, seconds):
        return np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)

    _write(tmp_path / "8k.wav", 0.5 * tone(8000, 0.5), rate=8000)
    stereo = np.stack([0.5 * tone(16000, 2.0), np.zeros(32000)], axis=1).reshape(-1)
    _write(tmp_path / "stereo.wav", stereo, channels=2)
    _write(tmp_path / "8bit.wav", 0.5 * tone(16000, 1.0), width=1)
    resampled = read_wav(tmp_path / "8k.wav")
    assert resampled.shape == (16000,) and resampled[8200:].max() == 0
    assert np.abs(resampled[:7900]).max() == pytest.approx(0.5, abs=0.02)
    spectrum = np.abs(np.fft.rfft(resampled[:8000]))
    assert np.argmax(spectrum) == pytest.approx(220, abs=2)
    downmixed = read_wav(tmp_path / "stereo.wav")
    assert downmixed.shape == (16000,) and np.abs(downmixed).max() == pytest.approx(0.25, abs=0.01)
    assert np.abs(read_wav(tmp_path / "8bit.wav")).max() == pytest.approx(0.5, abs=0.02)


def test_unreadable_files_are_skipped_and_counted(tmp_path):
    for word in ("yes", "cat"):
        (tmp_path / word).mkdir()
        for speaker in range(12):
            _write(tmp_path / word / f"speaker{speaker}_nohash_0.wav", np.zeros(16000))
    (tmp_path / "yes" / "broken_nohash_0.wav").write_bytes(b"RIFF....not audio")
    clips, skipped, _ = load_folder(tmp_path, seed=0)
    assert skipped == 1
    assert sum(int(split.cardinality()) for split in clips.values()) == 24  # known, not counted
    # The clips are read as the data are iterated, not held from the load: a file rewritten
    # after load_folder is read with its new samples.
    _write(tmp_path / "yes" / "speaker0_nohash_0.wav", np.full(16000, 0.25))
    examples = [(waveform.numpy(), int(label)) for split in clips.values()
                for waveform, label in split]
    labels = [label for _, label in examples]
    assert len(labels) == 24
    assert sum(np.allclose(waveform, 0.25, atol=1e-3) for waveform, _ in examples) == 1
    assert labels.count(CLASS_NAMES.index("unknown")) == 12
    with pytest.raises(DataError, match="broken_nohash_0.wav: not a readable WAV file"):
        read_wav(tmp_path / "yes" / "broken_nohash_0.wav")


def test_tfds_source_loads_through_tfds(run_paths):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=24):
        metrics = train(APP, resolve_config(APP, data="tfds", epochs=1, model_arg=["filters=(4,)"],
                                            **run_paths))
    assert metrics["data_source"].startswith("TFDS speech_commands")
    assert len(metrics["class_names"]) == 12 and "silence" in metrics["class_names"]


def test_missing_espeak_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(spoken_words.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="espeak-ng is not installed: run `make setup`"):
        spoken_words.generate(tmp_path / "speech")


def _wav_bytes(samples: np.ndarray, rate: int, bits: int, extensible: bool = False) -> bytes:
    """A PCM WAV file's bytes for integer `samples` [frames, channels] of `bits` bits, written by
    hand: Python's wave module and scipy write neither 24-bit nor WAVE_FORMAT_EXTENSIBLE files."""
    frames, channels = samples.shape
    width = bits // 8
    data = b"".join(int(value).to_bytes(width, "little", signed=True)
                    for value in samples.reshape(-1))
    block = channels * width
    header = struct.pack("<HHIIHH", 0xFFFE if extensible else 1, channels, rate, rate * block,
                         block, bits)
    if extensible:  # cbSize, valid bits, channel mask, the PCM sub-format GUID
        header += struct.pack("<HHI", 22, bits, 0) + bytes.fromhex(
            "0100000000001000800000aa00389b71")
    chunks = (b"fmt " + struct.pack("<I", len(header)) + header
              + b"data" + struct.pack("<I", len(data)) + data)
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def test_recorder_and_daw_formats_read_alike(tmp_path):
    """24-bit PCM, 32-bit PCM and float, WAVE_FORMAT_EXTENSIBLE, stereo at 44.1 kHz: each is read
    as the same one-second 16 kHz tone."""
    from scipy.io import wavfile

    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    expected = read_wav(_write_and_return(tmp_path / "reference.wav", tone))
    (tmp_path / "pcm24.wav").write_bytes(_wav_bytes(np.round(tone * 2**23)[:, None], 16000, 24))
    (tmp_path / "extensible24.wav").write_bytes(
        _wav_bytes(np.round(tone * 2**23)[:, None], 16000, 24, extensible=True))
    (tmp_path / "extensible16_stereo.wav").write_bytes(
        _wav_bytes(np.round(np.stack([tone, tone], 1) * 2**15), 16000, 16, extensible=True))
    wavfile.write(tmp_path / "pcm32.wav", 16000, np.round(tone * 2**31).astype(np.int32))
    wavfile.write(tmp_path / "float32.wav", 16000, tone.astype(np.float32))
    at_44k = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100) * 0.5
    wavfile.write(tmp_path / "float32_44k_stereo.wav", 44100,
                  np.stack([at_44k, at_44k], 1).astype(np.float32))
    for name in ("pcm24", "extensible24", "extensible16_stereo", "pcm32", "float32",
                 "float32_44k_stereo"):
        edge = 10 if "44k" in name else 0  # the resampling filter's first and last samples
        np.testing.assert_allclose(read_wav(tmp_path / f"{name}.wav")[edge:16000 - edge],
                                   expected[edge:16000 - edge], atol=2e-3, err_msg=name)


def _write_and_return(path, samples):
    _write(path, samples)
    return path


def test_speech_commands_split_rule_and_written_lists(tmp_path):
    """Without list files the split is the dataset's own rule, restated here as published
    (README of Speech Commands v0.02), and a run writes the lists it used."""
    from apps.core.app import DataSplits
    from apps.speech import save_split_lists

    speakers = [f"{index:08x}" for index in range(60)]
    for word in ("yes", "bird"):
        (tmp_path / word).mkdir()
        for speaker in speakers:
            for take in range(2):
                _write(tmp_path / word / f"{speaker}_nohash_{take}.wav", np.zeros(1600))

    def published_rule(name, validation, testing):
        speaker = name.split("/")[1].split("_nohash_")[0]
        percentage = ((int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % 2**27)
                      * (100.0 / (2**27 - 1)))
        return ("validation" if percentage < validation else
                "testing" if percentage < validation + testing else "training")

    names = [f"{word}/{speaker}_nohash_{take}.wav" for word in ("bird", "yes")
             for speaker in speakers for take in range(2)]
    for validation, testing in ((10, 10), (30, 20)):
        _, skipped, lists = load_folder(tmp_path, 0, validation, testing)
        assert skipped == 0
        assert sorted(lists["test"]) == sorted(
            name for name in names if published_rule(name, validation, testing) == "testing")
        assert sorted(lists["validation"]) == sorted(
            name for name in names if published_rule(name, validation, testing) == "validation")
    assert 0.3 < len(lists["validation"] + lists["test"]) / len(names) < 0.7  # 50% of 60 speakers
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    empty = tf.data.Dataset.from_tensor_slices([0])
    saved = save_split_lists(None, DataSplits(train=empty, test=empty, source="",
                                              context={"split_lists": lists}), run_dir, None)
    assert (run_dir / "testing_list.txt").read_text().split() == lists["test"]
    assert saved["validation_list_txt"] == str(run_dir / "validation_list.txt")
    (tmp_path / "testing_list.txt").write_text("yes/00000000_nohash_0.wav\n")
    _, _, listed = load_folder(tmp_path, 0)
    assert listed == {"validation": [], "test": ["yes/00000000_nohash_0.wav"]}
