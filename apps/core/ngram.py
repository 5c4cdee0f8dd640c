"""A character n-gram language model with interpolated Witten-Bell smoothing: the baseline a
text generator's bits per character are read against.

It is NLTK's `WittenBellInterpolated` (tests/core/test_ngram.py compares the two on the same text)
with one change: NLTK's lowest level is the unsmoothed unigram, under which a character never
seen in training is impossible; here that level is itself interpolated with the uniform
distribution over the training characters plus one unknown, so every held-out text has a finite
score. Counted with NumPy (`np.unique` over integer codes of each n-gram), so a few megabytes of
text are counted and scored in seconds rather than NLTK's minutes.
"""

from __future__ import annotations

import math

import numpy as np


class CharacterNgram:
    """Counts of every n-gram of 1..`order` characters of `texts`; each text is read after a
    start mark (so its first characters are predicted as a text's first), never across texts."""

    START = "\x02"

    def __init__(self, texts: list[str], order: int):
        if order < 1:
            raise ValueError(f"order {order}: at least 1.")
        alphabet = sorted(set("".join(texts)) | {self.START})
        self.index = {character: code for code, character in enumerate(alphabet, start=1)}
        self.base = len(alphabet) + 2  # codes 1..len, the unknown, and 0 for "before the text"
        if self.base ** order >= 2 ** 63:
            raise ValueError(f"order {order}: n-grams of {len(alphabet)} distinct characters do not "
                             f"fit 64-bit codes; use a lower order.")
        self.order = order
        codes = self._codes(texts)
        self.levels = []  # per context length k: (context codes, their counts and followers),
        for k in range(order):  # and (n-gram codes, their counts)
            grams = self._grams(codes, k)
            # an n-gram's context is its code without the last character: code // base
            gram_keys, gram_counts = np.unique(grams, return_counts=True)
            context_keys, context_counts = np.unique(grams // self.base, return_counts=True)
            followers = np.unique(gram_keys // self.base, return_counts=True)[1]
            self.levels.append((context_keys, context_counts, followers, gram_keys, gram_counts))
        self.vocabulary_size = len(alphabet) + 1

    def _codes(self, texts: list[str]) -> list[np.ndarray]:
        unknown = self.base - 1
        return [np.array([self.index[self.START]] + [self.index.get(c, unknown) for c in text],
                         np.int64) for text in texts]

    def _grams(self, codes: list[np.ndarray], k: int) -> np.ndarray:
        """The code of each (k characters of context, character) of every text, after its start
        mark; contexts shorter than k at a text's start are padded with 0."""
        grams = []
        for text in codes:
            padded = np.concatenate([np.zeros(k, np.int64), text])
            gram = np.zeros(len(text) - 1, np.int64)
            for offset in range(k + 1):
                gram = gram * self.base + padded[offset + 1:offset + len(text)]
            grams.append(gram)
        return np.concatenate(grams) if grams else np.zeros(0, np.int64)

    @staticmethod
    def _lookup(keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
        """values[keys == query] for each query, 0 where the query is not among the keys."""
        if len(keys) == 0:
            return np.zeros(len(queries), values.dtype)
        where = np.minimum(np.searchsorted(keys, queries), len(keys) - 1)
        return np.where(keys[where] == queries, values[where], 0)

    def log_probabilities(self, texts: list[str], order: int | None = None) -> list[np.ndarray]:
        """The natural log of each character's probability given the ones before it, per text,
        under the model of `order` (at most the counted order; default: that order)."""
        codes = self._codes(texts)
        unigram_keys = self.levels[0][3]
        probability = None
        for k in range(min(order or self.order, self.order)):
            context_keys, context_counts, followers, gram_keys, gram_counts = self.levels[k]
            grams = self._grams(codes, k)
            if k == 0:  # the unigram, interpolated with the uniform distribution
                seen = self._lookup(unigram_keys, gram_counts, grams)
                total, distinct = gram_counts.sum(), len(unigram_keys)
                probability = (seen + distinct / self.vocabulary_size) / (total + distinct)
                continue
            context_count = self._lookup(context_keys, context_counts, grams // self.base)
            context_followers = self._lookup(context_keys, followers, grams // self.base)
            gram_count = self._lookup(gram_keys, gram_counts, grams)
            has_context = context_count > 0
            smoothed = ((gram_count + context_followers * probability)
                        / np.maximum(context_count + context_followers, 1))
            probability = np.where(has_context, smoothed, probability)
        logs = np.log(probability)
        bounds = np.cumsum([len(text) - 1 for text in codes])[:-1]
        return np.split(logs, bounds)


def bits_per_character(model: CharacterNgram, texts: list[str], order: int | None = None) -> float:
    """The texts' negative log2-probability per character under `model` (of `order`)."""
    total = sum(float(logs.sum()) for logs in model.log_probabilities(texts, order))
    return -total / math.log(2) / max(1, sum(len(text) for text in texts))


def best_order(train: list[str], validation: list[str],
               orders=range(2, 9)) -> tuple[int, dict, CharacterNgram]:
    """The order whose model scores `validation` best, each order's bits per character on it,
    and the counts (the baseline is tuned on held-out text as fairly as the network's training
    is). Counted once, at the highest order (or the highest whose codes fit 64 bits); score
    with the chosen order through `bits_per_character(model, texts, order)`."""
    orders = list(orders)
    for highest in sorted(orders, reverse=True):
        try:
            model = CharacterNgram(train, highest)
            break
        except ValueError:  # the alphabet is too large for this order's codes
            continue
    scores = {order: round(bits_per_character(model, validation, order), 4)
              for order in orders if order <= highest}
    return min(scores, key=scores.get), scores, model
