"""What an app declares: its data, model, loss and metrics, output kind and the raw input of its
export. `apps.core.runner` does everything else, for every app alike.

Declaring an app imports no TensorFlow (its names are imported lazily by the command line, and
the declarations touch none of them), so the command line reads every app to answer `--help`
and usage errors at once."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import keras
import tensorflow as tf

from apps.core import explain
from apps.core.config import TrainConfig
from apps.core.explain import Explanation


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
class TensorInput:
    """One input of a serving signature: the export's `tf.TensorSpec(shape, dtype, name)`
    (`shape` None: any rank), declared without TensorFlow."""

    name: str
    dtype: str
    shape: tuple | None = None

    def spec(self) -> tf.TensorSpec:
        return tf.TensorSpec(self.shape, tf.as_dtype(self.dtype), self.name)


@dataclasses.dataclass(frozen=True)
class Signature:
    """One serving signature: the raw input it accepts and how it becomes the model's input
    (`to_model_input(raw, model)`, e.g. decoding and resizing to the model's input size); the
    app's output kind turns the model's output into the signature's outputs.

    A signature that calls something other than the model's forward pass (a generator on a seed,
    an encoder) gives several inputs as a tuple and `outputs(model, *raw)` returning its
    dict of outputs itself; `description` says what it does in the model card. With
    `with_labels`, `outputs` is also given `labels=`, the export's table from class id to name.
    """

    input_spec: TensorInput | tuple[TensorInput, ...]
    to_model_input: Callable[[tf.Tensor, Any], tf.Tensor] = lambda raw, model: raw
    outputs: Callable[..., dict] | None = None
    description: str = ""
    with_labels: bool = False

    @property
    def input_specs(self) -> tuple[tf.TensorSpec, ...]:
        inputs = self.input_spec if isinstance(self.input_spec, tuple) else (self.input_spec,)
        return tuple(one.spec() for one in inputs)


@dataclasses.dataclass(frozen=True)
class App:
    """A task app: declarations only.

    `build_model(config, splits)` returns a Keras model from raw input to outputs, with its
    preprocessing adapted on `splits.train`; a model with a pretrained backbone is a
    `zoo.BackboneModel` (a classifier's a `zoo.TransferClassifier`), which the runner fine-tunes
    in two phases.
    `loss`: a Keras loss's name, or a function returning the loss (a zoo loss: the app module
    touches no Keras name when it is imported), or None for a model with its own objective.
    `app_model_options`: the zoo options the app sets itself (option -> where the value comes
    from), which `--model-arg` may not repeat. `option_flags`: zoo options that have a flag of
    their own (option -> flag), so the zoo's errors reach the user in flags. `model_defaults`
    (model -> options) override `defaults` when that model is chosen (a model that converges in
    fewer epochs than the app's default model).
    `read_inputs(inputs)` turns what `predict` is given into `(names, batch)` for the
    `predict_signature`. `augmentation(config)` returns what the runner applies to training
    batches in the tf.data pipeline (never in the export). `model_signatures(model)` replaces
    `signatures` where they depend on the trained model (a VAE's differ from a GAN's).
    `extra_report(model, splits, run_dir, config, predictions)` adds metrics and plots (through
    `apps.core.plots`) from the test split's `TestPredictions`; `save_artifacts(model, splits,
    run_dir, config)` writes extra files (for a later run, or to check the run) and returns
    their paths.
    """

    name: str
    summary: str
    output: Any
    models: tuple[str, ...]
    load_data: Callable[[Any], DataSplits]
    build_model: Callable[[Any, DataSplits], Any]
    loss: str | Callable[[], keras.losses.Loss] | None
    metrics: tuple[str, ...]
    signatures: dict[str, Signature]
    read_inputs: Callable[[list[str]], tuple[list[str], Any]] | None = None
    app_model_options: dict[str, str] = dataclasses.field(default_factory=dict)
    option_flags: dict[str, str] = dataclasses.field(default_factory=dict)
    config_class: type = TrainConfig
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    model_defaults: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    augmentation: Callable[[Any], Any] | None = None
    predict_signature: str = "serving_default"
    extra_report: Callable[..., dict] | None = None
    save_artifacts: Callable[..., dict] | None = None
    model_signatures: Callable[[Any], dict[str, Signature]] | None = None
    explanation: Explanation | None = None

    def signatures_for(self, model, explained: bool = True) -> dict[str, Signature]:
        """The signatures the export of `model` carries: the app's, and with an `explanation`
        (unless not `explained`) one `explain...` signature per attribution method the model
        supports, on `serving_default`'s raw input (and the explanation's `choice`)."""
        signatures = dict(self.model_signatures(model) if self.model_signatures
                          else self.signatures)
        if self.explanation and explained:
            served = self.signatures["serving_default"]
            inputs = ((served.input_spec, self.explanation.choice) if self.explanation.choice
                      else served.input_spec)
            for method in explain.methods_for(model):
                signatures[explain.SIGNATURES[method]] = Signature(
                    inputs, outputs=self._explainer(served, method),
                    description=explain.DESCRIPTIONS[method])
        return signatures

    def _explainer(self, served: Signature, method: str):
        def outputs(model, raw, *choice):
            return explain.explain(model, self.explanation, served.to_model_input, raw, method,
                                   *choice)

        return outputs
