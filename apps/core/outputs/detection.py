"""Boxes around objects, each with a class and a score. The model's output is a CenterNet map
(`zoo.detection`); decoding it into boxes happens inside the export's graph with fixed shapes, so a
SavedModel or a LiteRT model answers final boxes, with no code of the project needed. Measured as
the field does, by COCO's average precision computed with pycocotools."""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

import zoo
from apps.core import plots
from apps.core.outputs.base import OutputKind
from apps.core.sources import boxes as box_format

MAX_DETECTIONS = 100  # COCO's evaluation counts up to 100 detections a picture
SCORE_THRESHOLD = 0.3  # the export's num_detections counts the detections scoring this or more
SHOWN_EXAMPLES = 8
TRUE_COLOUR, FOUND_COLOUR = "tab:green", "tab:red"
BOX_FORMAT = "(x_min, y_min, x_max, y_max) in the input picture's pixels"


def served_detections(maps, labels, height, width) -> dict:
    """The export's answer from the model's output maps for pictures of `height` x `width`:
    `boxes` [batch, 100, 4] as (x_min, y_min, x_max, y_max) in the pictures' pixels, `scores`,
    `class_id`, `class_name`, best first, and `num_detections`, how many score at least
    SCORE_THRESHOLD (the rest are the lower-scoring candidates, for a threshold of one's own)."""
    found = zoo.decode_detections(maps, maps.shape[-1] - 4, MAX_DETECTIONS)
    corners = box_format.to_pixels(found["boxes"], tf.cast(width, tf.float32),
                                   tf.cast(height, tf.float32))
    return {"boxes": corners, "scores": found["scores"], "class_id": found["class_id"],
            "class_name": labels.lookup(tf.cast(found["class_id"], tf.int64)),
            "num_detections": tf.reduce_sum(tf.cast(found["scores"] >= SCORE_THRESHOLD,
                                                    tf.int32), axis=1)}


def best_detection(maps) -> tuple:
    """What `explain` explains in a detection: the best detection's peak, its class's heatmap
    logit at its cell (weighing 1; the score is its probability once `tf.sigmoid` is applied),
    and its class [batch]."""
    classes = maps.shape[-1] - 4
    heat = maps[..., :classes]
    flat = tf.reshape(heat, [tf.shape(heat)[0], -1])
    best = tf.argmax(flat, axis=-1)
    peak = tf.reshape(tf.one_hot(best, tf.shape(flat)[1], dtype=maps.dtype), tf.shape(heat))
    return tf.pad(peak, [[0, 0], [0, 0], [0, 0], [0, 4]]), tf.cast(best % classes, tf.int32)


def _coco_images_and_boxes(truth: np.ndarray, width: int, height: int) -> dict:
    """COCO's ground-truth dataset for pictures whose box rows are `truth` [n, boxes, 5]."""
    annotations = []
    for index, rows in enumerate(truth):
        for row in rows[rows[:, 0] >= 0]:
            x, y, box_width, box_height = box_format.to_coco(row[1:], width, height)[0]
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1,
                                "category_id": int(row[0]) + 1,
                                "bbox": [float(x), float(y), float(box_width), float(box_height)],
                                "area": float(box_width * box_height), "iscrowd": 0})
    return {"images": [{"id": index + 1, "width": width, "height": height}
                       for index in range(len(truth))], "annotations": annotations}


