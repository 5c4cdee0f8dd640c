"""Generated images: the zoo's VAE, DCGAN and conditional GAN trained on digits or any images.

Data: the shipped MNIST sample (0-7999 train and validation, 8000-9999 test, as the mnist app),
TFDS `mnist` / `fashion_mnist` (`--dataset`), or a folder of images (class folders, or images
alone as one class), resized to `--image-size` and made grey or colour by `--channels`.
Measured (apps/core/outputs/generation.py): FID in the features of a classifier trained on the same
training part, class consistency of conditional models, the VAE's held-out reconstructions.
Expected on the sample with the defaults: cgan class consistency >= 0.90, VAE reconstruction
accuracy >= 0.90, trained FIDs far below an untrained generator's.
Export: `generate(seed int32 [batch][, class_id int32 [batch]])` -> `images` uint8
[batch, h, w, c] (also `serving_default`); the VAE adds `reconstruct(pixels)` -> `images` and
`encode(pixels)` -> `mean`, `log_var`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import tensorflow as tf

import zoo
from apps.core import App, DataError, DataSplits, Signature, TensorInput, TrainConfig, option
from apps.core.outputs import Generation
from apps.core.sources import digits, images, load_tfds, resolve_source


@dataclasses.dataclass
class GenerativeConfig(TrainConfig):
    dataset: str = option("mnist", "TFDS dataset for --data tfds/auto: mnist or fashion_mnist "
                                   "(any TFDS image dataset with labels)")
    image_size: int = option(28, "images are resized to this square size (a multiple of 4)")
    channels: int = option(1, "1 (grey) or 3 (colour): the images are converted to it",
                           choices=(1, 3))
    latent_dim: int = option(0, "size of the latent vector; 0 = 16 for the VAE (2 draws its "
                                "latent map and decoded manifold), 64 for the GANs")
    judge_epochs: int = option(5, "epochs of the classifier that measures quality (FID, class "
                                  "consistency, reconstruction accuracy); 0 = not measured")


def _prepared(config):
    """(image, label) -> ({"images": float32 [size, size, channels] in [0, 1], "labels": int32},
    label): the models' input, with the label also as the target Keras passes along."""

    def prepare(image, label):
        image = tf.image.resize(tf.cast(image, tf.float32), (config.image_size,) * 2)
        if image.shape[-1] != config.channels:
            image = (tf.image.rgb_to_grayscale(image) if config.channels == 1
                     else tf.image.grayscale_to_rgb(image))
        label = tf.cast(label, tf.int32)
        return {"images": tf.clip_by_value(image / 255.0, 0.0, 1.0), "labels": label}, label

    return lambda dataset: dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)


def load_data(config) -> DataSplits:
    if config.image_size % 4:
        raise DataError(f"--image-size {config.image_size}: must be a multiple of 4 (the models "
                        f"halve it twice).")
    prepare = _prepared(config)
    source, reason = resolve_source(config.data, config.dataset)
    if source == "tfds":
        (train, test), info = load_tfds(config.dataset, ["train", "test"])
        return DataSplits(train=prepare(train), test=prepare(test),
                          class_names=info.features["label"].names,
                          source=f"TFDS {config.dataset} ({reason})")
    if source == "sample":
        splits = digits.sample_splits(reason)
    else:
        splits = images.folder_splits(Path(source), config.image_size, config.seed, reason,
                                      min_classes=1)
    splits.train, splits.test = prepare(splits.train), prepare(splits.test)
    if splits.validation is not None:
        splits.validation = prepare(splits.validation)
    return splits


# The VAE's 16 (not the zoo's 2) lets reconstructions keep the digit (judged 0.92 against 0.57 on
# the sample); the GANs keep the zoo's 64 (class consistency 0.84 at 16).
LATENT_DIMS = {"vae": 16, "cgan": 64, "dcgan": 64}


def build_model(config, splits: DataSplits) -> keras.Model:
    """The zoo model at the data's image shape; cgan conditioned on the data's classes."""
    options = {"image_shape": (config.image_size, config.image_size, config.channels),
               "latent_dim": config.latent_dim or LATENT_DIMS[config.model], "seed": config.seed,
               **config.model_options()}
    if config.model == "cgan":
        if len(splits.class_names) < 2:
            raise DataError(f"--model cgan draws a class you choose; {splits.source} has one "
                            f"class. Give class folders, or train --model dcgan or vae.")
        options["num_classes"] = len(splits.class_names)
    return zoo.build(config.model, **options)


