"""Run records: config.json (options, Python and package versions), history.csv (one row per
epoch, rewritten when a resumed run drops an uncommitted epoch) and the weights' digest. No
plotting here, so the fitting code reads and writes runs without matplotlib."""

import csv
import dataclasses
import hashlib
import importlib.metadata
import json
import platform
from pathlib import Path

import numpy as np

BEST_WEIGHTS = "best.weights.h5"  # the lowest-val_loss weights so far, kept across resumes

PACKAGES = ("tensorflow", "keras", "keras-hub", "tensorflow-datasets", "tensorflow-hub", "numpy",
            "jax")


def package_versions() -> dict[str, str | None]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def write_config(path: Path, app, config) -> None:
    path.write_text(json.dumps({
        "app": app.name,
        "options": dataclasses.asdict(config),
        "python": platform.python_version(),
        "packages": package_versions(),
    }, indent=2) + "\n")


def read_history(path: Path) -> list[dict]:
    """history.csv rows as dicts of numbers, one per epoch (a resumed epoch's last row wins)."""
    if not path.exists():
        return []
    with path.open() as handle:
        rows = {}
        for row in csv.DictReader(handle):
            parsed = {key: float(value) for key, value in row.items() if value not in ("", None)}
            parsed["epoch"] = int(parsed["epoch"])
            rows[parsed["epoch"]] = parsed
    return [rows[epoch] for epoch in sorted(rows)]


def write_history(path: Path, rows: list[dict]) -> None:
    """Rewrites history.csv with `rows`, in the columns CSVLogger wrote there, or for a new file
    those of the rows."""
    if path.exists():
        with path.open() as handle:
            columns = next(csv.reader(handle))
    else:
        columns = list(rows[0])
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)


def weights_digest(model) -> str:
    """A short SHA-256 of every weight's bytes: equal for models whose weights are identical."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]
