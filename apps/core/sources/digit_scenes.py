"""Scenes composed from the real MNIST digits the project ships (data/mnist): the offline sample of
the dense-vision apps. Each scene is a 96 x 96 picture of light paper (the digit pictures'
paper: `digit_pictures.background`) with two to four digits in dark ink, each 16-56 px and placed
where it overlaps no other; its mask gives every ink pixel its digit's class (digit + 1; 0 is the
background). Training scenes use digits 0-7999 of the sample and test scenes only 8000-9999, so no
digit is in both. Written as `images/` and `masks/` (PNG index masks, one per image, same name)
inside train/ and test/, with `classes.txt`: the layout `masks.mask_folder_splits` reads; and each
digit's tight box around its masked ink in COCO's format, `annotations/instances_train.json` and
`instances_test.json` (category ids 1-10 for the digits 0-9): the layout `coco.coco_splits` reads.
So the sample takes the path a user's folder takes.
"""

import json
from pathlib import Path

import numpy as np

from apps.core.sources import REPO_ROOT, generator_command, written_in_place
from apps.core.sources.digit_pictures import background, scaled_digit
from apps.core.sources.digits import CLASS_NAMES, SAMPLE_DIR, SAMPLE_TRAIN_SIZE, read_split

DEFAULT_DIR = REPO_ROOT / "data" / "generated" / "digit_scenes"
SCENE_SIZE = 96
DIGIT_SIZES = (16, 56)  # a digit's side in pixels (its 28-pixel square, scaled)
DIGITS_PER_SCENE = (2, 4)
# 2,400 training scenes rather than 1,200: the detector overfits half as many (mAP@0.5 0.89 with
# early stopping against 0.97), and the U-Net reaches a higher IoU in as many steps.
SCENES = {"train": 2400, "test": 200}
SEGMENT_NAMES = ["background", *CLASS_NAMES]
INK = 0.5  # the ink coverage from which a pixel belongs to its digit in the mask


def _place(rng: np.random.Generator, side: int, placed: list, size: int):
    """A top-left corner for a `side` square that overlaps none of the `placed` squares, or None
    after a few tries."""
    for _ in range(20):
        top, left = (int(value) for value in rng.integers(0, size - side + 1, size=2))
        if all(top + side <= other_top or other_top + other_side <= top
               or left + side <= other_left or other_left + other_side <= left
               for other_top, other_left, other_side in placed):
            return top, left
    return None


def scene(digits: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
          size: int = SCENE_SIZE) -> tuple[np.ndarray, np.ndarray, list]:
    """A picture uint8 [size, size, 3] of `digits` (uint8 [n, 28, 28]), its mask uint8
    [size, size] (label + 1 on each digit's ink, 0 elsewhere) and its boxes: (label, x_min,
    y_min, x_max, y_max) per digit, the pixel edges around its masked ink. A digit that finds no
    free place is left out."""
    field = background(rng, size)
    mask = np.zeros((size, size), "uint8")
    placed, boxes = [], []
    for digit, label in zip(digits, labels):
        side = int(rng.integers(DIGIT_SIZES[0], DIGIT_SIZES[1] + 1))
        corner = _place(rng, side, placed, size)
        if corner is None:
            continue
        top, left = corner
        placed.append((top, left, side))
        coverage = scaled_digit(digit, side)[..., None]
        area = field[top:top + side, left:left + side]
        field[top:top + side, left:left + side] = (area * (1 - coverage)
                                                   + rng.uniform(0, 110, 3) * coverage)
        ink = coverage[..., 0] >= INK
        mask[top:top + side, left:left + side][ink] = label + 1
        rows, columns = np.nonzero(ink)
        boxes.append((int(label), left + int(columns.min()), top + int(rows.min()),
                      left + int(columns.max()) + 1, top + int(rows.max()) + 1))
    return np.round(field).astype("uint8"), mask, boxes


def coco_annotations(split: str, scene_boxes: list[list], size: int) -> dict:
    """COCO's instances file for the `split`'s scenes (`scene_boxes[i]`: scene i's boxes):
    `bbox` is (x, y, width, height) in pixels; category id = digit + 1."""
    images = [{"id": index + 1, "file_name": f"{split}_{index:05d}.png", "width": size,
               "height": size} for index in range(len(scene_boxes))]
    annotations = []
    for index, boxes in enumerate(scene_boxes):
        for label, x_min, y_min, x_max, y_max in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1,
                                "category_id": label + 1,
                                "bbox": [x_min, y_min, x_max - x_min, y_max - y_min],
                                "area": (x_max - x_min) * (y_max - y_min), "iscrowd": 0})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": digit + 1, "name": name}
                           for digit, name in enumerate(CLASS_NAMES)]}


def generate(out_dir: Path = DEFAULT_DIR, seed: int = 0, scenes: dict | None = None,
             size: int = SCENE_SIZE) -> Path:
    """Writes `scenes[split]` scenes into `out_dir/split/images/` and `.../masks/` and their
    boxes into `out_dir/annotations/instances_split.json` (through a temporary folder renamed into
    place), with `classes.txt`: train/ from the sample's digits 0-7999, test/ from 8000-9999."""
    import tensorflow as tf

    scenes = scenes or SCENES
    images, labels = read_split(SAMPLE_DIR, "t10k")
    ranges = {"train": (0, SAMPLE_TRAIN_SIZE), "test": (SAMPLE_TRAIN_SIZE, len(images))}
    rng = np.random.default_rng(seed)
    with written_in_place(out_dir) as staging:
        (staging / "classes.txt").write_text("".join(f"{name}\n" for name in SEGMENT_NAMES))
        (staging / "annotations").mkdir()
        for split, count in scenes.items():
            (staging / split / "images").mkdir(parents=True)
            (staging / split / "masks").mkdir()
            scene_boxes = []
            for index in range(count):
                chosen = rng.integers(*ranges[split], size=rng.integers(DIGITS_PER_SCENE[0],
                                                                        DIGITS_PER_SCENE[1] + 1))
                picture, mask, boxes = scene(images[chosen], labels[chosen], rng, size)
                scene_boxes.append(boxes)
                name = f"{split}_{index:05d}.png"
                (staging / split / "images" / name).write_bytes(tf.io.encode_png(picture).numpy())
                (staging / split / "masks" / name).write_bytes(
                    tf.io.encode_png(mask[..., None]).numpy())
            (staging / "annotations" / f"instances_{split}.json").write_text(
                json.dumps(coco_annotations(split, scene_boxes, size)))
    return out_dir


if __name__ == "__main__":
    generator_command(generate, DEFAULT_DIR, __doc__)
