"""A class for every pixel: per-pixel class probabilities [batch, height, width, classes], class 0
the background. Measured by intersection over union per class and its mean (Keras' `MeanIoU`,
the field's mIoU: classes absent from both truth and prediction are left out of the mean) beside
pixel accuracy, which a model predicting background everywhere already scores high on."""

import json
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from apps.core import plots
from apps.core.outputs.base import OutputKind

SHOWN_EXAMPLES = 4


def iou_report(truth: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> dict:
    """Of integer masks `truth` [n, h, w] against `probabilities` [n, h, w, classes]:
    `mean_iou` and `class_iou` {name: IoU} (classes in neither truth nor prediction left out),
    `foreground_iou` (every class but 0 taken as one: is each object pixel found at all?),
    `pixel_accuracy` and `background_pixel_accuracy`, what predicting 0 everywhere scores."""
    metric = keras.metrics.MeanIoU(num_classes=len(class_names), sparse_y_pred=False)
    metric.update_state(truth, probabilities)
    matrix = np.asarray(metric.total_cm)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - np.diag(matrix)
    truth_foreground, predicted_foreground = truth > 0, probabilities.argmax(axis=-1) > 0
    return {"mean_iou": float(metric.result()),
            "class_iou": {name: round(float(matrix[index, index] / union[index]), 4)
                          for index, name in enumerate(class_names) if union[index] > 0},
            "foreground_iou": float((truth_foreground & predicted_foreground).sum()
                                    / max(1, (truth_foreground | predicted_foreground).sum())),
            "pixel_accuracy": float(np.trace(matrix) / matrix.sum()),
            "background_pixel_accuracy": float(1 - truth_foreground.mean())}


def scene_object_iou(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """[n]: per picture, the object pixels predicted as their own class over the pixels either
    mask calls an object (a wrong class counts as wrong, unlike foreground IoU; 1 where neither
    mask has an object pixel)."""
    union = ((truth > 0) | (predicted > 0)).sum(axis=(1, 2))
    right = ((truth == predicted) & (truth > 0)).sum(axis=(1, 2))
    return np.where(union > 0, right / np.maximum(union, 1), 1.0)


def chosen_object_class(probabilities, choice=None) -> tuple:
    """What `explain` explains in a segmentation: the pixels predicted as the class `choice`
    [batch] (where -1 or None: the object class covering most of the picture), each weighing
    1 / their count (the score is their mean probability of that class), and that class."""
    classes = tf.shape(probabilities)[-1]
    predicted = tf.one_hot(tf.argmax(probabilities, axis=-1), classes, dtype=probabilities.dtype)
    chosen = tf.argmax(tf.reduce_sum(predicted, axis=[1, 2])[:, 1:], axis=-1) + 1
    if choice is not None:
        chosen = tf.where(choice >= 0, tf.cast(choice, chosen.dtype), chosen)
    pixels = predicted * tf.one_hot(chosen, classes, dtype=probabilities.dtype)[:, None, None]
    return pixels / tf.maximum(1.0, tf.reduce_sum(pixels, axis=[1, 2, 3], keepdims=True)), chosen


def palette(class_count: int) -> np.ndarray:
    """uint8 [class_count, 3]: a distinct colour per class, black for the background."""
    import matplotlib

    colours = (np.array([matplotlib.colormaps["tab20"](index % 20)[:3]
                         for index in range(class_count)]) * 255).astype("uint8")
    colours[0] = 0
    return colours


def overlay(image: np.ndarray, mask: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """The picture with each non-background pixel tinted in its class's colour."""
    tinted = np.where(mask[..., None] > 0, 0.35 * image + 0.65 * colours[mask], image)
    return tinted.astype("uint8")


class Segmentation(OutputKind):
    """Per-pixel class probabilities; the export answers `mask` at the input picture's size."""

    name = "segmentation"
    card_outputs = ("`mask` uint8 [batch, height, width] of class ids at the input's size "
                    "(0 = background; names in labels.txt) and `probabilities` [batch, height, "
                    "width, classes]")
    class_names_in_export = True
    card_metrics = ("mean_iou", "foreground_iou", "pixel_accuracy", "background_pixel_accuracy")
    predict_usage = "IMAGE... [--out DIR]"

    def report(self, model, predictions, splits, run_dir, config, rebuild) -> dict:
        """mIoU and per-class IoU on the test split, and two pictures of test pictures with
        their true and predicted masks and the wrong pixels: `segmentation_examples.png` (the
        first ones) and `segmentation_worst.png` (the lowest `scene_object_iou`)."""
        truth, probabilities = predictions.targets, predictions.outputs
        report = iou_report(truth, probabilities, splits.class_names)
        predicted = probabilities.argmax(axis=-1)
        pictures = np.clip(np.round(predictions.inputs), 0, 255).astype("uint8")
        colours = palette(len(splits.class_names))
        scene_iou = scene_object_iou(truth, predicted)

        def draw(indices, title, path):
            panels, titles = [], []
            for index in indices:
                wrong = np.where((predicted[index] != truth[index])[..., None], [220, 0, 0], 255)
                panels += [pictures[index], overlay(pictures[index], truth[index], colours),
                           overlay(pictures[index], predicted[index], colours),
                           wrong.astype("uint8")]
                titles += [f"test picture {index}", "true mask", "predicted mask",
                           f"wrong pixels {(predicted[index] != truth[index]).mean():.1%}, "
                           f"object IoU {scene_iou[index]:.2f}"]
            plots.plot_image_grid(panels, titles, ["black"] * len(panels), title, path)

        draw(range(min(SHOWN_EXAMPLES, len(pictures))), f"test mIoU {report['mean_iou']:.3f}",
             run_dir / "segmentation_examples.png")
        worst = np.argsort(scene_iou, kind="stable")[:SHOWN_EXAMPLES]
        draw(worst, "the test pictures of lowest object IoU (object pixels given their class)",
             run_dir / "segmentation_worst.png")
        return {**report, "class_names": splits.class_names,
                "worst_test_pictures": [int(index) for index in worst]}

    def card_section(self, metrics: dict) -> list[str]:
        return ["Intersection over union per class on the test split: " + ", ".join(
            f"{name} {value:.3f}" for name, value in metrics["class_iou"].items()) + "."]

    def add_predict_arguments(self, parser) -> None:
        parser.add_argument("inputs", nargs="+", metavar="IMAGE")
        parser.add_argument("--out", default=None,
                            help="folder for each picture's mask (PNG of class ids) and overlay "
                                 "(default: beside the picture)")

    def predict(self, app, version_dir, arguments) -> None:
        """Each picture through `serving_default` at its own size: its mask as an index PNG, an
        overlay PNG, and a JSON line with the pixels of each class found."""
        loaded = tf.saved_model.load(str(version_dir))
        serve = loaded.signatures[app.predict_signature]
        class_names = (Path(version_dir) / "assets" / "labels.txt").read_text().split("\n")[:-1]
        colours = palette(len(class_names))
        sources, pictures = app.read_inputs(arguments.inputs)
        for source, picture in zip(sources, pictures):
            mask = serve(pixels=tf.constant(picture[None]))["mask"][0].numpy()
            stem, out = Path(source).stem, Path(arguments.out or Path(source).parent)
            out.mkdir(parents=True, exist_ok=True)
            plots.write_png(mask[..., None], out / f"{stem}_mask.png")
            plots.write_png(overlay(picture, mask, colours), out / f"{stem}_overlay.png")
            ids, counts = np.unique(mask, return_counts=True)
            print(json.dumps({"input": source, "mask": str(out / f"{stem}_mask.png"),
                              "overlay": str(out / f"{stem}_overlay.png"),
                              "pixels": {class_names[i]: int(c) for i, c in zip(ids, counts)}}))

    def litert_comparison(self, saved: dict, litert: dict, targets: np.ndarray) -> dict:
        """Test mIoU of the SavedModel's and the LiteRT model's masks, and the share of pixels
        on which they agree."""
        class_count = saved["probabilities"].shape[-1]
        saved_iou = iou_report(targets, saved["probabilities"], list(map(str, range(class_count))))
        litert_iou = iou_report(targets, litert["probabilities"],
                                list(map(str, range(class_count))))
        return {"metric": "mean_iou", "saved_model_mean_iou": round(saved_iou["mean_iou"], 4),
                "litert_mean_iou": round(litert_iou["mean_iou"], 4),
                "pixel_agreement": round(float((saved["mask"] == litert["mask"]).mean()), 4)}
