"""PyTorch state dicts, legacy and zip, read without torch; foreign globals refused.

The files are written here opcode by opcode, as ``torch.save`` writes them, so the tests need
no torch."""

from __future__ import annotations

import dataclasses
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from colorjax.models.torch_state import (
    LEGACY_MAGIC,
    LEGACY_PROTOCOL,
    StateDictError,
    load_state_dict,
)

# ---- a minimal pickle writer for the objects torch.save emits ----


@dataclasses.dataclass(frozen=True)
class Global:
    module: str
    name: str


@dataclasses.dataclass(frozen=True)
class Call:
    func: Global
    args: tuple


@dataclasses.dataclass(frozen=True)
class PersistentId:
    value: tuple


@dataclasses.dataclass(frozen=True)
class Tensor:
    storage_key: str
    storage_type: str
    numel: int
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def ordered_dict(items: dict) -> bytes:
    ops = encode(Call(Global("collections", "OrderedDict"), ())) + pickle.MARK
    for key, value in items.items():
        ops += encode(key) + encode(value)
    return ops + pickle.SETITEMS


def encode(value) -> bytes:
    """Protocol-2 opcodes that push ``value``."""
    if isinstance(value, Global):
        return pickle.GLOBAL + f"{value.module}\n{value.name}\n".encode()
    if isinstance(value, Call):
        return encode(value.func) + encode(value.args) + pickle.REDUCE
    if isinstance(value, PersistentId):
        return encode(value.value) + pickle.BINPERSID
    if isinstance(value, tuple):
        return pickle.MARK + b"".join(map(encode, value)) + pickle.TUPLE
    if isinstance(value, dict):
        return ordered_dict(value)
    if isinstance(value, str):
        raw = value.encode()
        return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw
    if value is None:
        return pickle.NONE
    if isinstance(value, bool):
        return pickle.NEWTRUE if value else pickle.NEWFALSE
    if isinstance(value, int):
        return pickle.BININT + struct.pack("<i", value)
    raise TypeError(type(value))


def tensor_call(tensor: Tensor, legacy: bool) -> Call:
    storage_type = Global("torch", tensor.storage_type)
    if legacy:
        pid = ("storage", storage_type, tensor.storage_key, "cpu", tensor.numel, None)
    else:
        pid = ("storage", storage_type, tensor.storage_key, "cpu", tensor.numel)
    args = (PersistentId(pid), tensor.offset, tensor.size, tensor.stride, False, {})
    return Call(Global("torch._utils", "_rebuild_tensor_v2"), args)


def state_pickle(state: dict, legacy: bool) -> bytes:
    values = {
        name: tensor_call(value, legacy) if isinstance(value, Tensor) else value
        for name, value in state.items()
    }
    return pickle.PROTO + bytes([2]) + encode(values) + pickle.STOP


