"""Generated text: a language model (`zoo.TextGenerator`) measured on held-out documents.

Measured on the test documents: bits per character (the natural-log likelihood of each whole
document, as the export's `log_likelihood` computes it, over its characters: comparable across
tokenizers) and per-token perplexity; beside them a character n-gram's bits per character
(`apps.core.ngram`, its order chosen on the validation documents) on the same documents. Shown:
samples.txt (the same prompts continued after every epoch) and continuations.txt (20 test
documents' first words continued), and how often those continuations hold a run of 12 words
found in the training text, against how often the held-out documents themselves do.
"""

from __future__ import annotations

import json
import math
import sys
import weakref

import keras
import numpy as np
import tensorflow as tf

from apps.core.errors import RunError
from apps.core.outputs.base import OutputKind

SCORE_BATCH = 32
PROMPT_WORDS = 4
COPY_PROMPTS = 20
COPY_RUN_WORDS = 12
SAMPLING = {"temperature": 0.8, "top_k": 40}
SAMPLE_PROMPTS = ["The", "A man", "Love is"]


_traced = weakref.WeakKeyDictionary()  # model -> {method name: its tf.function}


def traced(model, method: str):
    """`model.<method>` as one tf.function per model (the tokenizer's ragged ops need a graph)."""
    functions = _traced.setdefault(model, {})
    if method not in functions:
        functions[method] = tf.function(getattr(model, method), reduce_retracing=True)
    return functions[method]


def generate(model, prompts, max_new_tokens, seed, temperature=SAMPLING["temperature"],
             top_k=SAMPLING["top_k"]):
    """`model.generate_text` on a list of prompts, one option value for all: (texts, cut)."""
    count = len(prompts)
    texts, cut = traced(model, "generate_text")(
        tf.constant(prompts), tf.fill([count], max_new_tokens), tf.fill([count], float(temperature)),
        tf.fill([count], top_k), tf.fill([count], seed))
    return [text.decode() for text in texts.numpy()], cut.numpy()


def log_likelihoods(model, documents):
    """Each document's natural-log likelihood under `model`, and its characters."""
    score = traced(model, "log_likelihood")
    totals, characters = [], []
    for start in range(0, len(documents), SCORE_BATCH):
        batch_totals, batch_characters = score(tf.constant(documents[start:start + SCORE_BATCH]))
        totals += batch_totals.numpy().tolist()
        characters += batch_characters.numpy().tolist()
    return np.array(totals), np.array(characters)


def continuation_length(model) -> int:
    """New tokens for the report's continuations: 48 (about 120 characters) or, in a shorter
    context, what 16 tokens of prompt leave."""
    return max(1, min(48, model.sequence_length - 16))


def prompts_from(documents, count):
    return [" ".join(document.split()[:PROMPT_WORDS]) for document in documents[:count]]


def word_runs(text: str, length: int = COPY_RUN_WORDS) -> set:
    words = text.split()
    return {tuple(words[index:index + length]) for index in range(len(words) - length + 1)}


def samples_after_each_epoch(path, prompts, seed) -> keras.callbacks.Callback:
    """A callback: after every epoch, the continuations of the same prompts appended to
    `path`."""

    def write(epoch, logs=None):
        texts, _ = generate(callback.model, prompts, continuation_length(callback.model), seed)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"## after epoch {epoch + 1}\n\n" + "\n\n".join(texts) + "\n\n")

    callback = keras.callbacks.LambdaCallback(on_epoch_end=write)
    return callback


