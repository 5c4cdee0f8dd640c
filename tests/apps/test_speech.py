"""The speech app: the floor on generated espeak-ng data split by voice, and WAV reading."""

import wave

import numpy as np
import pytest

from apps import get_app, speech_corpus
from apps.core import DataError, resolve_config, train
from apps.speech import CLASS_NAMES, load_folder, read_wav
from tests.conftest import REPO_ROOT

APP = get_app("speech")


@pytest.mark.slow
def test_default_model_recognises_held_out_voices(sample_run):
    config, metrics = sample_run("speech")
    assert metrics["test_accuracy"] >= 0.90, metrics["test_accuracy"]
    assert metrics["class_names"] == CLASS_NAMES
    assert metrics["skipped_files"] == 0
    assert (REPO_ROOT / config.run_dir / "spectrograms.png").stat().st_size > 0
    assert (REPO_ROOT / config.run_dir / "confusion_matrix.png").stat().st_size > 0


@pytest.mark.slow
def test_generated_split_keeps_test_voices_out_of_training():
    folder = speech_corpus.DEFAULT_DIR
    if not folder.exists():
        speech_corpus.generate(folder)
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
    assert {name.split("/")[0] for name in testing} >= set(speech_corpus.COMMANDS)


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
    examples, skipped = load_folder(tmp_path, seed=0)
    assert skipped == 1
    labels = [label for split in examples.values() for label in split[1]]
    assert len(labels) == 24
    assert labels.count(CLASS_NAMES.index("unknown")) == 12
    with pytest.raises(DataError, match="broken_nohash_0.wav: not a readable PCM WAV"):
        read_wav(tmp_path / "yes" / "broken_nohash_0.wav")


def test_tfds_source_loads_through_tfds(run_paths):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=24):
        metrics = train(APP, resolve_config(APP, data="tfds", epochs=1, model_arg=["filters=(4,)"],
                                            **run_paths))
    assert metrics["data_source"].startswith("TFDS speech_commands")
    assert len(metrics["class_names"]) == 12 and "silence" in metrics["class_names"]


def test_missing_espeak_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(speech_corpus.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="espeak-ng is not installed: run `make setup`"):
        speech_corpus.generate(tmp_path / "speech")
