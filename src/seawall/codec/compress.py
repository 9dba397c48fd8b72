"""Blob payload encoding: zstd, and byte planes and deltas for float tensors.

A payload is one flag byte then the data (docs/format.md, section 6):

- ``0x00`` RAW: the data as is;
- ``0x01`` ZSTD: one zstd frame;
- ``0x02`` PLANES: the data as words of ``width`` bytes, each rotated left
  by ``rotate`` bits, split into byte planes (see :mod:`seawall.codec.floats`)
  that are stored raw or as a zstd frame each;
- ``0x03`` DELTA: the planes of the residual of the data's words against
  those of a base blob (its id follows the flag), by XOR or zigzag-coded
  subtraction.

Readers need nothing else; how hard the writer compresses is its own choice.
:func:`encode`, for any data, picks a zstd level per chunk from a 64 KiB
sample compressed at level 1:

- a sample that does not shrink (ratio above 0.97: media, encrypted or
  already compressed data) means the chunk is stored as is, unread by zstd;
- a sample that shrinks little (above 0.8: trained float weights) is
  compressed at level 2, because level 3's extra search finds nothing more
  in such data and costs a third more time;
- everything else (tables, text, code) gets level 3.

Data that zstd does not shrink by at least 1/32 is stored as is, so
incompressible data costs no decompression time on restore. The same rule
holds for each plane.

Planes are compressed at level 1 with a tiny match finder (6 hash bits,
matches of 7 bytes or more): an exponent plane is nearly memoryless, so
zstd's entropy coder does all the work, and the short matches that levels
1 to 3 find cost more bits than they save (benchmarks/float_codec.py: an
fp32 exponent plane of MiniLM to 0.33 of its size this way, 0.38 at level 1
and 0.42 at level 3, at three times level 1's speed). Mantissa planes do not
compress; zstd notices that itself at several GB/s, so no sample is needed.
"""

from __future__ import annotations

import struct
import threading

import numpy as np
import zstandard

from seawall.codec import floats

RAW = 0
ZSTD = 1
PLANES = 2
DELTA = 3
LEVEL = 3
_SAMPLE = 64 * 1024
_INCOMPRESSIBLE = 0.97
_POORLY_COMPRESSIBLE = 0.8

# Plane storage modes.
_PLANE_RAW = 0
_PLANE_ZSTD = 1
_PLANE_HEAD = struct.Struct("<BI")
# Left rotation by word width, measured (benchmarks/float_codec.py): one bit
# puts the whole fp32/bf16 exponent in the top plane, and changes nothing for
# fp16; fp64 does better unrotated (its top byte is then the sign and seven
# exponent bits, nearly constant), and a single plane cannot gain from it.
_ROTATE = {1: 0, 2: 1, 4: 1, 8: 0}
# Deltas: zigzag subtraction without rotation beat XOR for every dtype on
# noise and on real training steps (benchmarks/float_codec.py).
_DELTA_OP = floats.SUB
_DELTA_ROTATE = 0
# PLANES must beat the generic level-1 sample estimate by this factor, or the
# generic encoding is computed as well and the smaller one kept; so must
# PLANES below this ratio, where samples misjudge (long repeats) and zstd is
# fast anyway. Trained weights are far from both.
_PLANES_MARGIN = 0.97
_HIGHLY_COMPRESSIBLE = 0.25
# A delta must be estimated this much smaller than the plain tensor to be tried.
_DELTA_MARGIN = 0.95
BASE_ID_SIZE = 32

# zstd contexts are not thread-safe: one set per thread.
_local = threading.local()


def _compressors() -> dict[int, zstandard.ZstdCompressor]:
    c: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "c", None)
    if c is None:
        c = _local.c = {level: zstandard.ZstdCompressor(level=level) for level in (1, 2, LEVEL)}
    return c


def _plane_compressor() -> zstandard.ZstdCompressor:
    c: zstandard.ZstdCompressor | None = getattr(_local, "p", None)
    if c is None:
        params = zstandard.ZstdCompressionParameters.from_level(1, hash_log=6, min_match=7)
        c = _local.p = zstandard.ZstdCompressor(compression_params=params)
    return c


def _scratch() -> floats.Scratch:
    s: floats.Scratch | None = getattr(_local, "s", None)
    if s is None:
        s = _local.s = floats.Scratch()
    return s


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


def encode(data: bytes | memoryview) -> bytes:
    """A RAW or ZSTD payload: for any data."""
    compressors = _compressors()
    level = LEVEL
    if len(data) > 2 * _SAMPLE:
        ratio = len(compressors[1].compress(data[:_SAMPLE])) / _SAMPLE
        if ratio > _INCOMPRESSIBLE:
            return b"\x00" + bytes(data)
        if ratio > _POORLY_COMPRESSIBLE:
            level = 2
    packed = compressors[level].compress(data)
    if len(packed) < len(data) - len(data) // 32:
        return b"\x01" + packed
    return b"\x00" + bytes(data)


