"""Bit transforms that make float tensors compressible: byte planes and deltas.

zstd barely shrinks trained weights read as a byte stream, because every
value interleaves a few predictable exponent bits with many noisy mantissa
bits. Read the tensor as little-endian words of its width instead, rotate
each word left by one bit (the sign moves to the bottom, so for fp32 and
bf16 the top byte is exactly the exponent) and split the words into byte
planes: the exponent plane then compresses to about a third, and the
mantissa planes, which do not compress, can be stored as they are.

A checkpoint that descends from another one differs from it a little in
every weight. The residual of each word against its parent's word (the
XOR, or the zigzag-coded difference of the bit patterns) has mostly zero
high bytes, which the planes turn into runs of zeros.

Everything here is lossless on bit patterns (NaN payloads, infinities,
denormals and negative zeros come back as they went in) and works on any
``width`` in :data:`WORDS`, whatever the float format: the transforms never
interpret a word as a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

# Word dtypes by width in bytes; little-endian whatever the host, as stored.
WORDS: dict[int, np.dtype[Any]] = {w: np.dtype(f"<u{w}") for w in (1, 2, 4, 8)}
_SIGNED: dict[int, np.dtype[Any]] = {w: np.dtype(f"<i{w}") for w in (1, 2, 4, 8)}
XOR = 1
SUB = 2
OPS = (XOR, SUB)

Words = npt.NDArray[Any]
Bytes = bytes | bytearray | memoryview
Planes = npt.NDArray[np.uint8]


def check_transform(width: int, rotate: int, length: int) -> None:
    """ValueError unless ``width``/``rotate`` are valid and ``length`` is whole words."""
    if width not in WORDS:
        raise ValueError(f"unsupported word width {width}")
    if not 0 <= rotate < 8 * width:
        raise ValueError(f"rotation {rotate} out of range for {width}-byte words")
    if length % width:
        raise ValueError(f"{length} bytes is not a whole number of {width}-byte words")


def words(data: Bytes, width: int) -> Words:
    """``data`` as an array of little-endian words (a view, no copy: the
    transforms below never write to their inputs)."""
    return np.frombuffer(data, dtype=WORDS[width])


class Scratch:
    """Reusable work arrays for the transforms below: ``words`` (a rotated or
    residual copy of the input), ``planes``, and ``tmp`` (inside one call).
    A fresh array of a few MiB costs page faults that double the transforms'
    time. Not thread-safe: one per thread."""

    LIMIT = 8 * 1024 * 1024  # larger requests get fresh arrays: no pinned giants

    def __init__(self) -> None:
        self._buffers: dict[str, npt.NDArray[np.uint8]] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
        """An uninitialised array, valid until the next request for ``name``."""
        nbytes = int(np.prod(shape)) * dtype.itemsize
        if nbytes > self.LIMIT:
            return np.empty(shape, dtype=dtype)
        buf = self._buffers.get(name)
        if buf is None or buf.size < nbytes:
            buf = self._buffers[name] = np.empty(max(nbytes, 1 << 20), dtype=np.uint8)
        return buf[:nbytes].view(dtype).reshape(shape)


def _work(
    scratch: Scratch | None, name: str, shape: tuple[int, ...], dtype: np.dtype[Any]
) -> npt.NDArray[Any]:
    return np.empty(shape, dtype=dtype) if scratch is None else scratch.array(name, shape, dtype)


def rotate_left(
    x: Words, bits: int, out: Words | None = None, scratch: Scratch | None = None
) -> Words:
    """Each word rotated left by ``bits`` within its width, into ``out`` (which
    may be ``x``; by default a new array). With ``bits`` 0 this is ``x`` itself."""
    size = 8 * x.dtype.itemsize
    bits %= size
    if bits == 0:
        return x
    tmp = _work(scratch, "tmp", x.shape, x.dtype)
    np.right_shift(x, x.dtype.type(size - bits), out=tmp)
    left: Words = np.left_shift(x, x.dtype.type(bits), out=out)
    left |= tmp
    return left


def rotate_right(
    x: Words, bits: int, out: Words | None = None, scratch: Scratch | None = None
) -> Words:
    return rotate_left(x, 8 * x.dtype.itemsize - bits, out, scratch)


def split(x: Words, scratch: Scratch | None = None) -> Planes:
    """Byte planes, shape ``(width, n)``: row ``i`` holds byte ``i`` of every word."""
    width = x.dtype.itemsize
    planes: Planes = _work(scratch, "planes", (width, x.size), np.dtype(np.uint8))
    if width == 8:
        np.copyto(planes, x.view(np.uint8).reshape(-1, width).T)
        return planes
    # Up to 4 bytes, a shift and a truncating cast per plane run vectorised, and
    # beat the strided byte gather above (2x at width 2).
    np.copyto(planes[0], x, casting="unsafe")
    if width > 1:
        tmp = _work(scratch, "tmp", x.shape, x.dtype)
        for i in range(1, width):
            np.right_shift(x, x.dtype.type(8 * i), out=tmp)
            np.copyto(planes[i], tmp, casting="unsafe")
    return planes


def join(planes: Sequence[Bytes], width: int, scratch: Scratch | None = None) -> Words:
    """Inverse of :func:`split`: ``width`` planes of equal length to words (a new array)."""
    dtype = WORDS[width]
    rows = [np.frombuffer(p, dtype=np.uint8) for p in planes]
    if width == 1:
        return rows[0].copy()
    if width == 8:
        # Strided byte stores beat eight 64-bit shift passes at this width.
        out = np.empty((rows[0].size, width), dtype=np.uint8)
        for i, row in enumerate(rows):
            out[:, i] = row
        return out.reshape(-1).view(dtype)
    acc = rows[0].astype(dtype)
    tmp = _work(scratch, "tmp", acc.shape, dtype)
    for i in range(1, width):
        np.copyto(tmp, rows[i], casting="unsafe")
        np.left_shift(tmp, dtype.type(8 * i), out=tmp)
        acc |= tmp
    return acc


def residual(x: Words, base: Words, op: int, scratch: Scratch | None = None) -> Words:
    """What :func:`apply_residual` needs to rebuild ``x`` from ``base``.

    XOR: ``x ^ base``. SUB: the difference ``x - base`` modulo the word size,
    zigzag-coded (0, -1, 1, -2 ... map to 0, 1, 2, 3 ...) so that small
    steps either way have zero high bytes.
    """
    out = _work(scratch, "words", x.shape, x.dtype)
    if op == XOR:
        np.bitwise_xor(x, base, out=out)
        return out
    if op == SUB:
        np.subtract(x, base, out=out)
        d = out.view(_SIGNED[x.dtype.itemsize])
        sign = _work(scratch, "tmp", d.shape, d.dtype)
        np.right_shift(d, 8 * x.dtype.itemsize - 1, out=sign)  # arithmetic: 0 or -1
        np.left_shift(d, 1, out=d)
        d ^= sign
        return out
    raise ValueError(f"unknown delta operation {op}")


def apply_residual(r: Words, base: Words, op: int, scratch: Scratch | None = None) -> Words:
    """Inverse of :func:`residual`, in place in ``r``."""
    if op == XOR:
        r ^= base
        return r
    if op == SUB:
        one = r.dtype.type(1)
        sign = _work(scratch, "tmp", r.shape, r.dtype)
        np.bitwise_and(r, one, out=sign)
        signed = sign.view(_SIGNED[r.dtype.itemsize])
        np.negative(signed, out=signed)  # 0 or -1: all ones
        np.right_shift(r, one, out=r)
        r ^= sign
        r += base
        return r
    raise ValueError(f"unknown delta operation {op}")
