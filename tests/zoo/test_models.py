"""Every registered model: built, called, config and .keras round-trips, and trained on JAX.

Parametrized over `zoo.list_models()`, so a new builder is tested without a new test.
"""

import json

import keras
import numpy as np
import pytest

import zoo
from tests.conftest import run_python


def example_inputs(model: keras.Model, batch_size: int = 3, steps: int = 12):
    """A random batch matching the model's inputs (undefined steps get `steps`): one array, or a
    dict by input name for models with several (a padding mask is all ones); images and labels
    for the image generators."""
    rng = np.random.default_rng(0)
    if isinstance(model, (zoo.VAE, zoo.GAN)):
        return {"images": rng.random((batch_size, *model.image_shape), dtype=np.float32),
                "labels": rng.integers(0, max(model.num_classes, 1), batch_size).astype("int32")}
    batch = {}
    for spec in model.inputs:
        shape = [batch_size] + [steps if size is None else size for size in spec.shape[1:]]
        name = spec.name
        if "mask" in name:
            batch[name] = np.ones(shape, dtype=spec.dtype)
        elif "int" in spec.dtype:
            batch[name] = rng.integers(0, 50, size=shape).astype(spec.dtype)
        else:
            batch[name] = rng.random(shape, dtype=np.float32)
    return next(iter(batch.values())) if len(batch) == 1 else batch


def expected_output_shape(name: str):
    """[3, width] of the output; a VAE's reconstruction, mean and log-variance; a GAN's
    discriminator logit per image."""
    defaults = zoo.describe(name)["defaults"]
    if name == "vae":
        latent = (3, defaults["latent_dim"])
        return {"reconstruction": (3, *defaults["image_shape"]), "mean": latent,
                "log_var": latent}
    if zoo.describe(name)["task"] == "image_generation":
        return (3, 1)
    if zoo.describe(name)["task"] == "semantic_segmentation":
        return (3, *defaults["input_shape"][:2], defaults["num_classes"])
    if zoo.describe(name)["task"] == "object_detection":  # CenterNet's maps at a quarter size
        return (3, *(side // 4 for side in defaults["input_shape"][:2]),
                defaults["num_classes"] + 4)
    if zoo.describe(name)["task"] == "translation":  # logits of every target step
        return (3, defaults["sequence_length"], defaults["target_vocab_size"])
    if zoo.describe(name)["task"] == "language_modeling":  # logits of every next token
        return (3, defaults["sequence_length"], defaults["vocab_size"])
    width = (defaults.get("horizon") or defaults.get("num_classes") or defaults.get("num_outputs")
             or 1)
    return (3, width)


@pytest.mark.parametrize("name", zoo.list_models())
def test_builds_with_its_name_and_shape_and_round_trips_config_and_keras_file(name, tmp_path):
    """One build per model (the zoo's largest take seconds): its name and output shape, then the
    same outputs from a clone made from its config and from its .keras file."""
    model = zoo.build(name)
    assert model.name == name
    assert not model.compiled
    inputs = example_inputs(model)
    outputs = model(inputs)
    shapes = keras.tree.map_structure(lambda output: tuple(output.shape), outputs)
    assert shapes == expected_output_shape(name)
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    model.save(tmp_path / f"{name}.keras")
    reloaded = keras.saving.load_model(tmp_path / f"{name}.keras")
    for copy in (clone, reloaded):
        for copied, original in zip(keras.tree.flatten(copy(inputs)), keras.tree.flatten(outputs)):
            np.testing.assert_allclose(copied, original, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,options", [
    ("mlp", {"input_shape": (8,), "hidden_units": (16, 8, 4), "num_outputs": 1,
             "dropout_rate": 0.2, "batch_norm": True}),
    ("lstm_forecaster", {"units": 16, "num_layers": 3, "num_features": 3, "horizon": 6,
                         "steps": 24}),
    ("resnet_cnn", {"input_shape": (64, 64, 1), "num_classes": 5, "stage_filters": (8, 16)}),
    ("transformer_classifier", {"vocab_size": 100, "sequence_length": 16, "num_layers": 2,
                                "num_classes": 4}),
])
def test_options_shape_the_model(name, options):
    model = zoo.build(name, **options)
    outputs = model(example_inputs(model))
    width = options.get("horizon") or options.get("num_classes") or options.get("num_outputs")
    assert tuple(outputs.shape) == (3, width)


