"""Explanations measured and drawn: the run report's faithfulness figures (deletion, and the
randomisation check of Adebayo et al., 2018) and the `explain` command's pictures and pages.
The methods themselves are in apps.core.explain."""

import json
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from apps.core import plots
from apps.core.explain import (
    METHODS,
    SIGNATURES,
    classifier_parts,
    explain,
    methods_for,
    scaled_embeddings,
)
from apps.core.outputs.classification import worst_mistakes


def explain_files(app, version_dir: Path, method: str, paths: list[str], out_dir: Path,
                  chosen_class: str | None = None) -> None:
    """Runs the export's signature for `method` on each input file and draws its map over the
    input (images) or its spectrogram (speech) into `out_dir`; prints one JSON line per file:
    the class and probability explained (and the runner-up), or an app's own target's class
    and score. `chosen_class` names the class to explain, for apps whose explanation takes a
    `choice` (default: the app's own)."""
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops that text exports use)

    from apps.core.errors import RunError

    loaded = tf.saved_model.load(str(version_dir))
    name = SIGNATURES[method]
    if name not in loaded.signatures:
        raise RunError(f"--method {method}: this export has no {name} signature (Grad-CAM needs "
                       f"a convolutional model; re-export with this version of the app, or "
                       f"choose integrated_gradients or saliency).")
    signature = loaded.signatures[name]
    choice = app.explanation.choice
    input_name, = (key for key in signature.structured_input_signature[1]
                   if not choice or key != choice.name)
    class_names = (version_dir / "assets" / "labels.txt").read_text().splitlines()
    chosen = {}
    if choice:
        if chosen_class is not None and chosen_class not in class_names:
            raise RunError(f"--class {chosen_class}: not a class of this export (its classes: "
                           f"{', '.join(class_names)}).")
        chosen = {choice.name: tf.constant(
            [-1 if chosen_class is None else class_names.index(chosen_class)], choice.dtype)}
    sources, batch = app.read_inputs(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    for number, (source, item) in enumerate(zip(sources, batch), start=1):
        raw = app.explanation.served_input(item) if app.explanation.served_input else item
        outputs = {key: value.numpy()[0]
                   for key, value in signature(**{input_name: tf.constant(np.asarray([raw])),
                                                  **chosen}).items()}
        if "probabilities" not in outputs:  # an app's own target (a region, a detection)
            name, score = class_names[outputs["explained_class"]], outputs["explained_score"]
            path = out_dir / f"{Path(source).stem}_{method}.png"
            plots.plot_attribution(raw, outputs["attributions"], f"{Path(source).name}: "
                                   f"{app.explanation.subject.format(name=name, score=score)} "
                                   f"({method})", path)
            print(json.dumps({"input": source, "class": name, "score": round(float(score), 4),
                              "out": str(path)}))
            continue
        first, second = np.argsort(-outputs["probabilities"])[:2]
        if "tokens" in outputs:
            shown, path = str(item)[:80], out_dir / f"{number}_{method}.html"
            plots.write_token_page(outputs["tokens"], outputs["attributions"], str(item),
                                    f"{class_names[first]} "
                                    f"{outputs['probabilities'][first]:.2f} ({method})", path)
        else:
            shown, path = source, out_dir / f"{Path(source).stem}_{method}.png"
            title = (f"{Path(source).name}: {class_names[first]} "
                     f"{outputs['probabilities'][first]:.2f}, runner-up {class_names[second]} "
                     f"{outputs['probabilities'][second]:.2f} ({method})")
            plots.plot_attribution(outputs.get("explained_input", raw), outputs["attributions"],
                                    title, path, spectrogram="explained_input" in outputs)
        print(json.dumps({"input": shown, "class": class_names[first],
                          "probability": round(float(outputs["probabilities"][first]), 4),
                          "runner_up": class_names[second], "out": str(path)}))


def deletion_drop(model, explanation, to_model_input, raw, labels, attributions,
                  fraction: float = 0.1, seed: int = 0) -> tuple[float, float]:
    """Mean drop of the true class's probability when the `fraction` of positions with the
    highest attributions are set to the baseline (black pixels, a silent spectrogram), and when
    as many random positions are: (top, random)."""
    to_inputs, classify = classifier_parts(model, explanation, to_model_input)
    inputs = to_inputs(raw).numpy()
    baseline = 0.0 if explanation.baseline == "zeros" else inputs.reshape(
        len(inputs), -1).min(axis=1)
    flat_scores = np.asarray(attributions).reshape(len(inputs), -1)
    count = int(round(fraction * flat_scores.shape[1]))
    rng = np.random.default_rng(seed)
    chosen = {"top": np.argsort(-flat_scores, axis=1)[:, :count],
              "random": np.stack([rng.permutation(flat_scores.shape[1])[:count]
                                  for _ in range(len(inputs))])}
    before = classify(tf.constant(inputs)).numpy()[np.arange(len(inputs)), labels]
    drops = {}
    for kind, positions in chosen.items():
        blanked = inputs.reshape(len(inputs), flat_scores.shape[1], -1).copy()
        for index, value in enumerate(np.broadcast_to(baseline, len(inputs))):
            blanked[index, positions[index]] = value
        after = classify(tf.constant(blanked.reshape(inputs.shape))).numpy()
        drops[kind] = float(np.mean(before - after[np.arange(len(inputs)), labels]))
    return drops["top"], drops["random"]


def is_word(tokens) -> np.ndarray:
    """Which tokens are words: not padding ("") and not a special token like [CLS]."""
    tokens = np.vectorize(lambda token: token.decode() if isinstance(token, bytes) else token)(
        np.asarray(tokens))
    return (tokens != "") & ~(np.char.startswith(tokens, "[") & np.char.endswith(tokens, "]"))


def token_deletion_drop(model, explanation, raw, labels, attributions, tokens, count: int = 3,
                        seed: int = 0) -> tuple[float, float]:
    """Mean drop of the true class's probability when the `count` most-attributed words of each
    text are dropped (their embeddings set to the zero baseline), and when `count` random words
    are: (top, random)."""
    words = is_word(tokens)
    rng = np.random.default_rng(seed)
    scores = np.where(words, np.asarray(attributions), -np.inf)
    before = model(tf.constant(raw), training=False).numpy()[np.arange(len(raw)), labels]
    drops = {}
    for kind in ("top", "random"):
        scale = np.ones(words.shape, "float32")
        for index in range(len(raw)):
            candidates = np.flatnonzero(words[index])
            chosen = (np.argsort(-scores[index])[:min(count, len(candidates))] if kind == "top"
                      else rng.permutation(candidates)[:count])
            scale[index, chosen] = 0.0
        with scaled_embeddings(model, explanation.layer, tf.constant(scale)):
            after = model(tf.constant(raw), training=False).numpy()
        drops[kind] = float(np.mean(before - after[np.arange(len(raw)), labels]))
    return drops["top"], drops["random"]


def rank_correlation(maps_a, maps_b, absolute: bool = False, where=None) -> float:
    """Mean Spearman rank correlation of two maps per example, signed or of their absolute
    values (Adebayo et al., 2018, report both), over the positions `where` is true (for text:
    the words, not the padding); examples where a map is constant (a Grad-CAM map all zero)
    have none and are left out."""
    import scipy.stats

    maps_a, maps_b = np.asarray(maps_a), np.asarray(maps_b)
    where = np.ones(maps_a.shape, bool) if where is None else where
    transform = np.abs if absolute else np.asarray
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.stats.ConstantInputWarning)
        for a, b, kept in zip(maps_a, maps_b, where):
            values.append(scipy.stats.spearmanr(transform(a[kept]), transform(b[kept]))[0])
    return float(np.nanmean(values))


