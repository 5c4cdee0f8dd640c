"""Generation speed of the zoo's `gpt` with and without its key/value cache (Keras and the zoo
only, so it also runs on a GPU machine with the JAX backend).

For each sequence length: a batch of prompts (a quarter of the length each) extended to the
model's length by `zoo.generate`, compiled once (`tf.function` on TensorFlow, `jax.jit` on JAX)
and timed over repeated calls after the first; new tokens per second with the cache and
without, and their ratio. The two give the same tokens (tests/zoo/test_language.py). Results go
to bench/generation_speed_<backend>.json.

    [KERAS_BACKEND=jax] python -m bench.generation_speed [--lengths 64 256] [--batch-size 8]
"""

import argparse
import time
from pathlib import Path

import keras
import numpy as np

import zoo
from bench.results import write_and_print_rows


def compiled(function):
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(function)
    import tensorflow as tf

    return tf.function(function, jit_compile=False)


def measure(length: int, batch_size: int, repeats: int, options: dict) -> dict:
    model = zoo.build("gpt", sequence_length=length, **options)
    prompt_length = length // 4
    token_ids = np.zeros((batch_size, length), "int32")
    token_ids[:, :prompt_length] = np.random.default_rng(0).integers(
        1, options["vocab_size"], (batch_size, prompt_length))
    lengths = np.full(batch_size, prompt_length, "int32")
    new_tokens = batch_size * (length - prompt_length)
    row = {"backend": keras.backend.backend(), "sequence_length": length,
           "batch_size": batch_size, "new_tokens_per_call": new_tokens, **options}
    for name, use_cache in (("cached", True), ("uncached", False)):
        generate = compiled(lambda ids, lens, use_cache=use_cache: zoo.generate(
            model, ids, lens, length, use_cache=use_cache))
        started = time.perf_counter()
        keras.ops.convert_to_numpy(generate(token_ids, lengths))
        row[f"{name}_first_call_seconds"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        for _ in range(repeats):
            keras.ops.convert_to_numpy(generate(token_ids, lengths))
        seconds = (time.perf_counter() - started) / repeats
        row[f"{name}_tokens_per_second"] = round(new_tokens / seconds, 1)
    row["cache_speedup"] = round(row["cached_tokens_per_second"]
                                 / row["uncached_tokens_per_second"], 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    options = {"vocab_size": 4000, "embedding_dim": 128, "num_heads": 4,
               "feed_forward_dim": 512, "num_layers": 4}
    results = Path(__file__).with_name(f"generation_speed_{keras.backend.backend()}.json")
    write_and_print_rows(results, [measure(length, arguments.batch_size, arguments.repeats,
                                           options) for length in arguments.lengths])


if __name__ == "__main__":
    main()
