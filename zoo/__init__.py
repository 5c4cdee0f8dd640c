"""Keras App Zoo model builders: `zoo.build(name, **options)` returns an uncompiled keras.Model."""

from zoo import cnn, mlp, rnn, text, transfer  # noqa: F401  (importing registers the builders)
from zoo.registry import ModelEntry, build, describe, get_entry, list_models, register_model

__all__ = ["ModelEntry", "build", "describe", "get_entry", "list_models", "register_model"]
