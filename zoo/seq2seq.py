"""Encoder-decoder translators over integer token ids (vectorisation and the words belong to the
app's model), and greedy decoding with them.

Each builder returns a Functional model `{"source_ids", "target_ids"} -> logits [batch, steps,
target_vocab_size]` (teacher forcing: `target_ids` starts with the start token) made of two
named parts, so a decoder runs step after step on one encoding:
- `encoder`: `source_ids -> [tensors...]`;
- `decoder`: `[target_ids, source_ids, *encoded] -> [logits, attention]`, `attention`
  [batch, target steps, source steps] being where each output step looked in the source (the
  last cross-attention's heads averaged; zeros for a model without attention).
Id 0 is padding on both sides: it is masked everywhere (self-attention keys, cross-attention
keys, recurrent steps), so padding never changes an output, and the decoder is causal.
"""

import keras
from keras import layers, ops

from zoo.outputs import LOGITS_LAYER
from zoo.registry import register_model
from zoo.text import PositionEmbedding

_INPUTS = ("int [batch, sequence_length] source_ids and target_ids (the target shifted right "
           "after a start token), 0 = padding")


def _not_padding(token_ids):
    return ops.not_equal(token_ids, 0)


def _feed_forward(x, feed_forward_dim, dropout_rate):
    hidden = layers.Dense(feed_forward_dim, activation="gelu")(x)
    return layers.Dropout(dropout_rate)(layers.Dense(x.shape[-1])(hidden))


def _residual(x, update):
    return layers.LayerNormalization(epsilon=1e-6)(layers.Add()([x, update]))


def _embedded(token_ids, vocab_size, sequence_length, embedding_dim, name):
    x = layers.Embedding(vocab_size, embedding_dim, name=name)(token_ids)
    return PositionEmbedding(sequence_length)(x)


def _parts_model(encoder, decoder, sequence_length, name):
    source_ids = keras.Input(shape=(sequence_length,), dtype="int32", name="source_ids")
    target_ids = keras.Input(shape=(sequence_length,), dtype="int32", name="target_ids")
    logits, _ = decoder([target_ids, source_ids, *encoder(source_ids)])
    return keras.Model({"source_ids": source_ids, "target_ids": target_ids}, logits, name=name)


@register_model(task="translation", inputs=_INPUTS,
                search={"num_layers": [1, 2, 3], "dropout_rate": (0.0, 0.3)})
def transformer_seq2seq(source_vocab_size=1000, target_vocab_size=1000, sequence_length=16,
                        embedding_dim=64, num_heads=4, feed_forward_dim=128, num_layers=2,
                        dropout_rate=0.1):
    """The Transformer of Vaswani et al. (keras.io's English-to-Spanish example): encoder blocks,
    decoder blocks with causal self-attention and cross-attention on the source's real tokens."""
    key_dim = embedding_dim // num_heads

    source_ids = keras.Input(shape=(sequence_length,), dtype="int32", name="source_ids")
    source_mask = _not_padding(source_ids)
    x = _embedded(source_ids, source_vocab_size, sequence_length, embedding_dim,
                  "source_embedding")
    for _ in range(num_layers):
        attended = layers.MultiHeadAttention(num_heads, key_dim, dropout=dropout_rate)(
            x, x, attention_mask=source_mask[:, None, :])
        x = _residual(x, layers.Dropout(dropout_rate)(attended))
        x = _residual(x, _feed_forward(x, feed_forward_dim, dropout_rate))
    encoder = keras.Model(source_ids, [x], name="encoder")

    target_ids = keras.Input(shape=(sequence_length,), dtype="int32", name="target_ids")
    source_in = keras.Input(shape=(sequence_length,), dtype="int32", name="source_ids")
    encoded = keras.Input(shape=(sequence_length, embedding_dim), name="encoded")
    target_mask = _not_padding(target_ids)
    keys_mask = _not_padding(source_in)[:, None, :]
    y = _embedded(target_ids, target_vocab_size, sequence_length, embedding_dim,
                  "target_embedding")
    for _ in range(num_layers):
        attended = layers.MultiHeadAttention(num_heads, key_dim, dropout=dropout_rate)(
            y, y, attention_mask=target_mask[:, None, :], use_causal_mask=True)
        y = _residual(y, layers.Dropout(dropout_rate)(attended))
        attended, scores = layers.MultiHeadAttention(num_heads, key_dim, dropout=dropout_rate)(
            y, encoded, attention_mask=ops.logical_and(target_mask[:, :, None], keys_mask),
            return_attention_scores=True)
        y = _residual(y, layers.Dropout(dropout_rate)(attended))
        y = _residual(y, _feed_forward(y, feed_forward_dim, dropout_rate))
    logits = layers.Dense(target_vocab_size, name=LOGITS_LAYER)(y)
    decoder = keras.Model([target_ids, source_in, encoded], [logits, ops.mean(scores, axis=1)],
                          name="decoder")
    return _parts_model(encoder, decoder, sequence_length, "transformer_seq2seq")


