"""Object boxes in Pascal VOC's format: a folder with `Annotations/<id>.xml` (one per picture:
its `filename`, `size` and an `object` per box, with its `name` and `bndbox` corners as 1-based
pixel indices) and the pictures in `JPEGImages/`; `ImageSets/Main/train.txt` and `val.txt` (or
`test.txt`) name each split's ids, or without them the pictures are split by seed. VOCdevkit's
VOC2007 or VOC2012 folder works as it is unpacked.

Each box is checked as the COCO reader checks them: a box of no area or outside its picture is
skipped, and a picture whose file is missing or whose XML does not parse is skipped with its
boxes; each is counted and the first few named. Boxes marked `difficult` are left out, as VOC's
evaluation ignores them. Class ids are the object names found, in alphabetical order.
"""

import xml.etree.ElementTree as ElementTree
from pathlib import Path

from apps.core.app import DataSplits
from apps.core.errors import DataError
from apps.core.sources import boxes, hold_out


def _read(path: Path, folder: Path) -> tuple[Path, float, float, list[tuple]]:
    """(picture path, width, height, [(name, (xmin, ymin, xmax, ymax), difficult)])."""
    root = ElementTree.parse(path).getroot()
    size = root.find("size")
    objects = [(entry.findtext("name", "").strip(),
                tuple(float(entry.find("bndbox").findtext(corner))
                      for corner in ("xmin", "ymin", "xmax", "ymax")),
                entry.findtext("difficult", "0").strip() == "1")
               for entry in root.iter("object")]
    return (folder / "JPEGImages" / root.findtext("filename", f"{path.stem}.jpg").strip(),
            float(size.findtext("width")), float(size.findtext("height")), objects)


def _checked(ids: list[str], folder: Path) -> tuple[list, list, list]:
    """The readable pictures [(path, names, relative corners)], the problems, and the names."""
    pictures, problems = [], []
    for picture_id in ids:
        path = folder / "Annotations" / f"{picture_id}.xml"
        try:
            picture, width, height, objects = _read(path, folder)
        except (OSError, ElementTree.ParseError, AttributeError, TypeError, ValueError) as error:
            problems.append(("image", f"{path}: not a readable VOC annotation ({error})"))
            continue
        if not picture.is_file():
            problems.append(("image", f"{path}: no picture {picture}"))
            continue
        names, corners = [], []
        for name, (x_min, y_min, x_max, y_max), difficult in objects:
            if difficult:
                continue
            if x_max < x_min or y_max < y_min:  # inclusive indices: x_max == x_min is 1 pixel
                problems.append(("box", f"{path}: {name} box {x_min:g} {y_min:g} {x_max:g} "
                                        f"{y_max:g} has no area"))
                continue
            if not boxes.inside(x_min - 1, y_min - 1, x_max, y_max, width, height):
                problems.append(("box", f"{path}: {name} box {x_min:g} {y_min:g} {x_max:g} "
                                        f"{y_max:g} lies outside the {width:g} x {height:g} "
                                        f"picture"))
                continue
            names.append(name)
            corners.append(boxes.from_voc([x_min, y_min, x_max, y_max], width, height)[0]
                           .clip(0, 1))
        pictures.append((str(picture), names, corners))
    return pictures, problems


def voc_splits(folder: Path, image_size: int, seed: int, reason: str,
               source: str | None = None) -> DataSplits:
    """The pictures of a VOC folder resized to `image_size`, with their boxes as padded rows
    (class id, relative corners; `apps.core.sources.boxes`): ImageSets/Main's train and val (or
    test) lists, or every annotation split by `seed`."""
    if not (folder / "Annotations").is_dir() or not (folder / "JPEGImages").is_dir():
        raise DataError(f"--data {folder}: expected Pascal VOC's Annotations/ (one XML file a "
                        f"picture) and JPEGImages/ folders.")
    lists = folder / "ImageSets" / "Main"
    test_list = next((lists / name for name in ("val.txt", "test.txt")
                      if (lists / name).is_file()), None)
    if (lists / "train.txt").is_file() and test_list:
        train_ids, test_ids = ((path.read_text().split()) for path in (lists / "train.txt",
                                                                        test_list))
    else:
        every = sorted(path.stem for path in (folder / "Annotations").glob("*.xml"))
        kept, held_out = hold_out(len(every), seed) if every else ([], [])
        train_ids, test_ids = [every[i] for i in kept], [every[i] for i in held_out]
    train, train_problems = _checked(train_ids, folder)
    test, test_problems = _checked(test_ids, folder)
    class_names = sorted({name for _, names, _ in train + test for name in names})
    index = {name: position for position, name in enumerate(class_names)}

    def numbered(pictures):
        return [(path, [index[name] for name in names], corners)
                for path, names, corners in pictures]

    return boxes.box_splits(folder, numbered(train), numbered(test), class_names,
                            train_problems + test_problems, image_size,
                            source or f"Pascal VOC folder {folder} ({reason})")