def _pack_planes(planes: floats.Planes) -> tuple[list[bytes | memoryview], bool]:
    """The plane section's parts, and whether any plane was compressed."""
    compressor = _plane_compressor()
    parts: list[bytes | memoryview] = []
    compressed = False
    for plane in planes:
        packed = compressor.compress(plane.data)
        if len(packed) < plane.size - plane.size // 32:
            parts += [_PLANE_HEAD.pack(_PLANE_ZSTD, len(packed)), packed]
            compressed = True
        else:
            parts += [_PLANE_HEAD.pack(_PLANE_RAW, plane.size), plane.data]
    return parts, compressed


def _plane_section(
    x: floats.Words, rotate: int, owned: bool = False
) -> tuple[list[bytes | memoryview], bool]:
    """The plane section's parts (raw planes are views of this thread's
    scratch: join them before the next transform) and whether any plane was
    compressed. ``x`` is rotated in place if ``owned`` (never the caller's data)."""
    scratch = _scratch()
    if rotate:
        out = x if owned else scratch.array("words", x.shape, x.dtype)
        x = floats.rotate_left(x, rotate, out, scratch)
    return _pack_planes(floats.split(x, scratch))


def _planes_size(x: floats.Words, rotate: int) -> int:
    """The size of the plane section of ``x`` (for estimates from samples)."""
    parts, _compressed = _plane_section(x, rotate)
    return sum(len(p) for p in parts)


def _sample_slices(n: int, width: int) -> list[slice]:
    """Four word ranges spread over ``n`` words, about ``_SAMPLE`` bytes in all."""
    piece = _SAMPLE // 4 // width
    step = (n - piece) // 3
    return [slice(i * step, i * step + piece) for i in range(4)]


def _sample(x: floats.Words) -> floats.Words:
    return np.concatenate([x[s] for s in _sample_slices(x.size, x.dtype.itemsize)])


def planes_payload(data: bytes | memoryview, width: int, rotate: int) -> bytes:
    """A PLANES payload, whatever its size (:func:`encode_tensor` chooses)."""
    floats.check_transform(width, rotate, len(data))
    parts, _compressed = _plane_section(floats.words(data, width), rotate)
    return b"".join([bytes([PLANES, width, rotate]), *parts])


def encode_tensor(data: bytes | memoryview, width: int) -> bytes:
    """A PLANES payload for a float tensor of ``width``-byte values, or what
    :func:`encode` gives if that is not larger (or PLANES not clearly smaller:
    for chunks over 128 KiB the generic size is estimated from a sample)."""
    floats.check_transform(width, 0, len(data))
    x = floats.words(data, width)
    rotate = _ROTATE[width]
    parts, compressed = _plane_section(x, rotate)
    if not compressed:
        return encode(data)  # no plane shrank: the bytes as a whole may still
    payload = b"".join([bytes([PLANES, width, rotate]), *parts])
    if len(data) > 2 * _SAMPLE and len(payload) > len(data) * _HIGHLY_COMPRESSIBLE:
        sample = _sample(x)
        estimate = len(_compressors()[1].compress(sample.data)) / sample.nbytes * len(data)
        if len(payload) <= estimate * _PLANES_MARGIN:
            return payload
    generic = encode(data)
    return payload if len(payload) < len(generic) else generic


def _check_delta(
    data: bytes | memoryview, base: bytes | memoryview, base_id: bytes, width: int
) -> None:
    floats.check_transform(width, 0, len(data))
    if len(base) != len(data):
        raise ValueError(f"a delta base must be as long as the data ({len(base)} != {len(data)})")
    if len(base_id) != BASE_ID_SIZE:
        raise ValueError(f"a base id has {BASE_ID_SIZE} bytes, not {len(base_id)}")


def delta_payload(
    data: bytes | memoryview,
    base: bytes | memoryview,
    base_id: bytes,
    width: int,
    op: int,
    rotate: int,
) -> bytes:
    """A DELTA payload, whatever its size (:func:`encode_delta` chooses)."""
    _check_delta(data, base, base_id, width)
    floats.check_transform(width, rotate, len(data))
    r = floats.residual(floats.words(data, width), floats.words(base, width), op, _scratch())
    parts, _compressed = _plane_section(r, rotate, owned=True)
    return b"".join([bytes([DELTA]), base_id, bytes([op, width, rotate]), *parts])


def encode_delta(
    data: bytes | memoryview, base: bytes | memoryview, base_id: bytes, width: int
) -> bytes | None:
    """A DELTA payload of ``data`` against ``base`` (the plaintext of blob
    ``base_id``, as long as ``data``), or None if it would likely not be
    smaller than :func:`encode_tensor`'s (exactly so for chunks up to 128
    KiB; larger ones are judged on samples at the same places of both)."""
    _check_delta(data, base, base_id, width)
    if not data:
        return None
    if len(data) > 2 * _SAMPLE:
        xs, bs = _sample(floats.words(data, width)), _sample(floats.words(base, width))
        tensor = _planes_size(xs, _ROTATE[width])
        delta = _planes_size(floats.residual(xs, bs, _DELTA_OP, _scratch()), _DELTA_ROTATE)
        if delta >= tensor * _DELTA_MARGIN:
            return None
        limit = tensor / xs.nbytes * len(data)
    else:
        limit = len(encode_tensor(data, width))
    payload = delta_payload(data, base, base_id, width, _DELTA_OP, _DELTA_ROTATE)
    return payload if len(payload) < limit else None


