"""Where every benchmark's figures go: a JSON file with the date, device and package versions.
Importing it needs no TensorFlow, so the benchmarks that run with Keras alone (on a GPU machine
with JAX) write theirs through it too."""

import json
import os
import platform
import time
from pathlib import Path

import keras


def write_results(path: Path, results: list, device: str = "cpu") -> None:
    from apps.core.rundir import package_versions  # the apps' packages: TensorFlow among them

    path.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "device": device,
                                "packages": package_versions(), "results": results},
                               indent=2) + "\n")


def backend_device() -> str:
    """The device Keras computes on: the first JAX device's kind, else this machine's
    processor."""
    if keras.backend.backend() == "jax":
        import jax

        return str(jax.devices()[0].device_kind)
    return platform.processor() or platform.machine()


def write_backend_results(path: Path, results: list) -> None:
    """`results` with the date, Keras' backend, its device and version: for the benchmarks that
    run with Keras alone."""
    path.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "backend": keras.backend.backend(),
        "device": backend_device(), "keras": keras.__version__,
        "command_env": {"KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "")},
        "results": results}, indent=2) + "\n")
    print(f"wrote {path}")


def write_and_print_rows(path: Path, rows: list[dict]) -> None:
    """`write_results`, and each row on a line of key=value pairs."""
    write_results(path, rows)
    for row in rows:
        print(", ".join(f"{key}={value}" for key, value in row.items()))
    print(f"wrote {path}")
