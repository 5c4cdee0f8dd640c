"""LiteRT (TensorFlow Lite) export of an app's SavedModel, checked against it on held-out data.

`python -m apps <app> export-litert --model-dir DIR --quantize none|float16|dynamic|int8`
converts the export's predict signature, one example per call (the edge case), with TensorFlow
Lite's built-in ops only (so LiteRT's own interpreter runs it, without TensorFlow), writes
`model_<quantize>.tflite` into the version folder, runs it with the LiteRT interpreter from PyPI
(`ai-edge-litert`) on the app's test split beside the SavedModel, and writes
`litert_<quantize>.json` there: accuracy (or MAE) of both, agreement, sizes, per-example latency.
int8 is calibrated on up to 200 training examples.
"""

import json
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from apps.core.errors import RunError

QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
SIGNATURE = "serving_default"
CALIBRATION_EXAMPLES = 200


def _one_example_function(saved_model, example_shapes: dict):
    """The export's serving_default on one example (`example_shapes`: each input's shape after
    the batch), returning its numeric outputs (TF Lite has no string tables; the class names
    stay in labels.txt), or where it has none (a translation) all of them, which the converter
    then refuses by the op it lacks."""
    signature = saved_model.signatures[SIGNATURE]
    specs = signature.structured_input_signature[1]

    @tf.function(input_signature=[tf.TensorSpec([1, *example_shapes[name]], spec.dtype, name)
                                  for name, spec in specs.items()])
    def one_example(*raw):
        outputs = signature(**dict(zip(specs, raw)))
        numeric = {name: value for name, value in outputs.items() if value.dtype != tf.string}
        return numeric or outputs

    return one_example.get_concrete_function()


def convert(saved_model, function, version_dir: Path, quantize: str,
            calibration: np.ndarray | None) -> bytes:
    """The .tflite bytes; `calibration`: int8's representative examples (None otherwise)."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], saved_model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        converter.representative_dataset = lambda: ([example[np.newaxis]] for example in
                                                    calibration)
    try:
        return converter.convert()
    except Exception as error:  # the converter's own message names the op it cannot lower
        found = re.search(r"failed to legalize operation '[^']+'|'[^']+' op is neither a custom "
                          r"op nor a flex op|[^\n:]*not supported[^\n]*", str(error))
        reason = found.group(0) if found else (str(error).splitlines() or [repr(error)])[0]
        raise RunError(f"--model-dir {version_dir}: the {SIGNATURE} signature does not "
                       f"convert to LiteRT built-in ops: {reason[:300]}") from error


def _per_example(call, examples: np.ndarray) -> tuple[dict[str, np.ndarray], float]:
    """`call` on every example alone (after one untimed call); its outputs, and seconds per
    example."""
    call(examples[:1])
    outputs, started = [], time.perf_counter()
    for example in examples:
        outputs.append(call(example[np.newaxis]))
    seconds = (time.perf_counter() - started) / len(examples)
    return {name: np.concatenate([row[name] for row in outputs]) for name in outputs[0]}, seconds


def _litert_call(model_bytes: bytes):
    """The .tflite in the LiteRT interpreter, as a function of one batch of one example."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=model_bytes).get_signature_runner()
    input_name = next(iter(runner.get_input_details()))
    return lambda batch: runner(**{input_name: batch})


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(handle, "wb") as file:
        file.write(data)
    os.replace(temporary, path)


def export_litert(app, version_dir: Path, quantize: str, splits, max_examples: int) -> dict:
    """Converts, compares and writes the .tflite and its report; returns the report."""
    if SIGNATURE not in app.signatures:
        raise RunError(f"the {app.name} app's exports have no {SIGNATURE} signature on one raw "
                       f"input to convert and compare; LiteRT export is for the classifier and "
                       f"forecast apps.")
    saved_model = tf.saved_model.load(str(version_dir))
    specs = saved_model.signatures[SIGNATURE].structured_input_signature[1]
    if len(specs) > 1:  # a generator's prompt and options: converted to name the op it lacks
        convert(saved_model, _one_example_function(
            saved_model, {name: spec.shape[1:] for name, spec in specs.items()}), version_dir,
            quantize, None)
        raise RunError(f"--model-dir {version_dir}: the {SIGNATURE} signature takes "
                       f"{len(specs)} inputs ({', '.join(specs)}); export-litert compares "
                       f"one-input signatures on the test split.")
    (input_name, _), = specs.items()

    def served(inputs):  # a model that reads more than it serves (a translator, its targets)
        return inputs[input_name] if isinstance(inputs, dict) else inputs

    test_inputs, test_targets = (np.concatenate(part) for part in zip(*(
        (served(inputs), targets) for inputs, targets
        in splits.test.take(max_examples).batch(256).as_numpy_iterator())))
    calibration = None if quantize != "int8" else np.concatenate([
        served(inputs) for inputs, _ in splits.train.take(CALIBRATION_EXAMPLES).batch(256)
        .as_numpy_iterator()])
    function = _one_example_function(saved_model, {input_name: np.shape(test_inputs[0])})
    model_bytes = convert(saved_model, function, version_dir, quantize, calibration)
    litert_outputs, litert_seconds = _per_example(_litert_call(model_bytes), test_inputs)
    saved_outputs, saved_seconds = _per_example(
        lambda batch: {name: value.numpy() for name, value in function(tf.constant(batch)).items()},
        test_inputs)
    tflite_path = version_dir / f"model_{quantize}.tflite"
    _write_atomically(tflite_path, model_bytes)
    saved_model_bytes = sum(path.stat().st_size for path in version_dir.rglob("*")
                            if path.is_file() and path.suffix not in (".tflite", ".json"))
    report = {"app": app.name, "quantize": quantize, "tflite": str(tflite_path),
              "examples": len(test_inputs), "tflite_bytes": len(model_bytes),
              "saved_model_bytes": saved_model_bytes,
              "litert_ms_per_example": round(1000 * litert_seconds, 3),
              "saved_model_ms_per_example": round(1000 * saved_seconds, 3),
              **app.output.litert_comparison(saved_outputs, litert_outputs, test_targets)}
    _write_atomically(version_dir / f"litert_{quantize}.json",
                      (json.dumps(report, indent=2) + "\n").encode())
    return report
