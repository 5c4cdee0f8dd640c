"""`--distribute multiworker`: two worker processes on 127.0.0.1 train together through the same
`train()`, with the model's own loss and the app's metrics (a forecaster logs its MAE, a VAE
trains on its own objective), and resume together after one of them is killed."""

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from apps import get_app
from apps.core import RunError, resolve_config, train
from tests.conftest import REPO_ROOT, read_json


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for one in sockets:
        one.bind(("127.0.0.1", 0))
    ports = [one.getsockname()[1] for one in sockets]
    for one in sockets:
        one.close()
    return ports


def start_workers(app: str, options: list[str], tmp_path, run_dirs=("run", "run")) -> list:
    """Starts `python -m apps APP train --distribute multiworker OPTIONS` as two workers on
    127.0.0.1, worker i with `--run-dir tmp_path/run_dirs[i]`."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    command = [sys.executable, "-m", "apps", app, "train", "--distribute", "multiworker",
               "--data", "sample", "--explain-examples", "0", *options, "--export-dir",
               str(tmp_path / "exports")]
    return [subprocess.Popen(
        [*command, "--run-dir", str(tmp_path / run_dirs[index])], cwd=REPO_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}})})
        for index in range(2)]


def run_workers(app: str, options: list[str], tmp_path, run_dirs=("run", "run"),
                returncode: int = 0) -> list[tuple[str, str]]:
    """Runs two workers (`start_workers`) to the end; returns their (stdout, stderr) after
    checking that both exited with `returncode`."""
    workers = start_workers(app, options, tmp_path, run_dirs)
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == returncode, stderr[-3000:]
    return outputs


@pytest.mark.long
def test_workers_log_the_apps_own_metrics(tmp_path):
    chief_output = run_workers("forecast", ["--epochs", "2", "--model-arg", "units=8"],
                               tmp_path)[0][0]
    assert "val_mae=" in chief_output and "accuracy" not in chief_output
    header = (tmp_path / "run" / "history.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "mae", "val_loss", "val_mae"} <= set(header)
    assert "test_mae" in read_json(tmp_path / "run" / "metrics.json")


def kill_worker_after_epoch(app: str, options: list[str], tmp_path, epoch: int) -> int:
    """Starts two workers, SIGKILLs worker 1 once the chief has backed up `epoch` epochs, and
    checks that the chief stops with the one-line error; returns the epochs the backup holds."""
    chief, worker = start_workers(app, options, tmp_path)
    backup = tmp_path / "run" / "backup_head" / "training_metadata.json"
    deadline = time.monotonic() + 300
    while not (backup.exists() and json.loads(backup.read_text() or "{}").get("epoch", 0) >= epoch):
        assert chief.poll() is None and time.monotonic() < deadline, chief.communicate()[1][-3000:]
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    _, stderr = chief.communicate(timeout=300)
    assert chief.returncode == 2, stderr[-3000:]
    assert "lost a worker" in stderr and "run the same command on every worker" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "run" / "metrics.json").exists()
    return json.loads(backup.read_text())["epoch"]


def check_resumed_together(app: str, outputs, tmp_path, committed: int, epochs: int) -> dict:
    """Both workers restarted after the last backup and ended with identical weights; the
    chief's history is one continuous run and only the chief exported. Returns its metrics."""
    for index, (stdout, _) in enumerate(outputs):
        assert f"[{app} worker {index}] epoch {committed}/{epochs}" not in stdout
        assert f"[{app} worker {index}] epoch {epochs}/{epochs}" in stdout
    digests = [next(line.split("sha256 ")[1] for line in stdout.splitlines() if "sha256" in line)
               for stdout, _ in outputs]
    assert digests[0] == digests[1]  # the gradients were all-reduced: identical weights
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert metrics["resumed"] and metrics["workers"] == 2
    assert metrics["epochs_trained"] == epochs
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert [int(row.split(",")[0]) for row in history[1:]] == list(range(epochs))
    assert sorted(path.name for path in (tmp_path / "exports").iterdir()) == ["1"]
    return metrics


@pytest.mark.long
@pytest.mark.full_tier  # about 60 s; the forecaster's two-worker run above is the fast tier's
def test_a_vae_trains_on_two_workers_in_step_resumes_after_a_kill_and_only_the_chief_exports(
        tmp_path):
    """The VAE's objective lives in its `compute_loss`: the workers' step calls it, as Keras'
    own `train_step` does. Killed after its first epoch, the run resumes on both workers."""
    options = ["--model", "vae", "--epochs", "2", "--max-examples", "512", "--judge-epochs", "0"]
    committed = kill_worker_after_epoch("generative", options, tmp_path, 1)

    # A worker that cannot see the chief's run dir would start afresh: refused, not a hang.
    refused = run_workers("generative", options, tmp_path, ("run", "elsewhere"), returncode=2)
    assert "every worker must read the chief's --run-dir" in refused[0][1]

    outputs = run_workers("generative", options, tmp_path)
    metrics = check_resumed_together("generative", outputs, tmp_path, committed, 2)
    assert "val_loss" in (tmp_path / "run" / "history.csv").read_text().splitlines()[0]
    assert math.isfinite(metrics["test_reconstruction_loss"])
    reconstruct = tf.saved_model.load(str(tmp_path / "exports" / "1")).signatures["reconstruct"]
    assert reconstruct(pixels=tf.zeros((2, 28, 28), tf.uint8))["images"].shape == (2, 28, 28)


def test_multiworker_without_tf_config_says_what_to_set(monkeypatch, run_paths):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    app = get_app("mnist")
    with pytest.raises(RunError, match="reads the cluster from TF_CONFIG, which is unset"):
        train(app, resolve_config(app, distribute="multiworker", **run_paths))
