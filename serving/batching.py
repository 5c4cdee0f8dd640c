"""Request batching: concurrent requests to one signature share one call."""

import asyncio

import numpy as np
import tensorflow as tf

from serving.json_mapping import ServingError


class Batcher:
    """Stacks concurrent requests to one signature (same per-example shapes) into one call: a
    request that finds no call running starts one at once; those arriving while it runs wait and
    go together, up to `max_batch_size` examples, into the next."""

    def __init__(self, max_batch_size: int):
        self.max_batch_size = max_batch_size
        self.waiting: dict[tuple, list] = {}
        self.running: set[tuple] = set()

    async def run(self, key: tuple, function, arrays: dict) -> tuple:
        """The outputs for `arrays`, and the size of the batch they were computed in."""
        shapes = tuple((name, array.shape[1:], array.dtype.str) for name, array in
                       sorted(arrays.items()))
        queue_key = (*key, shapes)
        future = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(queue_key, []).append((arrays, future))
        if queue_key not in self.running:
            self._start(queue_key, function)
        return await future

    def _start(self, queue_key, function) -> None:
        waiting = self.waiting.get(queue_key)
        if not waiting:
            self.running.discard(queue_key)
            return
        batch, size = [], 0
        while waiting and (not batch or size + examples_in(waiting[0][0]) <= self.max_batch_size):
            batch.append(waiting.pop(0))
            size += examples_in(batch[-1][0])
        self.running.add(queue_key)
        task = asyncio.get_running_loop().create_task(self._call(batch, function))
        task.add_done_callback(lambda _: self._start(queue_key, function))

    async def _call(self, queue, function) -> None:
        sizes = [examples_in(arrays) for arrays, _ in queue]
        stacked = {name: np.concatenate([arrays[name] for arrays, _ in queue])
                   for name in queue[0][0]}
        try:
            outputs = await asyncio.to_thread(call_signature, function, stacked)
        except Exception as error:
            outputs = error
        if len(queue) > 1 and (isinstance(outputs, Exception) or any(
                len(value) != sum(sizes) for value in outputs.values())):
            for arrays, future in queue:  # one request's fault, or outputs not row by row
                await self._call([(arrays, future)], function)
            return
        if isinstance(outputs, Exception):
            queue[0][1].set_exception(outputs)
            return
        start = 0
        for (_, future), size in zip(queue, sizes):
            future.set_result(({name: value[start:start + size]
                                for name, value in outputs.items()}, sum(sizes)))
            start += size


def examples_in(arrays: dict) -> int:
    return len(next(iter(arrays.values())))


def call_signature(function, arrays: dict) -> dict[str, np.ndarray]:
    specs = function.structured_input_signature[1]
    try:
        outputs = function(**{name: tf.constant(array, dtype=specs[name].dtype)
                              for name, array in arrays.items()})
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
        # TF's message: a header, the node's Python stack (indented), the reason, the op.
        reasons = [line for line in str(error).splitlines() if line.strip() and not
                   line[0].isspace() and not line.startswith(("Graph execution error",
                                                              "Detected at node"))]
        message = (reasons[-1] if reasons else str(error))[:300]
        raise ServingError(400, f"the model could not run on this input: {message}")
    return {name: value.numpy() for name, value in outputs.items()}
