"""The validation split the runner carves out of an app's training data."""

import types

import numpy as np
import tensorflow as tf

from apps.core import DataSplits
from apps.core.pipeline import load_splits


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
