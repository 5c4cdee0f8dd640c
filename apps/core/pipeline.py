"""The input pipeline: the app's splits, a validation split where it has none, and tf.data."""

import numpy as np
import tensorflow as tf

from apps.core.errors import DataError, RunError

AUTOTUNE = tf.data.AUTOTUNE


def count(dataset: tf.data.Dataset) -> int:
    size = int(dataset.cardinality())
    if size >= 0:
        return size
    return int(dataset.reduce(0, lambda total, _: total + 1))


def _carve_validation(train: tf.data.Dataset, fraction: float, seed: int, train_size: int):
    """Holds out a seeded random `fraction` of the training data for validation. Streams: a
    boolean per example (not a shuffle buffer of the whole split) says where each one goes.
    Returns (train, validation)."""
    if not 0 < fraction < 1:
        raise RunError(f"--validation-fraction {fraction}: must lie strictly between 0 and 1.")
    validation_size = max(1, int(round(train_size * fraction)))
    held_out = np.zeros(train_size, dtype=bool)
    held_out[np.random.default_rng(seed).permutation(train_size)[:validation_size]] = True
    held_out = tf.constant(held_out)
    indexed = train.enumerate()

    def part(validation: bool, size: int):
        return (indexed.filter(lambda index, _: tf.equal(held_out[index], validation))
                .map(lambda _, example: example)
                .apply(tf.data.experimental.assert_cardinality(size)))

    return part(False, train_size - validation_size), part(True, validation_size)


def load_splits(app, config):
    """The app's data with a validation split carved where it has none; refuses empty splits.
    Returns the splits and their sizes."""
    splits = app.load_data(config)
    print(f"[{app.name}] data: {splits.source}", flush=True)
    train_size = count(splits.train)
    if splits.validation is None:
        splits.train, splits.validation = _carve_validation(
            splits.train, config.validation_fraction, config.seed, train_size)
        train_size -= count(splits.validation)
    sizes = {"train": train_size, "validation": count(splits.validation),
             "test": count(splits.test)}
    empty = [name for name, size in sizes.items() if size == 0]
    if empty:
        raise DataError(f"{splits.source}: the {', '.join(empty)} split(s) are empty; "
                        f"check --data and the dataset's layout.")
    print(f"[{app.name}] examples: {sizes}", flush=True)
    return splits, sizes


def training_augmentation(app, config):
    """The app's augmentation when it has one and `--augment` is on, else None."""
    return app.augmentation(config) if app.augmentation and config.augment else None


def input_pipeline(dataset, batch_size: int, seed: int | None = None, augmentation=None):
    """Cache, shuffle (training only, seeded), batch, augment (training only), prefetch."""
    dataset = dataset.cache()
    if seed is not None:
        dataset = dataset.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if augmentation is not None:
        dataset = dataset.map(lambda x, y: (augmentation(x, training=True), y),
                              num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
