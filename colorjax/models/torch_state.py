"""PyTorch state dicts read without torch, and without running any code they might name.

Two formats are read:

* legacy (``torch.save`` before 1.6, or ``_use_new_zipfile_serialization=False``): a sequence
  of pickles (magic number, protocol version, system info, the state dict whose tensors name
  their storages by persistent id, the list of storage keys), then for each listed storage its
  element count (int64) and raw bytes;
* zip (the default since 1.6): ``<archive>/data.pkl``, with each storage in
  ``<archive>/data/<key>``.

The pickles go through an unpickler that resolves only ``collections.OrderedDict``, torch's
tensor and parameter rebuild functions and the ``torch.*Storage`` types; any other global is
refused with ``StateDictError`` naming it, so a state dict cannot run code. Tensors come back
as NumPy arrays with their storage offset, size and strides honoured.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "ComplexFloatStorage": np.dtype(np.complex64),
    "ComplexDoubleStorage": np.dtype(np.complex128),
}


class StateDictError(ValueError):
    """A file that is not a readable PyTorch state dict, or one that names a foreign global."""


@dataclasses.dataclass(frozen=True, slots=True)
class _StorageType:
    dtype: np.dtype


@dataclasses.dataclass(frozen=True, slots=True)
class _StorageRef:
    """A storage named by a persistent id: its key, element dtype and element count."""

    key: str
    dtype: np.dtype
    numel: int


@dataclasses.dataclass(frozen=True, slots=True)
class _TensorRef:
    """A tensor as a view of a storage, materialised once the storages are read."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *_unused) -> _TensorRef:
    if not isinstance(storage, _StorageRef):
        raise StateDictError(f"a tensor's storage is {type(storage).__name__}, not a storage")
    return _TensorRef(storage, int(storage_offset), tuple(map(int, size)), tuple(map(int, stride)))


