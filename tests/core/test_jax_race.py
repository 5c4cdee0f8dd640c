"""bench.jax_race: the MNIST races on the JAX backend without TensorFlow, as they run on a GPU
machine, from what `prepare` takes from the mnist app."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from apps import get_app
from apps.core import resolve_config
from tests.conftest import REPO_ROOT

# As on the GPU machine, where TensorFlow is not installed: importing it fails (a None in
# sys.modules would not do: Keras reads "tensorflow" in sys.modules as TensorFlow being in use).
WITHOUT_TENSORFLOW = """
import runpy, sys

class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ImportError("TensorFlow is not installed here")

sys.meta_path.insert(0, NoTensorFlow())
sys.argv[0] = "bench.jax_race"
runpy.run_module("bench.jax_race", run_name="__main__")
"""


@pytest.mark.long
@pytest.mark.full_tier  # a benchmark's mechanics, no app's: about 16 s
def test_the_race_runs_on_jax_without_tensorflow_from_the_apps_splits_model_and_recipe(tmp_path):
    folder, results = tmp_path / "race", tmp_path / "jax_race.json"
    subprocess.run([sys.executable, "-m", "bench.jax_race", "prepare", "--pairs", "1",
                    "--folder", str(folder)], cwd=REPO_ROOT, check=True)
    defaults = dataclasses.asdict(resolve_config(get_app("mnist"), model="mnist_mlp"))
    recipe = json.loads((folder / "mnist_mlp-0.json").read_text())
    assert (recipe["batch_size"], recipe["epochs"], recipe["patience"],
            recipe["steps_per_execution"]) == (defaults["batch_size"], defaults["epochs"],
                                               defaults["patience"],
                                               defaults["steps_per_execution"])
    schedule = recipe["optimizer"]["config"]["learning_rate"]["config"]
    assert schedule["initial_learning_rate"] == defaults["learning_rate"]

    subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, "run", "--pairs", "1", "--races",
                    "mnist_mlp", "--folder", str(folder), "--out", str(results)],
                   cwd=REPO_ROOT, env={**os.environ, "KERAS_BACKEND": "jax"}, check=True)
    written = json.loads(results.read_text())
    assert written["backend"] == "jax"
    (race,) = written["results"]
    (pair,) = race["pairs"]
    assert race["race"] == "mnist_mlp" and pair["reference_epochs"] == 5  # the tutorial's epochs
    assert 1 <= pair["runner_epochs"] <= defaults["epochs"]
    assert pair["target"] > 0.9 and pair["runner_final"] > 0.9  # both trained, on real digits