def average_precision(truth: np.ndarray, found: dict, class_count: int, width: int,
                      height: int) -> dict:
    """COCO's box AP (pycocotools) of `found` (decoded detections: relative `boxes`, `scores`,
    `class_id`) against `truth` box rows, on pictures of `width` x `height` pixels: `map`
    (AP averaged over IoU 0.50-0.95), `map_50`, `map_75`, `class_ap_50` [class_count] (-1 for a
    class absent from the truth), and `class_agnostic_ap_50` (every box one class: are the
    objects found, whatever their class?); for the report's pictures, `precision_50`
    [101 recall levels, class_count + 1] (COCO's interpolated precision at IoU 0.5 per class,
    the last column class-agnostic; -1 where a class is absent) and `scene_errors` [n, 2]."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset = _coco_images_and_boxes(truth, width, height)
    dataset["categories"] = [{"id": index + 1} for index in range(class_count)]
    results = [{"image_id": index + 1, "category_id": int(class_id) + 1, "score": float(score),
                "bbox": [float(value) for value in box_format.to_coco(box, width, height)[0]]}
               for index in range(len(truth))
               for box, score, class_id in zip(found["boxes"][index], found["scores"][index],
                                               found["class_id"][index])]
    figures, curves = {}, []
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        truth_api = COCO()
        truth_api.dataset = dataset
        truth_api.createIndex()
        found_api = truth_api.loadRes(results)
        for by_class in (True, False):
            evaluation = COCOeval(truth_api, found_api, "bbox")
            evaluation.params.useCats = int(by_class)
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
            precision = evaluation.eval["precision"][0, :, :, 0, -1]  # IoU 0.5, all areas
            curves.append(precision)
            if by_class:
                figures.update(
                    map=float(evaluation.stats[0]), map_50=float(evaluation.stats[1]),
                    map_75=float(evaluation.stats[2]),
                    class_ap_50=[float(column[column > -1].mean()) if (column > -1).any()
                                 else -1.0 for column in precision.T],
                    scene_errors=scene_errors(evaluation, len(truth), SCORE_THRESHOLD))
            else:
                figures["class_agnostic_ap_50"] = float(evaluation.stats[1])
    figures["precision_50"] = np.concatenate(curves, axis=1)
    return figures


def scene_errors(evaluation, scene_count: int, score_threshold: float) -> np.ndarray:
    """[scene_count, 2] from an evaluated by-class COCOeval: per scene, the true boxes that no
    detection of their class scoring `score_threshold` or more overlaps at IoU 0.5 (missed), and
    the detections scoring that much that overlap no true box of their class (false). COCO
    matches detections best score first, so its matches among all detections are those among the
    detections above any threshold."""
    errors = np.zeros((scene_count, 2), int)
    for result in evaluation.evalImgs:
        if result is None or result["aRng"] != evaluation.params.areaRng[0]:
            continue
        scores = dict(zip(result["dtIds"], result["dtScores"]))
        found = sum(1 for match in result["gtMatches"][0]
                    if match and scores[int(match)] >= score_threshold)
        false = sum(1 for match, score in zip(result["dtMatches"][0], result["dtScores"])
                    if not match and score >= score_threshold)
        errors[result["image_id"] - 1] += (len(result["gtIds"]) - found, false)
    return errors


def _labelled(corners, names, colour, scores=None) -> list[tuple]:
    """Boxes for `plots.plot_boxes`: detections (with `scores`) labelled above, truth below."""
    return [(tuple(box), name if scores is None else f"{name} {scores[index]:.2f}", colour,
             scores is not None) for index, (box, name) in enumerate(zip(corners, names))]


class Detection(OutputKind):
    """CenterNet maps; the export answers final boxes in the input's pixels."""

    name = "detection"
    card_outputs = ("`boxes` float32 [batch, 100, 4] as (x_min, y_min, x_max, y_max) in the "
                    "input's pixels, `scores` [batch, 100], `class_id` int32 and `class_name` "
                    "string [batch, 100], best first, and `num_detections` int32 [batch]: how "
                    f"many score at least {SCORE_THRESHOLD} (the rest are lower-scoring "
                    "candidates)")
    class_names_in_export = True
    card_metrics = ("map", "map_50", "map_75", "class_agnostic_ap_50")
    predict_usage = "IMAGE... [--out DIR] [--score-threshold S]"
    model_output_name = None  # the export answers decoded boxes, not the model's maps

    def report(self, model, predictions, splits, run_dir, config, rebuild) -> dict:
        """COCO AP on the test split, and three pictures: `detection_examples.png` (the first
        test pictures with their true boxes in green and the detections scoring at least
        SCORE_THRESHOLD in red), `detection_worst.png` (the pictures with the most missed and
        false boxes at that threshold) and `precision_recall.png` (COCO's curves at IoU 0.5)."""
        pictures = np.clip(np.round(predictions.inputs), 0, 255).astype("uint8")
        height, width = pictures.shape[1:3]
        names = splits.class_names
        found = {key: np.asarray(value) for key, value in zoo.decode_detections(
            predictions.outputs, len(names), MAX_DETECTIONS).items()}
        figures = average_precision(predictions.targets, found, len(names), width, height)
        errors, precision = figures.pop("scene_errors"), figures.pop("precision_50")

        def panel(index, title):
            rows = predictions.targets[index][predictions.targets[index][:, 0] >= 0]
            kept = found["scores"][index] >= SCORE_THRESHOLD
            truth = _labelled(box_format.to_pixels(rows[:, 1:], width, height),
                              [names[int(i)] for i in rows[:, 0]], TRUE_COLOUR)
            detected = _labelled(box_format.to_pixels(found["boxes"][index][kept], width, height),
                                 [names[i] for i in found["class_id"][index][kept]], FOUND_COLOUR,
                                 found["scores"][index][kept])
            return pictures[index], truth + detected, title

        shown = range(min(SHOWN_EXAMPLES, len(pictures)))
        plots.plot_boxes([panel(index, f"test picture {index}") for index in shown],
                         f"test mAP@0.5 {figures['map_50']:.3f} (true boxes green, found red)",
                         run_dir / "detection_examples.png")
        worst = np.argsort(-errors.sum(axis=1), kind="stable")[:SHOWN_EXAMPLES]
        plots.plot_boxes([panel(index, f"test picture {index}: {errors[index, 0]} missed, "
                                       f"{errors[index, 1]} false") for index in worst],
                         f"the worst test pictures at score {SCORE_THRESHOLD} (true boxes green, "
                         f"found red)", run_dir / "detection_worst.png")
        plots.plot_precision_recall(
            np.linspace(0, 1, precision.shape[0]),
            {**{name: precision[:, index] for index, name in enumerate(names)},
             "any class (localisation)": precision[:, -1]},
            f"test precision-recall at IoU 0.5 (mAP@0.5 {figures['map_50']:.3f})",
            run_dir / "precision_recall.png")
        figures["class_ap_50"] = {name: round(value, 4) for name, value in
                                  zip(names, figures["class_ap_50"]) if value >= 0}
        return {**figures, "class_names": names, "box_format": BOX_FORMAT,
                "worst_test_pictures": [int(index) for index in worst],
                "test_boxes_missed": int(errors[:, 0].sum()),
                "test_detections_false": int(errors[:, 1].sum())}

    def card_section(self, metrics: dict) -> list[str]:
        return ["Average precision at IoU 0.5 per class on the test split: " + ", ".join(
            f"{name} {value:.3f}" for name, value in metrics["class_ap_50"].items()) + "."]

    def add_predict_arguments(self, parser) -> None:
        parser.add_argument("inputs", nargs="+", metavar="IMAGE")
        parser.add_argument("--out", default=None,
                            help="folder for each picture drawn with its boxes (default: beside "
                                 "the picture)")
        parser.add_argument("--score-threshold", type=float, default=SCORE_THRESHOLD,
                            help="boxes scoring at least this are reported (default "
                                 "%(default)s, the export's num_detections)")

    def predict(self, app, version_dir, arguments) -> None:
        """Each picture through `serving_default` at its own size: a JSON line with its boxes
        (class, score, corners in its pixels) and `<stem>_boxes.png`, the picture with them."""
        serve = tf.saved_model.load(str(version_dir)).signatures[app.predict_signature]
        sources, pictures = app.read_inputs(arguments.inputs)
        for source, picture in zip(sources, pictures):
            answer = {key: value[0].numpy() for key, value in
                      serve(pixels=tf.constant(picture[None])).items()}
            kept = answer["scores"] >= arguments.score_threshold
            names = [name.decode() for name in answer["class_name"][kept]]
            stem, out = Path(source).stem, Path(arguments.out or Path(source).parent)
            out.mkdir(parents=True, exist_ok=True)
            plots.plot_boxes([(picture, _labelled(answer["boxes"][kept], names, FOUND_COLOUR,
                                                  answer["scores"][kept]), Path(source).name)],
                             "", out / f"{stem}_boxes.png")
            print(json.dumps({"input": source, "drawn": str(out / f"{stem}_boxes.png"),
                              "detections": [
                                  {"class": name, "score": round(float(score), 4),
                                   "box": [round(float(value), 1) for value in box]}
                                  for name, score, box in zip(names, answer["scores"][kept],
                                                              answer["boxes"][kept])]}))

    def litert_comparison(self, saved: dict, litert: dict, targets: np.ndarray) -> dict:
        """Whether the LiteRT model finds the SavedModel's detections and no others: over each
        picture's detections scoring at least SCORE_THRESHOLD in either model (and each one's
        best), the share the other model also answers, at any of its 100 ranks (near-equal
        scores may swap), with the same class and every corner within a pixel; and the largest
        score difference of those found."""
        found, compared, differences = 0, 0, [0.0]
        for index in range(len(saved["scores"])):
            for one, other in ((saved, litert), (litert, saved)):
                shown = one["scores"][index] >= SCORE_THRESHOLD
                shown[0] = True
                same = ((one["class_id"][index][shown][:, None] == other["class_id"][index][None])
                        & (np.abs(one["boxes"][index][shown][:, None]
                                  - other["boxes"][index][None]).max(axis=-1) <= 1.0))
                score_gaps = np.abs(one["scores"][index][shown][:, None]
                                    - other["scores"][index][None])
                found, compared = found + int(same.any(axis=1).sum()), compared + int(shown.sum())
                differences += list(np.where(same, score_gaps, np.inf).min(axis=1)[
                    same.any(axis=1)])
        return {"metric": "detection_agreement",
                "detection_agreement": round(found / compared, 4),
                "max_score_difference": round(float(max(differences)), 4)}
