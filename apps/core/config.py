"""Typed run configuration, and the command-line flags generated from it.

Resolution order: the dataclass defaults < the app's `defaults` < the app's `model_defaults` for
the chosen model < a `--config` file < command-line flags. The resolved config is saved beside
every run as config.json, itself a valid `--config`.
"""

import argparse
import ast
import dataclasses
import re
import typing
from pathlib import Path

from apps.core.errors import RunError

SCHEDULES = ("cosine", "constant", "onecycle", "plateau")
OPTIMIZERS = ("adam", "muon")


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
    learning_rate: float = option(1e-3, "peak learning rate (of the --schedule, after warm-up)")
    schedule: str = option("cosine", "learning-rate schedule: cosine (decays to 1%% of the peak), "
                                     "constant, onecycle (from peak/25 up over 30%% of the steps, "
                                     "then cosine down), plateau (divided by 5 after 2 epochs "
                                     "without validation improvement)",
                           choices=SCHEDULES)
    warmup_steps: int = option(0, "steps of linear warm-up to the peak learning rate (cosine, "
                                  "constant, onecycle)")
    optimizer: str = option("adam", "adam (AdamW when --weight-decay is above 0), or muon "
                                    "(Keras' Muon, extended to attention kernels: orthogonalised "
                                    "momentum for the hidden layers' weight matrices; AdamW for "
                                    "embeddings, the output layer, biases and norms)",
                            choices=OPTIMIZERS)
    muon_adam_lr_ratio: float = option(1.0, "--optimizer muon: the learning rate of its AdamW "
                                            "part (embeddings, output layer, biases, norms) as a "
                                            "multiple of --learning-rate (Keras' adam_lr_ratio)")
    weight_decay: float = option(0.0, "decoupled weight decay: AdamW when above 0, else Adam")
    adam_beta_1: float = option(0.9, "Adam's decay of its gradient average (GANs train steadier "
                                     "at 0.5, as in the DCGAN paper)")
    ema_momentum: float = option(0.0, "models trained to their last epoch: keep an exponential "
                                      "moving average of the weights with this momentum and "
                                      "end training on it (Keras' optimizer EMA); 0 = the "
                                      "model's own choice (the GANs: 0.99; others: none)")
    clip_norm: float = option(0.0, "clip the gradients' global norm to this; 0 = no clipping")
    label_smoothing: float = option(0.0, "classifiers: spread this much of each target's "
                                         "probability over the other classes")
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
    cache_budget_mb: int = option(0, "decoded data are cached in memory up to this many MB "
                                     "(all splits together), beyond it in files in the run "
                                     "dir; 0 = a quarter of this machine's memory")
    max_examples: int = option(0, "use at most this many examples of each split (the first "
                                  "ones): a whole run in seconds, to check a setup; 0 = all")
    validation_fraction: float = option(0.1, "fraction of the training data held out for "
                                              "validation")
    patience: int = option(5, "epochs without validation improvement before stopping")
    backup_seconds: float = option(10.0, "write the resumable backup and the best weights at "
                                         "the end of an epoch at least this many seconds after "
                                         "the last write (a killed run retrains at most this "
                                         "and an epoch); 0 = every epoch")
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
    explain_examples: int = option(100, "classifiers: held-out examples the run report measures "
                                        "its explanations on (deletion and randomisation "
                                        "checks, worst mistakes drawn); 0 = no explanations, "
                                        "neither these nor the export's explain signatures "
                                        "(quicker runs)")

    def model_options(self) -> dict:
        """`--model-arg key=value` pairs as Python values (numbers, tuples, ...) where they parse."""
        return {key: value for key, (_, value) in self.model_args().items()}

    def model_args(self) -> dict:
        """`--model-arg` key -> (the text as given, its Python value)."""
        options = {}
        for pair in self.model_arg:
            key, separator, text = pair.partition("=")
            if not separator or not key:
                raise RunError(f"--model-arg {pair}: expected key=value, e.g. dropout_rate=0.3.")
            try:
                options[key] = (text, ast.literal_eval(text))
            except (ValueError, SyntaxError):
                options[key] = (text, text)
        return options

    def fine_tune_layers(self) -> int | None:
        """`--fine-tune`: "0" -> 0 layers, "all" -> None (every layer), "N" -> N."""
        if self.fine_tune == "all":
            return None
        if not self.fine_tune.isdigit():
            raise RunError(f"--fine-tune {self.fine_tune}: expected 0, a number of layers, or all.")
        return int(self.fine_tune)


def _kind_of(default) -> tuple[tuple[type, ...], str]:
    """The Python types a `--model-arg` value may have where the builder's default is `default`,
    and their name in words; None means any."""
    if isinstance(default, bool):
        return (bool,), "True or False"
    if isinstance(default, int):
        return (int,), "a whole number"
    if isinstance(default, float):
        return (int, float), "a number"
    if isinstance(default, (tuple, list)):
        return (tuple, list), "a tuple such as (32, 64)"
    if isinstance(default, str):
        return (str,), "a string"
    return (object,), "any value"


