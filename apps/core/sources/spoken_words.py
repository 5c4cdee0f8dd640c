"""Generates an offline keyword-spotting dataset in the Speech Commands layout with espeak-ng.

The ten command words and a set of other ("unknown") words are spoken by many espeak-ng voices
(accent x voice variant) at random speeds, pitches and loudness, mixed with a little noise, and
written as one-second 16 kHz mono WAVs in one folder per word, with `_background_noise_/` and
`validation_list.txt` / `testing_list.txt`. The split is by voice variant: the validation and test
variants are never heard in training.

    python -m apps.core.sources.spoken_words [--out data/generated/speech_commands]
"""

import io
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
from scipy import signal

from apps.core.errors import DataError
from apps.core.sources import REPO_ROOT, generator_command, written_in_place

COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
OTHER_WORDS = ("bed", "bird", "cat", "dog", "happy", "house", "tree", "wow", "zero", "one",
               "two", "three", "four", "five", "learn", "follow", "forward", "visual")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-029", "en-us-nyc")
TRAIN_VARIANTS = ("m1", "m2", "m3", "m5", "m6", "f1", "f2", "f4", "adam", "Alex", "john",
                  "linda", "max", "paul", "anika", "belinda")
VALIDATION_VARIANTS = ("m4", "f5", "edward")
TEST_VARIANTS = ("m7", "f3", "david", "Andrea")
TAKES_PER_COMMAND = 2
SAMPLE_RATE = 16000
DEFAULT_DIR = REPO_ROOT / "data" / "generated" / "speech_commands"


def write_wav(path: Path, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """float waveform in [-1, 1] -> 16-bit mono PCM WAV."""
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes((np.clip(waveform, -1, 1) * 32767).astype("<i2").tobytes())


def to_sample_rate(samples: np.ndarray, rate: int) -> np.ndarray:
    """Resamples `samples` recorded at `rate` Hz to 16 kHz (polyphase, anti-aliased)."""
    if rate == SAMPLE_RATE:
        return samples
    gcd = np.gcd(rate, SAMPLE_RATE)
    return signal.resample_poly(samples, SAMPLE_RATE // gcd, rate // gcd)


# The pause asked for between the words of one call (espeak-ng shortens it at fast speeds, to
# about half), and the shortest silence taken as the end of a word (the longest pause inside a
# word, a stop consonant's closure, is about 0.1 s).
WORD_BREAK_MS = 2000
MIN_WORD_GAP_SECONDS = 0.4


def _speak(words: list[str], voice: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Each of `words` spoken by `voice` at its own random speed and pitch, as float32 16 kHz
    waveforms padded or trimmed to one second. One espeak-ng call speaks them all (SSML breaks
    between them, espeak-ng's embedded speed and pitch commands before each), since starting
    espeak-ng costs more than speaking a word; the words are cut apart at the breaks."""
    ssml = "".join(f"\x01{rng.integers(20, 80)}P\x01{rng.integers(120, 200)}S{word}"
                   f'<break time="{WORD_BREAK_MS}ms"/>' for word in words)
    spoken = subprocess.run(["espeak-ng", "-v", voice, "-m", "--stdout", f"<speak>{ssml}</speak>"],
                            capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(spoken)) as handle:
        rate = handle.getframerate()
        samples = np.frombuffer(handle.readframes(handle.getnframes()), "<i2") / 32768.0
    voiced = np.flatnonzero(np.abs(samples) > 0.02)
    ends = np.flatnonzero(np.diff(voiced) > MIN_WORD_GAP_SECONDS * rate)
    starts, stops = np.r_[voiced[0], voiced[ends + 1]], np.r_[voiced[ends], voiced[-1]] + 1
    if len(starts) != len(words):
        raise DataError(f"espeak-ng voice {voice} spoke {len(starts)} separate words for the "
                        f"{len(words)} asked ({' '.join(words)}); check `espeak-ng -v {voice} "
                        f"yes` speaks.")
    return [_one_second_clip(to_sample_rate(samples[start:stop], rate), rng)
            for start, stop in zip(starts, stops)]


def _one_second_clip(utterance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The utterance at a random offset in one second, at a random loudness, with a little
    noise."""
    clip = np.zeros(SAMPLE_RATE)
    offset = rng.integers(0, max(1, SAMPLE_RATE - len(utterance)))
    clip[offset : offset + len(utterance)] = utterance[:SAMPLE_RATE]
    clip *= rng.uniform(0.3, 1.0) / max(np.abs(clip).max(), 1e-6)
    return (clip + rng.uniform(0.0, 0.02) * rng.standard_normal(SAMPLE_RATE)).astype("float32")


def _noises(rng: np.random.Generator, seconds: int = 60) -> dict[str, np.ndarray]:
    """White, pink and brown noise, like the recordings in Speech Commands' noise folder."""
    white = rng.standard_normal(SAMPLE_RATE * seconds)
    spectrum = np.fft.rfft(white)
    frequencies = np.maximum(np.fft.rfftfreq(len(white)), 1.0 / len(white))
    pink = np.fft.irfft(spectrum / np.sqrt(frequencies), len(white))
    brown = np.fft.irfft(spectrum / frequencies, len(white))
    return {name: 0.5 * noise / np.abs(noise).max()
            for name, noise in (("white_noise", white), ("pink_noise", pink),
                                ("brown_noise", brown))}


def generate(out_dir: Path = DEFAULT_DIR, seed: int = 0, accents: tuple = ACCENTS,
             train_variants: tuple = TRAIN_VARIANTS) -> Path:
    """Writes the dataset to `out_dir` (through a temporary folder renamed into place): every
    voice of `accents` x (`train_variants`, the validation and the test variants). Fewer of them
    make a smaller corpus in seconds (the tests of mechanics use one accent, two training
    variants: 207 clips)."""
    if shutil.which("espeak-ng") is None:
        raise DataError("espeak-ng is not installed: run `make setup` (it installs it) or "
                        "`apt-get install espeak-ng`, or give --data PATH to a Speech Commands "
                        "folder.")
    rng = np.random.default_rng(seed)
    with written_in_place(out_dir) as staging:
        lists = {"validation": [], "testing": []}
        for variants, split in ((train_variants, None), (VALIDATION_VARIANTS, "validation"),
                                (TEST_VARIANTS, "testing")):
            for variant in variants:
                for accent in accents:
                    voice = f"{accent}+{variant}"
                    words = [w for w in COMMANDS for _ in range(TAKES_PER_COMMAND)]
                    words += list(rng.choice(OTHER_WORDS, size=3, replace=False))
                    for take, (word, clip) in enumerate(zip(words, _speak(words, voice, rng))):
                        name = f"{word}/{voice.replace('+', '_')}_nohash_{take}.wav"
                        (staging / word).mkdir(exist_ok=True)
                        write_wav(staging / name, clip)
                        if split:
                            lists[split].append(name)
        (staging / "_background_noise_").mkdir()
        for name, noise in _noises(rng).items():
            write_wav(staging / "_background_noise_" / f"{name}.wav", noise)
        for split, names in lists.items():
            (staging / f"{split}_list.txt").write_text("\n".join(names) + "\n")
    return out_dir


if __name__ == "__main__":
    generator_command(generate, DEFAULT_DIR, __doc__)
