"""Class probabilities from a softmax, class names travelling with the export."""

import numpy as np
import tensorflow as tf

from apps.core import plots
from apps.core.outputs.base import OutputKind, TestPredictions

WORST_MISTAKES = 8


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(int), predictions.astype(int)), 1)
    return matrix


def worst_mistakes(predictions: TestPredictions, count: int = WORST_MISTAKES) -> np.ndarray:
    """Indices of the test examples classified wrongly with the highest confidence, worst first."""
    probabilities = predictions.outputs
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != predictions.targets.reshape(-1))
    return wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:count]


class Classification(OutputKind):
    """Class probabilities [batch, num_classes] from a softmax; class names travel with the export
    as `assets/labels.txt`."""

    name = "classification"
    classifier = True
    class_names_in_export = True
    card_outputs = "`probabilities` [batch, num_classes], `class_id`, `class_name`"

    def serving_outputs(self, probabilities, labels):
        """`labels`: a table from class id to class name."""
        class_id = tf.argmax(probabilities, axis=-1)
        return {"probabilities": probabilities, "class_id": class_id,
                "class_name": labels.lookup(class_id)}

    def report(self, model, predictions, splits, run_dir, config, rebuild) -> dict:
        """The confusion matrix (and its plot) and the worst mistakes."""
        labels, probabilities = predictions.targets.reshape(-1), predictions.outputs
        predicted, names = probabilities.argmax(axis=1), splits.class_names
        matrix = confusion_matrix(labels, predicted, len(names))
        plots.plot_confusion(matrix, names, run_dir / "confusion_matrix.png")
        return {"class_names": names, "confusion_matrix": matrix.tolist(),
                "worst_mistakes": [
                    {"test_index": int(index), "true": names[labels[index]],
                     "predicted": names[predicted[index]],
                     "confidence": round(float(probabilities[index, predicted[index]]), 4)}
                    for index in worst_mistakes(predictions)]}

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
