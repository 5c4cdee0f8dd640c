"""Recurrent forecasters: a window of past steps in, the next `horizon` steps out.

They see the window as given: scaling and de-scaling belong to the app that knows the data, which
may wrap them in `RelativeToLast` and `AddLastValue` so they learn changes, not levels.
"""

import keras
from keras import layers

from zoo.registry import register_model


@keras.saving.register_keras_serializable(package="zoo")
class RelativeToLast(keras.layers.Layer):
    """Expresses a window relative to its last step, so the model learns changes, not levels
    (levels drift out of the training range on a trending series)."""

    def call(self, window):
        return window - window[:, -1:, :]


@keras.saving.register_keras_serializable(package="zoo")
class AddLastValue(keras.layers.Layer):
    """Adds the window's last observed value back to forecast changes: original units out."""

    def call(self, inputs):
        changes, window = inputs
        return changes + window[:, -1:, 0]


_CELLS = {"simple_rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}


def _recurrent_forecaster(name, cell, units, num_layers, dropout_rate, num_features, horizon, steps):
    """Stacked recurrent layers, then one Dense giving all `horizon` steps at once.

    Dropout sits between layers rather than inside the cells: LSTM/GRU keep their default
    activations, `recurrent_dropout=0`, `unroll=False` and biases, the conditions under which
    Keras runs them on the fused cuDNN kernel on a GPU.
    """
    inputs = keras.Input(shape=(steps, num_features), name="window")
    x = inputs
    for layer_index in range(num_layers):
        x = _CELLS[cell](units, return_sequences=layer_index < num_layers - 1)(x)
        if dropout_rate:
            x = layers.Dropout(dropout_rate)(x)
    outputs = layers.Dense(horizon, dtype="float32", name="forecast")(x)
    return keras.Model(inputs, outputs, name=name)


_INPUTS = "float32 [batch, steps, num_features] scaled window"
_SEARCH = {"units": [32, 50, 64, 128], "dropout_rate": (0.0, 0.3)}


@register_model(task="forecasting", inputs=_INPUTS, search=_SEARCH)
def simple_rnn_forecaster(units=50, num_layers=2, dropout_rate=0.0, num_features=1, horizon=1,
                          steps=None):
    """The seed's forecaster: two stacked SimpleRNN(50), then Dense."""
    return _recurrent_forecaster("simple_rnn_forecaster", "simple_rnn", units, num_layers,
                                 dropout_rate, num_features, horizon, steps)


@register_model(task="forecasting", inputs=_INPUTS, search=_SEARCH)
def lstm_forecaster(units=50, num_layers=1, dropout_rate=0.0, num_features=1, horizon=1,
                    steps=None):
    """The seed's LSTM forecaster: LSTM(50), then Dense."""
    return _recurrent_forecaster("lstm_forecaster", "lstm", units, num_layers, dropout_rate,
                                 num_features, horizon, steps)


@register_model(task="forecasting", inputs=_INPUTS, search=_SEARCH)
def gru_forecaster(units=50, num_layers=1, dropout_rate=0.0, num_features=1, horizon=1,
                   steps=None):
    """A GRU forecaster: GRU(50), then Dense."""
    return _recurrent_forecaster("gru_forecaster", "gru", units, num_layers, dropout_rate,
                                 num_features, horizon, steps)
