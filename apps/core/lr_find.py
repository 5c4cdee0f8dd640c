"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates"; fastai's `lr_find`).

Training starts at a tiny learning rate that grows exponentially every step; the loss, smoothed,
falls once the rate is large enough to learn and explodes once it is too large. The suggestion is
a tenth of the rate at the smoothed loss's minimum (fastai's classic rule), with the rate of the
steepest descent reported beside it. Runs on the app's own data and model, with the options'
optimizer, clipping and loss; a pretrained backbone stays frozen, as in the head phase.
"""

import datetime
import json
import math
from pathlib import Path

import keras
import numpy as np

import zoo
from apps.core import plots
from apps.core.errors import RunError
from apps.core.fit import build_training_state, make_optimizer, training_loss
from apps.core.pipeline import input_pipeline, load_splits, training_augmentation
from apps.core.runner import build_model, check_options

SMOOTHING = 0.9  # weight of the running average: a 100-step test needs a short memory
DIVERGED = 4.0  # stop once the smoothed loss exceeds this multiple of its minimum


class LearningRateRangeTest(keras.callbacks.Callback):
    """Sets an exponentially growing learning rate before every step (one step per "epoch", so
    each epoch's logged loss is that step's loss) and records the smoothed losses."""

    def __init__(self, start: float, end: float, steps: int):
        super().__init__()
        self.rates = start * (end / start) ** (np.arange(steps) / max(steps - 1, 1))
        self.losses, self.average = [], 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate.assign(self.rates[epoch])

    def on_epoch_end(self, epoch, logs=None):
        loss = logs["loss"]
        self.average = SMOOTHING * self.average + (1 - SMOOTHING) * loss
        smoothed = self.average / (1 - SMOOTHING ** (epoch + 1))  # bias-corrected moving average
        self.losses.append(smoothed)
        if not math.isfinite(smoothed) or smoothed > DIVERGED * min(self.losses):
            self.model.stop_training = True


def suggest(rates, losses) -> dict:
    """A tenth of the rate at the lowest smoothed loss, and the rate where it fell fastest."""
    losses = np.array(losses, dtype="float64")
    rates = np.array(rates[: len(losses)])
    lowest = int(np.nanargmin(losses))
    slopes = np.gradient(losses[: lowest + 1], np.log10(rates[: lowest + 1])) if lowest > 1 else [0]
    return {"suggested_learning_rate": float(rates[lowest] / 10),
            "minimum_loss_learning_rate": float(rates[lowest]),
            "steepest_learning_rate": float(rates[int(np.argmin(slopes))])}


def find_learning_rate(app, config, start: float = 1e-7, end: float = 10.0,
                       steps: int = 100) -> dict:
    """Runs the range test; writes lr_find.json and lr_find.png to the run directory (default
    runs/<app>/lr-find-<timestamp>) and returns what lr_find.json holds."""
    if not 0 < start < end or steps < 5:
        raise RunError(f"--start-lr {start} / --end-lr {end} / --num-steps {steps}: need "
                       f"0 < start < end and at least 5 steps.")
    check_options(app, config)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(config.run_dir or f"runs/{app.name}/lr-find-{stamp}")
    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    splits, _ = load_splits(app, config)
    data = input_pipeline(splits.train, config.batch_size, config.seed,
                          training_augmentation(app, config)).repeat()
    model = build_model(app, config, splits)
    if isinstance(model, zoo.BackboneModel):
        model.backbone.trainable = False
    model.compile(optimizer=make_optimizer(config, start, model), loss=training_loss(app, config))
    test = LearningRateRangeTest(start, end, steps)
    build_training_state(model, data)
    model.fit(data, steps_per_epoch=1, epochs=steps, callbacks=[test], verbose=0)
    result = {"app": app.name, "model": config.model, "batch_size": config.batch_size,
              **suggest(test.rates, test.losses), "steps_run": len(test.losses),
              "learning_rates": [float(rate) for rate in test.rates[: len(test.losses)]],
              "smoothed_losses": [float(loss) for loss in test.losses]}
    (run_dir / "lr_find.json").write_text(json.dumps(result, indent=2) + "\n")
    plots.plot_curve(result["learning_rates"], result["smoothed_losses"], "learning rate",
                      "smoothed training loss", result["suggested_learning_rate"],
                      run_dir / "lr_find.png")
    print(f"[{app.name}] suggested --learning-rate {result['suggested_learning_rate']:.2g} "
          f"(lowest loss at {result['minimum_loss_learning_rate']:.2g}, steepest descent at "
          f"{result['steepest_learning_rate']:.2g}); plot and figures in {run_dir}", flush=True)
    return result
