"""Kinds of model output. Each owns what differs between them: the export's serving outputs, the
test metrics, the report's plots, a `predict` line and the model card's words. A new kind of
output (generated images, attributions) is one more class here; nothing else branches on it.
"""

import json

import numpy as np
import tensorflow as tf

from apps.core import plots
from apps.core.errors import RunError


class OutputKind:
    """What the kinds share: `predict` runs the app's `predict_signature` on INPUT files read by
    the app, one JSON line per input; no extra metrics or card section."""

    has_labels = False
    card_metrics: tuple[str, ...] = ()
    predict_usage = "INPUT..."

    def add_predict_arguments(self, parser) -> None:
        parser.add_argument("inputs", nargs="+", metavar="INPUT")

    def predict(self, app, version_dir, arguments) -> None:
        serve = tf.saved_model.load(str(version_dir)).signatures[app.predict_signature]
        input_name = app.signatures[app.predict_signature].input_spec.name
        sources, batch = app.read_inputs(arguments.inputs)
        outputs = serve(**{input_name: tf.constant(batch)})
        for index, source in enumerate(sources):
            print(json.dumps({"input": source, **self.predict_line(outputs, index)}))

    def card_section(self, metrics: dict) -> list[str]:
        return []


class Classification(OutputKind):
    """Class probabilities [batch, num_classes] from a softmax; class names travel with the export
    as `assets/labels.txt`."""

    name = "classification"
    has_labels = True
    card_outputs = "`probabilities` [batch, num_classes], `class_id`, `class_name`"

    def serving_outputs(self, probabilities, labels):
        """`labels`: a table from class id to class name."""
        class_id = tf.argmax(probabilities, axis=-1)
        return {"probabilities": probabilities, "class_id": class_id,
                "class_name": labels.lookup(class_id)}

    def test_metrics(self, model, test_data, splits) -> dict:
        probabilities = model.predict(test_data, verbose=0)
        labels = np.concatenate([y for _, y in test_data.as_numpy_iterator()])
        return {"class_names": splits.class_names,
                "confusion_matrix": plots.confusion_matrix(
                    labels, probabilities.argmax(axis=1), len(splits.class_names)).tolist()}

    def card_section(self, metrics: dict) -> list[str]:
        """The faithfulness of the export's attribution maps, where the app has them."""
        if "explanations" not in metrics:
            return []
        return [
            "## Explanations",
            f"The export's `explain...` signatures (see below), measured on the first "
            f"{metrics['explained_examples']} test examples: the drop of the true class's "
            f"probability when the most-attributed positions (pixels, spectrogram cells) or "
            f"words are blanked to the baseline against as many random ones (a faithful map: "
            f"far larger), and the Spearman rank correlation of the maps with those of the same "
            f"architecture re-initialised (pretrained backbones keep their weights; the head is "
            f"new), signed and absolute (a map that depends on the training: well below 1; "
            f"integrated gradients are the input times a gradient, zero wherever the input "
            f"equals the baseline, so their absolute maps keep the input's shape, as Adebayo et "
            f"al. 2018 found). Image apps draw their worst test mistakes with their integrated "
            f"gradients in explained_mistakes/.",
            "",
            "| method | blanked | drop, most attributed | drop, random | rank correlation, "
            "re-initialised (signed / absolute) |",
            "|---|---|---|---|---|",
            *[f"| {method} | {figures['deleted']} | "
              f"{figures['deletion_drop_most_attributed']:.4f} | "
              f"{figures['deletion_drop_random']:.4f} | "
              f"{figures['rank_correlation_with_reinitialised_model']:.4f} / "
              f"{figures['absolute_rank_correlation_with_reinitialised_model']:.4f} |"
              for method, figures in metrics["explanations"].items()],
            ""]

    def plot(self, metrics: dict, run_dir) -> None:
        plots.plot_confusion(np.array(metrics["confusion_matrix"]), metrics["class_names"],
                              run_dir / "confusion_matrix.png")

    def predict_line(self, outputs: dict, index: int) -> dict:
        return {"class": outputs["class_name"][index].numpy().decode(),
                "probability": round(float(outputs["probabilities"][index].numpy().max()), 4)}

    def litert_comparison(self, saved: dict, litert: dict, targets: np.ndarray) -> dict:
        """Test accuracy of the SavedModel and of its LiteRT conversion, and how often they
        pick the same class."""
        saved_class = saved["probabilities"].argmax(axis=-1)
        litert_class = litert["probabilities"].argmax(axis=-1)
        return {"metric": "accuracy",
                "saved_model_accuracy": round(float((saved_class == targets).mean()), 4),
                "litert_accuracy": round(float((litert_class == targets).mean()), 4),
                "same_class": round(float((saved_class == litert_class).mean()), 4)}


class Forecast(OutputKind):
    """The next `horizon` values of a series [batch, horizon], in the series' own units."""

    name = "forecast"
    card_outputs = "`forecast` [batch, horizon] in original units"

    def serving_outputs(self, forecast, labels):
        return {"forecast": forecast}

    def test_metrics(self, model, test_data, splits) -> dict:
        return {}

    def plot(self, metrics: dict, run_dir) -> None:
        """The forecast plots need the series: the forecast app draws them in its report hook."""

    def predict_line(self, outputs: dict, index: int) -> dict:
        return {"forecast": outputs["forecast"][index].numpy().tolist()}

    def litert_comparison(self, saved: dict, litert: dict, targets: np.ndarray) -> dict:
        """Test MAE of the SavedModel and of its LiteRT conversion, and their largest gap."""
        return {"metric": "mae",
                "saved_model_mae": round(float(np.abs(saved["forecast"] - targets).mean()), 4),
                "litert_mae": round(float(np.abs(litert["forecast"] - targets).mean()), 4),
                "largest_difference": round(float(np.abs(saved["forecast"]
                                                         - litert["forecast"]).max()), 4)}


class Generation(OutputKind):
    """Generated images, uint8 [batch, height, width, channels], from the export's `generate`
    signature (a seed per image, and a class for conditional models); the quality metrics (FID,
    class consistency, reconstructions) come from the generative app's report hook."""

    name = "generation"
    has_labels = True  # the class names, for conditional models and the judge classifier
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

    def test_metrics(self, model, test_data, splits) -> dict:
        return {"class_names": splits.class_names}

    def plot(self, metrics: dict, run_dir) -> None:
        """The sample grids and their GIF are drawn by the generative app's report hook."""

    def card_section(self, metrics: dict) -> list[str]:
        return ["## How quality is measured", metrics["quality_method"], ""]
