"""A yardstick for the host's speed, printed by CI (`.ci/run`) after `make test`.

The same 2-core machine has run the same work up to 2.4x slower from one day (or hour) to the
next (a detection epoch 5 s on 2026-11-26, 12 s on 2026-11-27: bench/RESULTS.md), so a suite
time means little without the speed of the host it was taken on. The yardstick is the
milliseconds of one training step of the segmentation default's U-Net (48 pixels, batch 32, its
loss, Adam), the kind of work the floors' default runs spend most of their time on: a fixed
batch, three warm-up steps, then the median of three rounds of eight steps, with TensorFlow's own
thread pools. About 15 s, TensorFlow's start included. The workload is written out here, not
read from the segmentation app's declarations, so that its figure keeps its meaning when that
app's defaults change.

    make host-speed    # python -m bench.host_speed
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402 (after the log level TensorFlow reads when it starts)
import numpy as np  # noqa: E402

import zoo  # noqa: E402

ROUNDS, STEPS, BATCH = 3, 8, 32


def milliseconds_per_step() -> float:
    """The median over ROUNDS of the mean step time of STEPS steps, in milliseconds."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (BATCH, 48, 48, 3)).astype("float32")
    masks = rng.integers(0, 11, (BATCH, 48, 48)).astype("int32")
    model = zoo.build("unet", input_shape=(48, 48, 3), num_classes=11)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss=zoo.CrossentropyDiceLoss(0.2))
    for _ in range(3):
        model.train_on_batch(pixels, masks)
    rounds = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(STEPS):
            model.train_on_batch(pixels, masks)
        rounds.append((time.perf_counter() - start) / STEPS * 1000)
    return statistics.median(rounds)


def main() -> None:
    print(f"host speed: {milliseconds_per_step():.0f} ms per training step of the segmentation "
          f"U-Net (48 px, batch {BATCH}; median of {ROUNDS} rounds of {STEPS} steps; "
          f"python -m bench.host_speed)", flush=True)


if __name__ == "__main__":
    main()
