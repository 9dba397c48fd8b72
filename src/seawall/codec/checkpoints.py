"""Checkpoint layouts: where each tensor's bytes lie in a model checkpoint file.

:func:`detect` recognises a checkpoint by its content (never its name) and
returns its :class:`Layout`, or ``None`` for anything else. Recognised:

- safetensors: ``u64`` header length, JSON header, tensors after it;
- PyTorch ``torch.save`` zip archives (``.pt``, ``.pth``, ``.bin``, optimizer
  state): one storage per ``<folder>/data/<key>`` entry, dtypes read from
  ``<folder>/data.pkl`` by an unpickler that imports and runs nothing;
- NumPy ``.npy`` (header versions 1 to 3) and ``.npz`` archives.

A layout is a hint for chunking and compression, never needed to restore a
file, so anything doubtful (truncated, inconsistent, compressed, encrypted,
bigger than the header caps) gives ``None`` or leaves that tensor out, and the
file takes the generic path. ``detect`` reads only headers and directories
through the caller's ``read``; it raises only what ``read`` itself raises.
"""

from __future__ import annotations

import ast
import bisect
import io
import json
import math
import pickle
import re
import struct
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

WIDTH: dict[str, int] = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "C64": 8,
}
FLOATS = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})
OTHER = "OTHER"

_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
# Real checkpoints need well under 1 MiB; the cap bounds a hostile pickle to seconds.
_MAX_PICKLE = 16 * 1024 * 1024
# numpy itself refuses headers over 10 000 bytes unless told otherwise.
_MAX_NPY_HEADER = 64 * 1024
# More dimensions than any framework allows; bounds the cost of multiplying them.
_MAX_NDIM = 64
# All reads of one detect() call: header caps plus a zip's central directory.
_READ_BUDGET = 256 * 1024 * 1024

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_ZIP_ENCRYPTED = 0x1
_ZIP_UTF8 = 0x800


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    length: int


@dataclass(frozen=True)
class Layout:
    format: str
    tensors: tuple[Tensor, ...]


class _Kind(NamedTuple):
    """A source dtype: its canonical name, and its element width when known.

    ``OTHER`` kinds keep their width so that lengths are still checked.
    """

    dtype: str
    width: int | None


def _kinds(names: dict[str, str | int]) -> dict[str, _Kind]:
    """Source name -> kind, from canonical names or the widths of OTHER dtypes."""
    return {
        name: _Kind(v, WIDTH[v]) if isinstance(v, str) else _Kind(OTHER, v)
        for name, v in names.items()
    }


_U8 = _Kind("U8", 1)
_SAFETENSORS = _kinds(
    {**{name: name for name in WIDTH}, "U16": 2, "U32": 4, "U64": 8, "F8_E8M0": 1}
)
_TORCH_STORAGES = _kinds(
    {
        "DoubleStorage": "F64",
        "FloatStorage": "F32",
        "HalfStorage": "F16",
        "BFloat16Storage": "BF16",
        "Float8_e4m3fnStorage": "F8_E4M3",
        "Float8_e5m2Storage": "F8_E5M2",
        "LongStorage": "I64",
        "IntStorage": "I32",
        "ShortStorage": "I16",
        "CharStorage": "I8",
        "ByteStorage": "U8",
        "BoolStorage": "BOOL",
        "ComplexFloatStorage": "C64",
        "ComplexDoubleStorage": 16,
        "QInt8Storage": 1,
        "QUInt8Storage": 1,
        "QInt32Storage": 4,
        "QUInt4x2Storage": 1,
        "QUInt2x4Storage": 1,
    }
)
_TORCH_DTYPES = _kinds(
    {
        "float64": "F64",
        "double": "F64",
        "float32": "F32",
        "float": "F32",
        "float16": "F16",
        "half": "F16",
        "bfloat16": "BF16",
        "float8_e4m3fn": "F8_E4M3",
        "float8_e5m2": "F8_E5M2",
        "int64": "I64",
        "long": "I64",
        "int32": "I32",
        "int": "I32",
        "int16": "I16",
        "short": "I16",
        "int8": "I8",
        "uint8": "U8",
        "bool": "BOOL",
        "complex64": "C64",
        "cfloat": "C64",
        "complex128": 16,
        "cdouble": 16,
        "complex32": 4,
        "chalf": 4,
        "uint16": 2,
        "uint32": 4,
        "uint64": 8,
        "float8_e4m3fnuz": 1,
        "float8_e5m2fnuz": 1,
        "float8_e8m0fnu": 1,
    }
)
_NUMPY = _kinds(
    {
        "f8": "F64",
        "f4": "F32",
        "f2": "F16",
        "i8": "I64",
        "i4": "I32",
        "i2": "I16",
        "i1": "I8",
        "u1": "U8",
        "b1": "BOOL",
        "c8": "C64",
    }
)
# A plain numpy dtype as np.save writes it: byte order, kind, size, datetime unit.
_NUMPY_DESCR = re.compile(r"([<>|=])([a-zA-Z])(\d{0,9})(\[\w{1,20}\])?")


