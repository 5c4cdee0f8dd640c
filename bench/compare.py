"""Side by side: each app against the keras.io / TensorFlow tutorial code it replaces.

A is the code a user would copy (`bench.references`, written as its source writes it), B is
`python -m apps <app> train` with the app's defaults (and the model raced). Both train on the
same data (the app's own splits of its shipped or generated sample) on this machine, and are
scored on the same held-out test split after every epoch. A and B runs alternate. For each pair,
the target is A's final test quality (accuracy, MAE for the forecaster, mean IoU for
segmentation, pycocotools' mAP@0.5 for detection, exact match for translation, bits per character
for text generation); each side's time-to-target is its wall time from the start (data loading,
model building, every callback, validation, both phases) to the end of the first epoch whose test
quality reaches the target, the per-epoch test scoring excluded. The reported figure is the
median ratio A time / B time.

    python -m bench.compare [--pairs 3] [--races mnist_mlp forecast ...] [--option KEY=VALUE]

Results are merged by race into bench/compare.json.
"""

import argparse
import ast
import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

import zoo
from apps import get_app
from apps.core import resolve_config, train
from apps.core.outputs.detection import MAX_DETECTIONS, average_precision
from apps.core.outputs.segmentation import iou_report
from apps.core.outputs.translation import normalised, translate
from bench import references, references_keras, references_textgen, references_translation
from bench.race_clock import EpochClock, accuracy, pair_record, race_summary
from bench.references import arrays
from bench.results import write_results
from zoo.backbones import checkpoint_folder, text_source

RESULTS = Path(__file__).with_name("compare.json")
VISION_FOLDER = Path(tempfile.gettempdir()) / "keras-app-zoo-mnist-folder"
VISION_WEIGHTS = VISION_FOLDER / "mobilenet_v2_digits_no_top.weights.h5"
VISION_SIZE = 32
TEXTGEN_REFERENCE_EPOCHS = 1
WORD_TEXT = Path(tempfile.gettempdir()) / "keras-app-zoo-fortunes-words.txt"


class QualityClock(EpochClock):
    """The epoch clock with every race's quality: accuracy, MAE, mean IoU, mAP@0.5, exact match,
    or a scorer of the model's own."""

    def __init__(self, metric: str):
        super().__init__(metric)
        self.to_units = self.head_features = self.decode = self.scorer = None

    def score_inputs(self, inputs, targets, to_units=None, head_features=None,
                     decode=None) -> None:
        """The test split as the scored model takes it; `to_units` maps predictions back to the
        targets' units; `head_features(inputs)` gives a head fitted on cached backbone features
        its input; `decode(model, inputs)` gives a translator's sentences."""
        super().score_inputs(inputs, targets)
        self.to_units, self.head_features, self.decode = to_units, head_features, decode

    def score_with(self, scorer) -> None:
        """`scorer(model)` is the quality itself, for a model scored on its own terms (a
        language model on its held-out text)."""
        self.scorer = scorer

    def quality(self, model) -> float:
        if self.scorer is not None:
            return self.scorer(model)
        if self.metric == "map_50":
            return detection_map_50(model, self.inputs, self.targets)
        if self.metric == "exact_match":
            references = [normalised(target.decode()) for target in self.targets]
            return float(np.mean([output == reference for output, reference
                                  in zip(self.decode(model, self.inputs), references)]))
        inputs = self.inputs
        if self.head_features is not None and len(model.inputs[0].shape) != inputs.ndim:
            if not isinstance(self.head_features, np.ndarray):
                self.head_features = self.head_features(inputs)
            inputs = self.head_features
        if inputs.dtype == object:  # strings: Keras predicts on a string tensor, not objects
            inputs = tf.constant(inputs.tolist())
        predicted = np.asarray(model.predict(inputs, batch_size=256, verbose=0))
        if self.metric == "mean_iou":
            classes = predicted.shape[-1]
            return iou_report(self.targets, predicted, list(map(str, range(classes))))[
                "mean_iou"]
        if self.metric == "mae":
            predicted = self.to_units(predicted) if self.to_units else predicted
            return float(np.abs(predicted.reshape(self.targets.shape) - self.targets).mean())
        return accuracy(predicted, self.targets)


