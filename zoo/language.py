"""Decoder-only language models over integer token ids, generation with their key/value cache,
and `TextGenerator`, which puts a trained tokenizer around one for text in and text out.

`gpt` returns a Functional model `token_ids [batch, steps] -> logits [batch, steps, vocab]`
(causal: position t sees positions 0..t; id 0 is padding and never attended to). Its layers are
named (`token_embedding`, `position_embedding`, `decoder_N`, `final_norm`, `logits`) so that
`generate` runs them one position at a time on a key/value cache, as KerasHub's causal LMs do:
the prompt is read in one pass that fills the cache, then each new token costs one position's
work instead of a pass over the whole sequence so far.
"""

import keras
from keras import layers, ops

from zoo.outputs import LOGITS_LAYER
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
    logits = layers.Dense(vocab_size, name=LOGITS_LAYER)(x)
    return keras.Model(token_ids, logits, name="gpt")


@register_model(task="language_modeling", inputs=_INPUTS,
                search={"units": [128, 256, 512], "dropout_rate": (0.0, 0.3)})
def lstm_lm(vocab_size=1000, sequence_length=128, embedding_dim=128, units=256, num_layers=1,
            dropout_rate=0.1):
    """The recurrent baseline for `gpt`: token embeddings, LSTM layers, logits over the
    vocabulary (each position sees the ones before it by construction)."""
    token_ids = keras.Input(shape=(sequence_length,), dtype="int32", name="token_ids")
    x = layers.Embedding(vocab_size, embedding_dim, name="token_embedding")(token_ids)
    for index in range(num_layers):
        x = layers.LSTM(units, return_sequences=True, dropout=dropout_rate,
                        name=f"lstm_{index}")(x)
    logits = layers.Dense(vocab_size, name=LOGITS_LAYER)(x)
    return keras.Model(token_ids, logits, name="lstm_lm")


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
    logits = model.get_layer(LOGITS_LAYER)(model.get_layer("final_norm")(x))
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


def greedy(logits, position):
    """The most likely token at each row."""
    return ops.cast(ops.argmax(logits, axis=-1), "int32")


def generate(model, token_ids, prompt_lengths, max_new_tokens: int, choose=greedy,
             use_cache: bool = True):
    """`token_ids` [batch, sequence_length] (each row's prompt, then padding) with up to
    `max_new_tokens` (one for all rows, or one per row) tokens chosen by `choose(logits [batch,
    vocab], position) -> int32 [batch]` (`position`: where the token goes)
    written after each prompt (`prompt_lengths` [batch]), no further than the model's length.
    One compiled loop (`keras.ops.fori_loop`). With `use_cache` the prompts are read once into
    the key/value cache and each step runs one position; without, each step runs the whole
    model on the whole sequence (the same tokens, for comparison)."""
    token_ids = ops.cast(token_ids, "int32")
    prompt_lengths = ops.cast(prompt_lengths, "int32")
    batch_size, sequence_length = ops.shape(token_ids)[0], token_ids.shape[1]
    rows = ops.arange(batch_size)
    first = ops.min(prompt_lengths)  # rows with longer prompts copy theirs until they end
    steps = ops.minimum(sequence_length - first, ops.max(prompt_lengths + max_new_tokens) - first)

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
            return place(token_ids, position, choose(_never_padding(logits[:, 0]), position)), cache

        token_ids, _ = ops.fori_loop(0, steps, step, (token_ids, cache))
        return token_ids

    def step(offset, token_ids):
        position = first + offset
        logits = model(token_ids, training=False)
        previous = ops.take(logits, position - 1, axis=1)
        return place(token_ids, position, choose(_never_padding(previous), position))

    return ops.fori_loop(0, steps, step, token_ids)