class _Malformed(Exception):
    """Not a checkpoint we can lay out: detect() answers None."""


class _SourceFailed(Exception):
    """The caller's read raised: its error, not the content's, so detect() re-raises it."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error


def detect(read: Callable[[int, int], bytes], size: int) -> Layout | None:
    """The layout of the checkpoint whose ``size`` bytes ``read(offset, n)`` returns, or None."""
    source = _Source(read, size)
    try:
        magic = source.read_at(0, 8)
        if magic.startswith(_NPY_MAGIC):
            tensor = _npy(source, "", 0, size)
            return _layout("npy", [tensor] if tensor else [], size)
        if magic.startswith(_ZIP_MAGIC):
            return _zip(source)
        return _safetensors(source, magic)
    except _Malformed:
        return None
    except _SourceFailed as failed:
        raise failed.error from None


class _Source:
    """The caller's ``read``, clamped to the file and to a budget of bytes."""

    def __init__(self, read: Callable[[int, int], bytes], size: int) -> None:
        self._read = read
        self.size = size
        self._budget = _READ_BUDGET

    def read_at(self, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``offset``; fewer at the end of the file."""
        n = min(n, self.size - offset)
        if n <= 0 or offset < 0:
            return b""
        self._budget -= n
        if self._budget < 0:
            raise _Malformed("headers larger than the read budget")
        try:
            data = self._read(offset, n)
        except Exception as e:
            raise _SourceFailed(e) from e
        return bytes(data[:n])

    def read_exact(self, offset: int, n: int) -> bytes:
        data = self.read_at(offset, n)
        if len(data) != n:
            raise _Malformed("truncated")
        return data


class _File(io.RawIOBase):
    """A seekable file over a :class:`_Source`, for zipfile."""

    def __init__(self, source: _Source) -> None:
        super().__init__()
        self._source = source
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._source.size}[whence]
        if base + offset < 0:
            # zipfile probes with seeks before the start and expects OSError.
            raise OSError("seek before the start of the file")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        # Views released on return: the caller's buffer may be freed right after.
        with memoryview(buffer) as view, view.cast("B") as flat:
            data = self._source.read_at(self._pos, len(flat))
            flat[: len(data)] = data
        self._pos += len(data)
        return len(data)


@contextmanager
def _foreign() -> Iterator[None]:
    """Runs a library parser (json, ast, zipfile, pickle) over untrusted bytes.

    Garbage makes these raise nearly anything (ValueError, struct.error,
    RecursionError, KeyError...): all of it means the file is malformed.
    """
    try:
        yield
    except (_Malformed, _SourceFailed):
        raise
    except Exception as e:
        raise _Malformed(type(e).__name__) from e


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _shape(value: object) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or len(value) > _MAX_NDIM:
        raise _Malformed("bad shape")
    if not all(_is_count(d) and d < 2**63 for d in value):
        raise _Malformed("bad shape")
    return tuple(value)


def _tensor(name: str, kind: _Kind, shape: tuple[int, ...], offset: int, length: int) -> Tensor:
    if kind.width is not None and length != math.prod(shape) * kind.width:
        raise _Malformed(f"tensor {name!r}: length does not match shape and dtype")
    return Tensor(name, kind.dtype, shape, offset, length)


def _layout(format: str, tensors: Iterable[Tensor], size: int) -> Layout:
    """Zero-length tensors dropped, the rest sorted, checked disjoint and within the file."""
    kept = sorted((t for t in tensors if t.length), key=lambda t: t.offset)
    if not kept:
        raise _Malformed("no tensor")
    if len({t.name for t in kept}) != len(kept):
        raise _Malformed("duplicate tensor names")
    end = 0
    for t in kept:
        if t.offset < end:
            raise _Malformed("overlapping tensors")
        end = t.offset + t.length
    if end > size:
        raise _Malformed("tensor beyond the end of the file")
    return Layout(format, tuple(kept))


# safetensors ------------------------------------------------------------------


def _safetensors(source: _Source, start: bytes) -> Layout:
    if len(start) != 8:
        raise _Malformed("truncated")
    (n,) = struct.unpack("<Q", start)
    if not 2 <= n <= _MAX_SAFETENSORS_HEADER or 8 + n > source.size:
        raise _Malformed("not a safetensors header length")
    raw = source.read_exact(8, n)
    if not raw.startswith(b"{"):
        raise _Malformed("not a safetensors header")
    with _foreign():
        header = json.loads(raw.decode("utf-8"))
    if not isinstance(header, dict):
        raise _Malformed("safetensors header is not an object")
    tensors = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or not isinstance(info.get("dtype"), str):
            raise _Malformed(f"tensor {name!r}: bad entry")
        offsets = info.get("data_offsets")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))):
            raise _Malformed(f"tensor {name!r}: bad data_offsets")
        begin, end = offsets
        if begin > end:
            raise _Malformed(f"tensor {name!r}: bad data_offsets")
        kind = _SAFETENSORS.get(info["dtype"], _Kind(OTHER, None))
        tensors.append(_tensor(name, kind, _shape(info.get("shape")), 8 + n + begin, end - begin))
    return _layout("safetensors", tensors, source.size)


# NumPy --------------------------------------------------------------------------


def _npy(source: _Source, name: str, start: int, end: int) -> Tensor | None:
    """The array of the .npy bytes in [start, end); None for an object array (a pickle)."""
    prefix = source.read_exact(start, 8)
    if not prefix.startswith(_NPY_MAGIC) or prefix[6] not in (1, 2, 3):
        raise _Malformed("not an npy header")
    version = prefix[6]
    length_size = 2 if version == 1 else 4
    header_size = int.from_bytes(source.read_exact(start + 8, length_size), "little")
    header_start = start + 8 + length_size
    data_start = header_start + header_size
    if header_size > _MAX_NPY_HEADER or data_start > end:
        raise _Malformed("bad npy header length")
    raw = source.read_exact(header_start, header_size)
    with _foreign():
        text = raw.decode("latin1" if version < 3 else "utf-8")
    # A backslash has no business in a plain header and would make ast warn.
    if "\\" in text:
        raise _Malformed("bad npy header")
    with _foreign():
        header = ast.literal_eval(text)
    if not isinstance(header, dict) or header.keys() != {"descr", "fortran_order", "shape"}:
        raise _Malformed("bad npy header")
    if not isinstance(header["fortran_order"], bool) or not isinstance(header["shape"], tuple):
        raise _Malformed("bad npy header")
    descr = header["descr"]
    match = _NUMPY_DESCR.fullmatch(descr) if isinstance(descr, str) else None
    if match is None:
        # Structured dtypes (a list) are records, not tensors.
        raise _Malformed("not a plain npy dtype")
    order, letter, digits, _unit = match.groups()
    if letter == "O":
        return None
    if not digits:
        raise _Malformed("bad npy dtype")
    width = int(digits) * (4 if letter == "U" else 1)
    kind = _NUMPY.get(letter + digits) if order in "<|" else None
    return _tensor(
        name, kind or _Kind(OTHER, width), _shape(header["shape"]), data_start, end - data_start
    )


# Zip archives: torch.save and np.savez ----------------------------------------


class _Members:
    """The members of a zip archive, and where a stored member's bytes begin."""

    def __init__(self, source: _Source, archive: zipfile.ZipFile) -> None:
        self._source = source
        self.infos = archive.infolist()
        self.by_name = {info.filename: info for info in self.infos}
        # Each member's bytes must end before the next local header or the directory.
        self._starts = sorted(info.header_offset for info in self.infos)
        self._starts.append(archive.start_dir)

    def stored_data(self, info: zipfile.ZipInfo) -> int | None:
        """Absolute offset of the member's bytes, or None if compressed or encrypted."""
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & _ZIP_ENCRYPTED:
            return None
        if info.compress_size != info.file_size:
            raise _Malformed("stored member with two sizes")
        # Sizes come from the central directory, but the local header's extra
        # field (torch pads with it for alignment) decides where the data starts.
        local = _LOCAL_HEADER.unpack(self._source.read_exact(info.header_offset, 30))
        signature, flags, method = local[0], local[2], local[3]
        name_size, extra_size = local[9], local[10]
        if signature != _ZIP_MAGIC or method != zipfile.ZIP_STORED or flags & _ZIP_ENCRYPTED:
            raise _Malformed("local header disagrees with the central directory")
        raw_name = self._source.read_exact(info.header_offset + 30, name_size)
        with _foreign():
            name = raw_name.decode("utf-8" if flags & _ZIP_UTF8 else "cp437")
        if name != info.orig_filename:
            raise _Malformed("local header names another member")
        start: int = info.header_offset + 30 + name_size + extra_size
        following = bisect.bisect_right(self._starts, info.header_offset)
        if following == len(self._starts) or start + info.file_size > self._starts[following]:
            raise _Malformed("member overruns the next one or the directory")
        return start


def _zip(source: _Source) -> Layout:
    with _foreign():
        archive = zipfile.ZipFile(_File(source))
    with archive:
        members = _Members(source, archive)
        pickles = [i for i in members.infos if re.fullmatch(r"[^/]+/data\.pkl", i.filename)]
        if len(pickles) == 1:
            return _torch(source, archive, members, pickles[0])
        if (
            not pickles
            and members.infos
            and all(i.filename.endswith(".npy") for i in members.infos)
        ):
            return _npz(source, members)
    raise _Malformed("neither a torch nor an npz archive")


def _npz(source: _Source, members: _Members) -> Layout:
    tensors = []
    for info in members.infos:
        start = members.stored_data(info)
        tensor = (
            None if start is None else _npy(source, info.filename, start, start + info.file_size)
        )
        if tensor:
            tensors.append(tensor)
    return _layout("npz", tensors, source.size)


def _torch(
    source: _Source, archive: zipfile.ZipFile, members: _Members, pkl: zipfile.ZipInfo
) -> Layout:
    folder = pkl.filename.removesuffix("data.pkl")
    if pkl.file_size > _MAX_PICKLE:
        raise _Malformed("data.pkl larger than the cap")
    byteorder = members.by_name.get(folder + "byteorder")
    with _foreign():
        scan = _TorchPickle(archive.read(pkl))
        scan.load()
        big_endian = (
            byteorder is not None and byteorder.file_size < 16 and archive.read(byteorder) == b"big"
        )
    tensors = []
    for key, (storage, numel) in scan.storages.items():
        info = members.by_name.get(f"{folder}data/{key}")
        if info is None:
            raise _Malformed(f"storage {key!r} missing")
        start = members.stored_data(info)
        if start is None:
            continue
        # Every torch dtype has a known width.
        if storage.kind.width is None or info.file_size != numel * storage.kind.width:
            raise _Malformed(f"storage {key!r}: size does not match its numel")
        # Untyped storages (new dtypes) take their dtype from the tensors viewing them.
        kinds = scan.views.get(key, set()) | ({storage.kind} if not storage.untyped else set())
        if len(kinds) > 1:
            raise _Malformed(f"storage {key!r} viewed as several dtypes")
        kind = kinds.pop() if kinds else _U8
        if kind.width is None or info.file_size % kind.width:
            raise _Malformed(f"storage {key!r}: size not a multiple of its dtype")
        shape = (info.file_size // kind.width,)
        if big_endian:
            kind = _Kind(OTHER, kind.width)
        tensors.append(_tensor(f"data/{key}", kind, shape, start, info.file_size))
    return _layout("torch", tensors, source.size)


class _Inert:
    """Stands in for every global a checkpoint pickle names, so nothing is imported or run.

    It accepts what unpickling does to objects: calls (REDUCE, NEWOBJ), state
    (BUILD) and items (SETITEMS, APPENDS, ADDITEMS), and keeps none of it.
    """

    def __new__(cls, *args: object, **kwargs: object) -> _Inert:
        return super().__new__(cls)

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __call__(self, *args: object, **kwargs: object) -> _Inert:
        return _Inert()

    def __setstate__(self, state: object) -> None:
        pass

    def __setitem__(self, key: object, value: object) -> None:
        pass

    def append(self, item: object) -> None:
        pass

    def extend(self, items: object) -> None:
        pass

    def add(self, item: object) -> None:
        pass


class _Storage(NamedTuple):
    kind: _Kind
    # UntypedStorage: numel in bytes, dtype given by the tensors viewing it.
    untyped: bool = False


class _StorageType(_Inert):
    """``torch.FloatStorage`` and kin."""

    def __init__(self, storage: _Storage) -> None:
        self.storage = storage


class _DType(_Inert):
    """``torch.float32`` and kin."""

    def __init__(self, kind: _Kind) -> None:
        self.kind = kind


class _StorageRef(_Inert):
    def __init__(self, key: str) -> None:
        self.key = key


def _push_inert(unpickler: Any) -> None:
    unpickler.append(_Inert())


def _pop_mark_push_inert(unpickler: Any) -> None:
    unpickler.pop_mark()
    unpickler.append(_Inert())


def _refuse_bytearray(unpickler: Any) -> None:
    raise _Malformed("bytearray in a checkpoint pickle")


class _TorchPickle(pickle._Unpickler):
    """Reads a torch data.pkl for its storages (key -> type, numel) and their views' dtypes.

    The pure-Python unpickler, because the C one can be made to allocate
    unbounded memory by a few bytes (a LONG_BINPUT index sizes its memo
    array; BYTEARRAY8 preallocates its declared length). Dicts and sets are
    made inert too: their contents are never needed, and keys crafted to
    collide would make building them quadratic.
    """

    dispatch: ClassVar[dict[int, Callable[[pickle.Unpickler], None]]] = {
        **pickle._Unpickler.dispatch,
        pickle.EMPTY_DICT[0]: _push_inert,
        pickle.EMPTY_SET[0]: _push_inert,
        pickle.DICT[0]: _pop_mark_push_inert,
        pickle.FROZENSET[0]: _pop_mark_push_inert,
        pickle.BYTEARRAY8[0]: _refuse_bytearray,
    }

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.storages: dict[str, tuple[_Storage, int]] = {}
        self.views: dict[str, set[_Kind]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if name == "UntypedStorage" and module in ("torch", "torch.storage"):
            return _StorageType(_Storage(_U8, untyped=True))
        if name in _TORCH_STORAGES and module in ("torch", "torch.cuda"):
            return _StorageType(_Storage(_TORCH_STORAGES[name]))
        if name in _TORCH_DTYPES and module == "torch":
            return _DType(_TORCH_DTYPES[name])
        if (module, name) == ("torch._utils", "_rebuild_tensor_v3"):
            return self._rebuild_tensor_v3
        if (module, name) == ("torch._tensor", "_rebuild_from_type_v2"):
            return _rebuild_from_type_v2
        return _Inert

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
            raise _Malformed("unknown persistent id")
        _, storage, key, _location, numel = pid
        if (
            not isinstance(storage, _StorageType)
            or not isinstance(key, str)
            or not _is_count(numel)
        ):
            raise _Malformed("bad storage record")
        record = (storage.storage, numel)
        if self.storages.setdefault(key, record) != record:
            raise _Malformed(f"storage {key!r} recorded twice differently")
        return _StorageRef(key)

    def _rebuild_tensor_v3(self, *args: object) -> _Inert:
        # (storage, offset, size, stride, requires_grad, hooks, dtype[, metadata])
        if len(args) >= 7 and isinstance(args[0], _StorageRef):
            if not isinstance(args[6], _DType):
                raise _Malformed("tensor view without a dtype")
            self.views.setdefault(args[0].key, set()).add(args[6].kind)
        return _Inert()


def _rebuild_from_type_v2(func: object, new_type: object, args: object, *rest: object) -> object:
    # Tensor subclasses wrap their rebuild call: make it, so v3 dtypes are seen.
    if callable(func) and isinstance(args, tuple):
        return func(*args)
    return _Inert()