@register_model(task="translation", inputs=_INPUTS,
                search={"units": [64, 128, 256], "attention": [True, False]})
def lstm_seq2seq(source_vocab_size=1000, target_vocab_size=1000, sequence_length=16,
                 embedding_dim=64, units=128, attention=True, dropout_rate=0.1):
    """Sutskever et al.'s LSTM encoder-decoder (the decoder starts from the encoder's last
    state), with Luong's dot-product attention on the source's steps as an option."""
    source_ids = keras.Input(shape=(sequence_length,), dtype="int32", name="source_ids")
    x = layers.Embedding(source_vocab_size, embedding_dim, mask_zero=True,
                         name="source_embedding")(source_ids)
    sequence, state_h, state_c = layers.LSTM(units, return_sequences=True, return_state=True)(
        layers.Dropout(dropout_rate)(x))
    encoder = keras.Model(source_ids, [sequence, state_h, state_c], name="encoder")

    target_ids = keras.Input(shape=(sequence_length,), dtype="int32", name="target_ids")
    source_in = keras.Input(shape=(sequence_length,), dtype="int32", name="source_ids")
    encoded = [keras.Input(shape=(sequence_length, units), name="encoded"),
               keras.Input(shape=(units,), name="state_h"),
               keras.Input(shape=(units,), name="state_c")]
    y = layers.Embedding(target_vocab_size, embedding_dim, mask_zero=True,
                         name="target_embedding")(target_ids)
    y = layers.LSTM(units, return_sequences=True)(layers.Dropout(dropout_rate)(y),
                                                   initial_state=encoded[1:])
    if attention:
        context, scores = layers.Attention()(
            [y, encoded[0]], mask=[_not_padding(target_ids), _not_padding(source_in)],
            return_attention_scores=True)
        y = layers.Concatenate()([y, context])
    else:
        scores = ops.zeros_like(ops.cast(target_ids[:, :, None] * source_in[:, None, :],
                                         "float32"))
    logits = layers.Dense(target_vocab_size, name=LOGITS_LAYER)(layers.Dropout(dropout_rate)(y))
    decoder = keras.Model([target_ids, source_in, *encoded], [logits, scores], name="decoder")
    return _parts_model(encoder, decoder, sequence_length, "lstm_seq2seq")


def greedy_decode(model, source_ids, start_id: int, end_id: int):
    """The most likely next token, one step after another from `start_id`, on one encoding of
    `source_ids` [batch, steps]: (target ids [batch, steps] without the start token, 0 after
    `end_id` and the end token itself, attention [batch, steps, steps] of the final pass). One
    compiled loop (`keras.ops.fori_loop`) whatever the batch."""
    encoder, decoder = model.get_layer("encoder"), model.get_layer("decoder")
    source_ids = ops.cast(source_ids, "int32")
    encoded = encoder(source_ids)
    encoded = encoded if isinstance(encoded, (list, tuple)) else [encoded]
    steps = source_ids.shape[1]
    positions = ops.arange(steps)[None, :]
    start = ops.where(positions == 0, start_id, 0) + ops.zeros_like(source_ids)

    def step(index, target_ids):
        logits, _ = decoder([target_ids, source_ids, *encoded])
        chosen = ops.cast(ops.argmax(logits[:, index, :], axis=-1), "int32")
        finished = ops.any(ops.logical_and(target_ids == end_id, positions <= index), axis=1)
        chosen = ops.where(finished, 0, chosen)
        return ops.where(positions == index + 1, chosen[:, None], target_ids)

    target_ids = ops.fori_loop(0, steps - 1, step, start)
    logits, attention = decoder([target_ids, source_ids, *encoded])
    last = ops.cast(ops.argmax(logits[:, steps - 1, :], axis=-1), "int32")
    finished = ops.any(target_ids == end_id, axis=1)
    output = ops.concatenate([target_ids[:, 1:], ops.where(finished, 0, last)[:, None]], axis=1)
    output = ops.where(ops.cumsum(ops.cast(output == end_id, "int32"), axis=1) > 0, 0, output)
    return output, attention