def detection_map_50(model, pictures: np.ndarray, rows: np.ndarray) -> float:
    """pycocotools' mAP@0.5 of either side's detections on the test scenes: ours are the
    CenterNet maps decoded as the export decodes them; KerasHub's detector decodes its own, and
    its non-max suppression needs a static batch size (a batch of None fails inside it), so the
    scenes go in batches that divide their count."""
    from keras_hub.models import ObjectDetector

    count, size = len(pictures), pictures.shape[1]
    if isinstance(model, ObjectDetector):
        classes = model.num_classes
        batches = tf.data.Dataset.from_tensor_slices(pictures).batch(math.gcd(count, 64),
                                                                     drop_remainder=True)
        predicted = model.predict(batches, verbose=0)
        kept = predicted["labels"] >= 0
        corners = predicted["boxes"][..., [1, 0, 3, 2]] / size  # pixel yxyx -> relative xyxy
        found = {"boxes": [corners[i][kept[i]] for i in range(count)],
                 "scores": [predicted["confidence"][i][kept[i]] for i in range(count)],
                 "class_id": [predicted["labels"][i][kept[i]] for i in range(count)]}
    else:
        classes = model.output_shape[-1] - 4
        maps = model.predict(pictures, batch_size=256, verbose=0)
        found = {key: np.asarray(value) for key, value in
                 zoo.decode_detections(maps, classes, MAX_DETECTIONS).items()}
    if not any(len(scores) for scores in found["scores"]):
        return 0.0
    return average_precision(rows, found, classes, size, size)["map_50"]


@dataclasses.dataclass(frozen=True)
class Race:
    """One app (and model) against the code it replaces. `run_reference(splits, test, clock,
    seed)` trains the reference on the app's splits; `options` are B's, on top of the app's
    defaults."""

    app: str
    reference: str
    metric: str
    run_reference: Callable
    options: dict


