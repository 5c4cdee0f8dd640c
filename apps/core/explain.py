"""Attributions: which parts of an input made a classifier answer as it did.

Three methods, written with tf.GradientTape on the app's own Keras model, each scoring the
probability of the class the model predicts (or, for an app that declares its own
`Explanation.target`, a region's or a detection's score):
- `saliency`: the gradient of that probability with respect to the input (Simonyan et al., 2014);
  the cheap baseline.
- `integrated_gradients`: the input minus a baseline (zeros: black pixels, a silent log-mel floor
  after normalisation is not zero, so speech uses the spectrogram's minimum) times the gradient
  averaged along the straight path from the baseline (Sundararajan et al., 2017).
- `gradcam`: the feature maps of the layer a convolutional builder names `zoo.GRADCAM_LAYER`,
  weighted by their average gradient, positive part, resized to the input (Selvaraju et al., 2017).

Where attributions live (`Explanation.layer`): the raw input's own float pixels for images (so a
photo's map has the photo's size), or the output of a named layer of the app's model (speech: its
log-mel spectrogram). The export carries each method as a signature (apps.core.export), so a
server answers "why" without this package.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

import zoo

METHODS = ("integrated_gradients", "gradcam", "saliency")
SIGNATURES = {"integrated_gradients": "explain", "gradcam": "explain_gradcam",
              "saliency": "explain_saliency"}
PATH_STEPS = 32
PATH_CHUNK = 4
DESCRIPTIONS = {
    "integrated_gradients": "integrated gradients of the predicted class's probability: "
                            "`attributions` [batch, h, w] (positive: evidence for the class), "
                            "`probabilities`",
    "gradcam": "Grad-CAM of the predicted class at the model's last convolutional maps, resized "
               "to the input: `attributions` [batch, h, w] (>= 0), `probabilities`",
    "saliency": "the gradient of the predicted class's probability: `attributions` "
                "[batch, h, w], `probabilities`"}


@dataclasses.dataclass(frozen=True)
class Explanation:
    """How an app's model is explained. `layer`: the name of the layer of the app's model whose
    output the attributions are on (None: the raw input, cast to float). `baseline`:
    "zeros" or "minimum" (each example's smallest value, e.g. a spectrogram's floor)."""

    layer: str | None = None
    baseline: str = "zeros"
    served_input: Callable[[Any], np.ndarray] | None = None
    token_strings: Callable[[Any, tf.Tensor], tf.Tensor] | None = None
    target: Callable[..., tuple[tf.Tensor, tf.Tensor]] | None = None
    activation: str | None = None
    subject: str = ""
    choice: Any = None

    # `served_input`: one item of the app's `read_inputs` -> `serving_default`'s raw input, where
    # the two differ (vision reads image bytes; its explanations are on the decoded pixels).
    # `token_strings(model, raw)`: for text, the tokens [batch, steps] of each input ("" for
    # padding); attributions are then one per token, on the embeddings of the layer `layer`.
    # `target(outputs)`: for models that are not classifiers, what is explained, chosen from the
    # model's outputs on the input itself: (weights of the outputs' shape, the class explained
    # [batch]); the explained score is the sum of the weighted outputs (after `activation`, a
    # Keras activation's name, e.g. "sigmoid" on logits), and the signatures answer
    # `explained_class` and `explained_score` instead of `probabilities`. None: the predicted
    # class's probability.
    # `subject`: how `explain` titles it, formatted with `name` (the class) and `score`.
    # `choice`: a second input of the explain signatures (an `apps.core.TensorInput`), what to
    # explain (e.g. a class id, -1 for the target's own default), given to
    # `target(outputs, choice)`.


def _find_layer(model, name: str):
    """(the model holding the layer `name`, the layer): the model itself, or a model nested in
    it (a zoo classifier called inside an app's model, a KerasHub backbone inside that)."""
    for layer in model.layers:
        if layer.name == name:
            return model, layer
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found = _find_layer(layer, name)
            if found[1] is not None:
                return found
    return None, None


def split_at(model, name: str):
    """(front, back): callables with back(front(x)) == model(x), cut at the output of layer
    `name`; or None when the model has no such layer."""
    holder, layer = _find_layer(model, name)
    if layer is None:
        return None
    inner_front = keras.Model(holder.inputs, layer.output)
    inner_back = keras.Model(layer.output, holder.outputs)
    if holder is model:
        return inner_front, inner_back
    node = holder._inbound_nodes[0]  # where the app's model calls the nested classifier
    before, after = (_between(model.inputs, node.input_tensors),
                     _between(node.output_tensors, model.outputs))
    return (lambda x: inner_front(before(x)), lambda maps: after(inner_back(maps)))


def _between(inputs, outputs):
    """The part of a graph from `inputs` to `outputs`, or the identity where they are one."""
    if [id(tensor) for tensor in inputs] == [id(tensor) for tensor in outputs]:
        return lambda x: x
    return keras.Model(inputs, outputs)


def methods_for(model) -> list[str]:
    """The methods `model` supports: Grad-CAM needs a layer named `zoo.GRADCAM_LAYER`."""
    has_maps = _find_layer(model, zoo.GRADCAM_LAYER)[1] is not None
    return [method for method in METHODS if has_maps or method != "gradcam"]


def explained_target(explanation: Explanation, outputs):
    """(weights [outputs' shape], class [batch]) of what is explained, from the outputs on the
    input itself: the app's `target`, or the predicted class (one-hot)."""
    if explanation.target:
        weights, explained = explanation.target(outputs)
        return tf.stop_gradient(weights), explained
    predicted = tf.argmax(outputs, axis=-1)
    return tf.one_hot(predicted, tf.shape(outputs)[-1], dtype=outputs.dtype), predicted


def explained_score(explanation: Explanation, outputs, weights):
    """[batch]: the weighted sum of the (activated) outputs, the number attributions explain."""
    activated = (keras.activations.get(explanation.activation)(outputs)
                 if explanation.activation else outputs)
    return tf.reduce_sum(tf.reshape(activated * weights, [tf.shape(weights)[0], -1]), axis=1)


def saliency(classify, inputs, explanation: Explanation):
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = classify(inputs)
        weights, _ = explained_target(explanation, outputs)  # no gradient flows through them
        score = explained_score(explanation, outputs, weights)
    return tape.gradient(score, inputs)


def _mean_over_path(gradient_sum, steps: int = PATH_STEPS):
    """The mean over the `steps` midpoints alpha of the path of `gradient_sum(alphas)` (the sum
    of the gradients at a few alphas), PATH_CHUNK alphas at a time, one chunk after the other,
    so memory holds one chunk's activations (32 MiniLM passes at once exhaust 24 GB)."""
    alphas = tf.reshape((tf.range(steps, dtype=tf.float32) + 0.5) / steps, [-1, PATH_CHUNK])
    sums = tf.map_fn(gradient_sum, alphas, parallel_iterations=1,
                     fn_output_signature=tf.float32)
    return tf.reduce_sum(sums, axis=0) / steps


def integrated_gradients(classify, inputs, baseline, explanation: Explanation):
    """(input - baseline) times the gradient averaged along the straight path (midpoint sum) of
    the score of what is explained at the input (the same class, pixels or peak all along)."""
    weights, _ = explained_target(explanation, classify(inputs))
    path_weights = tf.repeat(weights, PATH_CHUNK, axis=0)
    broadcast = tf.concat([[1, -1], tf.ones([tf.rank(inputs) - 1], tf.int32)], axis=0)

    def gradient_sum(alphas):
        path = baseline[:, None] + tf.reshape(alphas, broadcast) * (inputs - baseline)[:, None]
        flat_path = tf.reshape(path, tf.concat([[-1], tf.shape(inputs)[1:]], axis=0))
        with tf.GradientTape() as tape:
            tape.watch(flat_path)
            score = explained_score(explanation, classify(flat_path), path_weights)
        gradients = tf.reshape(tape.gradient(score, flat_path), tf.shape(path))
        return tf.reduce_sum(gradients, axis=1)

    return (inputs - baseline) * _mean_over_path(gradient_sum)


def gradcam(to_maps, from_maps, inputs, explanation: Explanation):
    """Grad-CAM at the maps [batch, h', w', k] (or [batch, steps, k]); [batch, h', w'] map."""
    maps = to_maps(inputs)
    with tf.GradientTape() as tape:
        tape.watch(maps)
        outputs = from_maps(maps)
        weights, _ = explained_target(explanation, outputs)  # no gradient flows through them
        score = explained_score(explanation, outputs, weights)
    gradients = tape.gradient(score, maps)
    axes = list(range(1, len(maps.shape) - 1))
    weights = tf.reduce_mean(gradients, axis=axes, keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))