class LanguageModeling(OutputKind):
    """Strings in, strings out: `text` (each prompt continued) and a text's `log_likelihood`."""

    name = "language_modeling"
    card_outputs = ("`text` string [batch] (each prompt and its continuation, sampled inside the "
                    "graph), `prompt_truncated` bool [batch]; `log_likelihood` float32 [batch] "
                    "and `num_characters` int32 [batch]")
    card_metrics = ("bits_per_character", "ngram_bits_per_character", "perplexity")
    model_output_name = None
    predict_usage = "--prompt TEXT [--prompt TEXT ...]"

    def callbacks(self, run_dir, config) -> list:
        return [samples_after_each_epoch(run_dir / "samples.txt", SAMPLE_PROMPTS, config.seed)]

    def report(self, model, predictions, splits, run_dir, config, rebuild) -> dict:
        from apps.core import ngram

        train, validation, test = splits.context["documents"]
        totals, characters = log_likelihoods(model, test)
        order, by_order, counts = ngram.best_order(train, validation, range(2, 8))
        baseline = ngram.bits_per_character(counts, test, order)
        metrics = {
            "bits_per_character": round(float(-totals.sum() / math.log(2) / characters.sum()), 4),
            "perplexity": round(math.exp(predictions.metrics["loss"]), 2),
            "ngram_bits_per_character": round(baseline, 4), "ngram_order": order,
            "ngram_validation_bits_per_character": by_order,
        }
        prompts = prompts_from(test, COPY_PROMPTS)
        continuations, _ = generate(model, prompts, continuation_length(model), config.seed)
        training_runs = set().union(*(word_runs(document) for document in train))

        def share_copying(texts):
            return round(float(np.mean([bool(word_runs(text) & training_runs) for text in texts])), 4)

        metrics.update(  # a run may start in the 4-word prompt: 8 or more of its words are new
            continuations_with_a_copied_run=share_copying(continuations),
            held_out_with_a_copied_run=share_copying(test))
        (run_dir / "continuations.txt").write_text(
            "\n\n".join(f"[{prompt}]{text[len(prompt):]}" for prompt, text
                        in zip(prompts, continuations)) + "\n", encoding="utf-8")
        return metrics

    def add_predict_arguments(self, parser) -> None:
        parser.add_argument("--prompt", action="append", required=True,
                            help="text to continue (repeat for several)")
        parser.add_argument("--max-new-tokens", type=int, default=40,
                            help="at most this many tokens (below the model's context)")
        parser.add_argument("--temperature", type=float, default=SAMPLING["temperature"],
                            help="0: greedy")
        parser.add_argument("--top-k", type=int, default=SAMPLING["top_k"], help="0: every token")
        parser.add_argument("--seed", type=int, default=0)

    def predict(self, app, version_dir, arguments) -> None:
        """One JSON line per prompt: the prompt and its continuation."""
        if arguments.max_new_tokens < 1:
            raise RunError(f"--max-new-tokens {arguments.max_new_tokens}: give 1 or more.")
        if arguments.temperature < 0 or arguments.top_k < 0:
            raise RunError("--temperature and --top-k: give 0 or more (0: greedy / every token).")
        serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
        count = len(arguments.prompt)
        try:
            outputs = serve(prompt=tf.constant(arguments.prompt),
                            max_new_tokens=tf.fill([count], arguments.max_new_tokens),
                            temperature=tf.fill([count], float(arguments.temperature)),
                            top_k=tf.fill([count], arguments.top_k),
                            seed=tf.fill([count], arguments.seed))
        except tf.errors.InvalidArgumentError as error:
            raise RunError(f"--max-new-tokens {arguments.max_new_tokens}: "
                           f"{error.message.splitlines()[0]}") from None
        cut = outputs["prompt_truncated"].numpy()
        if cut.any():
            print(f"note: {int(cut.sum())} prompt(s) longer than the context left for "
                  f"--max-new-tokens {arguments.max_new_tokens} were cut from the left",
                  file=sys.stderr)
        for prompt, text in zip(arguments.prompt, outputs["text"].numpy()):
            print(json.dumps({"prompt": prompt, "text": text.decode()}, ensure_ascii=False))

    def litert_comparison(self, saved: dict, litert: dict, targets: np.ndarray) -> dict:
        """Share of prompts continued alike (today's converter refuses the tokenizer's op
        before this)."""
        return {"same_text": float(np.mean(saved["text"] == litert["text"]))}

    def card_section(self, metrics: dict) -> list[str]:
        return [f"- bits per character on the test documents: {metrics['bits_per_character']}; "
                f"a character {metrics['ngram_order']}-gram (Witten-Bell, order chosen on the "
                f"validation documents) on the same: {metrics['ngram_bits_per_character']}",
                "- samples after each epoch: samples.txt; 20 test documents' first words "
                "continued: continuations.txt",
                "- loading the export takes `import tensorflow_text` first (it registers the "
                "SentencePiece tokenizer's ops; `make serve` and `predict` do it)"]
