"""keras.io's English-to-Spanish sequence-to-sequence Transformer, for `bench.compare`'s translate
race (the other references are in `bench.references`, under the same rules: written as the
example writes it, trained on the app's own splits, scored by the `clock` after every epoch)."""

import re
import string

import keras
import numpy as np
import tensorflow as tf

from bench.references import arrays


def _translation_standardize(text):
    """The example's target standardisation: lower case, punctuation stripped but for the
    brackets of [start] and [end]."""
    stripped = string.punctuation.replace("[", "").replace("]", "")
    return tf.strings.regex_replace(tf.strings.lower(text), f"[{re.escape(stripped)}]", "")


@keras.saving.register_keras_serializable(package="bench")
class _KerasIoPositionalEmbedding(keras.layers.Layer):
    def __init__(self, sequence_length, vocab_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.tokens = keras.layers.Embedding(vocab_size, embed_dim)
        self.positions = keras.layers.Embedding(sequence_length, embed_dim)

    def call(self, inputs):
        return self.tokens(inputs) + self.positions(keras.ops.arange(keras.ops.shape(inputs)[-1]))


def translation_keras_io(splits, test, clock, seed: int, epochs: int) -> None:
    """keras.io/examples/nlp/neural_machine_translation_with_transformer: TextVectorization
    (15,000 words, 20 per sentence; the target wrapped in [start] ... [end] and stripped of
    punctuation) in the tf.data pipeline, positional embeddings, one Transformer encoder and one
    decoder layer (embedding 256, feed-forward 2048, 8 heads, padding and causal masks), dropout
    0.5, softmax; RMSprop, cross-entropy ignoring padding, batch 64, on the app's validation
    pairs, for `epochs` (the example trains 1 and says 30 are needed to converge). Its greedy
    `decode_sequence` runs the whole model once per output word; the clock decodes the test
    sentences with it in batches (the same tokens, faster)."""
    vocab_size, sequence_length, embed_dim, dense_dim, heads = 15000, 20, 256, 2048, 8
    (train_pairs, _), (validation_pairs, _) = arrays(splits.train), arrays(splits.validation)
    source_vectorizer = keras.layers.TextVectorization(
        max_tokens=vocab_size, output_mode="int", output_sequence_length=sequence_length)
    target_vectorizer = keras.layers.TextVectorization(
        max_tokens=vocab_size, output_mode="int", output_sequence_length=sequence_length + 1,
        standardize=_translation_standardize)

    def wrapped(targets):
        return np.array([b"[start] " + target + b" [end]" for target in targets], dtype=object)

    source_vectorizer.adapt(train_pairs["text"])
    target_vectorizer.adapt(wrapped(train_pairs["target"]))

    def dataset(pairs):
        def format_pair(source, target):
            source, target = source_vectorizer(source), target_vectorizer(target)
            return {"encoder_inputs": source, "decoder_inputs": target[:, :-1]}, target[:, 1:]

        return (tf.data.Dataset.from_tensor_slices((pairs["text"], wrapped(pairs["target"])))
                .batch(64).map(format_pair, num_parallel_calls=4).shuffle(2048, seed=seed)
                .prefetch(16).cache())

    layers = keras.layers

    def encoder_layer(x, mask):
        attended = layers.MultiHeadAttention(heads, embed_dim)(x, x, attention_mask=mask[:, None, :])
        x = layers.LayerNormalization()(x + attended)
        projected = layers.Dense(embed_dim)(layers.Dense(dense_dim, activation="relu")(x))
        return layers.LayerNormalization()(x + projected)

    def decoder_layer(x, encoded, mask, encoder_mask):
        attended = layers.MultiHeadAttention(heads, embed_dim)(
            x, x, attention_mask=mask[:, None, :], use_causal_mask=True)
        x = layers.LayerNormalization()(x + attended)
        attended = layers.MultiHeadAttention(heads, embed_dim)(
            x, encoded, attention_mask=encoder_mask[:, None, :])
        x = layers.LayerNormalization()(x + attended)
        projected = layers.Dense(embed_dim)(layers.Dense(dense_dim, activation="relu")(x))
        return layers.LayerNormalization()(x + projected)

    encoder_inputs = keras.Input(shape=(None,), dtype="int64", name="encoder_inputs")
    decoder_inputs = keras.Input(shape=(None,), dtype="int64", name="decoder_inputs")
    encoder_mask = keras.ops.not_equal(encoder_inputs, 0)
    encoded = encoder_layer(_KerasIoPositionalEmbedding(sequence_length, vocab_size, embed_dim)(
        encoder_inputs), encoder_mask)
    x = decoder_layer(_KerasIoPositionalEmbedding(sequence_length, vocab_size, embed_dim)(
        decoder_inputs), encoded, keras.ops.not_equal(decoder_inputs, 0), encoder_mask)
    outputs = layers.Dense(vocab_size, activation="softmax")(layers.Dropout(0.5)(x))
    transformer = keras.Model({"encoder_inputs": encoder_inputs,
                               "decoder_inputs": decoder_inputs}, outputs)
    transformer.compile("rmsprop", loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=0),
                        metrics=["accuracy"])

    vocabulary = np.array(target_vectorizer.get_vocabulary())
    start = int(np.flatnonzero(vocabulary == "[start]")[0])

    @tf.function(reduce_retracing=True)
    def next_tokens(tokenized, decoded, index):
        predictions = transformer({"encoder_inputs": tokenized, "decoder_inputs": decoded},
                                  training=False)
        return tf.argmax(predictions[:, index], axis=-1)

    def decode_sequences(model, sources):
        tokenized = source_vectorizer(tf.constant(list(sources)))
        decoded = np.zeros((len(sources), sequence_length), "int64")
        decoded[:, 0] = start
        for index in range(sequence_length - 1):
            for first in range(0, len(sources), 256):
                rows = slice(first, first + 256)
                decoded[rows, index + 1] = next_tokens(tokenized[rows], decoded[rows], index)
        sentences = []
        for row in decoded[:, 1:]:
            words = [str(vocabulary[token]) for token in row]
            sentences.append(" ".join(words[:words.index("[end]")] if "[end]" in words
                                      else words).strip())
        return sentences

    clock.score_inputs(test[0]["text"], test[1], decode=decode_sequences)
    transformer.fit(dataset(train_pairs), validation_data=dataset(validation_pairs),
                    epochs=epochs, verbose=0, callbacks=[clock])
