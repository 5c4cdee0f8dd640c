"""The model registry: one decorated builder function per model name.

A builder is a plain function whose name is the public model name; its keyword arguments
with defaults are the model's options, and it returns an uncompiled Functional
`keras.Model` named after itself.
"""

import dataclasses
import inspect
from typing import Any, Callable

import keras


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about one builder."""

    name: str
    builder: Callable[..., keras.Model]
    task: str
    inputs: str
    search: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def summary(self) -> str:
        return (inspect.getdoc(self.builder) or "").split("\n")[0]

    @property
    def defaults(self) -> dict[str, Any]:
        return {
            name: parameter.default
            for name, parameter in inspect.signature(self.builder).parameters.items()
        }


_MODELS: dict[str, ModelEntry] = {}


def register_model(task: str, inputs: str, search: dict[str, Any] | None = None):
    """Registers the decorated builder under its function name.

    `task` groups models for apps (e.g. "image_classification"); `inputs` says in words what
    the model expects, e.g. "float32 [batch, 28, 28, 1] pixels in [0, 1]". `search` declares the
    options worth tuning next to their defaults: option -> a list of choices, or (low, high).
    """

    def decorator(builder):
        name = builder.__name__
        if name in _MODELS:
            raise ValueError(f"A model named {name!r} is already registered.")
        for parameter in inspect.signature(builder).parameters.values():
            if parameter.default is inspect.Parameter.empty:
                raise ValueError(
                    f"Builder {name!r}: option {parameter.name!r} needs a default value."
                )
        parameters = inspect.signature(builder).parameters
        for option, values in (search or {}).items():
            if option not in parameters or not (
                    isinstance(values, list) or (isinstance(values, tuple) and len(values) == 2)):
                raise ValueError(f"Builder {name!r}: search option {option!r} must be one of its "
                                 f"options, with a list of choices or a (low, high) range.")
        _MODELS[name] = ModelEntry(name=name, builder=builder, task=task, inputs=inputs,
                                   search=dict(search or {}))
        return builder

    return decorator


def list_models(task: str | None = None) -> list[str]:
    """Names of the registered models, sorted, optionally only those for `task`."""
    return sorted(name for name, entry in _MODELS.items() if task in (None, entry.task))


def get_entry(name: str) -> ModelEntry:
    if name not in _MODELS:
        raise ValueError(
            f"Unknown model {name!r}. Registered models: {', '.join(list_models())}."
        )
    return _MODELS[name]


def describe(name: str) -> dict[str, Any]:
    """Task, input spec, default options and a one-line summary of a model."""
    entry = get_entry(name)
    return {
        "name": entry.name,
        "task": entry.task,
        "inputs": entry.inputs,
        "defaults": entry.defaults,
        "summary": entry.summary,
    }


def build(name: str, **options) -> keras.Model:
    """Builds the uncompiled model `name` with `options` overriding its defaults."""
    entry = get_entry(name)
    unknown = sorted(set(options) - set(entry.defaults))
    if unknown:
        raise ValueError(
            f"Unknown option(s) {', '.join(unknown)} for model {name!r}. "
            f"Valid options: {', '.join(entry.defaults)}."
        )
    return entry.builder(**options)