def write_digits_folder(count: int = 1800) -> None:
    """The first `count` digits of the shipped MNIST sample as a vision class folder (train/ and
    test/, a seeded 15% for test, grey PNGs saved as RGB), and the MobileNetV2 weights file both
    sides load. No ImageNet weights exist offline, so the backbone is pretrained here (3 epochs)
    on the sample's other 8,000 digits: images neither side races on."""
    if VISION_WEIGHTS.exists():
        return
    import tensorflow as tf

    from apps.core.sources.digits import SAMPLE_DIR, read_split

    images, labels = read_split(SAMPLE_DIR, "t10k")
    order = np.random.default_rng(0).permutation(count)
    for rank, index in enumerate(order):
        part = "test" if rank < count * 0.15 else "train"
        folder = VISION_FOLDER / part / str(labels[index])
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.repeat(images[index].reshape(28, 28, 1), 3, axis=-1)
        (folder / f"{index}.png").write_bytes(tf.io.encode_png(pixels).numpy())
    keras.utils.set_random_seed(0)
    backbone = keras.applications.MobileNetV2(input_shape=(VISION_SIZE, VISION_SIZE, 3),
                                              include_top=False, weights=None)
    pretraining = keras.Sequential([
        keras.Input(shape=(28, 28, 1)), keras.layers.Resizing(VISION_SIZE, VISION_SIZE),
        keras.layers.Lambda(lambda grey: keras.ops.repeat(grey, 3, axis=-1)),
        keras.layers.Rescaling(1 / 127.5, offset=-1), backbone,
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10, activation="softmax")])
    pretraining.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    pretraining_images = images[count:].reshape(-1, 28, 28, 1).astype("float32")
    pretraining.fit(pretraining_images, labels[count:], batch_size=64, epochs=3, verbose=2)
    # MobileNetV2's batch norms average with momentum 0.999: after a few hundred steps their
    # moving statistics are still mostly the initial ones, and a frozen backbone (inference
    # mode) would compute garbage. One pass with momentum 0 sets them to the data's.
    norms = [layer for layer in backbone.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    pretraining(pretraining_images[:2000], training=True)
    for layer in norms:
        layer.momentum = 0.999
    race_digits = images[:count].reshape(-1, 28, 28, 1).astype("float32")
    accuracy = (pretraining.predict(race_digits, verbose=0).argmax(axis=1)
                == labels[:count]).mean()
    print(f"[vision] backbone pretrained on {len(pretraining_images)} other digits; with its "
          f"pretraining head it classifies the race's digits at {accuracy:.1%}", flush=True)
    backbone.save_weights(VISION_WEIGHTS)


def write_word_text() -> None:
    """The fortunes as keras.io's miniature GPT reads them (`references_textgen.word_documents`),
    one document per paragraph: the text both sides of the textgen race train on."""
    from apps.core.sources.texts import fortunes

    if not WORD_TEXT.exists():
        WORD_TEXT.write_text("\n\n".join(references_textgen.word_documents(fortunes())) + "\n",
                             encoding="utf-8")


def _minilm_folder() -> str:
    """The packaged MiniLM checkpoint that `text_transfer` loads by default."""
    return checkpoint_folder(text_source("all-minilm-l6-v2"))


RACES = {
    "mnist_mlp": Race("mnist", "TensorFlow beginner tutorial MLP, fit(x, y, epochs=5), batch 32",
                      "accuracy", lambda splits, test, clock, seed: references_keras.mnist(
                          "mnist_mlp", arrays(splits.train), test, clock), {"model": "mnist_mlp"}),
    "mnist_cnn": Race("mnist", "keras.io mnist_convnet, batch 128, 15 epochs", "accuracy",
                      lambda splits, test, clock, seed: references_keras.mnist(
                          "mnist_cnn", arrays(splits.train), test, clock), {"model": "mnist_cnn"}),
    "sentiment_scratch": Race(
        "sentiment", "keras.io text_classification_from_scratch (TextVectorization + Conv1D)",
        "accuracy", lambda splits, test, clock, seed: references.sentiment_conv1d(
            splits, test, clock, seed), {"model": "transformer_classifier"}),
    "sentiment_transfer": Race(
        "sentiment", "KerasHub BertTextClassifier fine-tuning the same MiniLM checkpoint",
        "accuracy", lambda splits, test, clock, seed: references.sentiment_keras_hub(
            splits, test, clock, seed, _minilm_folder()), {"model": "text_transfer"}),
    "speech": Race("speech", "TensorFlow simple_audio tutorial (STFT spectrogram, small CNN)",
                   "accuracy", lambda splits, test, clock, seed: references.speech_simple_audio(
                       splits, test, clock), {"model": "speech_cnn"}),
    "forecast": Race("forecast", "keras.io timeseries_weather_forecasting (LSTM 32)", "mae",
                     lambda splits, test, clock, seed: references.forecast_weather_lstm(
                         splits, test, clock, window=52, horizon=4),
                     {"model": "lstm_forecaster", "window": 52, "horizon": 4}),
    "vision": Race("vision", "TensorFlow transfer_learning tutorial (MobileNetV2 frozen, then "
                             "fine-tuned)", "accuracy",
                   lambda splits, test, clock, seed: references.vision_transfer_tutorial(
                       str(VISION_FOLDER), test, clock, seed, VISION_SIZE, str(VISION_WEIGHTS)),
                   {"model": "image_transfer", "data": str(VISION_FOLDER),
                    "image_size": VISION_SIZE, "backbone": "mobilenet_v2",
                    "weights": str(VISION_WEIGHTS)}),
    "segmentation": Race("segmentation", "keras.io oxford_pets_image_segmentation (U-Net-like "
                                         "Xception-style, rmsprop, 15 epochs)", "mean_iou",
                         lambda splits, test, clock, seed: references.segmentation_keras_io_unet(
                             splits, test, clock, seed), {"model": "unet"}),
    "detection": Race("detection", "KerasHub object_detection_retinanet guide's custom training "
                                   "(RetinaNetObjectDetector, ResNet-18 from scratch, 5 epochs)",
                      "map_50", lambda splits, test, clock, seed:
                      references.detection_keras_hub_retinanet(splits, test, clock, seed),
                      {"model": "centernet"}),
    "translate": Race("translate", "keras.io neural_machine_translation_with_transformer "
                                   "(embedding 256, feed-forward 2048, 8 heads, RMSprop, batch "
                                   "64, its 1 epoch)", "exact_match",
                      lambda splits, test, clock, seed: references_translation.translation_keras_io(
                          splits, test, clock, seed, epochs=1), {"model": "transformer_seq2seq"}),
    "textgen": Race("textgen", "keras.io text_generation_with_miniature_gpt (word-level, 1 block, "
                               f"embedding 256, batch 128, {TEXTGEN_REFERENCE_EPOCHS} of its 25 "
                               "epochs)", "bits_per_character",
                    lambda splits, test, clock, seed: references_textgen.text_generation_keras_io(
                        splits, clock, seed, epochs=TEXTGEN_REFERENCE_EPOCHS),
                    {"model": "gpt", "data": str(WORD_TEXT)}),
}


def _config(race: Race, seed: int, **paths):
    app = get_app(race.app)
    return app, resolve_config(app, **{"data": "sample", **race.options, "seed": seed, **paths})


def reference(race: Race, seed: int) -> list[dict]:
    app, config = _config(race, seed)
    keras.utils.set_random_seed(seed)
    clock = QualityClock(race.metric)
    splits = app.load_data(config)
    with clock.paused():
        test = arrays(splits.test)
    race.run_reference(splits, test, clock, seed)
    return clock.rows


def ours(race: Race, seed: int) -> list[dict]:
    app, config = _config(race, seed)
    splits = app.load_data(config)
    # A language model is scored on its held-out documents, every other model on test arrays.
    test = None if race.metric == "bits_per_character" else arrays(splits.test)

    def head_features(inputs):  # the frozen pretrained backbone the head phase is fitted on
        extractor = app.build_model(config, splits).feature_extractor()
        return extractor.predict(tf.constant(inputs.tolist()) if inputs.dtype == object
                                 else inputs, verbose=0)

    clock = QualityClock(race.metric)
    if race.metric == "bits_per_character":
        scored = references_textgen.scored_documents(splits.context["documents"][2])
        clock.score_with(lambda model: references_textgen.generator_bits_per_character(
            model, scored))
    elif race.metric == "exact_match":
        clock.score_inputs(test[0]["text"], test[1],
                           decode=lambda model, texts: translate(model, texts)[0])
    else:
        clock.score_inputs(*test, head_features=head_features)
    with tempfile.TemporaryDirectory() as folder:
        _, config = _config(race, seed, run_dir=f"{folder}/run", export_dir=f"{folder}/exports")
        train(app, config, callbacks=(clock,))
    return clock.rows


def compare(name: str, pairs: int, lever: dict) -> dict:
    race = RACES[name]
    if lever:
        race = dataclasses.replace(race, options={**race.options, **lever})
    if race.app == "vision":
        write_digits_folder()
    if race.app == "textgen":
        write_word_text()
    runs = []
    for pair in range(pairs):
        baseline, runner = reference(race, seed=pair), ours(race, seed=pair)
        runs.append(pair_record(baseline, runner, race.metric))
        print(f"[{name} pair {pair + 1}] {runs[-1]}", flush=True)
    return {"race": name + "".join(f" {key}={value}" for key, value in lever.items()),
            "app": race.app, "model": race.options["model"], "lever": lever,
            "reference": race.reference, "metric": race.metric, **race_summary(runs),
            "pairs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="alternating A/B run pairs")
    parser.add_argument("--races", nargs="+", default=list(RACES), choices=list(RACES))
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of B instead of the app default, to measure a lever "
                             "(e.g. batch_size=128); its results are kept beside the default's")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="the JSON file the races are merged into (another file keeps a "
                             "check of one pair apart from the 3-pair figures)")
    arguments = parser.parse_args()
    lever = {key: ast.literal_eval(value) for key, _, value in
             (pair.partition("=") for pair in arguments.option)}
    results = {entry["race"]: entry for entry in
               (json.loads(arguments.results.read_text())["results"]
                if arguments.results.exists() else [])
               if "race" in entry}
    for name in arguments.races:
        result = compare(name, arguments.pairs, lever)
        results[result["race"]] = result
        write_results(arguments.results, sorted(results.values(), key=lambda entry: (
            list(RACES).index(entry["race"].split()[0]), entry["race"])))
        print(f"{result['race']}: median time-to-target ratio (reference / runner) "
              f"{result['ratio_median']:.2f} over {arguments.pairs} pairs; final "
              f"{result['metric']} reference {result['reference_quality']}, "
              f"project {result['project_quality']}", flush=True)
    print(f"wrote {arguments.results}")


if __name__ == "__main__":
    main()
