"""Where every benchmark's figures go: a JSON file with the date, device and package versions."""

import json
import time
from pathlib import Path

from apps.core.rundir import package_versions


def write_results(path: Path, results: list, device: str = "cpu") -> None:
    path.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "device": device,
                                "packages": package_versions(), "results": results},
                               indent=2) + "\n")


def write_and_print_rows(path: Path, rows: list[dict]) -> None:
    """`write_results`, and each row on a line of key=value pairs."""
    write_results(path, rows)
    for row in rows:
        print(", ".join(f"{key}={value}" for key, value in row.items()))
    print(f"wrote {path}")