def delta_base(payload: bytes | memoryview) -> bytes | None:
    """The id of the blob that ``payload`` is a delta against, or None if it is
    not a delta (ValueError if it is too short to hold one)."""
    if not payload or payload[0] != DELTA:
        return None
    if len(payload) < 1 + BASE_ID_SIZE:
        raise ValueError("delta payload too short to hold its base id")
    return bytes(payload[1 : 1 + BASE_ID_SIZE])


def decode(
    payload: bytes | memoryview,
    raw_length: int,
    base: bytes | memoryview | None = None,
) -> bytes | memoryview:
    """Inverse of the encoders; ``raw_length`` bounds the output, and ``base``
    is the plaintext of the blob named by :func:`delta_base` (DELTA only).
    Stored data comes back as a slice of ``payload`` (no copy). ValueError
    for any malformed payload."""
    if not payload:
        raise ValueError("empty payload")
    flag = payload[0]
    if flag == RAW:
        if len(payload) - 1 > raw_length:
            raise ValueError(f"stored data longer than the blob's {raw_length} bytes")
        return payload[1:]
    if flag == ZSTD:
        frame = payload[1:]
        if _content_size(frame) > raw_length:  # else zstd would allocate all it claims
            raise ValueError(f"zstd frame holds more than the blob's {raw_length} bytes")
        return _unzstd(frame, raw_length)
    view = memoryview(payload)
    if flag == PLANES:
        if len(view) < 3:
            raise ValueError("PLANES payload truncated")
        width, rotate = view[1], view[2]
        return _decode_words(view, 3, width, rotate, raw_length, None, 0)
    if flag == DELTA:
        head = 1 + BASE_ID_SIZE + 3
        if len(view) < head:
            raise ValueError("DELTA payload truncated")
        op, width, rotate = view[head - 3], view[head - 2], view[head - 1]
        if op not in floats.OPS:
            raise ValueError(f"unknown delta operation {op}")
        if base is None:
            raise ValueError("a DELTA payload needs its base")
        return _decode_words(view, head, width, rotate, raw_length, base, op)
    raise ValueError(f"unknown payload flag {flag:#04x}")


def _content_size(frame: bytes | memoryview) -> int:
    """The size a zstd frame declares, -1 if it does not."""
    try:
        size: int = zstandard.frame_content_size(frame)
    except zstandard.ZstdError as err:
        raise ValueError(f"not a zstd frame: {err}") from None
    return size


def _unzstd(frame: bytes | memoryview, limit: int) -> bytes:
    """Exactly one zstd frame (nothing after it), of at most ``limit`` bytes."""
    try:
        out: bytes = _decompressor().decompress(
            frame, max_output_size=limit, allow_extra_data=False
        )
    except zstandard.ZstdError as err:
        raise ValueError(f"zstd frame does not decompress: {err}") from None
    return out


def _decode_words(
    view: memoryview,
    pos: int,
    width: int,
    rotate: int,
    raw_length: int,
    base: bytes | memoryview | None,
    op: int,
) -> memoryview:
    """The plane section at ``view[pos:]`` back to the plaintext."""
    floats.check_transform(width, rotate, 0)
    planes: list[bytes | memoryview] = []
    size: int | None = None  # of every plane, known from the first one
    for _ in range(width):
        if len(view) - pos < _PLANE_HEAD.size:
            raise ValueError("plane section truncated")
        mode, length = _PLANE_HEAD.unpack_from(view, pos)
        pos += _PLANE_HEAD.size
        if length > len(view) - pos:
            raise ValueError("plane truncated")
        stored = view[pos : pos + length]
        pos += length
        if mode == _PLANE_RAW:
            plane_size = length
        elif mode == _PLANE_ZSTD:
            plane_size = _content_size(stored)  # checked before zstd allocates it
            if plane_size < 0:
                raise ValueError("zstd plane without its content size")
        else:
            raise ValueError(f"unknown plane mode {mode}")
        if size is not None and plane_size != size:
            raise ValueError("planes of unequal length")
        if plane_size * width > raw_length:
            raise ValueError(f"planes hold more than the blob's {raw_length} bytes")
        if base is not None and plane_size * width != len(base):
            raise ValueError(f"delta of {plane_size * width} bytes against a base of {len(base)}")
        size = plane_size
        if mode == _PLANE_ZSTD:
            plane: bytes | memoryview = _unzstd(stored, size)
            if len(plane) != size:
                raise ValueError("zstd plane shorter than it declares")
        else:
            plane = stored
        planes.append(plane)
    if pos != len(view):
        raise ValueError("trailing bytes after the planes")
    scratch = _scratch()
    x = floats.join(planes, width, scratch)
    x = floats.rotate_right(x, rotate, x, scratch)
    if base is not None:
        x = floats.apply_residual(x, floats.words(base, width), op, scratch)
    return x.view(np.uint8).data
