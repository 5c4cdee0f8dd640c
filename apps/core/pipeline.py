"""The input pipeline: the app's splits, a validation split where it has none, and tf.data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from apps.core.errors import DataError, RunError


def count(dataset: tf.data.Dataset) -> int:
    size = int(dataset.cardinality())
    if size >= 0:
        return size
    return int(dataset.reduce(0, lambda total, _: total + 1))


_CARVE_BLOCK = 256


def _fixed_shape_parts(dataset: tf.data.Dataset) -> list | None:
    """The specs of an example's parts where every one is a dense tensor of a fixed shape (the
    examples batch and can be sized without reading them), else None."""
    specs = tf.nest.flatten(dataset.element_spec)
    if all(isinstance(spec, tf.TensorSpec) and spec.shape.is_fully_defined() for spec in specs):
        return specs
    return None


def _carve_validation(train: tf.data.Dataset, fraction: float, seed: int, train_size: int):
    """Holds out a seeded random `fraction` of the training data for validation. Streams: a
    boolean per example (not a shuffle buffer of the whole split) says where each one goes.
    Returns (train, validation).

    Examples whose parts are dense tensors of fixed shapes (digits, clips, windows, strings) are
    picked `_CARVE_BLOCK` at a time, others one by one: a per-example filter costs about 25 us
    an example (0.45 s of the first epoch on the MNIST sample's 8,000, 0.13 s in blocks). The
    functions are plain graph code: autograph's conversion of them took 0.18 s of the MNIST
    sample's start."""
    if not 0 < fraction < 1:
        raise RunError(f"--validation-fraction {fraction}: must lie strictly between 0 and 1.")
    validation_size = max(1, int(round(train_size * fraction)))
    held_out = np.zeros(train_size, dtype=bool)
    held_out[np.random.default_rng(seed).permutation(train_size)[:validation_size]] = True
    held_out = tf.constant(held_out)
    indexed = train.enumerate()
    fixed_shapes = _fixed_shape_parts(train) is not None

    def part(validation: bool, size: int):
        @tf.autograph.experimental.do_not_convert
        def block_of_part(index, block):
            kept = tf.where(tf.equal(tf.gather(held_out, index), validation))[:, 0]
            return tf.nest.map_structure(lambda values: tf.gather(values, kept), block)

        @tf.autograph.experimental.do_not_convert
        def in_part(index, _):
            return tf.equal(held_out[index], validation)

        if fixed_shapes:
            selected = indexed.batch(_CARVE_BLOCK).map(block_of_part).unbatch()
        else:
            selected = indexed.filter(in_part).map(lambda _, example: example)
        return selected.apply(tf.data.experimental.assert_cardinality(size))

    return part(False, train_size - validation_size), part(True, validation_size)


def load_splits(app, config):
    """The app's data (the first `--max-examples` of each split), with a validation split carved
    where it has none; refuses empty splits. Returns the splits and their sizes."""
    splits = app.load_data(config)
    print(f"[{app.name}] data: {splits.source}", flush=True)
    if config.max_examples:
        if config.max_examples < 0:
            raise RunError(f"--max-examples {config.max_examples}: give a count of at least 1, "
                           f"or 0 for every example.")
        for name in ("train", "validation", "test"):
            if getattr(splits, name) is not None:
                setattr(splits, name, getattr(splits, name).take(config.max_examples))
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


def memory_budget_bytes(config) -> int:
    """`--cache-budget-mb`, or a quarter of this machine's memory when it is 0."""
    if config.cache_budget_mb:
        return int(config.cache_budget_mb * 2**20)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def _bytes_per_example(dataset: tf.data.Dataset, sample: int = 64) -> float:
    """The size of an example as decoded: read from the element spec where every part is a
    number of a fixed shape (no pass over the data: 0.15-0.24 s of the MNIST sample's start),
    else the mean of the first `sample` examples (strings by their length)."""
    specs = _fixed_shape_parts(dataset)
    if specs is not None and all(spec.dtype != tf.string for spec in specs):
        return float(sum(spec.shape.num_elements() * spec.dtype.size for spec in specs))
    sizes = [sum(np.asarray(part).nbytes if np.asarray(part).dtype != object
                 else sum(len(item) for item in np.asarray(part).reshape(-1))
                 for part in tf.nest.flatten(example))
             for example in dataset.take(sample).as_numpy_iterator()]
    return float(np.mean(sizes)) if sizes else 0.0


def cache_plan(splits: dict, sizes: dict, config, run_dir: Path) -> dict:
    """Where each split's decoded examples are cached: in memory while the splits so far fit the
    memory budget, else in a file in the run dir (stale cache files of an interrupted run are
    removed first: TF refuses to write over their lock files). Returns name -> file path, or ""
    for memory, and prints the choice."""
    budget, used, plan = memory_budget_bytes(config), 0, {}
    for stale in run_dir.glob("cache_*"):
        stale.unlink()
    for name, dataset in splits.items():
        estimate = _bytes_per_example(dataset) * sizes[name]
        if used + estimate <= budget:
            used += estimate
            plan[name], where = "", "in memory"
        else:
            plan[name] = str(run_dir / f"cache_{name}")
            where = f"in the file {plan[name]} (over the {budget / 2**20:,.0f} MB memory budget)"
        print(f"[cache] {name}: about {estimate / 2**20:,.1f} MB decoded, cached {where}",
              flush=True)
    return plan


def input_pipeline(dataset, batch_size: int, seed: int | None = None, augmentation=None,
                   cache_file: str | None = ""):
    """Cache (in memory, in `cache_file`, or not when it is None: a dataset cached already),
    shuffle (training only, seeded), batch, augment (training only), prefetch. Without a GPU
    the augmentation runs in turn with the training step, not beside it: the step already uses
    every core, and a parallel map that takes one makes the step's threads wait (speech on 2
    cores: epochs of 5-10 s instead of 6 s; bench/RESULTS.md). On a GPU it runs in parallel,
    ahead of the step."""
    if cache_file is not None:
        dataset = dataset.cache(cache_file)
    if seed is not None:
        dataset = dataset.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if augmentation is None:
        return dataset.prefetch(tf.data.AUTOTUNE)

    def augmented(x, y):
        return augmentation(x, training=True), y

    if tf.config.list_logical_devices("GPU"):
        return dataset.map(augmented, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
            tf.data.AUTOTUNE)
    in_turn = tf.data.Options()  # no prefetch or parallel map that tf.data would add itself
    in_turn.autotune.enabled = False
    in_turn.experimental_optimization.inject_prefetch = False
    in_turn.experimental_optimization.map_parallelization = False
    return dataset.map(augmented).with_options(in_turn)
