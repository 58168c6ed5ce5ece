"""Reads PyTorch ``.pth``/``.pt`` files without torch, and without running code from them.

``torch.save`` writes one of two layouts:

* the zip layout (torch >= 1.6, e.g. NGC's ``nvidia_efficientnet-b0_210412.pth``):
  ``<root>/data.pkl`` (the pickled object) and ``<root>/data/<key>`` (raw storage bytes,
  stored uncompressed), ``<root>/byteorder`` (``little`` unless it says ``big``);
* the legacy layout (torch < 1.6, e.g. torchvision's ``maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth``):
  four pickles in a row (magic number, protocol version, system info, the object) and a
  pickled list of storage keys, then each storage as an int64 element count and its bytes.

Either way the object pickle refers to storages by a *persistent id*
``("storage", storage type, key, location, numel[, view])``, and tensors are rebuilt by
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``. This reader
unpickles with a restricted :class:`pickle.Unpickler` (Python's "restricting globals"
recipe): ``find_class`` answers only the names in :data:`_ALLOWED` — tensor rebuild
functions, storage types and ``collections.OrderedDict``, each mapped to a function of
this module that builds numpy arrays — and refuses every other global with
:class:`PthError` *before* anything is called. A pickle cannot run code through it.

Untrusted sizes are checked before memory is used: every zip entry is at most the
archive's size (no decompression bombs), every tensor view lies inside its storage,
and no tensor has more elements than its storage (no stride-0 blow-ups).
Storage bytes are read once and viewed by numpy (``np.frombuffer``): a contiguous tensor is a
read-only view of them; a tensor is copied only when its view is not contiguous or its dtype
becomes float32 (float16, bfloat16, float64).
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any, BinaryIO, Callable, Dict, Tuple

import numpy as np

from common.command.errors import UserError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    "UntypedStorage": np.uint8,
}


class PthError(UserError, ValueError):
    """A ``.pth`` file that is not a plain tensor checkpoint: code in its pickle, a broken archive, a tensor
    outside its storage (one line naming the file)."""


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends: only its element type is kept."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize


class _Storage:
    """One storage: its raw bytes as a flat numpy array of its element type."""

    def __init__(self, data: np.ndarray):
        self.data = data


def _as_float32(flat: np.ndarray) -> np.ndarray:
    """float16 / bfloat16 (as uint16 bits) -> float32; other dtypes as they are."""
    if flat.dtype == np.float16 or flat.dtype == np.float64:
        return flat.astype(np.float32)
    return flat


def _rebuild_tensor(storage: _Storage, offset: int, size, stride, *unused) -> np.ndarray:
    """``torch._utils._rebuild_tensor[_v2]``: a bounds-checked strided view of ``storage``, then an array."""
    del unused
    if not isinstance(storage, _Storage):
        raise PthError("a tensor refers to something that is not a storage")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    flat = storage.data
    numel = int(np.prod(size, dtype=np.int64)) if size else 1
    if len(size) != len(stride) or any(s < 0 for s in size + stride) or offset < 0:
        raise PthError(f"a tensor has an invalid shape {size} / stride {stride}")
    if numel == 0:
        return np.zeros(size, flat.dtype)
    last = int(offset) + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size or numel > flat.size:
        raise PthError(f"a tensor of shape {size} does not fit its storage of {flat.size} elements")
    view = np.lib.stride_tricks.as_strided(flat[int(offset):], shape=size,
                                           strides=tuple(s * flat.itemsize for s in stride), writeable=False)
    return view if view.flags.c_contiguous else view.copy()  # contiguous: the storage's bytes, not copied


def _rebuild_parameter(data, *unused):
    """``torch._utils._rebuild_parameter[_with_state]``: a parameter is its tensor."""
    del unused
    return data


def _ordered_dict(*args):
    return collections.OrderedDict(*args)


_ALLOWED: Dict[Tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}
_ALLOWED.update({("torch", name): _StorageType(name) for name in _STORAGE_DTYPES if name != "UntypedStorage"})
_ALLOWED[("torch.storage", "UntypedStorage")] = _StorageType("UntypedStorage")
_ALLOWED[("torch", "UntypedStorage")] = _ALLOWED[("torch.storage", "UntypedStorage")]


class _Unpickler(pickle.Unpickler):
    """Answers only :data:`_ALLOWED` globals; storages come from ``load_storage(type, key, numel)``."""

    def __init__(self, file: BinaryIO, load_storage: Callable[[_StorageType, str, int], _Storage],
                 defer_tensors: bool = False):
        super().__init__(file, encoding="latin1")
        self._load_storage = load_storage
        self._defer_tensors = defer_tensors

    def find_class(self, module: str, name: str):
        found = _ALLOWED.get((module, name))
        if found is _rebuild_tensor and self._defer_tensors:
            return _Deferred
        if found is None:
            raise PthError(f"refused to load {module}.{name}: only tensors, storages and plain containers are read "
                           "(the file may run code under torch.load)")
        return found

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage" or \
                not isinstance(pid[1], _StorageType):
            raise PthError(f"unsupported persistent id {str(pid)[:60]}")
        storage = self._load_storage(pid[1], str(pid[2]), int(pid[4]))
        view = pid[5] if len(pid) > 5 else None
        if view is not None:  # legacy storage views: (view key, offset, size)
            if storage.data.size == 0 and int(pid[4]):
                raise PthError("legacy storage views are not supported: re-save the file with torch >= 1.6")
            start, count = int(view[1]), int(view[2])
            if start < 0 or count < 0 or start + count > storage.data.size:
                raise PthError("a storage view lies outside its storage")
            storage = _Storage(storage.data[start:start + count])
        return storage


def _flat_array(raw, storage_type: _StorageType, numel: int, byteorder: str) -> np.ndarray:
    """``raw`` bytes as ``numel`` elements of the storage type (float16/bfloat16 -> float32 later)."""
    if len(raw) < numel * storage_type.itemsize:
        raise PthError(f"a storage holds {len(raw)} bytes, fewer than its {numel} elements need")
    if storage_type.dtype == "bfloat16":
        bits = np.frombuffer(raw, dtype=np.dtype("uint16").newbyteorder(byteorder), count=numel)
        return (bits.astype(np.uint32) << 16).view(np.float32)
    dtype = np.dtype(storage_type.dtype).newbyteorder(byteorder if storage_type.itemsize > 1 else "=")
    return _as_float32(np.frombuffer(raw, dtype=dtype, count=numel).astype(dtype.newbyteorder("="), copy=False))


def _read_zip(path: str, handle: BinaryIO):
    size = os.fstat(handle.fileno()).st_size
    archive = zipfile.ZipFile(handle)
    entries = {info.filename: info for info in archive.infolist()}
    for info in entries.values():
        if info.file_size > size:
            raise PthError(f"archive entry {info.filename} unpacks to {info.file_size} bytes, more than the file")
    pickles = [name for name in entries if name.endswith("/data.pkl") or name == "data.pkl"]
    if len(pickles) != 1:
        raise PthError("not a PyTorch zip checkpoint (no single data.pkl)")
    root = pickles[0][:-len("data.pkl")]
    byteorder = "<"
    if root + "byteorder" in entries and archive.read(root + "byteorder").strip() == b"big":
        byteorder = ">"

    def load_storage(storage_type: _StorageType, key: str, numel: int) -> _Storage:
        name = f"{root}data/{key}"
        if name not in entries:
            raise PthError(f"storage {key} is missing from the archive")
        return _Storage(_flat_array(archive.read(name), storage_type, numel, byteorder))

    return _Unpickler(io.BytesIO(archive.read(pickles[0])), load_storage).load()


def _read_legacy(handle: BinaryIO):
    """torch < 1.6: magic, protocol, sys info, object, storage keys, then each storage's bytes."""
    if _Unpickler(handle, _no_storage).load() != LEGACY_MAGIC:
        raise PthError("not a PyTorch checkpoint (neither a zip archive nor the legacy format)")
    if _Unpickler(handle, _no_storage).load() != LEGACY_PROTOCOL:
        raise PthError("unsupported legacy PyTorch protocol version")
    _Unpickler(handle, _no_storage).load()  # system info
    wanted: Dict[str, Tuple[_StorageType, int]] = {}
    filled: Dict[str, _Storage] = {}

    def load_storage(storage_type: _StorageType, key: str, numel: int) -> _Storage:
        wanted[key] = (storage_type, numel)
        return filled.setdefault(key, _Storage(np.zeros(0, np.uint8)))

    result = _Unpickler(handle, load_storage, defer_tensors=True).load()
    keys = _Unpickler(handle, _no_storage).load()
    if not isinstance(keys, list) or set(map(str, keys)) != set(wanted):
        raise PthError("the storage list does not match the tensors")
    remaining = os.fstat(handle.fileno()).st_size - handle.tell()
    for key in map(str, keys):
        storage_type, numel = wanted[key]
        (count,) = struct.unpack("<q", handle.read(8))
        nbytes = count * storage_type.itemsize
        if count != numel or nbytes > remaining:
            raise PthError(f"storage {key} is truncated or mis-sized")
        filled[key].data = _flat_array(handle.read(nbytes), storage_type, numel, "<")
        remaining -= nbytes + 8
    return _resolve_legacy(result)


