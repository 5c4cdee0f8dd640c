"""Kinds of model output. Each owns what differs between them: the export's serving outputs, the
test metrics, the report's plots, a `predict` line and the model card's words. A new kind of
output (generated images, attributions) is one more class here; nothing else branches on it.
"""

import numpy as np
import tensorflow as tf

from apps.core import report


class Classification:
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
                "confusion_matrix": report.confusion_matrix(
                    labels, probabilities.argmax(axis=1), len(splits.class_names)).tolist()}

    def plot(self, metrics: dict, run_dir) -> None:
        report.plot_confusion(np.array(metrics["confusion_matrix"]), metrics["class_names"],
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


class Forecast:
    """The next `horizon` values of a series [batch, horizon], in the series' own units."""

    name = "forecast"
    has_labels = False
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