@pytest.mark.parametrize("convs_per_stage", [(1, 2, 2), (2, 2, 2), (1, 1, 1, 1)])
def test_speech_cnn_has_the_convolutions_asked_for_in_each_stage(convs_per_stage):
    filters = (8, 16, 32, 64)[:len(convs_per_stage)]
    model = zoo.build("speech_cnn", input_shape=(48, 40, 1), filters=filters,
                      convs_per_stage=convs_per_stage)
    widths = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert widths == [width for width, convs in zip(filters, convs_per_stage)
                      for _ in range(convs)]
    with pytest.raises(ValueError, match="one count per stage"):
        zoo.build("speech_cnn", filters=filters, convs_per_stage=convs_per_stage[1:])


def test_transformer_ignores_padding():
    """Five tokens padded to 16 classify exactly as the same five tokens in a 5-step model."""
    padded_model = zoo.build("transformer_classifier", vocab_size=100, sequence_length=16)
    short_model = zoo.build("transformer_classifier", vocab_size=100, sequence_length=5)
    short_model.set_weights([
        weight[:5] if weight.shape != target.shape else weight
        for weight, target in zip(padded_model.get_weights(), short_model.get_weights())
    ])
    tokens = np.array([[5, 8, 13, 21, 34]], dtype="int32")
    padded = np.pad(tokens, [(0, 0), (0, 11)])
    np.testing.assert_allclose(padded_model(padded), short_model(tokens), atol=1e-5)


# Cheaper configurations of the pretrained heads: the builder's code and the step's mechanics are
# the same, and JAX on the CPU compiles a MobileNetV2 or MiniLM for ten to twenty seconds each.
CHEAP_OPTIONS = {"image_transfer": {"backbone": "convnet", "input_shape": (32, 32, 3)},
                 "efficientnet_lite0": {"image_size": 32},
                 "text_transfer": {"sequence_length": 16},
                 "unet": {"input_shape": (32, 32, 3)}, "centernet": {"input_shape": (32, 32, 3)}}

def test_segmentation_loss_is_the_crossentropy_plus_the_foreground_dice_of_each_picture():
    """Against NumPy on the same input: each picture's mean cross-entropy plus 0.2 times
    1 - 2|P*T| / (|P| + |T|), with P the probability of not being background and T the pixels
    of every object class; the loss's config survives serialisation (a resumed run rebuilds
    it)."""
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(4), size=(2, 5, 6)).astype("float32")
    masks = rng.integers(0, 4, size=(2, 5, 6))
    loss = zoo.CrossentropyDiceLoss(0.2)
    per_picture = np.asarray(loss.call(masks, probabilities))
    chosen = np.take_along_axis(probabilities, masks[..., None], axis=-1)[..., 0]
    crossentropy = -np.log(chosen).reshape(2, -1).mean(axis=1)
    foreground = (1 - probabilities[..., 0]).reshape(2, -1)
    truth = (masks > 0).reshape(2, -1)
    dice = 1 - 2 * (foreground * truth).sum(axis=1) / (foreground.sum(axis=1) + truth.sum(axis=1))
    np.testing.assert_allclose(per_picture, crossentropy + 0.2 * dice, rtol=1e-5)
    assert keras.losses.deserialize(keras.losses.serialize(loss)).dice_weight == 0.2


