"""The speech app: generated espeak-ng data split by voice, WAV reading, training, export, predict."""

import json
import wave

import keras
import numpy as np
import pytest

from apps import get_app, speech_corpus
from apps.config import resolve_config
from apps.data import DataError
from apps.runner import train
from apps.speech import CLASS_NAMES, load_folder, read_wav
from tests.conftest import REPO_ROOT, run_cli, serve_in_fresh_process, train_on_sample

APP = get_app("speech")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The default model trained on the generated dataset (generated here on first use)."""
    return train_on_sample(APP, tmp_path_factory.mktemp("speech"))


@pytest.mark.slow
def test_default_model_recognises_held_out_voices(trained):
    config, metrics = trained
    assert metrics["test_accuracy"] >= 0.90, metrics["test_accuracy"]
    assert metrics["class_names"] == CLASS_NAMES
    assert metrics["skipped_files"] == 0
    assert (REPO_ROOT / config.run_dir / "spectrograms.png").stat().st_size > 0
    assert (REPO_ROOT / config.run_dir / "confusion_matrix.png").stat().st_size > 0


@pytest.mark.slow
def test_generated_split_keeps_test_voices_out_of_training():
    folder = speech_corpus.DEFAULT_DIR
    testing = set((folder / "testing_list.txt").read_text().split())
    validation = set((folder / "validation_list.txt").read_text().split())
    every_clip = {f"{path.parent.name}/{path.name}" for path in folder.glob("*/*.wav")
                  if path.parent.name != "_background_noise_"}
    voices = lambda names: {name.split("/")[1].split("_nohash_")[0] for name in names}
    training = every_clip - testing - validation
    assert testing and validation and training
    assert not voices(testing) & voices(training)
    assert not voices(validation) & voices(training)
    assert {name.split("/")[0] for name in testing} >= set(speech_corpus.COMMANDS)


@pytest.mark.slow
def test_export_takes_raw_waveforms_and_matches_the_model(trained, tmp_path):
    config, metrics = trained
    waveforms = np.stack([read_wav(path) for path in
                          sorted((speech_corpus.DEFAULT_DIR / "stop").glob("*m7*.wav"))[:4]])
    model = keras.saving.load_model(REPO_ROOT / config.run_dir / "model.keras")
    served = serve_in_fresh_process(metrics["export_path"], waveforms, tmp_path)
    np.testing.assert_allclose(served["probabilities"], model.predict(waveforms, verbose=0),
                               rtol=1e-4, atol=1e-5)
    assert served["probabilities"].shape == (4, 12)
    assert [name.decode() for name in served["class_name"]].count("stop") >= 3


@pytest.mark.slow
def test_predict_takes_wav_files(trained):
    _, metrics = trained
    paths = [str(sorted((speech_corpus.DEFAULT_DIR / word).glob("*f3*.wav"))[0])
             for word in ("yes", "no", "left", "right")]
    result = run_cli("speech", "predict", "--model-dir", metrics["export_path"], *paths)
    assert result.returncode == 0, result.stderr
    predicted = [json.loads(line)["class"] for line in result.stdout.split("\n") if line]
    assert sum(p == w for p, w in zip(predicted, ("yes", "no", "left", "right"))) >= 3


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
    tone = lambda rate, seconds: np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)
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
        metrics = train(APP, resolve_config(APP, data="tfds", epochs=1, **run_paths))
    assert metrics["data_source"].startswith("TFDS speech_commands")
    assert len(metrics["class_names"]) == 12 and "silence" in metrics["class_names"]


def test_missing_espeak_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(speech_corpus.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="espeak-ng is not installed: run `make setup`"):
        speech_corpus.generate(tmp_path / "speech")
