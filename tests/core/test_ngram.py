"""The character n-gram baseline against NLTK's Witten-Bell language model on the same text: every
character's probability equal, unseen characters and contexts included."""

import math

import numpy as np
import pytest
from nltk.lm.models import InterpolatedLanguageModel
from nltk.lm.smoothing import WittenBell

from apps.core import ngram

TRAIN = ["the cat sat on the mat.\nthe end", "a hat, a cat; the bat", "that is that"]
TEST = ["the cat hat", "a zebra sat", "t"]  # z: never in training


class UniformFloorWittenBell(WittenBell):
    """NLTK's Witten-Bell with its lowest level interpolated with the uniform distribution, as
    ours is (NLTK's own lowest level is the bare unigram)."""

    def unigram_score(self, word):
        unigrams = self.counts.unigrams
        return ((unigrams[word] + len(unigrams) / len(self.vocab))
                / (unigrams.N() + len(unigrams)))


def nltk_model(order):
    """NLTK's model fitted on the n-grams our counting reads: each text after its start mark,
    contexts before it padded."""
    padding = ["<s>"] * (order - 1)
    grams = []
    for text in TRAIN:
        symbols = padding + [ngram.CharacterNgram.START] + list(text)
        grams.append([tuple(symbols[position - length + 1:position + 1])
                      for position in range(order, len(symbols)) for length in range(1, order + 1)])
    model = InterpolatedLanguageModel(UniformFloorWittenBell, order)
    model.fit(grams, vocabulary_text=list(ngram.CharacterNgram.START + "".join(TRAIN)))
    return model


@pytest.mark.parametrize("order", [1, 2, 4])
def test_character_probabilities_equal_nltk_witten_bell(order):
    ours = ngram.CharacterNgram(TRAIN, order).log_probabilities(TEST)
    theirs = nltk_model(order)
    for text, logs in zip(TEST, ours):
        symbols = ["<s>"] * (order - 1) + [ngram.CharacterNgram.START] + list(text)
        expected = [math.log(theirs.score(symbols[position], symbols[position - order + 1:position]))
                    for position in range(order, len(symbols))]
        np.testing.assert_allclose(logs, expected, rtol=1e-9)


def test_bits_per_character_and_the_order_chosen_on_validation():
    model = ngram.CharacterNgram(TRAIN, 3)
    logs = np.concatenate(model.log_probabilities(TEST))
    expected = -logs.sum() / math.log(2) / sum(map(len, TEST))
    assert ngram.bits_per_character(model, TEST) == pytest.approx(expected)
    order, scores, counted = ngram.best_order(TRAIN, TEST, range(1, 5))
    assert counted.order == 4
    assert ngram.bits_per_character(counted, TEST, order) == pytest.approx(
        ngram.bits_per_character(ngram.CharacterNgram(TRAIN, order), TEST))
    assert scores[3] == round(ngram.bits_per_character(model, TEST), 4)
    assert scores[order] == min(scores.values()) and set(scores) == {1, 2, 3, 4}
    with pytest.raises(ValueError, match="order 0"):
        ngram.CharacterNgram(TRAIN, 0)
