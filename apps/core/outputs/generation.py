"""Generated images: how a generative model's drawings are shown and measured, and `predict`'s
grid.

Shown: a grid of samples after every epoch (samples/epoch_NNN.png, drawn from the same latent
vectors each time, and samples.gif of them all); for the VAE its reconstructions of held-out
images and, with a 2-D latent, the map of the held-out images' means and the decoded manifold.

Measured, on the held-out test split, by a judge that is not the model judged: the zoo's
`small_cnn` classifier trained on this run's training part (once per training set: later runs on
the same data reuse it from data/generated/judges/). FID is the Frechet distance between
the Gaussians fitted to its 128 penultimate features of the test images and of as many generated
ones (Heusel et al., 2017, with this judge in place of Inception); `fid_untrained` is the same for
a freshly initialised model of the same architecture. Conditional models: the fraction of
generated images the judge puts in the requested class. VAE: the held-out loss of its
reconstructions and the judge's accuracy on them.
"""

from __future__ import annotations

import hashlib
import json
import os

import keras
import numpy as np
import scipy.stats
import tensorflow as tf
from PIL import Image

import zoo
from apps.core import plots
from apps.core.errors import RunError
from apps.core.outputs.base import OutputKind
from apps.core.sources import REPO_ROOT

GRID_COLUMNS = 8
IMAGES_PER_CLASS = 100


def _latent(count: int, latent_dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, latent_dim)).astype("float32")


def _draw(model, latent, labels=None) -> np.ndarray:
    """The model's images for latent vectors (and labels), uint8 [n, h, w, c]."""
    parts = [latent, labels.astype("int32")] if model.num_classes else latent
    part_model = model.decoder if isinstance(model, zoo.VAE) else model.generator
    images = part_model.predict(parts, batch_size=256, verbose=0)
    return np.round(np.clip(images, 0, 1) * 255).astype("uint8")


def sample_grid(run_dir, seed: int) -> keras.callbacks.Callback:
    """A callback: after every epoch, the same latent vectors drawn again into
    samples/epoch_NNN.png, a row per class for conditional models (up to ten classes), else eight
    rows."""

    def draw(epoch, logs=None):
        model = grid.model
        classes = min(model.num_classes, 10)
        rows = classes or GRID_COLUMNS
        labels = np.repeat(np.arange(classes), GRID_COLUMNS) if classes else None
        latent = _latent(rows * GRID_COLUMNS, model.latent_dim, seed)
        (run_dir / "samples").mkdir(exist_ok=True)
        plots.write_png(plots.tile_images(_draw(model, latent, labels), GRID_COLUMNS),
                        run_dir / "samples" / f"epoch_{epoch + 1:03d}.png")

    grid = keras.callbacks.LambdaCallback(on_epoch_end=draw)
    return grid


def _write_gif(run_dir) -> None:
    frames = [Image.open(path) for path in sorted((run_dir / "samples").glob("epoch_*.png"))]
    if frames:
        frames[0].save(run_dir / "samples.gif", save_all=True, append_images=frames[1:],
                       duration=500, loop=0)


# Judges trained here, one per training set, judge architecture, epochs and seed (gitignored, like
# the generated speech corpus).
JUDGES_DIR = REPO_ROOT / "data" / "generated" / "judges"