def _rebuild_parameter(data, *_unused) -> _TensorRef:
    if not isinstance(data, _TensorRef):
        raise StateDictError(f"a parameter holds {type(data).__name__}, not a tensor")
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ``_ALLOWED_GLOBALS``; storages through ``storage_ref``."""

    def __init__(self, file: BinaryIO, storage_ref: Callable[[tuple], _StorageRef]):
        super().__init__(file)
        self._storage_ref = storage_ref

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise StateDictError(
                f"refusing global {module}.{name}: a state dict may only name tensors, "
                "storages and collections.OrderedDict"
            ) from None

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise StateDictError(f"unsupported persistent id {pid!r:.80}")
        return self._storage_ref(pid)


def _storage_type(value: Any) -> np.dtype:
    if not isinstance(value, _StorageType):
        raise StateDictError(f"a storage's type is {value!r:.80}, not a torch storage type")
    return value.dtype


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of the PyTorch state dict at ``path``, by name, as NumPy arrays.

    Raises ``FileNotFoundError`` if there is no file and ``StateDictError`` (naming ``path``)
    if it is not a state dict in either format, is truncated, or names a foreign global.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no PyTorch state dict at {path}")
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        with open(path, "rb") as f:
            return _load_legacy(f)
    except StateDictError as e:
        raise StateDictError(f"{path}: {e}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        zipfile.BadZipFile,
        struct.error,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
    ) as e:
        raise StateDictError(f"{path}: not a readable PyTorch state dict ({e})") from e


# ---- legacy format ----


def _load_legacy(f: BinaryIO) -> dict[str, np.ndarray]:
    header = _RestrictedUnpickler(f, _no_storages)
    if header.load() != LEGACY_MAGIC:
        raise StateDictError("not a PyTorch state dict (wrong magic number)")
    protocol = header.load()
    if protocol != LEGACY_PROTOCOL:
        raise StateDictError(f"unsupported legacy protocol version {protocol!r}")
    sys_info = header.load()
    byteorder = "<" if sys_info.get("little_endian", True) else ">"
    storages: dict[str, _StorageRef] = {}
    state = _RestrictedUnpickler(f, lambda pid: _legacy_storage_ref(pid, storages)).load()
    keys = _RestrictedUnpickler(f, _no_storages).load()
    unknown = set(keys) - set(storages)
    if unknown:
        raise StateDictError(f"storages {sorted(unknown)} are listed but no tensor uses them")
    data = {key: _read_legacy_storage(f, storages[key], byteorder) for key in keys}
    return _materialise(state, data)


def _no_storages(pid: tuple) -> _StorageRef:
    raise StateDictError("a storage reference outside the state dict")


def _legacy_storage_ref(pid: tuple, storages: dict[str, _StorageRef]) -> _StorageRef:
    """('storage', type, key, location, numel, view_metadata) -> the storage, one per key."""
    _, storage_type, key, _location, numel, view_metadata = pid
    if view_metadata is not None:
        raise StateDictError("storage views (state dicts of torch before 0.4) are not supported")
    return storages.setdefault(key, _StorageRef(str(key), _storage_type(storage_type), numel))


def _read_legacy_storage(f: BinaryIO, ref: _StorageRef, byteorder: str) -> np.ndarray:
    (numel,) = struct.unpack(byteorder + "q", _read_exactly(f, 8))
    if numel != ref.numel:
        raise StateDictError(f"storage {ref.key} holds {numel} elements, its tensors {ref.numel}")
    dtype = ref.dtype.newbyteorder(byteorder)
    return np.frombuffer(_read_exactly(f, numel * dtype.itemsize), dtype)


def _read_exactly(f: BinaryIO, size: int) -> bytes:
    data = f.read(size)
    if len(data) != size:
        raise StateDictError(f"truncated: {size} bytes expected, {len(data)} left")
    return data


# ---- zip format ----


def _load_zip(path: str) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        prefix = _archive_prefix(archive)
        byteorder = _zip_byteorder(archive, prefix)
        storages: dict[str, _StorageRef] = {}

        def storage_ref(pid: tuple) -> _StorageRef:
            _, storage_type, key, _location, numel = pid
            ref = _StorageRef(str(key), _storage_type(storage_type), numel)
            return storages.setdefault(ref.key, ref)

        with archive.open(prefix + "data.pkl") as f:
            state = _RestrictedUnpickler(io.BytesIO(f.read()), storage_ref).load()
        data = {
            key: _read_zip_storage(archive, prefix, ref, byteorder) for key, ref in storages.items()
        }
    return _materialise(state, data)


def _archive_prefix(archive: zipfile.ZipFile) -> str:
    """The folder holding ``data.pkl`` (``archive/`` or the saved file's stem), with a slash."""
    pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise StateDictError(f"a zip with {len(pickles)} data.pkl files, not a torch checkpoint")
    return pickles[0].removesuffix("data.pkl")


def _zip_byteorder(archive: zipfile.ZipFile, prefix: str) -> str:
    if prefix + "byteorder" not in archive.namelist():
        return "<"
    return "<" if archive.read(prefix + "byteorder").strip() == b"little" else ">"


def _read_zip_storage(
    archive: zipfile.ZipFile, prefix: str, ref: _StorageRef, byteorder: str
) -> np.ndarray:
    try:
        raw = archive.read(f"{prefix}data/{ref.key}")
    except KeyError:
        raise StateDictError(f"storage {ref.key} is missing from the archive") from None
    dtype = ref.dtype.newbyteorder(byteorder)
    if len(raw) < ref.numel * dtype.itemsize:
        raise StateDictError(f"storage {ref.key} is truncated")
    return np.frombuffer(raw, dtype, count=ref.numel)


# ---- tensors from storages ----


def _materialise(state: Any, data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not isinstance(state, Mapping):
        raise StateDictError(f"holds a {type(state).__name__}, not a state dict")
    tensors = {}
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            raise StateDictError(f"entry {name!r} holds {type(value).__name__}, not a tensor")
        tensors[str(name)] = _tensor_array(value, data[value.storage.key])
    return tensors


def _tensor_array(tensor: _TensorRef, storage: np.ndarray) -> np.ndarray:
    """The strided view ``tensor`` names of ``storage``, copied into a native-order array."""
    if len(tensor.size) != len(tensor.stride) or min(tensor.stride, default=0) < 0:
        raise StateDictError(f"tensor size {tensor.size} and strides {tensor.stride} disagree")
    native = storage.dtype.newbyteorder("=")
    if 0 in tensor.size:
        return np.empty(tensor.size, native)
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride, strict=True))
    if tensor.offset < 0 or last >= storage.size:
        raise StateDictError(
            f"a tensor of size {tensor.size} reaches element {last} of a storage of {storage.size}"
        )
    view = np.lib.stride_tricks.as_strided(
        storage[tensor.offset :],
        shape=tensor.size,
        strides=[s * storage.itemsize for s in tensor.stride],
        writeable=False,
    )
    return np.ascontiguousarray(view, dtype=native)
