"""The framework under every app: it knows `App`, never an app by name.

An app module imports what it declares with from here: `App`, `DataSplits`, `Signature` and
`TensorInput`, the output kinds, `TrainConfig` and `option` for its own flags, the data helpers
and the errors. `train(app, config)` runs it (`apps.core.runner`, imported on first use: it
defines Keras callbacks, and the command line reads the apps before it imports Keras).
"""

from apps.core.app import App, DataSplits, Signature, TensorInput
from apps.core.config import TrainConfig, option, resolve_config
from apps.core.errors import DataError, RunError
from apps.core.explain import Explanation
from apps.core.outputs import Classification, Forecast

__all__ = ["App", "Classification", "DataError", "DataSplits", "Explanation", "Forecast", "RunError",
           "Signature", "TensorInput", "TrainConfig", "option", "resolve_config", "train"]


def __getattr__(name: str):
    if name == "train":
        from apps.core.runner import train

        globals()["train"] = train
        return train
    raise AttributeError(f"module 'apps.core' has no attribute {name!r}")