PIXELS = TensorInput("pixels", "uint8")
SEED = TensorInput("seed", "int32", (None,))
CLASS_ID = TensorInput("class_id", "int32", (None,))


def _images(pixels, model):
    """uint8 pixels [batch, h, w] or [batch, h, w, c] -> the model's float images in [0, 1]."""
    return tf.reshape(tf.cast(pixels, tf.float32) / 255.0, [-1, *model.image_shape])


def _pixels(images):
    return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)


def _checked(class_id, model):
    """The class ids, or an error naming the valid range (a server answers it as a 400)."""
    tf.debugging.assert_non_negative(class_id, message="class_id must be at least 0")
    tf.debugging.assert_less(class_id, model.num_classes,
                             message=f"class_id must be below {model.num_classes}")
    return class_id


def latent_vectors(seeds, latent_dim: int):
    """One standard-normal latent vector per seed, drawn statelessly: the same seed, the same
    vector, on any machine."""
    return tf.map_fn(lambda seed: tf.random.stateless_normal([latent_dim],
                                                             seed=tf.stack([seed, 0])),
                     seeds, fn_output_signature=tf.float32)


def model_signatures(model) -> dict[str, Signature]:
    """`generate` for every model (with `class_id` when conditional); the VAE's `reconstruct`
    and `encode`."""
    conditional = bool(model.num_classes)
    generate_specs = (SEED, CLASS_ID) if conditional else (SEED,)

    def generate(model, seed, class_id=None):
        class_id = _checked(class_id, model) if conditional else None
        return {"images": _pixels(model.generate(latent_vectors(seed, model.latent_dim),
                                                 class_id))}

    drawn = ("images drawn from the standard-normal latent by each `seed`"
             + (", of class `class_id` (an index into assets/labels.txt)" if conditional else "")
             + ": `images` uint8 [batch, height, width, channels]; the same seed gives the "
               "same image")
    signatures = {name: Signature(generate_specs, outputs=generate, description=drawn)
                  for name in ("generate", "serving_default")}
    if isinstance(model, zoo.VAE):
        pixel_specs = (PIXELS, CLASS_ID) if conditional else (PIXELS,)

        def labels_of(class_id):
            return _checked(class_id, model) if conditional else None

        def reconstruct(model, pixels, class_id=None):
            output = model({"images": _images(pixels, model), "labels": labels_of(class_id)})
            return {"images": tf.reshape(_pixels(output["reconstruction"]), tf.shape(pixels))}

        def encode(model, pixels, class_id=None):
            mean, log_var = model.encode(_images(pixels, model), labels_of(class_id))
            return {"mean": mean, "log_var": log_var}

        signatures["reconstruct"] = Signature(
            pixel_specs, outputs=reconstruct,
            description="uint8 images [batch, h, w] or [batch, h, w, c] encoded to their mean "
                        "and decoded: `images` uint8 of the same shape")
        signatures["encode"] = Signature(
            pixel_specs, outputs=encode,
            description="the encoder's Gaussian for each image: `mean` and `log_var` "
                        "[batch, latent_dim]")
    return signatures


APP = App(
    name="generative",
    summary="images generated by a VAE or a (conditional) GAN, measured by a classifier",
    output=Generation(),
    models=("vae", "cgan", "dcgan"),
    load_data=load_data,
    build_model=build_model,
    loss=None,
    metrics=(),
    signatures={},
    model_signatures=model_signatures,
    app_model_options={"image_shape": "--image-size and --channels",
                       "latent_dim": "--latent-dim", "num_classes": "the data's classes (cgan)",
                       "seed": "--seed"},
    option_flags={"latent_dim": "--latent-dim"},
    config_class=GenerativeConfig,
    # Adam's beta_1 at 0.5 as in the DCGAN paper: at 0.9 the cgan's discriminator wins within
    # two epochs on the sample and the generator never recovers. A constant rate: with cosine
    # decay the cgan's last epochs barely move and its class consistency stays near 0.85. The
    # GANs keep the moving average of their weights (zoo.GAN.ema_momentum).
    defaults={"model": "vae", "epochs": 10, "batch_size": 128, "learning_rate": 1e-3,
              "schedule": "constant", "adam_beta_1": 0.5, "augment": False, "patience": 3},
)