def filter_logits(logits, temperature=1.0, top_k=0, top_p=1.0):
    """Logits [batch, vocab] divided by `temperature`, cut to the `top_k` most likely tokens (0:
    all) and then to the smallest set whose probability reaches `top_p` (1: all); each option a
    scalar or one value per row. Cut tokens get -1e9."""
    logits = ops.cast(logits, "float32")
    vocab_size = ops.shape(logits)[-1]

    def per_row(value, dtype):
        return ops.reshape(ops.cast(value, dtype), (-1, 1))

    logits = logits / ops.maximum(per_row(temperature, "float32"), 1e-6)
    ordered = ops.flip(ops.sort(logits, axis=-1), axis=-1)
    kept = per_row(top_k, "int32")
    kept = ops.where(kept > 0, ops.minimum(kept, vocab_size), vocab_size)
    kth = ops.take_along_axis(ordered, kept - 1, axis=-1)
    ordered = ops.where(ordered < kth, -1e9, ordered)  # still ordered: the top k, then the cut
    probabilities = ops.softmax(ordered, axis=-1)
    before = ops.cumsum(probabilities, axis=-1) - probabilities
    nucleus = ops.min(ops.where(before < per_row(top_p, "float32"), ordered, 1e9), axis=-1,
                      keepdims=True)
    return ops.where(logits < ops.maximum(kth, nucleus), -1e9, logits)


def sampler(temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0):
    """A `choose` for `generate` that samples from `filter_logits` drawn by a
    `keras.random.SeedGenerator(seed)`: the same seed, the same text. `temperature` 0 is
    greedy."""
    if temperature < 0 or top_k < 0 or not 0 < top_p <= 1:
        raise ValueError(f"temperature {temperature} / top_k {top_k} / top_p {top_p}: "
                         f"temperature and top_k are at least 0, top_p in (0, 1].")
    if temperature == 0:
        return greedy
    seeds = keras.random.SeedGenerator(seed)

    def choose(logits, position):
        filtered = filter_logits(logits, temperature, top_k, top_p)
        return ops.cast(keras.random.categorical(filtered, 1, seed=seeds)[:, 0], "int32")

    return choose


