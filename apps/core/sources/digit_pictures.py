"""Colour pictures composed from the real MNIST digits the project ships (data/mnist): the vision
app's offline sample: handwritten digits as if photographed on paper. Each picture is one digit
in a random dark ink, at a random size and place, on light paper of a random tint with grain;
its class is the digit. Training pictures use digits
0-7999 of the sample and test pictures only 8000-9999, so no digit is in both. Written as class
folders inside train/ and test/, the layout `folder_splits` reads, so the sample takes the path a
user's folder takes.
"""

from pathlib import Path

import numpy as np

from apps.core.sources import REPO_ROOT, generator_command, written_in_place
from apps.core.sources.digits import CLASS_NAMES, SAMPLE_DIR, SAMPLE_TRAIN_SIZE, read_split

DEFAULT_DIR = REPO_ROOT / "data" / "generated" / "digit_pictures"
PICTURE_SIZE = 96
DIGIT_SIZES = (40, 80)  # the drawn digit's side in pixels (its 28-pixel square, scaled)
PER_CLASS = {"train": 100, "test": 40}


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """float32 [size, size, 3]: light paper, a 2 x 2 grid of random light colours (each channel
    150-255) smoothly interpolated, with grain."""
    import tensorflow as tf

    coarse = rng.uniform(150, 255, (1, 2, 2, 3)).astype("float32")
    field = tf.image.resize(coarse, (size, size), method="bicubic")[0].numpy()
    return np.clip(field + rng.normal(0, 8, field.shape), 0, 255).astype("float32")


def scaled_digit(digit: np.ndarray, side: int) -> np.ndarray:
    """uint8 [28, 28] -> ink coverage float32 [side, side] in [0, 1] (bilinear)."""
    import tensorflow as tf

    return tf.image.resize(digit[None, ..., None].astype("float32") / 255, (side, side))[0, ..., 0] \
        .numpy().clip(0, 1)


def picture(digit: np.ndarray, rng: np.random.Generator, size: int = PICTURE_SIZE) -> np.ndarray:
    """uint8 [size, size, 3]: `digit` (uint8 [28, 28]) in a random dark colour, size and place
    on random paper."""
    field = background(rng, size)
    side = int(rng.integers(DIGIT_SIZES[0], DIGIT_SIZES[1] + 1))
    top, left = rng.integers(0, size - side + 1, size=2)
    ink = np.zeros((size, size, 1), "float32")
    ink[top:top + side, left:left + side, 0] = scaled_digit(digit, side)
    composed = field * (1 - ink) + rng.uniform(0, 110, 3) * ink  # dark ink
    return np.round(composed).astype("uint8")


def generate(out_dir: Path = DEFAULT_DIR, seed: int = 0, per_class: dict | None = None,
             size: int = PICTURE_SIZE) -> Path:
    """Writes `per_class[split]` PNG pictures of each digit into `out_dir/split/<digit>/` (through
    a temporary folder renamed into place): train/ from the sample's digits 0-7999, test/ from
    8000-9999."""
    import tensorflow as tf

    per_class = per_class or PER_CLASS
    images, labels = read_split(SAMPLE_DIR, "t10k")
    ranges = {"train": range(0, SAMPLE_TRAIN_SIZE), "test": range(SAMPLE_TRAIN_SIZE, len(images))}
    rng = np.random.default_rng(seed)
    with written_in_place(out_dir) as staging:
        for split, count in per_class.items():
            indices = np.array(ranges[split])
            for label, name in enumerate(CLASS_NAMES):
                (staging / split / name).mkdir(parents=True)
                for index in indices[labels[indices] == label][:count]:
                    (staging / split / name / f"{index}.png").write_bytes(
                        tf.io.encode_png(picture(images[index], rng, size)).numpy())
    return out_dir


if __name__ == "__main__":
    generator_command(generate, DEFAULT_DIR, __doc__)
