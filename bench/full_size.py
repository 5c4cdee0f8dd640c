"""`make bench`, full-size section: the loaders at the real datasets' sizes, on generated data.

- Jena climate: a CSV of 420,551 rows and 15 columns (the real file's shape and header) read by
  the forecast app's loader for one column: seconds to load, peak memory.
- Speech Commands v2: 105,829 one-second clips, simulated by repeating a few hundred generated
  WAV files through the speech app's streaming loader (file paths in memory, audio read inside
  tf.data): clips per second read and resampled, peak memory while streaming them all.

Peak memory is the process's peak resident set (it only grows), reported after each workload
with the figure before it, so each workload's own growth shows. Results go to
bench/full_size.json.

    python -m bench.full_size [--clips 105829] [--rows 420551]
"""

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from apps.core.sources.series import read_column
from apps.core.sources.speech_commands import stream_clips
from apps.core.sources.spoken_words import SAMPLE_RATE, write_wav
from bench.results import write_and_print_rows

RESULTS = Path(__file__).with_name("full_size.json")
JENA_COLUMNS = ["Date Time", "p (mbar)", "T (degC)", "Tpot (K)", "Tdew (degC)", "rh (%)",
                "VPmax (mbar)", "VPact (mbar)", "VPdef (mbar)", "sh (g/kg)", "H2OC (mmol/mol)",
                "rho (g/m**3)", "wv (m/s)", "max. wv (m/s)", "wd (deg)"]


def peak_memory_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def jena_sized_csv(path: Path, rows: int) -> Path:
    """Random weather-like values in Jena's layout: a timestamp and 14 numeric columns."""
    rng = np.random.default_rng(0)
    values = rng.normal(10, 5, size=(rows, len(JENA_COLUMNS) - 1)).round(2)
    with path.open("w") as handle:
        handle.write(",".join(JENA_COLUMNS) + "\n")
        for index, row in enumerate(values):
            handle.write(f"01.01.2009 {index % 24:02d}:{index % 60:02d}:00,"
                         + ",".join(map(str, row)) + "\n")
    return path


def measure_csv(rows: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = jena_sized_csv(Path(folder) / "jena_sized.csv", rows)
        before = peak_memory_mb()
        started = time.perf_counter()
        values, _ = read_column(path, "T (degC)")
        seconds = time.perf_counter() - started
    return {"workload": "jena_csv_column", "rows": len(values), "columns": len(JENA_COLUMNS),
            "load_seconds": round(seconds, 2), "peak_memory_mb_before": before,
            "peak_memory_mb_after": peak_memory_mb()}


def measure_speech(clips: int, files: int = 200) -> dict:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for index in range(files):  # 8 kHz files, so every read also resamples to 16 kHz
            path = Path(folder) / f"clip_{index}.wav"
            write_wav(path, 0.3 * rng.standard_normal(8000), sample_rate=8000)
            paths.append(str(path))
        repeated = [paths[index % files] for index in range(clips)]
        before = peak_memory_mb()
        started = time.perf_counter()
        dataset = stream_clips(repeated, [0] * clips, [], np.zeros(0, "float32"))
        build_seconds = time.perf_counter() - started
        started, seen = time.perf_counter(), 0
        for waveforms, _ in dataset.batch(256).prefetch(2):
            seen += int(waveforms.shape[0])
        seconds = time.perf_counter() - started
    assert seen == clips and waveforms.shape[1] == SAMPLE_RATE
    return {"workload": "speech_commands_stream", "clips": seen, "distinct_files": files,
            "build_seconds": round(build_seconds, 2),
            "clips_per_second": round(seen / seconds, 1), "stream_seconds": round(seconds, 1),
            "audio_if_held_in_memory_mb": round(seen * SAMPLE_RATE * 4 / 2**20),
            "peak_memory_mb_before": before, "peak_memory_mb_after": peak_memory_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=420_551)
    parser.add_argument("--clips", type=int, default=105_829)
    arguments = parser.parse_args()
    rows = [measure_csv(arguments.rows), measure_speech(arguments.clips)]
    write_and_print_rows(RESULTS, rows)


if __name__ == "__main__":
    main()