def _no_storage(*unused):
    raise PthError("unexpected tensor in a checkpoint header")


def _resolve_legacy(obj):
    """Legacy tensors were rebuilt before their storages were read: rebuild them again, now filled."""
    if isinstance(obj, _Deferred):
        return obj.build()
    if isinstance(obj, dict):
        return type(obj)((k, _resolve_legacy(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve_legacy(v) for v in obj)
    return obj


class _Deferred:
    """A legacy tensor: its rebuild arguments, applied once the storage bytes are read."""

    def __init__(self, *args):
        self.args = args

    def build(self) -> np.ndarray:
        return _rebuild_tensor(*self.args)


def load(path: str) -> Any:
    """The object ``torch.save`` wrote to ``path``, with every tensor as a numpy array (floating -> float32).

    Raises:
      PthError: the file needs code to load, is not a PyTorch checkpoint, or is damaged (one line, naming it).
    """
    try:
        with open(path, "rb") as handle:
            if zipfile.is_zipfile(handle):
                handle.seek(0)
                return _read_zip(path, handle)
            handle.seek(0)
            return _read_legacy(handle)
    except PthError as err:
        raise PthError(f"{path}: {err}") from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, struct.error, ValueError, TypeError,
            KeyError, IndexError, AttributeError, UnicodeDecodeError, MemoryError) as err:
        raise PthError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {str(err)[:80]})") from None

