"""Text classifiers over integer token ids (vectorisation belongs to the app's model)."""

import keras
from keras import layers, ops

from zoo.outputs import classification_output
from zoo.registry import register_model

_INPUTS = "int [batch, sequence_length] token ids, 0 = padding"


@keras.saving.register_keras_serializable(package="zoo")
class PositionEmbedding(layers.Layer):
    """Adds a learned embedding of each position to a [batch, steps, dim] sequence."""

    def __init__(self, sequence_length, **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = sequence_length
        self.supports_masking = True

    def build(self, input_shape):
        self.position_embeddings = self.add_weight(
            name="position_embeddings",
            shape=(self.sequence_length, input_shape[-1]),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )

    def call(self, inputs):
        steps = ops.shape(inputs)[1]
        return inputs + ops.cast(self.position_embeddings[:steps], inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "sequence_length": self.sequence_length}


@register_model(task="text_classification", inputs=_INPUTS,
                search={"units": [32, 64, 128], "dropout_rate": (0.2, 0.6)})
def bilstm_classifier(vocab_size=20000, sequence_length=200, embedding_dim=128, units=64,
                      num_layers=2, dropout_rate=0.5, num_classes=2):
    """keras.io's IMDB BiLSTM: embedding, stacked bidirectional LSTMs, softmax."""
    inputs = keras.Input(shape=(sequence_length,), dtype="int32", name="token_ids")
    x = layers.Embedding(vocab_size, embedding_dim, mask_zero=True,
                         name="token_embedding")(inputs)
    for layer_index in range(num_layers):
        x = layers.Bidirectional(
            layers.LSTM(units, return_sequences=layer_index < num_layers - 1)
        )(x)
    x = layers.Dropout(dropout_rate)(x)
    return keras.Model(inputs, classification_output(num_classes)(x), name="bilstm_classifier")


def _encoder_block(x, num_heads, feed_forward_dim, dropout_rate):
    """Post-norm Transformer encoder block: self-attention and feed-forward, each residual.

    The padding mask travels with `x` (Keras mask propagation) into the attention and pooling.
    """
    key_dim = x.shape[-1] // num_heads
    attention = layers.MultiHeadAttention(num_heads, key_dim, dropout=dropout_rate)(x, x)
    attention = layers.Dropout(dropout_rate)(attention)
    x = layers.LayerNormalization(epsilon=1e-6)(layers.Add()([x, attention]))
    feed_forward = layers.Dense(feed_forward_dim, activation="gelu")(x)
    feed_forward = layers.Dense(x.shape[-1])(feed_forward)
    return layers.LayerNormalization(epsilon=1e-6)(
        layers.Add()([x, layers.Dropout(dropout_rate)(feed_forward)])
    )


@register_model(task="text_classification", inputs=_INPUTS,
                search={"num_heads": [2, 4], "dropout_rate": (0.0, 0.3)})
def transformer_classifier(vocab_size=20000, sequence_length=200, embedding_dim=64, num_heads=2,
                           feed_forward_dim=64, num_layers=1, dropout_rate=0.1, num_classes=2):
    """keras.io's text Transformer: token + position embeddings, encoder blocks, mean pooling."""
    inputs = keras.Input(shape=(sequence_length,), dtype="int32", name="token_ids")
    x = layers.Embedding(vocab_size, embedding_dim, mask_zero=True,
                         name="token_embedding")(inputs)
    x = PositionEmbedding(sequence_length)(x)
    for _ in range(num_layers):
        x = _encoder_block(x, num_heads, feed_forward_dim, dropout_rate)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(dropout_rate)(x)
    return keras.Model(inputs, classification_output(num_classes)(x), name="transformer_classifier")
