"""Shared fixtures: quiet TensorFlow, a scratch run/export folder, and a fresh-process runner."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, *args: str, env: dict | None = None, timeout: int = 600):
    """Runs `code` in a fresh Python process at the repository root; returns the completed run."""
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})


def run_cli(*args: str, timeout: int = 600):
    """`python -m apps ARGS...` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "apps", *args], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


SERVE_IN_FRESH_PROCESS = """
import sys, numpy as np, tensorflow as tf
import tensorflow_text  # registers the tokenizer ops that text exports use
export_dir, input_path, output_path = sys.argv[1:]
loaded = tf.saved_model.load(export_dir)
serve = loaded.signatures["serving_default"]
name = list(serve.structured_input_signature[1])[0]
raw = np.load(input_path, allow_pickle=True)
outputs = serve(**{name: tf.constant(raw)})
np.savez(output_path, **{key: value.numpy() for key, value in outputs.items()})
"""


def serve_in_fresh_process(export_dir, raw_inputs, tmp_path):
    """Calls an export's serving_default in a new process; returns its outputs as arrays."""
    import numpy as np

    input_path, output_path = tmp_path / "serve_input.npy", tmp_path / "serve_output.npz"
    np.save(input_path, raw_inputs)
    result = run_python(SERVE_IN_FRESH_PROCESS, str(export_dir), str(input_path), str(output_path))
    assert result.returncode == 0, result.stderr
    return dict(np.load(output_path, allow_pickle=True))


def read_json(path: Path):
    return json.loads(Path(path).read_text())


@pytest.fixture
def run_paths(tmp_path):
    """Options that keep a test's run directory and exports inside its tmp_path."""
    return {"run_dir": str(tmp_path / "run"), "export_dir": str(tmp_path / "exports")}


def train_on_sample(app, folder, **overrides):
    """Trains `app` on its shipped sample with run and export folders under `folder`; returns
    the resolved config and the metrics, for module-scoped fixtures that share one run."""
    from apps.config import resolve_config
    from apps.runner import train

    config = resolve_config(app, data="sample", run_dir=str(folder / "run"),
                            export_dir=str(folder / "exports"), **overrides)
    return config, train(app, config)