JAX_TRAIN_STEP = """
import json, tempfile, keras, numpy as np, zoo
from tests.conftest import write_tiny_bert_preset
from tests.zoo.test_models import CHEAP_OPTIONS, example_inputs
from zoo.detection import CenterNetLoss, decode_detections
assert keras.backend.backend() == "jax"
CHEAP_OPTIONS["text_transfer"]["backbone"] = write_tiny_bert_preset(
    tempfile.mkdtemp(), [f"word{index}" for index in range(60)])  # example ids go up to 50
losses = {}
for name in zoo.list_models():
    model = zoo.build(name, **CHEAP_OPTIONS.get(name, {}))
    inputs = example_inputs(model)
    before = [weight.copy() for weight in model.get_weights()]
    if isinstance(model, (zoo.VAE, zoo.GAN)):  # their loss is their own
        model.compile(optimizer="sgd")
        losses[name] = float(model.train_on_batch(inputs, return_dict=True)["loss"])
    elif zoo.describe(name)["task"] == "semantic_segmentation":  # masks, the app's loss
        masks = np.random.default_rng(0).integers(0, 3, (len(inputs), *inputs.shape[1:3]))
        model.compile(optimizer="sgd", loss=zoo.CrossentropyDiceLoss())
        losses[name] = float(model.train_on_batch(inputs, masks))
    elif zoo.describe(name)["task"] == "object_detection":  # box rows, CenterNet's loss
        rows = np.array([[[3, 0.1, 0.2, 0.6, 0.7], [-1, 0, 0, 0, 0]]] * len(inputs), "float32")
        model.compile(optimizer="sgd", loss=CenterNetLoss())
        losses[name] = float(model.train_on_batch(inputs, rows))
        maps = np.random.default_rng(0).normal(size=(2, 8, 8, 14)).astype("float32")
        assert tuple(decode_detections(maps, 10, 5)["boxes"].shape) == (2, 5, 4), name
    else:
        # The output's shape without running the model eagerly (op by op on JAX: seconds).
        batch = len(keras.tree.flatten(inputs)[0])
        targets = np.zeros((batch, *model.output_shape[1:]), dtype="float32")
        model.compile(optimizer="sgd", loss="mse")
        losses[name] = float(model.train_on_batch(inputs, targets))
    changed = any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert changed, name
print(json.dumps(losses))
"""


@pytest.mark.long
@pytest.mark.full_tier  # a second backend, compiled: about 50 s, the fast tier's longest test
def test_every_model_trains_a_step_on_the_jax_backend():
    # The step's mechanics, not its speed: XLA's cheapest compilation (a third of the time).
    result = run_python(JAX_TRAIN_STEP, env={"KERAS_BACKEND": "jax", "XLA_FLAGS": (
        "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")})
    assert result.returncode == 0, result.stderr[-3000:]
    losses = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(losses) == set(zoo.list_models())
    assert all(np.isfinite(loss) for loss in losses.values())


@pytest.mark.parametrize("name", ["dcgan", "cgan"])
def test_gan_loss_gives_each_network_the_gradient_of_its_own_loss(name):
    """The one loss a GAN returns has the discriminator loss's gradient for the discriminator and
    the generator loss's for the generator, as two optimizers would apply them."""
    import tensorflow as tf

    model = zoo.build(name)
    inputs = example_inputs(model, batch_size=8)
    state = model.noise_seed.state.numpy()
    with tf.GradientTape(persistent=True) as tape:
        total = model.compute_loss(inputs, y_pred=model(inputs, training=True))
        model.noise_seed.state.assign(state)  # the same latent vectors again
        latent = keras.random.normal((8, model.latent_dim), seed=model.noise_seed)
        generated = model.generate(latent, inputs["labels"], training=True)
        real = model.discriminate(inputs["images"], inputs["labels"], training=True)
        fake = model.discriminate(generated, inputs["labels"], training=True)
        d_loss = (keras.losses.binary_crossentropy(tf.ones_like(real), real, from_logits=True)
                  + keras.losses.binary_crossentropy(tf.zeros_like(fake), fake, from_logits=True))
        g_loss = keras.losses.binary_crossentropy(tf.ones_like(fake), fake, from_logits=True)
        d_loss, g_loss = tf.reduce_mean(d_loss), tf.reduce_mean(g_loss)
    np.testing.assert_allclose(total, d_loss, rtol=1e-5)
    for network, own_loss in ((model.discriminator, d_loss), (model.generator, g_loss)):
        for combined, own in zip(tape.gradient(total, network.trainable_variables),
                                 tape.gradient(own_loss, network.trainable_variables)):
            np.testing.assert_allclose(combined, own, rtol=1e-4, atol=1e-6)