@keras.saving.register_keras_serializable(package="zoo")
class TextGenerator(keras.Model):
    """Text in, text out: a SentencePiece tokenizer trained on the training text around a
    language `network` of this module (`gpt`, or `lstm_lm`).

    Called on token ids [batch, sequence_length] it returns the network's logits (training runs
    on ids tokenized once, compiled). Its string methods are what the export serves:
    `generate_text` continues prompts (sampled per row from its own seed, so a prompt's text
    does not depend on the batch it came in) and `log_likelihood` scores texts. Each text is read
    after the start token `<s>` (id 2), which also separates texts in training, so a generated
    `<s>` ends the text. The tokenizer is lossless (no normalisation, unknown characters as
    UTF-8 bytes), so the likelihood is of the text exactly as given. Strings make it a
    TensorFlow-backend model; its `network` is not.
    """

    START_ID = 2

    def __init__(self, tokenizer_proto, network="gpt", sequence_length=128, network_options=None,
                 **kwargs):
        import base64

        from keras_hub.tokenizers import SentencePieceTokenizer

        from zoo.registry import build

        super().__init__(**kwargs)
        if isinstance(tokenizer_proto, str):  # from get_config
            tokenizer_proto = base64.b64decode(tokenizer_proto)
        self.tokenizer_proto = tokenizer_proto
        self.tokenizer = SentencePieceTokenizer(proto=tokenizer_proto, name="tokenizer")
        self.network_name, self.sequence_length = network, sequence_length
        self.network_options = dict(network_options or {})
        self.network = build(network, vocab_size=self.tokenizer.vocabulary_size(),
                             sequence_length=sequence_length, **self.network_options)
        self.cached = bool(_decoder_layers(self.network))
        self.built = True  # every weight exists: the network is a built Functional model

    def call(self, token_ids, training=False):
        return self.network(token_ids, training=training)

    def _token_rows(self, texts):
        """Each text's token ids after the start token, ragged [batch, None] int32."""
        import tensorflow as tf

        ids = tf.cast(self.tokenizer.tokenize(tf.convert_to_tensor(texts)), tf.int32)
        starts = tf.fill([tf.shape(ids.row_lengths())[0], 1], self.START_ID)
        return tf.concat([tf.RaggedTensor.from_tensor(starts), ids], axis=1)

    def log_likelihood(self, texts):
        """(natural log of each text's probability, summed over its tokens: float32 [batch], its
        characters: int32 [batch]). A text longer than the context is read in windows of
        `sequence_length` tokens, each from the last token of the one before."""
        import tensorflow as tf

        length = self.sequence_length
        rows = self._token_rows(texts)
        dense = rows.to_tensor()
        windows = tf.maximum((tf.shape(dense)[1] - 2) // length + 1, 1)
        dense = tf.pad(dense, [[0, 0], [0, windows * length + 1 - tf.shape(dense)[1]]])
        inputs = tf.reshape(dense[:, :-1], [-1, length])
        labels = tf.reshape(dense[:, 1:], [-1, length])
        log_probabilities = tf.nn.log_softmax(tf.cast(self.network(inputs), tf.float32))
        chosen = tf.gather(log_probabilities, labels, batch_dims=2)
        chosen = tf.where(labels != 0, chosen, 0.0)  # padding (a window of it may hold NaNs)
        totals = tf.reduce_sum(tf.reshape(chosen, [tf.shape(dense)[0], -1]), axis=1)
        return totals, tf.strings.length(texts, unit="UTF8_CHAR")

    def generate_text(self, prompts, max_new_tokens, temperature, top_k, seed):
        """(each prompt and its continuation: string [batch], whether the prompt was cut from
        the left to leave room for its new tokens in the context: bool [batch]). One value of
        each option per prompt: at most `max_new_tokens` new tokens (1 to sequence_length - 1;
        fewer where the text ends), `temperature` 0 for greedy, `top_k` 0 for every token,
        `seed` for the draws."""
        import tensorflow as tf

        length = self.sequence_length
        max_new_tokens = tf.cast(max_new_tokens, tf.int32)
        checks = [tf.debugging.assert_greater(
                      max_new_tokens, 0, message="max_new_tokens must be at least 1"),
                  tf.debugging.assert_less(
                      max_new_tokens, length,
                      message=f"max_new_tokens must be below the context, {length} tokens")]
        with tf.control_dependencies(checks):
            rows = self._token_rows(prompts)
        room = length - max_new_tokens
        truncated = rows.row_lengths() > tf.cast(room, tf.int64)
        positions = tf.ragged.range(rows.row_lengths())
        kept = tf.ragged.boolean_mask(rows, positions >= tf.cast(
            rows.row_lengths() - tf.cast(room, tf.int64), tf.int64)[:, None])
        prompt_lengths = tf.cast(kept.row_lengths(), tf.int32)
        seed = tf.cast(seed, tf.int32)

        def choose(logits, position):  # each row drawn from its own (seed, position)
            filtered = filter_logits(logits, temperature, top_k)
            drawn = tf.map_fn(
                lambda row: tf.random.stateless_categorical(
                    row[0][None], 1, tf.stack([row[1], position]), dtype=tf.int32)[0, 0],
                (filtered, seed), fn_output_signature=tf.int32)
            return tf.where(tf.cast(temperature, tf.float32) > 0, drawn, greedy(logits, position))

        token_ids = generate(self.network, kept.to_tensor(shape=[None, length]), prompt_lengths,
                             max_new_tokens, choose, use_cache=self.cached)
        position = tf.range(length)[None, :]
        in_prompt = position < prompt_lengths[:, None]
        new = ~in_prompt & (position < (prompt_lengths + max_new_tokens)[:, None])
        ended = tf.cumsum(tf.cast(new & (token_ids == self.START_ID), tf.int32), axis=1) > 0
        prompt_text = self.tokenizer.detokenize(tf.where(in_prompt, token_ids, 0))
        whole_text = self.tokenizer.detokenize(tf.where(in_prompt | (new & ~ended), token_ids, 0))
        start = tf.strings.length(prompt_text)
        continuation = tf.strings.substr(whole_text, start, tf.strings.length(whole_text) - start)
        return tf.strings.join([prompts, continuation]), truncated

    def get_config(self):
        import base64

        return {**super().get_config(),
                "tokenizer_proto": base64.b64encode(self.tokenizer_proto).decode("ascii"),
                "network": self.network_name, "sequence_length": self.sequence_length,
                "network_options": self.network_options}
