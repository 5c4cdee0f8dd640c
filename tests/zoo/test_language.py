"""Generation with a language model's key/value cache: the same tokens as running the whole
model at every step, each prompt kept, padding never generated; samplers deterministic per seed
and bounded by their top-k."""

import keras
import numpy as np
import pytest

import zoo
from tests.conftest import run_python


@pytest.fixture(scope="module")
def small_gpt():
    keras.utils.set_random_seed(3)
    return zoo.build("gpt", vocab_size=40, sequence_length=16, embedding_dim=16, num_heads=2,
                     feed_forward_dim=32, num_layers=2, dropout_rate=0.0)


def prompts():
    token_ids = np.zeros((3, 16), "int32")
    lengths = np.array([3, 5, 1], "int32")
    rng = np.random.default_rng(0)
    for row, length in enumerate(lengths):
        token_ids[row, :length] = rng.integers(1, 40, length)
    return token_ids, lengths


def test_cached_generation_writes_what_the_whole_model_at_every_step_would(small_gpt):
    token_ids, lengths = prompts()
    cached = keras.ops.convert_to_numpy(zoo.generate(small_gpt, token_ids, lengths, 6))
    uncached = keras.ops.convert_to_numpy(
        zoo.generate(small_gpt, token_ids, lengths, 6, use_cache=False))
    np.testing.assert_array_equal(cached, uncached)
    for row, length in enumerate(lengths):
        np.testing.assert_array_equal(cached[row, :length], token_ids[row, :length])
        assert (cached[row, length:length + 6] > 0).all()
        assert (cached[row, length + 6:] == 0).all()
    # The plain algorithm on the first row: the argmax of the whole model, one token at a time.
    sequence = list(token_ids[0, :3])
    for _ in range(6):
        padded = np.array([sequence + [0] * (16 - len(sequence))], "int32")
        logits = keras.ops.convert_to_numpy(small_gpt(padded))[0, len(sequence) - 1]
        logits[0] = -np.inf
        sequence.append(int(logits.argmax()))
    assert cached[0, :9].tolist() == sequence


def test_sampling_is_the_same_for_a_seed_and_keeps_to_the_top_k(small_gpt):
    token_ids, lengths = prompts()

    def sampled(seed, **options):
        choose = zoo.sampler(temperature=1.5, seed=seed, **options)
        return keras.ops.convert_to_numpy(zoo.generate(small_gpt, token_ids, lengths, 8, choose))

    np.testing.assert_array_equal(sampled(7), sampled(7))
    assert not np.array_equal(sampled(7), sampled(8))
    greedy = keras.ops.convert_to_numpy(zoo.generate(small_gpt, token_ids, lengths, 8))
    np.testing.assert_array_equal(sampled(7, top_k=1), greedy)
    np.testing.assert_array_equal(sampled(7, top_p=1e-6), greedy)
    with pytest.raises(ValueError, match="top_p"):
        zoo.sampler(top_p=0)


JAX_GENERATION = """
import jax, keras, numpy as np, zoo
from tests.zoo.test_language import prompts
assert keras.backend.backend() == "jax"
keras.utils.set_random_seed(3)
model = zoo.build("gpt", vocab_size=40, sequence_length=16, embedding_dim=16, num_heads=2,
                  feed_forward_dim=32, num_layers=2, dropout_rate=0.0)
token_ids, lengths = prompts()
cached = jax.jit(lambda ids, lens: zoo.generate(model, ids, lens, 6))(token_ids, lengths)
uncached = zoo.generate(model, token_ids, lengths, 6, use_cache=False)
np.testing.assert_array_equal(np.asarray(cached), np.asarray(uncached))
print("same", np.asarray(cached)[0, :9].tolist())
"""


@pytest.mark.full_tier  # a second backend, compiled
def test_cached_generation_compiles_and_agrees_on_the_jax_backend():
    result = run_python(JAX_GENERATION, env={"KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("same")