WORST_MISTAKES = 6
EXPLAINED_PER_CALL = 8


def report_explanations(app, model, splits, predictions, run_dir: Path, rebuild,
                        count: int) -> dict:
    """The run report's explanations: for each method, on the first `count` held-out examples, the
    deletion check and the rank correlation with the maps of `rebuild()` (the architecture
    re-initialised); and the worst mistakes of the test predictions drawn with their integrated
    gradients (explained_mistakes/)."""
    to_model_input = app.signatures["serving_default"].to_model_input
    raw, labels = predictions.inputs, predictions.targets.reshape(-1)
    examples = slice(count)
    rebuilt = rebuild()

    explainers = {}
    several_calls = len(raw[examples]) > EXPLAINED_PER_CALL

    def maps(of_model, method, batch) -> dict:
        """`method`'s outputs for `batch` (attributions, and tokens or the explained input where
        the app has them), EXPLAINED_PER_CALL examples per call: of a graph traced once where
        the examples take several calls, else eagerly (tracing a BERT's gradients costs more
        than running them once)."""
        if (id(of_model), method) not in explainers:
            def explainer(part):
                return explain(of_model, app.explanation, to_model_input, part, method)

            explainers[id(of_model), method] = tf.function(
                explainer, reduce_retracing=True, autograph=False) if several_calls else explainer
        explainer = explainers[id(of_model), method]
        parts = [explainer(tf.constant(part))
                 for part in np.array_split(batch, -(-len(batch) // EXPLAINED_PER_CALL))]
        return {key: np.concatenate([part[key].numpy() for part in parts]) for key in parts[0]}

    figures = {}
    for method in methods_for(model):
        explained = maps(model, method, raw[examples])
        trained_maps, where = explained["attributions"], None
        if app.explanation.token_strings:  # one score per token: drop words
            tokens = explained["tokens"]
            top, random = token_deletion_drop(model, app.explanation, raw[examples],
                                              labels[examples], trained_maps, tokens)
            deleted, where = "3 words", is_word(tokens)
        else:
            top, random = deletion_drop(model, app.explanation, to_model_input, raw[examples],
                                        labels[examples], trained_maps)
            deleted = "10% of positions"
        random_maps = maps(rebuilt, method, raw[examples])["attributions"]
        figures[method] = {
            "deleted": deleted, "deletion_drop_most_attributed": round(top, 4),
            "deletion_drop_random": round(random, 4),
            "rank_correlation_with_reinitialised_model": round(
                rank_correlation(trained_maps, random_maps, where=where), 4),
            "absolute_rank_correlation_with_reinitialised_model": round(
                rank_correlation(trained_maps, random_maps, absolute=True, where=where), 4)}
    figures_only = {"explanations": figures, "explained_examples": len(raw[examples])}
    if app.explanation.token_strings:  # texts are drawn by `explain` as HTML, not in the report
        return figures_only
    probabilities = predictions.outputs
    predicted = probabilities.argmax(axis=1)
    worst = worst_mistakes(predictions, WORST_MISTAKES)
    folder = run_dir / "explained_mistakes"
    folder.mkdir(exist_ok=True)
    names = splits.class_names
    if len(worst):
        explained = maps(model, METHODS[0], raw[worst])
        mistake_maps = explained["attributions"]
        backgrounds = explained.get("explained_input", raw[worst])
    for rank, index in enumerate(worst):
        plots.plot_attribution(
            backgrounds[rank], mistake_maps[rank],
            f"test {index}: said {names[predicted[index]]} "
            f"{probabilities[index, predicted[index]]:.2f}, truly {names[labels[index]]}",
            folder / f"{rank + 1}_test_{index}.png", spectrogram=bool(app.explanation.layer))
    return {**figures_only, "explained_mistakes": [int(index) for index in worst]}
