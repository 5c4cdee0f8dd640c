"""Translations: text decoded inside the model (`zoo.Translator`), measured on the held-out pairs.

Measured on the test split: exact match (the whole translation equals the reference as the
target vocabulary reads it: lower-cased, split on whitespace), per held-out group where the data
name them; token accuracy (teacher forced, padding excluded: the model's `token_accuracy`); chrF
and BLEU by sacrebleu. Shown: translations.tsv (every test pair, its output and whether it
matches) and attention.png (where each output word looked in the source, for a few pairs).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from apps.core import plots
from apps.core.outputs.base import OutputKind

ATTENTION_EXAMPLES = 3
DECODE_BATCH = 512


def normalised(reference: str) -> str:
    """A reference as the model can write it: lower-cased, single spaces."""
    return " ".join(reference.lower().split())


def translate(model, texts, batch_size: int = DECODE_BATCH):
    """`model.translate` over `texts` (a sequence of str or bytes) in batches, through one traced
    function: (translations as str, [words], [source words], attention maps)."""
    run = tf.function(model.translate, reduce_retracing=True)
    translations, words, source_words, attention = [], [], [], []
    for start in range(0, len(texts), batch_size):
        batch = run(tf.constant(list(texts[start:start + batch_size])))
        translations += [text.decode() for text in batch[0].numpy()]
        words += [[word.decode() for word in row if word] for row in batch[1].numpy()]
        source_words += [[word.decode() for word in row if word] for row in batch[2].numpy()]
        attention += list(batch[3].numpy())
    return translations, words, source_words, attention


class Translation(OutputKind):
    """Strings in, strings out: `translation` [batch] decoded greedily inside the export."""

    name = "translation"
    card_outputs = "`translation` string [batch] (greedy decoding inside the graph)"
    card_metrics = ("exact_match", "chrf", "bleu")
    model_output_name = None
    predict_usage = "TEXT_OR_FILE..."

    def report(self, model, predictions, splits, run_dir, config, rebuild) -> dict:
        import sacrebleu

        sources = [text.decode() for text in predictions.inputs["text"]]
        references = [normalised(text.decode()) for text in predictions.targets]
        outputs, words, source_words, attention = translate(model, sources)
        matches = np.array([output == reference for output, reference in zip(outputs, references)])
        metrics = {"exact_match": round(float(matches.mean()), 4),
                   "chrf": round(sacrebleu.corpus_chrf(outputs, [references]).score, 2),
                   "bleu": round(sacrebleu.corpus_bleu(outputs, [references]).score, 2)}
        groups = splits.context.get("test_groups", [])[:len(matches)]  # --max-examples: the first
        if groups:
            metrics["exact_match_by_group"] = {
                group: round(float(matches[[name == group for name in groups]].mean()), 4)
                for group in dict.fromkeys(groups)}
        with (run_dir / "translations.tsv").open("w", encoding="utf-8") as handle:
            handle.write("source\treference\ttranslation\tmatch\n")
            for source, reference, output, match in zip(sources, references, outputs, matches):
                handle.write(f"{source}\t{reference}\t{output}\t{int(match)}\n")
        shown = np.linspace(0, len(sources) - 1, ATTENTION_EXAMPLES + 2).astype(int)[1:-1]
        plots.plot_attention(
            [attention[index][:len(words[index]) + 1, :len(source_words[index])]
             for index in shown],
            [source_words[index] for index in shown], [[*words[index], "[end]"] for index in shown],
            run_dir / "attention.png")
        return metrics

    def add_predict_arguments(self, parser) -> None:
        parser.add_argument("inputs", nargs="+", metavar="TEXT_OR_FILE",
                            help="a sentence to translate, or a file of one sentence per line")

    def predict_line(self, outputs: dict, index: int) -> dict:
        return {"translation": outputs["translation"][index].numpy().decode()}

    def litert_comparison(self, saved: dict, litert: dict, targets: np.ndarray) -> dict:
        """Share of test sources translated alike (the string outputs LiteRT would have to hold;
        today's converter refuses the vocabularies' string ops before this)."""
        return {"same_translation": float(np.mean(saved["translation"] == litert["translation"]))}

    def card_section(self, metrics: dict) -> list[str]:
        groups = metrics.get("exact_match_by_group") or {}
        return [f"- exact match on {group}: {value:.4f}" for group, value in groups.items()] + [
            "- translations of every test pair: translations.tsv; attention maps: attention.png"]
