"""Blob payload compression (zstd).

A payload is one flag byte then the data: ``0x00`` stored as is, ``0x01``
zstd frame. Data that zstd does not shrink by at least 1/32 is stored as is,
so incompressible data (trained weights, media) costs no decompression time.
"""

from __future__ import annotations

import threading

import zstandard

RAW = 0
ZSTD = 1
LEVEL = 3

# zstd contexts are not thread-safe: one per thread.
_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    c = getattr(_local, "c", None)
    if c is None:
        c = _local.c = zstandard.ZstdCompressor(level=LEVEL)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


def encode(data: bytes | memoryview) -> bytes:
    packed = _compressor().compress(data)
    if len(packed) < len(data) - len(data) // 32:
        return b"\x01" + packed
    return b"\x00" + bytes(data)


def decode(payload: bytes, raw_length: int) -> bytes:
    """Inverse of :func:`encode`; ``raw_length`` bounds the output."""
    flag = payload[:1]
    if flag == b"\x00":
        return payload[1:]
    if flag == b"\x01":
        return _decompressor().decompress(payload[1:], max_output_size=raw_length)
    raise ValueError(f"unknown payload flag {flag!r}")
