"""Typed run configuration, and the command-line flags generated from it.

Resolution order: the dataclass defaults < the app's `defaults` < command-line flags. The resolved
config is saved beside every run as config.json.
"""

import argparse
import ast
import dataclasses
import typing


def option(default, help: str, **metadata):
    """A config field with its help text (the one source of the flag's documentation)."""
    if isinstance(default, (list, dict, tuple)):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata={"help": help, **metadata})
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


@dataclasses.dataclass
class TrainConfig:
    """Options shared by every app."""

    model: str = option("", "zoo model name")
    data: str = option("auto", "auto | tfds | sample | PATH to a local copy in the dataset's usual "
                               "layout; auto = TFDS when prepared or downloadable, else the sample")
    epochs: int = option(10, "maximum number of epochs (early stopping may end sooner)")
    batch_size: int = option(128, "examples per training step")
    learning_rate: float = option(1e-3, "peak learning rate (Adam, cosine decay)")
    seed: int = option(42, "seed for weights, shuffling, splits and augmentation")
    run_dir: str = option("", "where logs, checkpoints and the report go (default "
                              "runs/<app>/<timestamp>); re-run with the same dir to resume")
    export_dir: str = option("", "SavedModel base directory (default saved_models/<app>); each run "
                                 "writes the next integer version")
    model_arg: list = option([], "builder option as key=value (repeatable), e.g. dropout_rate=0.3")
    fine_tune: str = option("0", "pretrained backbones: after training the head on the frozen "
                                 "backbone, unfreeze its top N layers (or all; BatchNorm stays "
                                 "frozen) for a second phase; 0 = head only")
    fine_tune_epochs: int = option(3, "epochs of the fine-tuning phase")
    fine_tune_learning_rate_ratio: float = option(0.1, "fine-tuning learning rate as a fraction "
                                                       "of --learning-rate (0.01-0.1 per keras.io)")
    cache_features: bool = option(False, "pretrained backbones, with --no-augment: compute the "
                                         "frozen backbone's features once and train the head on "
                                         "them (the first phase); the export is the full model")
    validation_fraction: float = option(0.1, "fraction of the training data held out for "
                                              "validation")
    patience: int = option(5, "epochs without validation improvement before stopping")
    augment: bool = option(True, "random augmentation during training (never at inference)")
    distribute: str = option("auto", "auto (MirroredStrategy when there are several GPUs), "
                                      "mirrored (over every GPU, or every logical CPU device), "
                                      "multiworker (processes or hosts described by TF_CONFIG; "
                                      "--batch-size is per worker), none",
                             choices=("auto", "mirrored", "multiworker", "none"))
    mixed_precision: bool = option(True, "mixed float16 on a GPU (ignored on CPU)")
    jit_compile: str = option("auto", "XLA-compile the training step: auto (Keras' choice: on "
                                      "for GPUs and JAX, off on a TF CPU, where it is slower), "
                                      "on, off", choices=("auto", "on", "off"))
    steps_per_execution: int = option(1, "training steps run per call into the backend")

    def model_options(self) -> dict:
        """`--model-arg key=value` pairs as Python values (numbers, tuples, ...) where they parse."""
        options = {}
        for pair in self.model_arg:
            key, separator, text = pair.partition("=")
            if not separator or not key:
                raise ValueError(f"--model-arg {pair!r}: expected key=value, e.g. dropout_rate=0.3.")
            try:
                options[key] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                options[key] = text
        return options


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser(config_class: type, defaults: dict, parser: argparse.ArgumentParser) -> None:
    """Adds one flag per field of `config_class` to `parser`, with the app's defaults applied."""
    hints = typing.get_type_hints(config_class)
    field_names = {field.name for field in dataclasses.fields(config_class)}
    unknown = set(defaults) - field_names
    if unknown:
        raise ValueError(f"App defaults name unknown options: {sorted(unknown)}")
    for field in dataclasses.fields(config_class):
        default = defaults.get(
            field.name,
            field.default_factory() if field.default is dataclasses.MISSING else field.default,
        )
        kind = hints[field.name]
        text = field.metadata.get("help", "")
        choices = field.metadata.get("choices")
        if kind is bool:
            parser.add_argument(_flag(field.name), default=default, help=text,
                                action=argparse.BooleanOptionalAction)
        elif kind is list:
            parser.add_argument(_flag(field.name), default=list(default), action="append",
                                metavar="KEY=VALUE", help=f"{text} (default: none)")
        else:
            parser.add_argument(_flag(field.name), type=kind, default=default, choices=choices,
                                help=f"{text} (default: {default!r})")


def from_namespace(config_class: type, namespace: argparse.Namespace):
    names = [field.name for field in dataclasses.fields(config_class)]
    return config_class(**{name: getattr(namespace, name) for name in names})


def resolve_config(app, **overrides):
    """The app's config as the command line would give it: dataclass < app defaults < overrides."""
    return app.config_class(**{**app.defaults, **overrides})
