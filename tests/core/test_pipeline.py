"""The validation split the runner carves out of an app's training data."""

import types

import numpy as np
import tensorflow as tf

from apps.core import DataSplits
from apps.core.pipeline import cache_plan, load_splits


def carved(train: tf.data.Dataset, seed: int = 3) -> tuple[list[int], list[int], dict]:
    """The labels `load_splits` puts in train and in validation (10%), and the split sizes."""
    app = types.SimpleNamespace(name="numbers", load_data=lambda config: DataSplits(
        train=train, test=train.take(10), source="numbered examples"))
    config = types.SimpleNamespace(max_examples=0, validation_fraction=0.1, seed=seed)
    splits, sizes = load_splits(app, config)
    return ([int(label) for _, label in splits.train],
            [int(label) for _, label in splits.validation], sizes)


def test_examples_of_one_shape_and_of_many_are_held_out_alike():
    """Examples of one shape are carved in blocks, others one at a time: the same examples are
    held out either way, and each example lands in exactly one split."""
    numbers = np.arange(1000)
    one_shape = tf.data.Dataset.from_tensor_slices((np.stack([numbers] * 3, axis=1), numbers))
    many_shapes = tf.data.Dataset.from_generator(
        lambda: ((np.full(1 + number % 3, number), number) for number in numbers),
        output_signature=(tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.int64)))
    train, validation, sizes = carved(one_shape)
    assert sizes["train"] == 900 and sizes["validation"] == 100
    assert sorted(train + validation) == list(numbers)
    assert carved(many_shapes)[:2] == (train, validation)
    assert carved(one_shape, seed=4)[1] != validation


def test_the_cache_plan_sizes_fixed_shapes_from_their_spec_as_a_pass_over_them_would(tmp_path):
    """Digits of a fixed shape are sized from the element spec, without reading them: the same
    792 bytes an example (784 pixels, an int64 label) as reading examples whose shape is only
    known once read. A budget of exactly their size holds them in memory, a byte less does not."""
    digits = np.arange(100 * 28 * 28, dtype=np.uint8).reshape(100, 28, 28, 1)
    labels = np.arange(100)
    fixed = tf.data.Dataset.from_tensor_slices((digits, labels))
    read = tf.data.Dataset.from_generator(lambda: zip(digits, labels), output_signature=(
        tf.TensorSpec([None, None, 1], tf.uint8), tf.TensorSpec([], tf.int64)))
    for name, dataset in (("fixed", fixed), ("read", read)):
        for budget_bytes, where in ((79_200, ""), (79_199, str(tmp_path / f"cache_{name}"))):
            config = types.SimpleNamespace(cache_budget_mb=budget_bytes / 2**20)
            assert cache_plan({name: dataset}, {name: 100}, config, tmp_path) == {name: where}
