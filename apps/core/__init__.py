"""The framework under every app: it knows `App`, never an app by name.

An app module imports what it declares with from here: `App`, `DataSplits`, `Signature`, the
output kinds, `TrainConfig` and `option` for its own flags, the data helpers and the errors.
`train(app, config)` runs it.
"""

from apps.core.app import App, DataSplits, Signature
from apps.core.config import TrainConfig, option, resolve_config
from apps.core.errors import DataError, RunError
from apps.core.explain import Explanation
from apps.core.outputs import Classification, Forecast
from apps.core.train import train

__all__ = ["App", "Classification", "DataError", "DataSplits", "Explanation", "Forecast", "RunError",
           "Signature", "TrainConfig", "option", "resolve_config", "train"]
