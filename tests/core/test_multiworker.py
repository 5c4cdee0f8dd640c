"""`--distribute multiworker`: two worker processes on 127.0.0.1 train together through the same
`train()`, with the app's own loss and metrics (a forecaster logs its MAE)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from apps import get_app
from apps.core import RunError, resolve_config, train
from tests.conftest import REPO_ROOT, read_json, serve_in_fresh_process


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for one in sockets:
        one.bind(("127.0.0.1", 0))
    ports = [one.getsockname()[1] for one in sockets]
    for one in sockets:
        one.close()
    return ports


def run_workers(app: str, options: list[str], tmp_path) -> list[str]:
    """Runs `python -m apps APP train --distribute multiworker OPTIONS` as two workers on
    127.0.0.1; returns their outputs after checking that both exited 0."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    command = [sys.executable, "-m", "apps", app, "train", "--distribute", "multiworker",
               "--data", "sample", *options, "--run-dir", str(tmp_path / "run"),
               "--export-dir", str(tmp_path / "exports")]
    workers = [subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}})})
        for index in range(2)]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
    return [stdout for stdout, _ in outputs]


def test_two_workers_train_in_step_and_only_the_chief_exports(tmp_path):
    outputs = run_workers("mnist", ["--model", "mnist_mlp", "--epochs", "3"], tmp_path)
    digests = [next(line.split("sha256 ")[1] for line in stdout.splitlines() if "sha256" in line)
               for stdout in outputs]
    assert digests[0] == digests[1]  # the gradients were all-reduced: identical weights
    for index, stdout in enumerate(outputs):
        assert f"[mnist worker {index}] epoch 3/3" in stdout

    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert metrics["workers"] == 2 and metrics["epochs_trained"] == 3
    assert metrics["test_accuracy"] >= 0.8
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert len(history) == 4 and "val_accuracy" in history[0]
    assert sorted(path.name for path in (tmp_path / "exports").iterdir()) == ["1"]
    served = serve_in_fresh_process(tmp_path / "exports" / "1",
                                    np.zeros((2, 28, 28), dtype=np.uint8), tmp_path)
    assert served["probabilities"].shape == (2, 10)


def test_workers_log_the_apps_own_metrics(tmp_path):
    outputs = run_workers("forecast", ["--epochs", "2", "--model-arg", "units=8"], tmp_path)
    assert "val_mae=" in outputs[0] and "accuracy" not in outputs[0]
    header = (tmp_path / "run" / "history.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "mae", "val_loss", "val_mae"} <= set(header)
    assert "test_mae" in read_json(tmp_path / "run" / "metrics.json")


def test_multiworker_without_tf_config_says_what_to_set(monkeypatch, run_paths):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    app = get_app("mnist")
    with pytest.raises(RunError, match="reads the cluster from TF_CONFIG, which is unset"):
        train(app, resolve_config(app, distribute="multiworker", **run_paths))
