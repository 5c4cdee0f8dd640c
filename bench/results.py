"""Where every benchmark's figures go: a JSON file with the date, device and package versions."""

import json
import time
from pathlib import Path

from apps.core.report import package_versions


def write_results(path: Path, results: list, device: str = "cpu") -> None:
    path.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "device": device,
                                "packages": package_versions(), "results": results},
                               indent=2) + "\n")
