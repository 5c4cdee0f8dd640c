"""Image generators: a convolutional VAE and a DCGAN, each optionally conditioned on the class.

Both take `{"images": float [batch, h, w, c] in [0, 1], "labels": int [batch]}` (labels are
ignored by an unconditional model) and put their whole training objective in `compute_loss`,
which every Keras backend calls inside its own gradient step: so `fit` trains them on TensorFlow
and JAX alike, with the one optimizer `compile` is given. Their parts stand alone:
`model.encoder` / `model.decoder` (VAE), `model.generator` / `model.discriminator` (GAN), each a
Functional model taking `[latent or images, labels]` when conditional, else the tensor alone.
"""

import keras
from keras import layers, ops

from zoo.registry import register_model

IMAGES_INPUT = "float32 {'images': [batch, 28, 28, 1] in [0, 1], 'labels': int32 [batch]}"


def _check_shape(image_shape, stages: int) -> tuple:
    height, width, _ = image_shape = tuple(image_shape)
    if height % 2**stages or width % 2**stages:
        raise ValueError(f"image_shape={image_shape}: height and width must be multiples of "
                         f"{2**stages} ({stages} stride-2 stages); resize the images.")
    return image_shape


def _conditioned(name: str, num_classes: int, tensor_input, build):
    """A Functional model of `tensor_input` (and, with classes, an int label whose one-hot
    vector `build(tensor, one_hot)` mixes in)."""
    if not num_classes:
        return keras.Model(tensor_input, build(tensor_input, None), name=name)
    labels = keras.Input(shape=(), dtype="int32", name="labels")
    one_hot = layers.Lambda(lambda label: ops.one_hot(label, num_classes))(labels)
    return keras.Model([tensor_input, labels], build(tensor_input, one_hot), name=name)


def _with_class_planes(images, one_hot):
    """Images with one constant plane per class appended (the class's plane all ones)."""
    if one_hot is None:
        return images
    height, width = images.shape[1], images.shape[2]
    planes = layers.Reshape((1, 1, one_hot.shape[-1]))(one_hot)
    planes = layers.UpSampling2D((height, width))(planes)
    return layers.Concatenate()([images, planes])


