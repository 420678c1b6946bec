"""Read a PyTorch state dict saved in the legacy (pre-zip) format into numpy arrays, without PyTorch.

`read_state_dict(path) -> dict[str, np.ndarray]`. The file is five pickles and the raw storages:
a magic number, the protocol version, a small system-info dict, the object itself (tensors in
it refer to storages by persistent id), the list of storage keys, then for each of those keys
an int64 element count followed by the storage's little-endian bytes.

Unpickling is what makes a checkpoint dangerous: a pickle may name any global and call it. The
unpickler here resolves exactly these names, each to a function of this module:
`torch._utils._rebuild_tensor_v2` (a tensor: storage, offset, size, stride),
`collections.OrderedDict` (the state dict and the tensors' empty hook dicts), and the typed
storage classes (`torch.FloatStorage`, ...: only their dtype is used). Every other global is
refused with an `EdgeclsError` before anything is called, so reading a file runs no code of it.
Sizes are checked against the bytes the file holds before anything is allocated.

No TensorFlow or PyTorch: numpy only.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
from dataclasses import dataclass

import numpy as np

from edgecls.errors import EdgeclsError, first_line

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
PROTOCOL_VERSION = 1001
MAX_FILE_BYTES = 1 << 31  # a state dict this reader is meant for is tens of MB

# torch's typed storage classes -> the numpy dtype of their elements (little-endian on disk).
STORAGE_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


# Frozen, with slots: a pickle's BUILD opcode can neither add nor change attributes of these.
@dataclass(frozen=True, slots=True)
class _StorageType:
    name: str
    dtype: np.dtype


@dataclass(frozen=True, slots=True)
class _Storage:
    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True, slots=True)
class _TensorRef:
    """A tensor whose storage bytes come after the pickle: materialised once they are read."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _ordered_dict(*args):
    if len(args) > 1:
        raise pickle.UnpicklingError("OrderedDict takes at most one argument")
    return collections.OrderedDict(*args)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor whose storage is not a storage reference")
    if not (_is_int(storage_offset) and isinstance(size, tuple) and isinstance(stride, tuple)
            and len(size) == len(stride) and all(map(_is_int, size + stride))):  # fmt: skip
        raise pickle.UnpicklingError("a tensor with a malformed offset, size or stride")
    if storage_offset < 0 or any(n < 0 for n in size) or any(s < 0 for s in stride):
        raise pickle.UnpicklingError("a tensor with a negative offset, size or stride")
    if all(size):  # a non-empty tensor: its last element must lie inside its storage
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.numel:
            raise pickle.UnpicklingError(f"a tensor reaching element {last} of a storage of {storage.numel}")
    return _TensorRef(storage, int(storage_offset), tuple(int(n) for n in size), tuple(int(s) for s in stride))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_ALLOWED = {("collections", "OrderedDict"): _ordered_dict, ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2}
_ALLOWED.update({("torch", name): _StorageType(name, np.dtype(dtype)) for name, dtype in STORAGE_DTYPES.items()})


class _Refused(Exception):
    """A global the reader does not resolve (kept apart from the pickle module's own errors)."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, _Storage] | None):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise _Refused(f"{module}.{name}") from None

    def persistent_load(self, pid):
        if self._storages is None or not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:80]}")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not _is_int(numel) or numel < 0:
            raise pickle.UnpicklingError("a malformed storage reference")
        if view is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        known = self._storages.get(key)
        if known is None:
            known = self._storages[key] = _Storage(key, storage_type.dtype, int(numel))
        elif known.dtype != storage_type.dtype or known.numel != numel:
            raise pickle.UnpicklingError(f"storage {key} is referred to with two types or sizes")
        return known


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state dict in `path` (legacy PyTorch format) as {name: float/int numpy array}.
    Any file that is not one (truncated, zip format, foreign globals, inconsistent sizes)
    raises `EdgeclsError` naming the file and what is wrong."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise EdgeclsError(f"checkpoint {path}: {size} bytes, more than a state dict this reader takes")
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise EdgeclsError(f"cannot read checkpoint {path}: {exc.strerror or first_line(exc)}") from None
    try:
        return _parse(data)
    except _Refused as exc:
        raise EdgeclsError(f"checkpoint {path}: refused global {exc} (only tensors, storages and OrderedDict are read)") from None
    except EdgeclsError as exc:
        raise EdgeclsError(f"checkpoint {path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, struct.error, IndexError, KeyError,
            AttributeError, OverflowError, MemoryError, RecursionError) as exc:  # fmt: skip
        raise EdgeclsError(f"checkpoint {path}: not a readable PyTorch state dict ({type(exc).__name__}: {first_line(exc)})") from None


def _parse(data: bytes) -> dict[str, np.ndarray]:
    if data[:2] == b"PK":
        raise EdgeclsError("a zip-format checkpoint (torch.save since PyTorch 1.6); this reader takes the legacy format")
    stream = io.BytesIO(data)
    if _RestrictedUnpickler(stream, None).load() != MAGIC_NUMBER:
        raise EdgeclsError("not a PyTorch checkpoint (no magic number)")
    if _RestrictedUnpickler(stream, None).load() != PROTOCOL_VERSION:
        raise EdgeclsError("an unknown PyTorch serialization protocol")
    info = _RestrictedUnpickler(stream, None).load()
    if not isinstance(info, dict) or not info.get("little_endian", True):
        raise EdgeclsError("a big-endian checkpoint")
    storages: dict[str, _Storage] = {}
    result = _RestrictedUnpickler(stream, storages).load()
    keys = _RestrictedUnpickler(stream, None).load()
    if not isinstance(keys, list) or sorted(keys) != sorted(storages) or len(set(keys)) != len(keys):
        raise EdgeclsError("its storage list does not match the storages its tensors use")
    offset, arrays = stream.tell(), {}
    for key in keys:
        storage = storages[key]
        if offset + 8 > len(data):
            raise EdgeclsError(f"truncated: storage {key} is missing")
        (numel,) = struct.unpack_from("<q", data, offset)
        if numel != storage.numel:
            raise EdgeclsError(f"storage {key} holds {numel} elements, its tensors say {storage.numel}")
        start, end = offset + 8, offset + 8 + numel * storage.dtype.itemsize
        if end > len(data):
            raise EdgeclsError(f"truncated: storage {key} needs {end - start} bytes, {max(0, len(data) - start)} left")
        arrays[key] = np.frombuffer(data, storage.dtype, numel, start)
        offset = end
    if not isinstance(result, dict):
        raise EdgeclsError(f"holds a {type(result).__name__}, not a state dict")
    state = {}
    for name, value in result.items():
        if not isinstance(name, str) or not isinstance(value, _TensorRef):
            raise EdgeclsError(f"entry {str(name)[:80]!r} is not a tensor")
        state[name] = _materialise(value, arrays[value.storage.key])
    return state


def _materialise(ref: _TensorRef, storage: np.ndarray) -> np.ndarray:
    native = storage.dtype.newbyteorder("=")
    if not all(ref.size):
        return np.zeros(ref.size, native)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if last >= len(storage):  # checked when unpickled too; as_strided itself checks nothing
        raise EdgeclsError(f"a tensor reaching element {last} of a storage of {len(storage)}")
    itemsize = storage.dtype.itemsize
    base = storage[ref.offset:]
    view = np.lib.stride_tricks.as_strided(base, ref.size, tuple(s * itemsize for s in ref.stride), writeable=False)
    return view.astype(native, copy=True)