def train_judge(splits, image_shape, epochs: int, seed: int):
    """The judge: zoo small_cnn trained on the training part; (model, features model, weights
    file). Trained once per training set (its images and labels hashed), architecture, epochs and
    seed, and kept in JUDGES_DIR: runs on the same data share their judge, so their FIDs are
    measured alike, and only the first pays for training it."""
    keras.utils.set_random_seed(seed)
    judge = zoo.build("small_cnn", input_shape=image_shape, num_classes=len(splits.class_names))
    images = splits.train.map(lambda inputs, label: (inputs["images"], label))
    layers = [{key: value for key, value in layer.get_config().items() if key != "name"}
              for layer in judge.layers]
    digest = hashlib.sha256(json.dumps([layers, epochs, seed], sort_keys=True).encode())
    for batch, labels in images.batch(1024).as_numpy_iterator():
        digest.update(batch.tobytes())
        digest.update(labels.astype("int64").tobytes())
    weights = JUDGES_DIR / f"small_cnn_{digest.hexdigest()[:16]}.weights.h5"
    if weights.exists():
        judge.load_weights(weights)
    judge.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if not weights.exists():
        from apps.core.fit import build_training_state  # the runner's module: it loads Keras

        batches = images.shuffle(10_000, seed=seed).batch(128)
        build_training_state(judge, batches)
        judge.fit(batches, epochs=epochs, verbose=0)
        JUDGES_DIR.mkdir(parents=True, exist_ok=True)
        staging = weights.with_name(f"{weights.name}.{os.getpid()}.weights.h5")
        judge.save_weights(staging)
        os.replace(staging, weights)  # whole or absent, when two runs train the same judge
    return judge, keras.Model(judge.inputs, judge.layers[-2].output), weights


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^(1/2)) of the two feature sets.
    The last trace is the sum of the square roots of S_a S_b's eigenvalues (real and >= 0 for
    covariances), which stays exact when dead ReLU features make the product singular."""
    mean_a, mean_b = features_a.mean(axis=0), features_b.mean(axis=0)
    covariance_a = np.cov(features_a, rowvar=False)
    covariance_b = np.cov(features_b, rowvar=False)
    eigenvalues = np.linalg.eigvals(covariance_a @ covariance_b).real
    trace_root = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(covariance_a)
                 + np.trace(covariance_b) - 2 * trace_root)


def _vae_report(model, outputs, images, labels, judge, run_dir) -> dict:
    """Held-out reconstruction loss and the judge's accuracy on the reconstructions (the VAE's
    test `outputs`); plots of the reconstructions and, with a 2-D latent, the latent map and the
    decoded manifold."""
    reconstructions = np.clip(outputs["reconstruction"], 1e-7, 1 - 1e-7)
    per_image = -(images * np.log(reconstructions)
                  + (1 - images) * np.log(1 - reconstructions)).reshape(len(images), -1).sum(1)
    metrics = {"reconstruction_loss": round(float(per_image.mean()), 3)}
    pairs = np.concatenate([images[:16], reconstructions[:16]])
    plots.write_png(plots.tile_images(np.round(pairs * 255).astype("uint8"), 16),
                     run_dir / "reconstructions.png")
    if judge is not None:
        predicted = judge.predict(reconstructions, batch_size=256, verbose=0).argmax(axis=1)
        metrics["reconstruction_accuracy"] = round(float((predicted == labels).mean()), 4)
    if model.latent_dim == 2 and not model.num_classes:
        plots.plot_scatter(outputs["mean"], labels, "latent mean of each test image",
                            run_dir / "latent_map.png")
        quantiles = scipy.stats.norm.ppf(np.linspace(0.05, 0.95, 15)).astype("float32")
        grid = np.stack(np.meshgrid(quantiles, quantiles[::-1]), axis=-1).reshape(-1, 2)
        plots.write_png(plots.tile_images(_draw(model, grid), 15, 1), run_dir / "manifold.png")
    return metrics


def report_quality(model, predictions, splits, run_dir, config, rebuild) -> dict:
    """The measures and plots above, on the test predictions; `rebuild()` gives an untrained
    model of the same kind."""
    _write_gif(run_dir)
    images, labels = predictions.inputs["images"], predictions.inputs["labels"]
    measures = config.judge_epochs > 0 and len(splits.class_names) > 1
    judge = features = None
    metrics = {"quality_method": "Not measured: "
               + ("--judge-epochs 0." if config.judge_epochs <= 0 else
                  "the data have one class, so no classifier can be trained as the judge.")}
    if measures:
        judge, features, judge_weights = train_judge(splits, model.image_shape,
                                                     config.judge_epochs, config.seed)
        judge_accuracy = float(judge.evaluate(images, labels, verbose=0)[1])
        test_features = features.predict(images, batch_size=256, verbose=0)

        def fid(generating_model) -> float:
            drawn = _draw(generating_model, _latent(len(images), model.latent_dim, config.seed + 1),
                          labels)
            generated = features.predict(drawn.astype("float32") / 255, batch_size=256, verbose=0)
            return round(frechet_distance(test_features, generated), 3)

        metrics = {"fid": fid(model), "fid_untrained": fid(rebuild()),
                   "judge_test_accuracy": round(judge_accuracy, 4),
                   "judge_weights": str(judge_weights),
                   "quality_method": (
                       f"Judge: the zoo's `small_cnn` trained {config.judge_epochs} epochs on "
                       f"this run's training part (test accuracy {judge_accuracy:.4f}; trained "
                       f"once per training set and kept in `judge_weights`, so runs on the same "
                       f"data are measured by the same judge). `fid`: "
                       f"Frechet distance between its 128 penultimate features of the "
                       f"{len(images)} test images and of as many generated images (classes as "
                       f"in the test split); `fid_untrained`: the same for an untrained model of "
                       f"this architecture. `class_consistency`: generated images the judge "
                       f"puts in the requested class. `reconstruction_accuracy`: the judge's "
                       f"accuracy on the VAE's reconstructions of the test images.")}
        if model.num_classes:
            wanted = np.repeat(np.arange(model.num_classes), IMAGES_PER_CLASS)
            drawn = _draw(model, _latent(len(wanted), model.latent_dim, config.seed + 2), wanted)
            judged = judge.predict(drawn.astype("float32") / 255, batch_size=256,
                                   verbose=0).argmax(axis=1)
            metrics["class_consistency"] = round(float((judged == wanted).mean()), 4)
    if isinstance(model, zoo.VAE):
        metrics.update(_vae_report(model, predictions.outputs, images, labels, judge, run_dir))
    return metrics


class Generation(OutputKind):
    """Generated images, uint8 [batch, height, width, channels], from the export's `generate`
    signature (a seed per image, and a class for conditional models), measured as above."""

    name = "generation"
    class_names_in_export = True  # for conditional models and the judge classifier
    card_outputs = "`images` uint8 [batch, height, width, channels]"
    card_metrics = ("fid", "fid_untrained", "class_consistency", "reconstruction_loss")
    predict_usage = "--count 16 [--class NAME] [--seed 0] --out grid.png"

    def add_predict_arguments(self, parser) -> None:
        parser.add_argument("--count", type=int, default=16, help="images to generate")
        parser.add_argument("--class", dest="class_name",
                            help="conditional models: the class to draw (a name from "
                                 "assets/labels.txt, or its index)")
        parser.add_argument("--seed", type=int, default=0,
                            help="image i is drawn from seed + i: the same seed, the same images")
        parser.add_argument("--out", default="grid.png", help="the PNG grid to write")

    def predict(self, app, version_dir, arguments) -> None:
        generate = tf.saved_model.load(str(version_dir)).signatures["generate"]
        conditional = "class_id" in generate.structured_input_signature[1]
        if not 1 <= arguments.count <= 1024:
            raise RunError(f"--count {arguments.count}: give 1 to 1024 images.")
        if not arguments.out.lower().endswith(".png"):
            raise RunError(f"--out {arguments.out}: the grid is written as PNG; end the name "
                           f"with .png.")
        inputs = {"seed": tf.range(arguments.seed, arguments.seed + arguments.count,
                                   dtype=tf.int32)}
        class_id = None
        if arguments.class_name is not None and not conditional:
            raise RunError(f"--class {arguments.class_name}: this export is unconditional (its "
                           f"generate signature takes no class_id); leave --class out.")
        if conditional:
            names = (version_dir / "assets" / "labels.txt").read_text().split()
            if arguments.class_name is None:
                raise RunError(f"--class: this export draws a class you choose; give one of "
                               f"{', '.join(names)}.")
            class_id = (names.index(arguments.class_name) if arguments.class_name in names else
                        int(arguments.class_name) if arguments.class_name.isdigit()
                        and int(arguments.class_name) < len(names) else None)
            if class_id is None:
                raise RunError(f"--class {arguments.class_name}: not a class of this export; "
                               f"give one of {', '.join(names)} (or its index).")
            inputs["class_id"] = tf.fill([arguments.count], class_id)
        images = generate(**inputs)["images"].numpy()
        plots.write_png(plots.tile_images(images), arguments.out)
        print(json.dumps({"out": arguments.out, "count": len(images), "class_id": class_id,
                          "seeds": [arguments.seed, arguments.seed + len(images) - 1],
                          "shape": list(images.shape[1:])}))

    def report(self, model, predictions, splits, run_dir, config, rebuild) -> dict:
        return {"class_names": splits.class_names,
                **report_quality(model, predictions, splits, run_dir, config, rebuild)}

    def callbacks(self, run_dir, config) -> list:
        return [sample_grid(run_dir, config.seed)]

    def litert_comparison(self, saved: dict, litert: dict, targets: np.ndarray) -> dict:
        raise RunError("export-litert converts classifiers and forecasters; a generator's "
                       "images have no test targets to compare on.")

    def card_section(self, metrics: dict) -> list[str]:
        return ["## How quality is measured", metrics["quality_method"], ""]
