"""TF Hub models inside Keras 3 models (TensorFlow backend only).

`hub.KerasLayer` is a tf-keras (Keras 2) layer that Keras 3 refuses, so `HubLayer` wraps the
loaded SavedModel itself and tracks its variables as Keras weights: the optimizer updates them
when the layer is trainable, `.keras` files save them, and SavedModel exports capture them.
`save_hub_module` writes a Keras model in TF Hub's reusable SavedModel format, so a backbone
trained here can be shared and loaded back through `hub:<dir>`.
"""

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import keras

from zoo.finetune import fine_tunable_variables


def hub_cache_dir() -> str:
    """Where tensorflow_hub keeps downloaded models (TFHUB_CACHE_DIR, else its temp default)."""
    return os.environ.get("TFHUB_CACHE_DIR", os.path.join(tempfile.gettempdir(), "tfhub_modules"))


def resolve_hub_handle(handle: str) -> str:
    """A local SavedModel folder as given; a TF Hub / Kaggle handle or URL downloaded (or found in
    the cache) by tensorflow_hub. A failed download is an error that says where to put the files."""
    if Path(handle).is_dir():
        return handle
    import tensorflow_hub as hub

    try:
        return hub.resolve(handle)
    except Exception as error:
        cached = os.path.join(hub_cache_dir(), hashlib.sha1(handle.encode()).hexdigest())
        raise ValueError(
            f"TF Hub model {handle!r} could not be fetched ({type(error).__name__}: {error}). "
            f"tensorflow_hub looks for it in {cached} (under TFHUB_CACHE_DIR): put the model's "
            f"SavedModel folder there, or pass hub:<local SavedModel folder> instead.") from error


@keras.saving.register_keras_serializable(package="zoo")
class HubLayer(keras.layers.Layer):
    """A TF Hub reusable SavedModel (`__call__(inputs, training)`, `variables`,
    `trainable_variables`) as a Keras 3 layer.

    The SavedModel always runs in inference mode (`training=False`), so its BatchNorm statistics
    stay those of pretraining, as the keras.io transfer-learning guide advises; the variables it
    lists as trainable train whenever this layer is trainable. `.keras` files store the handle and
    the variables' values, so the SavedModel must still be reachable when the file is loaded.
    `output_key` picks one output of a model that returns a dict.
    """

    def __init__(self, handle: str, output_key: str | None = None, **kwargs):
        kwargs["dtype"] = "float32"  # the SavedModel's graph is float32 whatever the policy
        super().__init__(**kwargs)
        import tensorflow as tf

        self.handle, self.output_key = handle, output_key
        self._module = tf.saved_model.load(resolve_hub_handle(handle))
        if not callable(self._module) or not hasattr(self._module, "trainable_variables"):
            raise ValueError(
                f"{handle}: not a TF Hub reusable SavedModel (it needs a `__call__` function and "
                f"`variables`/`trainable_variables`); TF2 feature-vector models on TF Hub and "
                f"zoo.hub.save_hub_module write that format.")
        trainable = {id(variable) for variable in self._module.trainable_variables}
        for variable in self._module.variables:
            self._track_variable(keras.Variable(
                initializer=variable, trainable=id(variable) in trainable, dtype=variable.dtype,
                shape=variable.shape, name=variable.name.split(":")[0].replace("/", "_")))
        self.built = True

    def call(self, inputs):
        outputs = self._module(inputs, training=False)
        if isinstance(outputs, dict):
            if self.output_key not in outputs:
                raise ValueError(f"{self.handle} returns {sorted(outputs)}: set output_key to one.")
            outputs = outputs[self.output_key]
        return outputs

    def get_config(self):
        return {**super().get_config(), "handle": self.handle, "output_key": self.output_key}

    @classmethod
    def from_config(cls, config):
        # Keras' own TFSMLayer refuses to load external SavedModels in safe mode; so does this.
        from keras.src.saving.serialization_lib import in_safe_mode

        if in_safe_mode() is not False:
            raise ValueError(
                f"This model holds a TF Hub SavedModel ({config['handle']}), whose graph code runs "
                f"when it loads. If you trust it, load with "
                f"keras.saving.load_model(path, safe_mode=False).")
        return cls(**config)


def save_hub_module(model: keras.Model, path: Path) -> Path:
    """Writes `model` as a TF Hub reusable SavedModel at `path`, atomically (a temporary folder
    renamed into place), for `HubLayer` or `hub.load` to reuse."""
    import tensorflow as tf

    path = Path(path)
    input_spec = tf.TensorSpec(model.inputs[0].shape, model.inputs[0].dtype)
    module = tf.train.Checkpoint()
    module.model = model
    module.variables = [variable.value for variable in model.variables]
    module.trainable_variables = [variable.value for variable in fine_tunable_variables(model)]
    module.regularization_losses = []
    module.__call__ = tf.function(lambda inputs, training=False: model(inputs, training=training))
    for training in (False, True):
        module.__call__.get_concrete_function(input_spec, training=training)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        tf.saved_model.save(module, str(staging / "saved_model"))
        os.replace(staging / "saved_model", path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
