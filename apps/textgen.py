"""Text generation: text -> a SentencePiece tokenizer trained on the training text, inside the
model -> zoo language model -> sampling inside the model -> text.

Data: Debian's fortunes by default (`make fortunes`: English quotations, jokes and verse, BSD
licence; apps/core/sources/texts.py), a UTF-8 file or folder of them (`--data PATH`: documents
are paragraphs, or entries between "%" lines), or a TFDS text dataset with `--data tfds`
(`--dataset`, e.g. tiny_shakespeare). Repeated documents are kept once; a seeded 5% of them is
the test part and 5% the validation part. Models: `gpt` (default) and `lstm_lm` (the baseline).
Training reads each document after the start token, all of them end to end in windows of
`sequence_length` tokens.
Export: `serving_default(prompt: string [batch], max_new_tokens: int32 [batch], temperature:
float32 [batch], top_k: int32 [batch], seed: int32 [batch])` -> `text`, `prompt_truncated`, and
`log_likelihood(text: string [batch])` -> `log_likelihood`, `num_characters`. A SavedModel
signature has no optional inputs: every request gives all five (`predict`'s defaults:
--max-new-tokens 40 --temperature 0.8 --top-k 40 --seed 0).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import zoo
from apps.core import App, DataError, DataSplits, Signature, TensorInput, TrainConfig, option
from apps.core.outputs import LanguageModeling
from apps.core.sources import load_tfds, resolve_source, texts


@dataclasses.dataclass
class TextgenConfig(TrainConfig):
    # 4,000 pieces hold more of each word than 2,000: fewer, dearer steps, 0.06 bits per
    # character better in 15% more training (bench/RESULTS.md).
    vocabulary_size: int = option(4000, "SentencePiece pieces trained on the training text "
                                        "(at least its distinct characters + 260)")
    sequence_length: int = option(64, "tokens the model reads at once (its context)")
    dataset: str = option("tiny_shakespeare", "TFDS text dataset for --data tfds (its `text` "
                                              "feature)")


def _tfds_documents(name: str) -> list[str]:
    (train, validation, test), _ = load_tfds(name, ["train", "validation", "test"],
                                             as_supervised=False)
    return [document for split in (train, validation, test) for example in split
            for document in texts.documents_in(example["text"].numpy().decode("utf-8"))]


def load_data(config) -> DataSplits:
    import sentencepiece

    source, reason = resolve_source(config.data, None)
    if source == "tfds":
        documents, described = _tfds_documents(config.dataset), f"TFDS {config.dataset}"
    elif source == "sample":
        documents, described = texts.fortunes(), (f"Debian's fortunes, {texts.FORTUNES_DIR} (BSD "
                                                   f"licence: {texts.FORTUNES_LICENCE})")
    else:
        documents, described = texts.read_documents(Path(source)), f"text {source}"
    described += f" ({reason})"
    train, validation, test = texts.split_documents(documents, config.seed, described)
    proto = texts.sentence_piece_proto(train, config.vocabulary_size)
    tokenizer = sentencepiece.SentencePieceProcessor(model_proto=proto)  # the model's own ids

    def windows(part):
        return texts.token_windows(part, tokenizer.encode, zoo.TextGenerator.START_ID,
                                   config.sequence_length)

    return DataSplits(train=windows(train), validation=windows(validation), test=windows(test),
                      source=described, context={"documents": (train, validation, test),
                                                 "tokenizer_proto": proto},
                      facts={"documents": {"train": len(train), "validation": len(validation),
                                           "test": len(test), "repeats_dropped": len(documents)
                                           - len(train) - len(validation) - len(test)},
                             "characters": {"train": sum(map(len, train)),
                                            "test": sum(map(len, test))}})


def build_model(config, splits: DataSplits) -> zoo.TextGenerator:
    if config.sequence_length < 2:
        raise DataError(f"--sequence-length {config.sequence_length}: at least 2.")
    return zoo.TextGenerator(splits.context["tokenizer_proto"], network=config.model,
                             sequence_length=config.sequence_length,
                             network_options=config.model_options(), name=f"textgen_{config.model}")


def language_model_loss():
    import keras

    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)


def generated(model, prompt, max_new_tokens, temperature, top_k, seed):
    text, truncated = model.generate_text(prompt, max_new_tokens, temperature, top_k, seed)
    return {"text": text, "prompt_truncated": truncated}


def scored(model, text):
    log_likelihood, characters = model.log_likelihood(text)
    return {"log_likelihood": log_likelihood, "num_characters": characters}


APP = App(
    name="textgen",
    summary="text continued by a language model, tokenized and sampled inside the export",
    output=LanguageModeling(),
    models=("gpt", "lstm_lm"),
    load_data=load_data,
    build_model=build_model,
    loss=language_model_loss,
    metrics=(),
    signatures={
        "serving_default": Signature(
            (TensorInput("prompt", "string", (None,)), TensorInput("max_new_tokens", "int32", (None,)),
             TensorInput("temperature", "float32", (None,)), TensorInput("top_k", "int32", (None,)),
             TensorInput("seed", "int32", (None,))),
            outputs=generated,
            description="each prompt continued by up to max_new_tokens tokens, sampled at "
                        "temperature (0: greedy) from the top_k (0: all) by seed"),
        "log_likelihood": Signature(
            TensorInput("text", "string", (None,)), outputs=scored,
            description="the natural log of each text's probability, and its characters: "
                        "bits per character = -log_likelihood / ln 2 / num_characters")},
    config_class=TextgenConfig,
    app_model_options={"vocab_size": "--vocabulary-size (the trained tokenizer's pieces)",
                       "sequence_length": "--sequence-length"},
    # Sized for two CPU cores (bench/RESULTS.md): a narrower GPT for two epochs with Muon learns
    # more in a similar time than the zoo's 128-wide one for one epoch with AdamW; Muon's AdamW
    # part (embeddings, logits) learns fastest at twice Muon's rate.
    defaults={"model": "gpt", "epochs": 2, "batch_size": 16, "learning_rate": 8e-3,
              "muon_adam_lr_ratio": 2.0, "warmup_steps": 100, "optimizer": "muon",
              "weight_decay": 0.01, "augment": False,
              "explain_examples": 0,
              "model_arg": ["dropout_rate=0.0", "embedding_dim=96", "feed_forward_dim=384"]},
)