def per_position(attributions, inputs):
    """Attributions [batch, h, w(, c)] -> [batch, h, w] at the size of `inputs`: summed over
    channels (any rank 3 or 4, known only when the graph runs), or for Grad-CAM's smaller maps
    resized (bilinear) to the input's grid."""
    grid, shape = tf.shape(inputs)[1:3], tf.shape(attributions)
    per_channel = tf.reshape(attributions, tf.stack([shape[0], shape[1], shape[2], -1]))
    summed = tf.reduce_sum(per_channel, axis=-1)
    return tf.image.resize(summed[..., None], grid)[..., 0]


@contextlib.contextmanager
def scaled_embeddings(model, layer_name: str, scale):
    """Within the block, the layer `layer_name` (a token embedding) returns its output times
    `scale` [batch, steps]: scale 0 is the all-zero baseline, 1 the text itself. The model still
    reads the token ids, so padding masks and positions are untouched."""
    layer = _find_layer(model, layer_name)[1]
    original = layer.call

    def call(*args, **kwargs):
        embeddings = original(*args, **kwargs)
        return embeddings * tf.cast(scale, embeddings.dtype)[..., None]

    layer.call = call
    try:
        yield
    finally:
        del layer.call


def _explain_tokens(model, explanation: Explanation, raw, method: str) -> dict:
    """Per-token attributions on the token embeddings: integrated gradients from the zero
    embedding (the average over the path of the gradient with respect to each token's scale is
    the token's attribution), or saliency as gradient times embedding (the same at scale 1)."""
    tokens = explanation.token_strings(model, raw)
    probabilities = model(raw, training=False)
    predicted = tf.argmax(probabilities, axis=-1)
    count, length = tf.shape(tokens)[0], tf.shape(tokens)[1]

    def gradient_sum(alphas):
        steps = tf.shape(alphas)[0]
        scale = tf.reshape(tf.tile(alphas[None, :, None], [count, 1, length]), [-1, length])
        with tf.GradientTape() as tape:
            tape.watch(scale)
            with scaled_embeddings(model, explanation.layer, scale):
                path_probabilities = model(tf.repeat(raw, steps), training=False)
            score = tf.gather(path_probabilities, tf.repeat(predicted, steps), batch_dims=1)
        gradients = tape.gradient(score, scale)
        return tf.reduce_sum(tf.reshape(gradients, [count, steps, length]), axis=1)

    attributions = (_mean_over_path(gradient_sum) if method == "integrated_gradients"
                    else gradient_sum(tf.ones([1])))
    return {"attributions": attributions, "tokens": tokens, "probabilities": probabilities}


