"""Decoder-only language models over integer token ids, and generation with their key/value
cache (tokenizers and text belong to the app's model).

`gpt` returns a Functional model `token_ids [batch, steps] -> logits [batch, steps, vocab]`
(causal: position t sees positions 0..t; id 0 is padding and never attended to). Its layers are
named (`token_embedding`, `position_embedding`, `decoder_N`, `final_norm`, `logits`) so that
`generate` runs them one position at a time on a key/value cache, as KerasHub's causal LMs do:
the prompt is read in one pass that fills the cache, then each new token costs one position's
work instead of a pass over the whole sequence so far.
"""

import keras
from keras import layers, ops

from zoo.registry import register_model

_INPUTS = "int [batch, sequence_length] token ids, 0 = padding"


@register_model(task="language_modeling", inputs=_INPUTS,
                search={"num_layers": [2, 4], "dropout_rate": (0.0, 0.3)})
def gpt(vocab_size=1000, sequence_length=128, embedding_dim=128, num_heads=4,
        feed_forward_dim=512, num_layers=2, dropout_rate=0.1):
    """A miniature GPT (keras.io's "Text generation with a miniature GPT", GPT-2's layout):
    token and position embeddings, pre-norm causal Transformer decoder blocks, a final
    layer norm, logits over the vocabulary."""
    from keras_hub.layers import PositionEmbedding, TransformerDecoder

    token_ids = keras.Input(shape=(sequence_length,), dtype="int32", name="token_ids")
    tokens = layers.Embedding(vocab_size, embedding_dim, name="token_embedding")(token_ids)
    positions = PositionEmbedding(sequence_length, name="position_embedding")(tokens)
    x = layers.Dropout(dropout_rate, name="embedding_dropout")(layers.Add()([tokens, positions]))
    padding_mask = ops.not_equal(token_ids, 0)
    for index in range(num_layers):
        x = TransformerDecoder(feed_forward_dim, num_heads, dropout=dropout_rate,
                               activation="gelu", normalize_first=True,
                               name=f"decoder_{index}")(x, decoder_padding_mask=padding_mask)
    x = layers.LayerNormalization(epsilon=1e-5, name="final_norm")(x)
    logits = layers.Dense(vocab_size, name="logits")(x)
    return keras.Model(token_ids, logits, name="gpt")


def _decoder_layers(model):
    return [layer for layer in model.layers if layer.name.startswith("decoder_")]


def _call_with_cache(model, token_ids, cache, index):
    """Logits [batch, steps, vocab] of `token_ids` placed at positions `index`..., and the cache
    [batch, layers, 2, sequence_length, heads, head_dim] with their keys and values written."""
    tokens = model.get_layer("token_embedding")(token_ids)
    positions = model.get_layer("position_embedding")(tokens, start_index=index)
    x = tokens + positions
    caches = []
    for layer_index, layer in enumerate(_decoder_layers(model)):
        x, layer_cache = layer(x, self_attention_cache=cache[:, layer_index],
                               self_attention_cache_update_index=index)
        caches.append(layer_cache)
    logits = model.get_layer("logits")(model.get_layer("final_norm")(x))
    return logits, ops.stack(caches, axis=1)


def empty_cache(model, batch_size):
    """Zeros of the cache's shape for `batch_size` sequences of the model's length."""
    decoders = _decoder_layers(model)
    heads = decoders[0].num_heads
    head_dim = model.get_layer("token_embedding").output_dim // heads
    return ops.zeros((batch_size, len(decoders), 2, model.input_shape[1], heads, head_dim))


def _never_padding(logits):
    """Logits with id 0 (padding) made impossible: a generated token is always a real one."""
    return ops.where(ops.arange(ops.shape(logits)[-1]) == 0, -1e9, logits)


def greedy(logits, step):
    """The most likely token at each row."""
    return ops.cast(ops.argmax(logits, axis=-1), "int32")


