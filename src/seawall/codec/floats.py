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
    """``data`` as a read-only array of little-endian words (a view, no copy)."""
    return np.frombuffer(data, dtype=WORDS[width])


def rotate_left(x: Words, bits: int) -> Words:
    """Each word rotated left by ``bits`` within its width (a new array)."""
    if bits == 0:
        return x
    size = 8 * x.dtype.itemsize
    left: Words = np.left_shift(x, x.dtype.type(bits))
    left |= np.right_shift(x, x.dtype.type(size - bits))
    return left


def rotate_right(x: Words, bits: int) -> Words:
    return rotate_left(x, (8 * x.dtype.itemsize - bits) % (8 * x.dtype.itemsize))


def split(x: Words) -> Planes:
    """Byte planes, shape ``(width, n)``: row ``i`` holds byte ``i`` of every word."""
    width = x.dtype.itemsize
    return np.ascontiguousarray(x.view(np.uint8).reshape(-1, width).T)


def join(planes: Sequence[Bytes], width: int) -> Words:
    """Inverse of :func:`split`: ``width`` planes of equal length to words."""
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
    tmp = np.empty_like(acc)
    for i in range(1, width):
        np.copyto(tmp, rows[i], casting="unsafe")
        np.left_shift(tmp, dtype.type(8 * i), out=tmp)
        acc |= tmp
    return acc


def residual(x: Words, base: Words, op: int) -> Words:
    """What :func:`apply_residual` needs to rebuild ``x`` from ``base``.

    XOR: ``x ^ base``. SUB: the difference ``x - base`` modulo the word size,
    zigzag-coded (0, -1, 1, -2 ... map to 0, 1, 2, 3 ...) so that small
    steps either way have zero high bytes.
    """
    if op == XOR:
        return np.bitwise_xor(x, base)
    if op == SUB:
        d = np.subtract(x, base).view(_SIGNED[x.dtype.itemsize])
        sign = np.right_shift(d, 8 * x.dtype.itemsize - 1)  # arithmetic: 0 or -1
        np.left_shift(d, 1, out=d)
        d ^= sign
        return d.view(x.dtype)
    raise ValueError(f"unknown delta operation {op}")


def apply_residual(r: Words, base: Words, op: int) -> Words:
    """Inverse of :func:`residual`; may reuse ``r``'s memory."""
    if op == XOR:
        r ^= base
        return r
    if op == SUB:
        one = r.dtype.type(1)
        sign = np.bitwise_and(r, one).view(_SIGNED[r.dtype.itemsize])
        np.negative(sign, out=sign)  # 0 or -1: all ones
        np.right_shift(r, one, out=r)
        r ^= sign.view(r.dtype)
        r += base
        return r
    raise ValueError(f"unknown delta operation {op}")
