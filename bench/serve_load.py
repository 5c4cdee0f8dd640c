"""`make bench`, serving section: a bounded load test of `python -m apps serve` on 127.0.0.1.

The MNIST app's default model (mnist_cnn, one epoch on the shipped sample) is exported and
served; 1, 8 and 32 concurrent clients (threads, one HTTP session each) send single-digit
`:predict` requests in TF Serving's row format, `--requests` in all per level, with the server's
batching on and then off. Per level: requests per second, p50 and p99 latency, errors (any
non-200 answer), and the mean batch the server formed (its X-Batch-Size header). Results go to
bench/serve_load.json.

    python -m bench.serve_load [--requests 600]
"""

import argparse
import concurrent.futures
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

from apps import get_app
from apps.core import resolve_config, train
from apps.core.sources.digits import SAMPLE_DIR, read_split
from bench.results import write_results
from serving import wait_ready

RESULTS = Path(__file__).with_name("serve_load.json")
REPO_ROOT = Path(__file__).resolve().parents[1]
PORT = 8599


def load_level(url: str, clients: int, total: int, digits: np.ndarray) -> dict:
    bodies = [{"instances": digits[index % len(digits)][np.newaxis].tolist()}
              for index in range(total)]

    def client(index: int) -> list[tuple[float, int, int]]:
        session, answers = requests.Session(), []
        for body in bodies[index::clients]:
            started = time.perf_counter()
            response = session.post(url, json=body, timeout=60)
            answers.append((time.perf_counter() - started, response.status_code,
                            int(response.headers.get("X-Batch-Size", 0))))
        return answers

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        answers = [answer for answers in pool.map(client, range(clients)) for answer in answers]
    seconds = time.perf_counter() - started
    latencies = sorted(latency for latency, _, _ in answers)
    return {"clients": clients, "requests": len(answers),
            "requests_per_second": round(len(answers) / seconds, 1),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1,
                                                 int(len(latencies) * 0.99))], 1),
            "errors": sum(status != 200 for _, status, _ in answers),
            "mean_batch": round(statistics.mean(batch for _, _, batch in answers), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=600, help="requests per level")
    arguments = parser.parse_args()
    digits = read_split(SAMPLE_DIR, "t10k")[0][:100]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        app = get_app("mnist")
        train(app, resolve_config(app, data="sample", epochs=1, run_dir=f"{folder}/run",
                                  export_dir=f"{folder}/exports/mnist"))
        for batching in (True, False):
            process = subprocess.Popen(
                [sys.executable, "-m", "apps", "serve", "--model-dir", f"{folder}/exports",
                 "--port", str(PORT), "--batching" if batching else "--no-batching"],
                cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                url = f"http://127.0.0.1:{PORT}/v1/models/mnist"
                wait_ready(url)
                load_level(f"{url}:predict", 4, 40, digits)  # warm-up: traces the signature
                for clients in (1, 8, 32):
                    rows.append({"batching": batching,
                                 **load_level(f"{url}:predict", clients, arguments.requests,
                                              digits)})
                    print(", ".join(f"{key}={value}" for key, value in rows[-1].items()),
                          flush=True)
            finally:
                process.terminate()
                process.wait(timeout=30)
    write_results(RESULTS, rows)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