@dataclasses.dataclass
class DensePictureConfig(TrainConfig):
    """The options of the apps that label a picture's pixels or boxes (segmentation,
    detection): a square size, and an optional pretrained encoder."""

    image_size: int = option(64, "pictures are resized to this square size inside the model")
    backbone: str = option("none", "a pretrained encoder (the picture size then divisible by "
                                   "16): efficientnet_lite0 (ImageNet weights installed "
                                   "offline), mobilenet_v2, efficientnet_b0, "
                                   "efficientnet_v2_b0 or resnet50; none = the model's own "
                                   "encoder, trained from scratch")
    weights: str = option("imagenet", "weights of --backbone: imagenet, none, or a weights "
                                      "file")

    def backbone_options(self) -> dict:
        """The zoo builder's backbone options (none without --backbone)."""
        if self.backbone == "none":
            return {}
        return {"backbone": self.backbone,
                "weights": None if self.weights == "none" else self.weights}


def check_model_options(config, builder_defaults: dict, app_model_options: dict[str, str],
                        app_name: str) -> None:
    """Refuses `--model-arg` options the builder does not have, that the app sets itself, or whose
    value is not of the type of the builder's default, each as one error naming the flag."""
    for key, (text, value) in config.model_args().items():
        flag = f"--model-arg {key}={text}"
        if key not in builder_defaults:
            raise RunError(f"{flag}: {config.model} has no option {key}. Its options: "
                           f"{', '.join(builder_defaults)}.")
        if key in app_model_options:
            raise RunError(f"{flag}: the {app_name} app sets {key} itself (from "
                           f"{app_model_options[key]}); leave it out.")
        types, words = _kind_of(builder_defaults[key])
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise RunError(f"{flag}: expected {words}, like the default "
                           f"{builder_defaults[key]!r}.")


def in_cli_words(message: str, option_flags: dict[str, str], builder_options) -> str:
    """A zoo error (which names options as `option=value`) restated in the command line's words:
    `--weights none` for `weights=None`, `--model-arg units=8` for an option without a flag."""
    names = sorted({*option_flags, *builder_options}, key=len, reverse=True)
    if not names:
        return message

    def restate(match):
        name, value = match.group(1), match.group(2)
        if name in option_flags:
            return f"{option_flags[name]} {'none' if value == 'None' else value}"
        return f"--model-arg {name}={value}"

    pattern = rf"(?<![\w-])({'|'.join(map(re.escape, names))})=(None\b|)"
    return re.sub(pattern, restate, message)


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
            chosen = _flag(field.name) if default else "--no-" + _flag(field.name)[2:]
            parser.add_argument(_flag(field.name), default=default, help=f"{text} (default: {chosen})",
                                action=argparse.BooleanOptionalAction)
        elif kind is list:
            parser.add_argument(_flag(field.name), default=list(default), action="append",
                                metavar="KEY=VALUE", help=f"{text} (default: none)")
        else:
            parser.add_argument(_flag(field.name), type=kind, default=default, choices=choices,
                                help=f"{text} (default: {default!r})")


def read_config_file(path: str, app_name: str, config_class: type) -> dict:
    """The options in a YAML or JSON file (`--config`), checked against the config's fields: an
    unknown key or a value of the wrong type is a RunError naming it. A run's own config.json is
    read too: its "options", less `run_dir`, so that the same command starts a new run."""
    import yaml

    try:
        content = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise RunError(f"--config {path}: not a readable YAML or JSON file ({error}).") from error
    if isinstance(content, dict) and isinstance(content.get("options"), dict):
        if content.get("app", app_name) != app_name:
            raise RunError(f"--config {path}: a run of the {content['app']} app, not {app_name}.")
        content = {key: value for key, value in content["options"].items() if key != "run_dir"}
    if not isinstance(content, dict):
        raise RunError(f"--config {path}: expected a mapping of option names to values.")
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    for key, value in content.items():
        if key not in fields:
            raise RunError(f"--config {path}: unknown option {key!r}. Options: "
                           f"{', '.join(fields)}.")
        kind, choices = hints[key], fields[key].metadata.get("choices")
        valid = (isinstance(value, (int, float)) and not isinstance(value, bool)
                 if kind is float else
                 isinstance(value, list) and all(isinstance(item, str) for item in value)
                 if kind is list else
                 isinstance(value, kind) and (kind is bool or not isinstance(value, bool)))
        if not valid:
            raise RunError(f"--config {path}: option {key!r} must be {_WORDS[kind]}, not "
                           f"{value!r}.")
        if choices and value not in choices:
            raise RunError(f"--config {path}: option {key!r} must be one of "
                           f"{', '.join(choices)}, not {value!r}.")
    return {key: float(value) if hints[key] is float else value for key, value in content.items()}


_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
          list: "a list of strings"}


def from_namespace(config_class: type, namespace: argparse.Namespace):
    names = [field.name for field in dataclasses.fields(config_class)]
    return config_class(**{name: getattr(namespace, name) for name in names})


def app_defaults(app, model: str | None = None) -> dict:
    """The app's defaults for `model` (None: the app's default model): its `defaults`, then that
    model's `model_defaults`."""
    model = model or app.defaults.get("model")
    return {**app.defaults, **app.model_defaults.get(model, {})}


def resolve_config(app, **overrides):
    """The app's config as the command line would give it: dataclass < app defaults (for the
    model chosen) < overrides."""
    return app.config_class(**{**app_defaults(app, overrides.get("model")), **overrides})
