"""The interface every kind of model output implements, and the one pass over the test split
whose predictions feed a run's test metrics, plots, worst mistakes and explanations."""

from __future__ import annotations

import abc
import dataclasses
import json
from typing import Any

import keras
import numpy as np
import tensorflow as tf


@dataclasses.dataclass
class TestPredictions:
    """The test split passed once through the trained model, in order: the inputs as the app
    reads them (its raw format), the targets, the model's outputs, and the test loss and metrics
    computed on the way (`loss`, the app's metrics, and a model's own trackers such as a VAE's
    `kl_loss`)."""

    inputs: Any
    targets: np.ndarray
    outputs: Any
    metrics: dict[str, float]


def predict_test_split(model, app, test_data: tf.data.Dataset) -> TestPredictions:
    """One pass over the batched `test_data`: the model's outputs, its `compute_loss` (the
    compiled loss, or a model's own objective) and the app's metrics per example, summed."""
    from apps.core.fit import batch_sums  # the runner's module: its Keras classes load Keras

    trackers = [metric for metric in model.metrics
                if metric.name not in ("loss", "compile_metrics")]
    for tracker in trackers:
        tracker.reset_state()

    def step(inputs, targets):
        outputs = model(inputs, training=False)
        return outputs, batch_sums(model, app, inputs, targets, outputs, False)[0]

    # Traced once for any batch size: the last, smaller batch does not trace it again.
    step = tf.function(step, input_signature=list(test_data.element_spec))

    inputs, targets, outputs, totals = [], [], [], {}
    for batch_inputs, batch_targets in test_data:
        batch_outputs, sums = step(batch_inputs, batch_targets)
        inputs.append(keras.tree.map_structure(np.asarray, batch_inputs))
        targets.append(np.asarray(batch_targets))
        outputs.append(keras.tree.map_structure(np.asarray, batch_outputs))
        for name, value in sums.items():
            totals[name] = totals.get(name, 0.0) + float(value)
    examples = totals.pop("count")
    metrics = {name: value / examples for name, value in totals.items()}
    metrics.update({tracker.name: float(tracker.result()) for tracker in trackers})

    def joined(parts):
        return keras.tree.map_structure(lambda *arrays: np.concatenate(arrays), *parts)

    return TestPredictions(joined(inputs), np.concatenate(targets), joined(outputs), metrics)


class OutputKind(abc.ABC):
    """What a kind of model output owns: the export's serving outputs, the report on the test
    predictions (metrics and plots), callbacks during training, `predict` on the command line,
    LiteRT's comparison and the model card's words. A new kind is a subclass in a file of its
    own; nothing else branches on it.

    Declared by every kind:
    - `name`; `card_outputs`, the signature's outputs as the model card names them;
    - `classifier`: its outputs are class probabilities (label smoothing applies);
    - `class_names_in_export`: the export carries the data's class names (assets/labels.txt);
    - `card_metrics`: metrics the model card lists beside the test_ ones;
    - `predict_usage`: the arguments `python -m apps APP predict` takes;
    - `model_output_name`: the serving output that is the model's own output (None where the
      export answers what is decoded from it).
    """

    name: str
    card_outputs: str
    classifier: bool = False
    class_names_in_export: bool = False
    card_metrics: tuple[str, ...] = ()
    predict_usage = "INPUT..."
    model_output_name: str | None = "probabilities"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        missing = [name for name in ("name", "card_outputs") if not hasattr(cls, name)]
        if missing:
            raise TypeError(f"output kind {cls.__name__} does not declare {', '.join(missing)}")

    def serving_outputs(self, model_output, labels) -> dict:
        """The outputs of a signature that runs the model's forward pass (one without its own
        `Signature.outputs`); `labels` looks class ids up in the export's class names."""
        raise TypeError(f"{self.name} signatures compute their own outputs (Signature.outputs)")

    @abc.abstractmethod
    def report(self, model, predictions: TestPredictions, splits, run_dir, config,
               rebuild) -> dict:
        """Metrics and plots from the test predictions (`rebuild()` gives the untrained
        architecture, for kinds that compare with it)."""

    def predict_line(self, outputs: dict, index: int) -> dict:
        """One example's answer from a signature's outputs, for the default `predict`'s JSON
        lines (a kind with a `predict` of its own needs none)."""
        raise TypeError(f"{self.name} answers `predict` in its own way")

    @abc.abstractmethod
    def litert_comparison(self, saved: dict, litert: dict, targets: np.ndarray) -> dict:
        """The SavedModel's and the LiteRT model's outputs on the test split, compared."""

    def callbacks(self, run_dir, config) -> list:
        """Keras callbacks for every training phase (e.g. drawing samples after each epoch)."""
        return []

    def add_predict_arguments(self, parser) -> None:
        parser.add_argument("inputs", nargs="+", metavar="INPUT")

    def predict(self, app, version_dir, arguments) -> None:
        """Runs the app's `predict_signature` on INPUT files read by the app, one JSON line per
        input."""
        serve = tf.saved_model.load(str(version_dir)).signatures[app.predict_signature]
        input_name = app.signatures[app.predict_signature].input_spec.name
        sources, batch = app.read_inputs(arguments.inputs)
        outputs = serve(**{input_name: tf.constant(batch)})
        for index, source in enumerate(sources):
            print(json.dumps({"input": source, **self.predict_line(outputs, index)},
                             ensure_ascii=False))

    def card_section(self, metrics: dict) -> list[str]:
        """Lines of the model card's own section for this kind (none by default)."""
        return []
