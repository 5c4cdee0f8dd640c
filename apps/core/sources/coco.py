"""Object boxes in COCO's format: a folder with `annotations/instances_<part>.json` (COCO's
`images`, `annotations` with `bbox` = (x, y, width, height) in pixels, and `categories`) and each
part's pictures in `<part>/images/`, `<part>/` or `images/` (COCO 2017 unpacked: `train2017/`
beside `annotations/`). A part whose name holds "train" is the training split and the other the
test split; a single part is split by seed.

Each annotation is checked before training: a box of zero or negative size, a box outside its
picture, or a category missing from `categories` is skipped, and a picture whose file is missing
is skipped with its boxes; each is counted (`skipped_boxes`, `skipped_images`) and the first few
named. Crowd annotations (`iscrowd` 1) are left out, as COCO's evaluation ignores them. Class ids
are the categories in order of their COCO id, counted from 0.
"""

import json
from pathlib import Path

import numpy as np

from apps.core.app import DataSplits
from apps.core.errors import DataError
from apps.core.sources import boxes, hold_out


def _image_folder(folder: Path, part: str) -> Path:
    candidates = [folder / part / "images", folder / part, folder / "images"]
    found = next((candidate for candidate in candidates if candidate.is_dir()), None)
    if found is None:
        raise DataError(f"--data {folder}: annotations/instances_{part}.json has no picture "
                        f"folder; expected one of {', '.join(map(str, candidates))}.")
    return found


def _read_instances(path: Path) -> dict:
    try:
        instances = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not a readable COCO annotation file ({error}).")
    missing = [key for key in ("images", "annotations", "categories")
               if not isinstance(instances.get(key) if isinstance(instances, dict) else None,
                                 list)]
    if missing:
        raise DataError(f"{path}: not COCO's instances format: no {' / '.join(missing)} list.")
    return instances


def _checked_part(path: Path, image_folder: Path, class_ids: dict) -> tuple[list, list]:
    """[(picture path, class ids, relative boxes)] of the part's pictures that exist, with the
    boxes that pass the checks, and the problems [("image" or "box", "file: why")]."""
    instances = _read_instances(path)
    by_image = {}
    for annotation in instances["annotations"]:
        by_image.setdefault(annotation.get("image_id"), []).append(annotation)
    kept, problems = [], []
    for image in instances["images"]:
        picture = image_folder / str(image.get("file_name", ""))
        if not picture.is_file():
            problems.append(("image", f"{path}: image {image.get('id')}: no file {picture}"))
            continue
        width, height = float(image["width"]), float(image["height"])
        ids, corners = [], []
        for annotation in by_image.get(image.get("id"), []):
            where = f"{path}: annotation {annotation.get('id')} ({picture.name})"
            if annotation.get("iscrowd"):
                continue
            if annotation.get("category_id") not in class_ids:
                problems.append(("box", f"{where}: category {annotation.get('category_id')} "
                                        f"is not in categories"))
                continue
            x, y, box_width, box_height = (float(value) for value in annotation["bbox"])
            if box_width <= 0 or box_height <= 0:
                problems.append(("box", f"{where}: box {annotation['bbox']} has no area"))
                continue
            if not boxes.inside(x, y, x + box_width, y + box_height, width, height):
                problems.append(("box", f"{where}: box {annotation['bbox']} lies outside "
                                        f"the {width:g} x {height:g} picture"))
                continue
            ids.append(class_ids[annotation["category_id"]])
            corners.append(np.clip(boxes.from_coco([x, y, box_width, box_height],
                                                   width, height)[0], 0, 1))
        kept.append((str(picture), ids, corners))
    return kept, problems


def coco_splits(folder: Path, image_size: int, seed: int, reason: str,
                source: str | None = None) -> DataSplits:
    """The pictures of `folder` resized to `image_size` with their boxes as padded rows (class
    id, relative corners; `apps.core.sources.boxes`): the training part and the test part, or one
    part split by `seed`."""
    files = sorted((folder / "annotations").glob("instances_*.json"))
    if not files:
        raise DataError(f"--data {folder}: expected COCO annotation files "
                        f"annotations/instances_<part>.json (e.g. instances_train.json and "
                        f"instances_val.json), or Pascal VOC's Annotations/ and JPEGImages/; "
                        f"found neither.")
    categories = sorted(_read_instances(files[0])["categories"], key=lambda entry: entry["id"])
    class_ids = {entry["id"]: index for index, entry in enumerate(categories)}
    class_names = [str(entry["name"]) for entry in categories]
    parts = {file.stem.removeprefix("instances_"): file for file in files}
    checked = {part: _checked_part(file, _image_folder(folder, part), class_ids)
               for part, file in parts.items()}
    problems = [problem for _, part_problems in checked.values() for problem in part_problems]
    training = [part for part in parts if "train" in part]
    if len(parts) == 1:
        pictures = next(iter(checked.values()))[0]
        kept, held_out = hold_out(len(pictures), seed) if pictures else ([], [])
        train, test = [pictures[i] for i in kept], [pictures[i] for i in held_out]
    elif len(training) == 1 and len(parts) == 2:
        other = next(part for part in parts if part not in training)
        train, test = checked[training[0]][0], checked[other][0]
    else:
        raise DataError(f"--data {folder}: annotations/ holds {len(parts)} parts "
                        f"({', '.join(parts)}); expected one, or two of which one is named "
                        f"train (instances_train*.json) and the other is the test part.")
    return boxes.box_splits(folder, train, test, class_names, problems, image_size,
                            source or f"COCO folder {folder} ({reason})")
