"""TF Serving's JSON mapping for `:predict`: the row (`instances`) and columnar (`inputs`)
request formats read into arrays of the signature's dtypes and shapes, and the outputs written
back as TF Serving writes them (tensorflow/serving's g3doc/api_rest.md), with a `ServingError`
(an HTTP status and a message) for every request that does not fit.
"""

import base64
import binascii
import json

import numpy as np
import tensorflow as tf
from starlette.responses import JSONResponse
from tensorflow.core.framework import types_pb2


class ServingError(Exception):
    """A bad request: its HTTP status and the message for the `error` field."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _dtype_name(dtype: tf.DType) -> str:
    return types_pb2.DataType.Name(dtype.as_datatype_enum)


def _decode_b64(value):
    if isinstance(value, dict):
        if set(value) != {"b64"}:
            raise ServingError(400, f"an object in the input must be {{\"b64\": ...}}, got keys "
                                    f"{sorted(value)}.")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, TypeError) as error:
            raise ServingError(400, f"invalid base64 in a {{\"b64\": ...}} value: {error}.")
    if isinstance(value, list):
        return [_decode_b64(item) for item in value]
    return value


def _as_array(name: str, value, spec: tf.TensorSpec) -> np.ndarray:
    """One input column as an array of the signature's dtype and rank, or a 400."""
    dtype_name = _dtype_name(spec.dtype)
    try:
        if spec.dtype == tf.string:
            array = np.array(_decode_b64(value), dtype=object)
            if not all(isinstance(item, (str, bytes)) for item in array.flat):
                raise ValueError("expected strings or {\"b64\": ...} objects")
        else:
            given = np.array(value)
            if given.dtype.kind not in "biuf":
                raise ValueError("expected numbers")
            target = spec.dtype.as_numpy_dtype
            if np.issubdtype(target, np.integer) and given.size and (
                    given.dtype.kind == "f" and not np.all(np.mod(given, 1) == 0)
                    or given.min() < np.iinfo(target).min or given.max() > np.iinfo(target).max):
                raise ValueError(f"values must be whole numbers in [{np.iinfo(target).min}, "
                                 f"{np.iinfo(target).max}]")
            array = given.astype(target)
    except (ValueError, TypeError, RecursionError) as error:
        raise ServingError(400, f"input {name!r}: cannot be read as {dtype_name} ({error}).")
    if array.ndim == 0:
        raise ServingError(400, f"input {name!r}: needs a batch dimension (a list of examples).")
    if spec.shape.rank is None:  # the signature takes any shape (e.g. MNIST's pixels)
        return array
    expected = spec.shape.as_list()
    if array.ndim != len(expected) or any(want is not None and want != got
                                          for want, got in zip(expected, array.shape)):
        shape = [-1 if size is None else size for size in expected]
        raise ServingError(400, f"input {name!r}: expected shape {shape} ({dtype_name}), got "
                                f"{list(array.shape)}.")
    return array


def read_request(body: dict, function) -> tuple[dict[str, np.ndarray], bool]:
    """The request's input columns, and whether it used the row (`instances`) format."""
    specs = function.structured_input_signature[1]
    if ("instances" in body) == ("inputs" in body):
        raise ServingError(400, "the request body needs exactly one of \"instances\" (row format) "
                                "or \"inputs\" (columnar format).")
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise ServingError(400, "\"instances\" must be a non-empty list, one item per example.")
        if len(specs) == 1 and not (isinstance(instances[0], dict) and set(instances[0]) <= set(specs)
                                    and "b64" not in instances[0]):
            columns = {next(iter(specs)): instances}
        else:
            if not all(isinstance(row, dict) for row in instances):
                raise ServingError(400, f"each instance must be an object with the inputs "
                                        f"{sorted(specs)}.")
            columns = {key: [row.get(key) for row in instances] for key in specs}
        row_format = True
    else:
        inputs = body["inputs"]
        columns = (inputs if isinstance(inputs, dict) and set(inputs) <= set(specs)
                   and "b64" not in inputs else {next(iter(specs)): inputs})
        row_format = False
    missing = sorted(set(specs) - set(columns))
    unknown = sorted(set(columns) - set(specs))
    if missing or unknown:
        raise ServingError(400, f"inputs {unknown} are not in the signature; it takes "
                                f"{sorted(specs)}." if unknown else
                                f"missing inputs {missing}; the signature takes {sorted(specs)}.")
    arrays = {key: _as_array(key, columns[key], specs[key]) for key in specs}
    sizes = {len(array) for array in arrays.values()}
    if len(sizes) != 1:
        raise ServingError(400, "all inputs must hold the same number of examples.")
    return arrays, row_format


def _json_value(value, binary: bool = False):
    """An output value as JSON: numbers as numbers, strings decoded from UTF-8, and the bytes
    of an output whose name ends in `_bytes` as {"b64": ...}, as TF Serving writes them."""
    if isinstance(value, bytes):
        return ({"b64": base64.b64encode(value).decode()} if binary
                else value.decode("utf-8", "replace"))
    if isinstance(value, np.ndarray) and value.dtype == object:
        return [_json_value(item, binary) for item in value]
    return value.tolist()


def write_response(outputs: dict[str, np.ndarray], row_format: bool) -> dict:
    """TF Serving's response: one output's values or an object per example (rows), or the
    output's value or an object of outputs (columns)."""
    names = sorted(outputs)
    values = {name: _json_value(outputs[name], name.endswith("_bytes")) for name in names}
    if len(names) == 1:
        return {"predictions" if row_format else "outputs": values[names[0]]}
    if row_format:
        return {"predictions": [{name: values[name][index] for name in names}
                                for index in range(len(outputs[names[0]]))]}
    return {"outputs": values}


class ServingJSONResponse(JSONResponse):
    """JSON with NaN and Infinity written as tokens, as TF Serving's REST API allows."""

    def render(self, content) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode()
