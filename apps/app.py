"""What an app declares: its data, model, loss and metrics, and the raw input of its export."""

import dataclasses
from typing import Any, Callable

import tensorflow as tf

from apps.config import TrainConfig


@dataclasses.dataclass
class DataSplits:
    """Unbatched `(input, target)` datasets in the app's raw input format.

    `validation` may be None: the runner then carves `--validation-fraction` out of `train`.
    `facts` go into metrics.json (e.g. skipped files); `context` is for the app's own later steps
    (e.g. the raw series a forecaster's scaling is fitted on) and is not reported.
    """

    train: tf.data.Dataset
    test: tf.data.Dataset
    source: str
    class_names: list[str] | None = None
    validation: tf.data.Dataset | None = None
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)
    context: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Signature:
    """One serving signature: the raw input it accepts and how it becomes the model's input
    (`to_model_input(raw, model)`, e.g. decoding and resizing to the model's input size)."""

    input_spec: tf.TensorSpec
    to_model_input: Callable[[tf.Tensor, Any], tf.Tensor] = lambda raw, model: raw


@dataclasses.dataclass(frozen=True)
class App:
    """A task app: declarations only; `apps.runner` does the training, report and export.

    `build_model(config, splits)` returns a Keras model from raw input to outputs, with its
    preprocessing adapted on `splits.train`. `read_inputs(inputs)` turns what `predict` is given
    into `(names, batch)`: a name per row and a batch for the `predict_signature`.
    `augmentation(config)` returns layers the runner applies to training batches in the tf.data
    pipeline (so they never reach the export).
    `extra_report(model, splits, run_dir, config)` may add metrics and plots.
    """

    name: str
    summary: str
    task: str
    models: tuple[str, ...]
    load_data: Callable[[Any], DataSplits]
    build_model: Callable[[Any, DataSplits], Any]
    loss: str
    metrics: tuple[str, ...]
    signatures: dict[str, Signature]
    read_inputs: Callable[[list[str]], tuple[list[str], Any]]
    config_class: type = TrainConfig
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    augmentation: Callable[[Any], Any] | None = None
    predict_signature: str = "serving_default"
    extra_report: Callable[..., dict] | None = None

    @property
    def is_classifier(self) -> bool:
        return self.task == "classification"