@keras.saving.register_keras_serializable(package="zoo")
class Translator(keras.Model):
    """Text in, text out: word vocabularies around a translation `network` of this module.

    Called on `{"text": source string [batch], "target": string [batch]}` it returns the teacher-forced
    logits [batch, sequence_length, target words]; its loss is the cross-entropy of each real
    target word and of the end token after the last, padding excluded, and it tracks the share of
    those tokens predicted right (`token_accuracy`). `translate(texts)` decodes greedily. Sources
    are lower-cased and stripped of punctuation, targets lower-cased only (their punctuation is
    part of the words written), both split on whitespace; `sequence_length` counts the target's
    words and its end token. Strings make it a TensorFlow-backend model; its `network` is not.
    """

    START, END = "[start]", "[end]"

    def __init__(self, source_vocabulary, target_vocabulary, network="transformer_seq2seq",
                 sequence_length=16, network_options=None, **kwargs):
        from zoo.registry import build

        super().__init__(**kwargs)
        self.source_vocabulary, self.target_vocabulary = list(source_vocabulary), list(
            target_vocabulary)
        self.network_name, self.sequence_length = network, sequence_length
        self.network_options = dict(network_options or {})
        self.source_vectorizer = layers.TextVectorization(
            vocabulary=self.source_vocabulary, output_sequence_length=sequence_length,
            name="source_vectorizer")
        self.target_vectorizer = layers.TextVectorization(
            standardize="lower", vocabulary=[self.START, self.END, *self.target_vocabulary],
            output_sequence_length=sequence_length, name="target_vectorizer")
        self.start_id, self.end_id = 2, 3  # after "" (padding) and "[UNK]"
        self.network = build(network, source_vocab_size=len(self.source_vocabulary) + 2,
                             target_vocab_size=len(self.target_vocabulary) + 4,
                             sequence_length=sequence_length, **self.network_options)
        self.token_accuracy = keras.metrics.Mean(name="token_accuracy")
        self.built = True  # every weight exists: the network is a built Functional model

    def target_ids(self, texts):
        """(decoder input: the start token then the words, labels: the words then the end
        token), int32 [batch, sequence_length] each, 0 = padding."""
        words = ops.cast(self.target_vectorizer(texts), "int32")
        positions = ops.arange(self.sequence_length)[None, :]
        lengths = ops.sum(ops.cast(words != 0, "int32"), axis=1, keepdims=True)
        labels = ops.where(positions == lengths, self.end_id, words)
        decoder_input = ops.concatenate(
            [ops.full_like(words[:, :1], self.start_id), words[:, :-1]], axis=1)
        return decoder_input, labels

    def call(self, inputs, training=False):
        source_ids = ops.cast(self.source_vectorizer(inputs["text"]), "int32")
        decoder_input, _ = self.target_ids(inputs["target"])
        return self.network({"source_ids": source_ids, "target_ids": decoder_input},
                            training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        _, labels = self.target_ids(x["target"])
        real = ops.cast(labels != 0, "float32")
        losses = keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
        right = ops.cast(ops.cast(ops.argmax(y_pred, axis=-1), "int32") == labels, "float32")
        self.token_accuracy.update_state(right, sample_weight=real)
        return ops.sum(losses * real) / ops.maximum(ops.sum(real), 1.0)

    def translate(self, texts):
        """(translations: string [batch], words: string [batch, sequence_length] ("" after the
        end), source words: string [batch, sequence_length], attention [batch, steps, steps])."""
        import tensorflow as tf

        source_ids = self.source_vectorizer(texts)
        target_ids, attention = greedy_decode(self.network, source_ids, self.start_id,
                                              self.end_id)
        words = tf.gather(tf.constant(["", "[UNK]", "", "", *self.target_vocabulary]), target_ids)
        source_words = tf.gather(tf.constant(["", "[UNK]", *self.source_vocabulary]),
                                 tf.cast(source_ids, tf.int32))
        translations = tf.strings.reduce_join(
            tf.ragged.boolean_mask(words, words != ""), axis=1, separator=" ")
        return translations, words, source_words, attention

    def get_config(self):
        return {**super().get_config(), "source_vocabulary": self.source_vocabulary,
                "target_vocabulary": self.target_vocabulary, "network": self.network_name,
                "sequence_length": self.sequence_length, "network_options": self.network_options}
