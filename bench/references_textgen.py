"""keras.io's "Text generation with a miniature GPT", for `bench.compare`'s textgen race (the
other references are in `bench.references`, under the same rules: written as the example writes
it, trained on the app's own splits, scored by the `clock` after every epoch).

The example reads words, not characters: its standardisation lower-cases the text, drops
"<br />" and splits punctuation off the words, and every word outside its vocabulary (the most
frequent 19,999) reads as [UNK]; it reports its training loss only. The race gives both sides
the same text and scores both on the same strings: the fortunes as that standardisation writes
them (`word_documents`: words joined by single spaces) are the data both train on, and the
quality is bits per character of the test documents' first 81 words (the example's window),
each word after the first predicted from the ones before it (`scored_documents`). On such text
the example's word ids and the characters determine each other but for the out-of-vocabulary
words: for those it gives the probability of [UNK], which is charged as an oracle would spell
it, uniformly among the distinct out-of-vocabulary words of the scored documents (generous: a
real spelling model does not know which words they will be), so both sides give the probability
of the same string.
"""

import math
import string

import keras
import numpy as np
import tensorflow as tf

VOCAB_SIZE, MAXLEN, EMBED_DIM, NUM_HEADS, FEED_FORWARD_DIM, BATCH_SIZE = 20000, 80, 256, 2, 256, 128


def custom_standardization(text):
    """The example's: lower case, "<br />" removed, a space before every punctuation mark."""
    lowercased = tf.strings.lower(text)
    stripped_html = tf.strings.regex_replace(lowercased, "<br />", " ")
    return tf.strings.regex_replace(stripped_html, f"([{string.punctuation}])", r" \1")


def vectorizer(documents: list[str]) -> keras.layers.TextVectorization:
    """The example's TextVectorization, adapted on `documents`."""
    layer = keras.layers.TextVectorization(standardize=custom_standardization,
                                           max_tokens=VOCAB_SIZE - 1, output_mode="int",
                                           output_sequence_length=MAXLEN + 1)
    layer.adapt(tf.data.Dataset.from_tensor_slices(documents).batch(BATCH_SIZE))
    return layer


def word_documents(documents: list[str]) -> list[str]:
    """Each document as the example's standardisation and whitespace split read it, its words
    joined by single spaces (a text the standardisation leaves as it is)."""
    words = tf.strings.split(custom_standardization(tf.constant(documents)))
    return [text.decode("utf-8") for text in
            tf.strings.reduce_join(words, axis=-1, separator=" ").numpy()]


def scored_documents(test: list[str]) -> list[str]:
    """The test word documents both sides are scored on: each one's first MAXLEN + 1 words,
    where there are at least two."""
    return [" ".join(words[:MAXLEN + 1]) for words in (document.split(" ") for document in test)
            if len(words) >= 2]


def predicted_characters(documents: list[str]) -> int:
    """Characters of each document after its first word (the space before the second
    included): the part both sides predict."""
    return sum(len(document) - len(document.split(" ")[0]) for document in documents)


def generator_bits_per_character(model, documents: list[str]) -> float:
    """Bits per character of `documents` after their first words under the app's
    `TextGenerator`: each text's log-likelihood less its first word's (SentencePiece pieces never
    span a space, so the first word's pieces begin the text's)."""
    from apps.core.outputs.language import log_likelihoods

    whole, _ = log_likelihoods(model, documents)
    firsts, _ = log_likelihoods(model, [document.split(" ")[0] for document in documents])
    return -float(whole.sum() - firsts.sum()) / math.log(2) / predicted_characters(documents)


def text_generation_keras_io(splits, clock, seed: int, epochs: int) -> None:
    """keras.io/examples/generative/text_generation_with_miniature_gpt: TextVectorization (its
    standardisation, 20,000 words less one, 81 per document) in the tf.data pipeline, token and
    position embeddings, one post-norm Transformer block (embedding 256, 2 heads of key size 256,
    ReLU feed-forward 256, dropout 0.1, a causal mask), logits over the words; Adam, cross-entropy
    over all 80 positions (padding included, as the example computes it), batch 128, its
    sampling callback (40 words after "this movie is", top 10) after every epoch; `epochs`
    instead of its 25. Trained on the app's training documents; the clock scores the test
    documents' words (`scored_documents`) after each epoch."""
    train, _, test = splits.context["documents"]
    vectorize_layer = vectorizer(train)
    vocab = vectorize_layer.get_vocabulary()
    layers = keras.layers

    def prepare_lm_inputs_labels(text):
        tokenized = vectorize_layer(tf.expand_dims(text, -1))
        return tokenized[:, :-1], tokenized[:, 1:]

    shuffled = [train[index] for index in np.random.default_rng(seed).permutation(len(train))]
    text_ds = (tf.data.Dataset.from_tensor_slices(shuffled).shuffle(256, seed=seed)
               .batch(BATCH_SIZE).map(prepare_lm_inputs_labels, num_parallel_calls=tf.data.AUTOTUNE)
               .prefetch(tf.data.AUTOTUNE))

    inputs = keras.Input(shape=(MAXLEN,), dtype="int32")
    positions = layers.Embedding(MAXLEN, EMBED_DIM)(keras.ops.arange(MAXLEN))
    x = layers.Embedding(VOCAB_SIZE, EMBED_DIM)(inputs) + positions
    attended = layers.MultiHeadAttention(NUM_HEADS, EMBED_DIM)(x, x, use_causal_mask=True)
    x = layers.LayerNormalization(epsilon=1e-6)(x + layers.Dropout(0.1)(attended))
    fed = layers.Dense(EMBED_DIM)(layers.Dense(FEED_FORWARD_DIM, activation="relu")(x))
    x = layers.LayerNormalization(epsilon=1e-6)(x + layers.Dropout(0.1)(fed))
    model = keras.Model(inputs, layers.Dense(VOCAB_SIZE)(x))
    model.compile("adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    rng = np.random.default_rng(seed)
    start_tokens = [vocab.index(word) if word in vocab else 1 for word in "this movie is".split()]

    def generate_text(epoch, logs):  # the prompt and 41 words fit MAXLEN: no window cut
        tokens = list(start_tokens)
        while len(tokens) <= len(start_tokens) + 40:
            window = (tokens + [0] * MAXLEN)[:MAXLEN]
            logits = model.predict(np.array([window]), verbose=0)[0][len(tokens) - 1]
            top_logits, indices = tf.math.top_k(logits, k=10)
            probabilities = keras.ops.convert_to_numpy(keras.activations.softmax(top_logits[None]))[0]
            tokens.append(int(rng.choice(np.asarray(indices), p=probabilities / probabilities.sum())))
        print("generated text:", " ".join(vocab[token] for token in tokens), flush=True)

    scored = scored_documents(test)
    ids = vectorize_layer(tf.constant(scored)).numpy()
    known = set(vocab)
    unknown_words = {word for document in scored for word in document.split(" ")[1:]
                     if word not in known}

    def bits_per_character(trained) -> float:
        total = -math.log(max(1, len(unknown_words))) * float((ids[:, 1:] == 1).sum())  # their spelling
        for start in range(0, len(ids), 256):
            rows = ids[start:start + 256]
            log_probabilities = tf.nn.log_softmax(trained(rows[:, :-1], training=False))
            picked = tf.gather(log_probabilities, rows[:, 1:], batch_dims=2).numpy()
            total += float((picked * (rows[:, 1:] != 0)).sum())
        return -total / math.log(2) / predicted_characters(scored)

    clock.score_with(bits_per_character)
    model.fit(text_ds, verbose=0, epochs=epochs,
              callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=generate_text), clock])