def explain(model, explanation: Explanation, to_model_input, raw, method: str,
            choice=None) -> dict:
    """`attributions` [batch, h, w] (or [batch, tokens] with the `tokens`) of `method` for a
    batch of raw input, and `probabilities` (a classifier's) or `explained_class` and
    `explained_score` (an app's `target`, given `choice` where the app declares one)."""
    if choice is not None:
        explanation = dataclasses.replace(
            explanation, target=functools.partial(explanation.target, choice=choice))
    if explanation.token_strings:
        return _explain_tokens(model, explanation, to_model_input(raw, model), method)
    to_inputs, classify = classifier_parts(model, explanation, to_model_input)
    inputs = to_inputs(raw)
    if method == "saliency":
        attributions = saliency(classify, inputs, explanation)
    elif method == "integrated_gradients":
        baseline = tf.zeros_like(inputs)
        if explanation.baseline == "minimum":
            baseline += tf.reduce_min(inputs, axis=tf.range(1, tf.rank(inputs)), keepdims=True)
        attributions = integrated_gradients(classify, inputs, baseline, explanation)
    else:
        to_maps, from_maps = split_at(model, zoo.GRADCAM_LAYER)
        attributions = gradcam(to_maps, from_maps,
                               to_model_input(raw if explanation.layer else inputs, model),
                               explanation)
    outputs = {"attributions": per_position(attributions, inputs)}
    model_outputs = classify(inputs)
    if explanation.target:
        weights, explained = explained_target(explanation, model_outputs)
        outputs.update(explained_class=tf.cast(explained, tf.int32),
                       explained_score=explained_score(explanation, model_outputs, weights))
    else:
        outputs["probabilities"] = model_outputs
    if explanation.layer:  # what the attributions are on, for drawing them (a spectrogram)
        outputs["explained_input"] = per_position(inputs, inputs)
    return outputs


def classifier_parts(model, explanation: Explanation, to_model_input):
    """(to_inputs, classify): raw input -> the tensor attributions are on -> probabilities."""
    if explanation.layer:
        front, back = split_at(model, explanation.layer)
        return (lambda raw: front(to_model_input(raw, model))), back
    return ((lambda raw: tf.cast(raw, tf.float32)),
            (lambda inputs: model(to_model_input(inputs, model), training=False)))
