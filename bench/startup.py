"""`make bench`, start-up section: how long the command line takes to answer, and to the first
training step.

Each command runs in a fresh process; the figure is the median wall time of three runs, and
whether the process imported TensorFlow (the command line defers it until a command needs it:
`apps.cli.defer_imports`). The time to the first step is from
launching `python -m apps mnist train --model mnist_mlp` to the end of its first training batch.
Results go to bench/startup.json.

    python -m bench.startup
"""

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from apps import APP_NAMES
from bench.results import write_and_print_rows

RESULTS = Path(__file__).with_name("startup.json")
REPO_ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "python -m apps --help": ["--help"],
    "python -m apps nosuchapp (usage error)": ["nosuchapp"],
    "python -m apps serve --port x (usage error)": ["serve", "--port", "x"],
    "python -m apps list": ["list"],
    **{f"python -m apps {app} --help": [app, "--help"] for app in APP_NAMES},
    "python -m apps mnist train --help": ["mnist", "train", "--help"],
    "python -m apps mnist train --epochs x (usage error)": ["mnist", "train", "--epochs", "x"],
    "python -m apps detection predict (usage error: no --model-dir)": ["detection", "predict"],
}
FIRST_STEP = """
import sys, time
import keras
from apps import get_app
from apps.core import resolve_config, train

class FirstStep(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        print(f"FIRST_STEP {time.time()}", flush=True)
        sys.exit(0)

app = get_app("mnist")
train(app, resolve_config(app, data="sample", model="mnist_mlp", epochs=1,
                          run_dir=sys.argv[1] + "/run", export_dir=sys.argv[1] + "/exports"),
      callbacks=(FirstStep(),))
"""


RUN_CLI = """
import atexit, runpy, sys
atexit.register(lambda: print("TENSORFLOW", "tensorflow.python" in sys.modules, flush=True))
sys.argv = ["apps", *sys.argv[1:]]
runpy.run_module("apps", run_name="__main__", alter_sys=True)
"""


def answer(arguments: list[str]) -> dict:
    """Median seconds of three runs, and whether TensorFlow was imported (asked of the process
    itself at exit: the CLI silences stderr while it imports TensorFlow; a deferred import that
    never ran leaves `tensorflow` in sys.modules but none of its submodules)."""
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", RUN_CLI, *arguments], cwd=REPO_ROOT,
                                capture_output=True, text=True)
        seconds.append(time.perf_counter() - started)
    return {"seconds": round(statistics.median(seconds), 2), "exit_status": result.returncode,
            "imports_tensorflow": "TENSORFLOW True" in result.stdout}


def first_step() -> dict:
    seconds = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as folder:
            launched = time.time()
            result = subprocess.run([sys.executable, "-c", FIRST_STEP, folder], cwd=REPO_ROOT,
                                    capture_output=True, text=True)
            line = next(line for line in result.stdout.splitlines()
                        if line.startswith("FIRST_STEP"))
            seconds.append(float(line.split()[1]) - launched)
    return {"seconds": round(statistics.median(seconds), 2), "exit_status": 0,
            "imports_tensorflow": True}


def main() -> None:
    rows = [{"command": name, **answer(arguments)} for name, arguments in COMMANDS.items()]
    rows.append({"command": "python -m apps mnist train --model mnist_mlp: to the end of the "
                            "first training step", **first_step()})
    write_and_print_rows(RESULTS, rows)


if __name__ == "__main__":
    main()