def generate(model, token_ids, prompt_lengths, max_new_tokens: int, choose=greedy,
             use_cache: bool = True):
    """`token_ids` [batch, sequence_length] (each row's prompt, then padding) with up to
    `max_new_tokens` tokens chosen by `choose(logits [batch, vocab], step) -> int32 [batch]`
    written after each prompt (`prompt_lengths` [batch]), no further than the model's length.
    One compiled loop (`keras.ops.fori_loop`). With `use_cache` the prompts are read once into
    the key/value cache and each step runs one position; without, each step runs the whole
    model on the whole sequence (the same tokens, for comparison)."""
    token_ids = ops.cast(token_ids, "int32")
    prompt_lengths = ops.cast(prompt_lengths, "int32")
    batch_size, sequence_length = ops.shape(token_ids)[0], token_ids.shape[1]
    rows = ops.arange(batch_size)
    first = ops.min(prompt_lengths)  # rows with longer prompts copy theirs until they end
    steps = ops.minimum(sequence_length - first, max_new_tokens + ops.max(prompt_lengths) - first)

    def place(token_ids, position, chosen):
        keep = position < prompt_lengths  # still inside this row's prompt
        current = ops.take_along_axis(token_ids, ops.full_like(rows, position)[:, None], 1)[:, 0]
        new = ops.where(keep, current, chosen)
        new = ops.where(position < prompt_lengths + max_new_tokens, new, 0)
        return ops.where(ops.arange(sequence_length)[None, :] == position, new[:, None],
                         token_ids)

    if use_cache:
        _, cache = _call_with_cache(model, token_ids, empty_cache(model, batch_size), 0)

        def step(offset, state):
            token_ids, cache = state
            position = first + offset
            previous = ops.take_along_axis(token_ids, ops.full_like(rows, position - 1)[:, None],
                                           1)
            logits, cache = _call_with_cache(model, previous, cache, position - 1)
            return place(token_ids, position, choose(_never_padding(logits[:, 0]), offset)), cache

        token_ids, _ = ops.fori_loop(0, steps, step, (token_ids, cache))
        return token_ids

    def step(offset, token_ids):
        position = first + offset
        logits = model(token_ids, training=False)
        previous = ops.take(logits, position - 1, axis=1)
        return place(token_ids, position, choose(_never_padding(previous), offset))

    return ops.fori_loop(0, steps, step, token_ids)


def sampler(temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0):
    """A `choose` for `generate` that samples: logits divided by `temperature`, cut to the
    `top_k` most likely tokens (0: all) and to the smallest set whose probability reaches
    `top_p` (1: all), then drawn from a `keras.random.SeedGenerator(seed)`: the same seed, the
    same text. `temperature` 0 is greedy."""
    if temperature < 0 or top_k < 0 or not 0 < top_p <= 1:
        raise ValueError(f"temperature {temperature} / top_k {top_k} / top_p {top_p}: "
                         f"temperature and top_k are at least 0, top_p in (0, 1].")
    if temperature == 0:
        return greedy
    seeds = keras.random.SeedGenerator(seed)

    def choose(logits, step):
        logits = ops.cast(logits, "float32") / temperature
        if top_k:
            kth = ops.top_k(logits, top_k)[0][:, -1:]
            logits = ops.where(logits < kth, -1e9, logits)
        if top_p < 1:
            ordered = ops.sort(logits, axis=-1)[:, ::-1]
            before = ops.cumsum(ops.softmax(ordered, axis=-1), axis=-1) - ops.softmax(ordered)
            kept = ops.where(before < top_p, ordered, 1e9)  # the nucleus, ordered
            cutoff = ops.min(kept, axis=-1, keepdims=True)
            logits = ops.where(logits < cutoff, -1e9, logits)
        return ops.cast(keras.random.categorical(logits, 1, seed=seeds)[:, 0], "int32")

    return choose