def _upsampling_stack(latent, one_hot, image_shape, filters, name):
    """latent (+ one-hot) -> Dense -> (h/2^n, w/2^n) maps -> n stride-2 transposed convolutions
    -> a 'same' convolution with a sigmoid: pixels in [0, 1]."""
    height, width, channels = image_shape
    scale = 2 ** len(filters)
    x = latent if one_hot is None else layers.Concatenate()([latent, one_hot])
    x = layers.Dense(height // scale * width // scale * filters[0])(x)
    x = layers.LeakyReLU(0.2)(x)
    x = layers.Reshape((height // scale, width // scale, filters[0]))(x)
    for stage_filters in filters:
        x = layers.Conv2DTranspose(stage_filters, 4, strides=2, padding="same")(x)
        x = layers.LeakyReLU(0.2)(x)
    return layers.Conv2D(channels, 5, padding="same", activation="sigmoid", dtype="float32",
                         name=name)(x)


def _downsampling_stack(images, one_hot, filters):
    """images (+ class planes) -> stride-2 convolutions with leaky ReLU -> flattened features."""
    x = _with_class_planes(images, one_hot)
    for stage_filters in filters:
        x = layers.Conv2D(stage_filters, 4, strides=2, padding="same")(x)
        x = layers.LeakyReLU(0.2)(x)
    return layers.Flatten()(x)


def _projection_logit(features, one_hot):
    """The discriminator's logit: a linear score of the features, plus with classes their inner
    product with a learned embedding of the class (the projection discriminator of Miyato and
    Koyama, 2018, which ties the score to the class more tightly than input planes alone)."""
    logit = layers.Dense(1, name="real_logit")(features)
    if one_hot is None:
        return logit
    class_embedding = layers.Dense(features.shape[-1], use_bias=False, name="class_embedding")(
        one_hot)
    projection = layers.Dot(axes=1)([features, class_embedding])
    return layers.Add(dtype="float32")([logit, projection])


def _part_inputs(num_classes: int, tensor, labels):
    """What a part (encoder, decoder, generator, discriminator) takes: the tensor, and with
    classes the labels too."""
    if not num_classes:
        return tensor
    return [ops.convert_to_tensor(tensor), ops.convert_to_tensor(labels, "int32")]


def _sum_per_example(values):
    return ops.sum(ops.reshape(values, (ops.shape(values)[0], -1)), axis=1)


@keras.saving.register_keras_serializable(package="zoo")
class VAE(keras.Model):
    """A variational autoencoder (Kingma and Welling, 2014). Loss per image: the pixels' binary
    cross-entropy summed (the reconstruction) plus the KL divergence of the encoded Gaussian from
    the standard normal prior. Called, it returns `reconstruction` (decoded from the mean when not
    training, so it is deterministic), `mean` and `log_var`."""

    def __init__(self, image_shape=(28, 28, 1), latent_dim=2, num_classes=0, filters=(32, 64),
                 seed=0, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = image_shape = _check_shape(image_shape, len(filters))
        self.latent_dim, self.num_classes, self.filters, self.seed = (
            latent_dim, num_classes, tuple(filters), seed)

        def encoder_head(images, one_hot):
            features = layers.Dense(128)(_downsampling_stack(images, one_hot, self.filters))
            features = layers.LeakyReLU(0.2)(features)
            return [layers.Dense(latent_dim, name="mean")(features),
                    layers.Dense(latent_dim, name="log_var")(features)]

        self.encoder = _conditioned("encoder", num_classes,
                                    keras.Input(shape=image_shape, name="images"), encoder_head)
        self.decoder = _conditioned(
            "decoder", num_classes, keras.Input(shape=(latent_dim,), name="latent"),
            lambda latent, one_hot: _upsampling_stack(latent, one_hot, image_shape,
                                                      self.filters[::-1], "images"))
        self.sampling_seed = keras.random.SeedGenerator(seed)
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")
        self.built = True  # every weight exists: the parts are built Functional models

    def encode(self, images, labels=None, training=False):
        return self.encoder(_part_inputs(self.num_classes, images, labels), training=training)

    def generate(self, latent, labels=None, training=False):
        """The decoder's images for latent vectors (drawn from the prior: new images)."""
        return self.decoder(_part_inputs(self.num_classes, latent, labels), training=training)

    def call(self, inputs, training=False):
        labels = inputs["labels"]
        mean, log_var = self.encode(inputs["images"], labels, training)
        latent = mean
        if training:  # the reparameterisation trick: gradients flow through mean and log_var
            noise = keras.random.normal(ops.shape(mean), seed=self.sampling_seed)
            latent = mean + ops.exp(0.5 * log_var) * noise
        return {"reconstruction": self.generate(latent, labels, training), "mean": mean,
                "log_var": log_var}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        reconstruction = _sum_per_example(keras.losses.binary_crossentropy(
            x["images"][..., None], y_pred["reconstruction"][..., None]))
        log_var, mean = y_pred["log_var"], y_pred["mean"]
        kl = -0.5 * ops.sum(1 + log_var - ops.square(mean) - ops.exp(log_var), axis=1)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return ops.mean(reconstruction + kl)

    def get_config(self):
        return {**super().get_config(), "image_shape": self.image_shape,
                "latent_dim": self.latent_dim, "num_classes": self.num_classes,
                "filters": self.filters, "seed": self.seed}


@keras.saving.register_keras_serializable(package="zoo")
class GAN(keras.Model):
    """A DCGAN (Radford et al., 2016) with the non-saturating generator loss; with `num_classes`
    a conditional GAN (Mirza and Osindero, 2014) whose generator and discriminator both take the
    class. Called, it returns the discriminator's logit that each given image is real.

    Both networks step together on one optimizer: `compute_loss` returns
        d_loss + g_loss(D(G(z))) - g_loss(D(stop_gradient(G(z)))),
    whose value is d_loss and whose gradient is d_loss's for the discriminator (the last two
    terms' discriminator gradients cancel: the same images through the same weights) and
    g_loss's for the generator (the stopped terms carry none). That keeps the step inside
    Keras' own `fit` on every backend. The discriminator has no dropout or batch statistics, so
    both passes over the generated images are identical.
    """

    has_validation_loss = False  # GAN losses pit the networks against each other; no epoch is
    # better by them, so runs train every epoch and keep the last weights.
    ema_momentum = 0.99  # ... averaged over about the last 100 steps (the optimizer's EMA): on
    # the MNIST sample the cgan's class consistency 0.877 -> 0.972 and its FID a third (seed 42);
    # at 0.999 the average reaches back to the untrained start (0.717); 15 epochs gave 0.951.

    def __init__(self, image_shape=(28, 28, 1), latent_dim=64, num_classes=0,
                 generator_filters=(64, 32), discriminator_filters=(32, 64), seed=0, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = image_shape = _check_shape(image_shape, len(generator_filters))
        _check_shape(image_shape, len(discriminator_filters))
        self.latent_dim, self.num_classes, self.seed = latent_dim, num_classes, seed
        self.generator_filters = tuple(generator_filters)
        self.discriminator_filters = tuple(discriminator_filters)
        self.generator = _conditioned(
            "generator", num_classes, keras.Input(shape=(latent_dim,), name="latent"),
            lambda latent, one_hot: _upsampling_stack(latent, one_hot, image_shape,
                                                      self.generator_filters, "images"))
        self.discriminator = _conditioned(
            "discriminator", num_classes, keras.Input(shape=image_shape, name="images"),
            lambda images, one_hot: _projection_logit(
                _downsampling_stack(images, one_hot, self.discriminator_filters), one_hot))
        self.noise_seed = keras.random.SeedGenerator(seed)
        self.discriminator_tracker = keras.metrics.Mean(name="d_loss")
        self.generator_tracker = keras.metrics.Mean(name="g_loss")
        self.built = True

    def generate(self, latent, labels=None, training=False):
        return self.generator(_part_inputs(self.num_classes, latent, labels), training=training)

    def discriminate(self, images, labels=None, training=False):
        return self.discriminator(_part_inputs(self.num_classes, images, labels), training=training)

    def call(self, inputs, training=False):
        return self.discriminate(inputs["images"], inputs["labels"], training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        labels = x["labels"]
        latent = keras.random.normal((ops.shape(labels)[0], self.latent_dim),
                                     seed=self.noise_seed)
        generated = self.generate(latent, labels, training)
        fake_logits = self.discriminate(generated, labels, training)
        stopped_fake_logits = self.discriminate(ops.stop_gradient(generated), labels, training)

        def cross_entropy(target, logits):
            return ops.mean(keras.losses.binary_crossentropy(
                ops.full_like(logits, target), logits, from_logits=True))

        d_loss = cross_entropy(1.0, y_pred) + cross_entropy(0.0, stopped_fake_logits)
        g_loss = cross_entropy(1.0, fake_logits)
        self.discriminator_tracker.update_state(d_loss)
        self.generator_tracker.update_state(g_loss)
        return d_loss + g_loss - cross_entropy(1.0, stopped_fake_logits)

    def get_config(self):
        return {**super().get_config(), "image_shape": self.image_shape,
                "latent_dim": self.latent_dim, "num_classes": self.num_classes,
                "generator_filters": self.generator_filters,
                "discriminator_filters": self.discriminator_filters, "seed": self.seed}


@register_model(task="image_generation", inputs=IMAGES_INPUT, search={"latent_dim": [2, 8, 16]})
def vae(image_shape=(28, 28, 1), latent_dim=2, num_classes=0, filters=(32, 64), seed=0):
    """Convolutional VAE: stride-2 conv encoder -> mean, log-variance -> transposed-conv decoder."""
    return VAE(image_shape, latent_dim, num_classes, filters, seed, name="vae")


@register_model(task="image_generation", inputs=IMAGES_INPUT, search={"latent_dim": [32, 64, 128]})
def dcgan(image_shape=(28, 28, 1), latent_dim=64, generator_filters=(64, 32),
          discriminator_filters=(32, 64), seed=0):
    """DCGAN: a transposed-conv generator against a strided-conv discriminator."""
    return GAN(image_shape, latent_dim, 0, generator_filters, discriminator_filters, seed,
               name="dcgan")


@register_model(task="image_generation", inputs=IMAGES_INPUT, search={"latent_dim": [32, 64, 128]})
def cgan(image_shape=(28, 28, 1), latent_dim=64, num_classes=10, generator_filters=(64, 32),
         discriminator_filters=(32, 64), seed=0):
    """Conditional DCGAN: generator and discriminator both take the class (one-hot)."""
    return GAN(image_shape, latent_dim, num_classes, generator_filters, discriminator_filters,
               seed, name="cgan")