def used_storages(state: dict, storages: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The storages the tensors of ``state`` use (torch.save writes no others)."""
    keys = {value.storage_key for value in state.values() if isinstance(value, Tensor)}
    return {key: array for key, array in storages.items() if key in keys}


def write_legacy(path: Path, state: dict, storages: dict[str, np.ndarray]) -> Path:
    sys_info = {"protocol_version": LEGACY_PROTOCOL, "little_endian": True}
    with open(path, "wb") as f:
        for header in (LEGACY_MAGIC, LEGACY_PROTOCOL, sys_info):
            pickle.dump(header, f, protocol=2)
        f.write(state_pickle(state, legacy=True))
        storages = used_storages(state, storages)
        pickle.dump(list(storages), f, protocol=2)
        for array in storages.values():
            f.write(
                struct.pack("<q", array.size)
                + array.astype(array.dtype.newbyteorder("<")).tobytes()
            )
    return path


def write_zip(
    path: Path, state: dict, storages: dict[str, np.ndarray], prefix: str = "archive"
) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{prefix}/data.pkl", state_pickle(state, legacy=False))
        archive.writestr(f"{prefix}/byteorder", "little")
        for key, array in storages.items():
            archive.writestr(
                f"{prefix}/data/{key}", array.astype(array.dtype.newbyteorder("<")).tobytes()
            )
        archive.writestr(f"{prefix}/version", "3\n")
    return path


WRITERS = {"legacy": write_legacy, "zip": write_zip}

# ---- a state dict exercising offsets, strides, shared storages and dtypes ----

FLOATS = np.arange(24, dtype=np.float32) * 0.5 - 3
LONGS = np.array([7, -(2**40), 3], dtype=np.int64)
HALFS = np.array([1.5, -0.25], dtype=np.float16)
STORAGES = {"0": FLOATS, "1": LONGS, "2": HALFS}
STATE = {
    "conv.weight": Tensor("0", "FloatStorage", 24, 0, (2, 3, 4), (12, 4, 1)),
    # the same storage, transposed (as converted TensorFlow weights are stored) and offset
    "dense.weight": Tensor("0", "FloatStorage", 24, 2, (4, 3), (1, 4)),
    "bn.num_batches_tracked": Tensor("1", "LongStorage", 3, 1, (), ()),
    "counts": Tensor("1", "LongStorage", 3, 0, (3,), (1,)),
    "half": Tensor("2", "HalfStorage", 2, 0, (2,), (1,)),
    "empty": Tensor("0", "FloatStorage", 24, 0, (0, 5), (5, 1)),
}
EXPECTED = {
    "conv.weight": FLOATS.reshape(2, 3, 4),
    "dense.weight": FLOATS[2:14].reshape(3, 4).T,
    "bn.num_batches_tracked": np.array(-(2**40), np.int64),
    "counts": LONGS,
    "half": HALFS,
    "empty": np.zeros((0, 5), np.float32),
}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_reads_tensors_with_offsets_strides_and_dtypes(tmp_path, fmt):
    loaded = load_state_dict(WRITERS[fmt](tmp_path / "model.pth", STATE, STORAGES))
    assert list(loaded) == list(EXPECTED)
    for name, expected in EXPECTED.items():
        assert loaded[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(loaded[name], expected, err_msg=name)
    assert loaded["dense.weight"].flags.c_contiguous


def test_zip_archive_named_after_the_file(tmp_path):
    path = write_zip(tmp_path / "weights.pt", STATE, STORAGES, prefix="weights")
    np.testing.assert_array_equal(load_state_dict(path)["conv.weight"], EXPECTED["conv.weight"])


def test_parameters_read_as_their_data(tmp_path):
    tensor = tensor_call(STATE["counts"], legacy=False)
    parameter = Call(Global("torch._utils", "_rebuild_parameter"), (tensor, True, {}))
    path = write_zip(tmp_path / "p.pth", {"weight": parameter}, {"1": LONGS})
    np.testing.assert_array_equal(load_state_dict(path)["weight"], LONGS)


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_foreign_global_is_refused_by_name(tmp_path, fmt):
    marker = tmp_path / "ran"
    payload = Call(Global("os", "system"), (f"touch {marker}",))
    path = WRITERS[fmt](tmp_path / "evil.pth", {**STATE, "x": payload}, STORAGES)
    with pytest.raises(StateDictError, match=r"os\.system") as info:
        load_state_dict(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_truncated_file_names_the_path(tmp_path, fmt):
    path = WRITERS[fmt](tmp_path / "model.pth", STATE, STORAGES)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(StateDictError, match=str(path)):
        load_state_dict(path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "none.pth")):
        load_state_dict(tmp_path / "none.pth")


def test_a_pickle_that_is_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(StateDictError, match="magic number"):
        load_state_dict(path)


def test_a_tensor_beyond_its_storage_is_refused(tmp_path):
    state = {"w": Tensor("0", "FloatStorage", 24, 20, (2, 3), (3, 1))}
    path = write_legacy(tmp_path / "model.pth", state, STORAGES)
    with pytest.raises(StateDictError, match="reaches element 25 of a storage of 24"):
        load_state_dict(path)


def test_non_tensor_entries_are_refused(tmp_path):
    path = write_zip(tmp_path / "model.pth", {**STATE, "epoch": 3}, STORAGES)
    with pytest.raises(StateDictError, match="'epoch' holds int"):
        load_state_dict(path)
