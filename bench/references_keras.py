"""The references written in Keras alone (no TensorFlow), so that they also race on the JAX
backend where TensorFlow is absent (`bench.jax_race` on a GPU machine) as well as in
`bench.compare`. `train` and `test` are (inputs, targets) arrays of the app's own splits; `clock`
is a `bench.race_clock.EpochClock`.
"""

import keras
import numpy as np


def mnist(model_name: str, train: tuple, test: tuple, clock) -> None:
    """The seed's MLP as in the TensorFlow beginner tutorial (`fit(x, y, epochs=5)`, batch 32), or
    keras.io/examples/vision/mnist_convnet (batch 128, 15 epochs, validation_split=0.1)."""
    (x_train, y_train), (x_test, y_test) = train, test
    x_train, x_test = x_train.reshape(-1, 28, 28), x_test.reshape(-1, 28, 28)
    if model_name == "mnist_mlp":
        x_train, x_test = x_train / 255.0, x_test / 255.0
        model = keras.Sequential([
            keras.Input(shape=(28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ])
        fit_options = {"epochs": 5}
    else:
        x_train = np.expand_dims(x_train.astype("float32") / 255, -1)
        x_test = np.expand_dims(x_test.astype("float32") / 255, -1)
        model = keras.Sequential([
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ])
        fit_options = {"batch_size": 128, "epochs": 15, "validation_split": 0.1}
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    clock.score_inputs(x_test, y_test)
    model.fit(x_train, y_train, verbose=0, callbacks=[clock], **fit_options)
