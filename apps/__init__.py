"""Keras App Zoo task apps: each module declares data, model and export; `apps.core` runs them."""

import importlib

APP_NAMES = ("mnist", "vision", "sentiment", "speech", "forecast", "generative", "segmentation",
             "detection", "translate", "textgen")


def get_app(name: str):
    """The `APP` declaration of the app module `name`."""
    if name not in APP_NAMES:
        raise ValueError(f"Unknown app {name!r}. Apps: {', '.join(APP_NAMES)}.")
    return importlib.import_module(f"apps.{name}").APP
