"""Translation: source text -> word vocabularies inside the model -> zoo encoder-decoder ->
greedy decoding inside the model -> translated text.

Data: the offline number words (default: English number words to `--language` number words by
num2words, 0-999,999, with every value that is 3 modulo 7 and the range [740,000, 760,000) held
out of training: apps/core/sources/sentence_pairs.py), a tab-separated file or folder of them
(`source<TAB>target` per line, the Anki/ManyThings format: a seeded 15% held out), or a TFDS
translation dataset with `--data tfds` (`--dataset`, e.g. ted_hrlr_translate/pt_to_en).
Models: `transformer_seq2seq` (default) and `lstm_seq2seq` (the baseline; `--model-arg
attention=false` without attention). The vocabularies are the training part's words; a sentence
is cut at `sequence_length` words (the longest training sentence's, plus the end token).
Expected on the number words with the defaults: exact match >= 0.97 on both held-out groups.
Export: `serving_default(text: string [batch])` -> `translation` string [batch].
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import tensorflow as tf

import zoo
from apps.core import App, DataError, DataSplits, Signature, TensorInput, TrainConfig, option
from apps.core.outputs import Translation
from apps.core.sources import load_tfds, resolve_source, sentence_pairs, texts_or_files

LANGUAGES = ("es", "fr", "de", "it", "pt")


@dataclasses.dataclass
class TranslateConfig(TrainConfig):
    language: str = option("es", "the number words' target language (num2words)",
                           choices=LANGUAGES)
    train_values: int = option(10_000, "the number words: values drawn above 9,999 for training, "
                                       "besides every value below 10,000")
    dataset: str = option("ted_hrlr_translate/pt_to_en", "TFDS translation dataset for --data "
                                                         "tfds (its supervised pairs)")


def load_data(config) -> DataSplits:
    source, reason = resolve_source(config.data, None)
    if source == "tfds":
        (train, validation, test), _ = load_tfds(config.dataset, ["train", "validation", "test"])

        def as_pair(source_text, target_text):
            return {"text": source_text, "target": target_text}, target_text

        return DataSplits(train=train.map(as_pair), validation=validation.map(as_pair),
                          test=test.map(as_pair), source=f"TFDS {config.dataset} ({reason})")
    if source == "sample":
        if config.train_values < 0:
            raise DataError(f"--train-values {config.train_values}: give 0 or more.")
        return sentence_pairs.number_word_splits(
            config.language, config.train_values, config.seed,
            f"number words, English to {config.language} ({reason})")
    return sentence_pairs.tsv_splits(Path(source), config.seed, f"sentence pairs {source} "
                                                                f"({reason})")


def build_model(config, splits: DataSplits) -> zoo.Translator:
    """Vocabularies and the sentence length from the training part: the source's words as its
    TextVectorization reads them (lower case, no punctuation), the target's lower-cased."""
    if "training_words" not in splits.context:  # counted once; the model is rebuilt later
        texts = splits.train.map(lambda inputs, target: inputs)
        source_words = keras.layers.TextVectorization()
        source_words.adapt(texts.map(lambda pair: pair["text"]).batch(1024))
        target_words = keras.layers.TextVectorization(standardize="lower")
        target_words.adapt(texts.map(lambda pair: pair["target"]).batch(1024))
        longest = max(int(tf.reduce_max(tf.strings.split(batch[key]).row_lengths()))
                      for batch in texts.batch(1024) for key in ("text", "target"))
        splits.context["training_words"] = (source_words.get_vocabulary()[2:],
                                            target_words.get_vocabulary()[2:], longest + 1)
    source_vocabulary, target_vocabulary, sequence_length = splits.context["training_words"]
    options = config.model_options()
    sequence_length = options.pop("sequence_length", sequence_length)
    splits.facts.update(sequence_length=sequence_length,
                        vocabulary_sizes=[len(source_vocabulary), len(target_vocabulary)])
    return zoo.Translator(source_vocabulary, target_vocabulary, network=config.model,
                          sequence_length=sequence_length, network_options=options,
                          name=f"translate_{config.model}")


def translated(model, text):
    return {"translation": model.translate(text)[0]}


APP = App(
    name="translate",
    summary="sentences translated by an encoder-decoder, decoded inside the export",
    output=Translation(),
    models=("transformer_seq2seq", "lstm_seq2seq"),
    load_data=load_data,
    build_model=build_model,
    loss=None,
    metrics=(),
    signatures={"serving_default": Signature(TensorInput("text", "string", (None,)),
                                             outputs=translated,
                                             description="greedy translation of each text")},
    read_inputs=texts_or_files,
    config_class=TranslateConfig,
    app_model_options={"source_vocab_size": "the training part's source words",
                       "target_vocab_size": "the training part's target words"},
    defaults={"model": "transformer_seq2seq", "epochs": 3, "batch_size": 64,
              "learning_rate": 2e-3, "jit_compile": "off", "augment": False,
              "explain_examples": 0},
)
