"""Blob payload compression (zstd).

A payload is one flag byte then the data: ``0x00`` stored as is, ``0x01``
zstd frame. Readers need nothing else; how hard the writer compresses is its
own choice, made per chunk from a 64 KiB sample compressed at level 1:

- a sample that does not shrink (ratio above 0.97: media, encrypted or
  already compressed data) means the chunk is stored as is, unread by zstd;
- a sample that shrinks little (above 0.8: trained float weights) is
  compressed at level 2, because level 3's extra search finds nothing more
  in such data and costs a third more time;
- everything else (tables, text, code) gets level 3.

Data that zstd does not shrink by at least 1/32 is stored as is, so
incompressible data costs no decompression time on restore.
"""

from __future__ import annotations

import threading

import zstandard

RAW = 0
ZSTD = 1
LEVEL = 3
_SAMPLE = 64 * 1024
_INCOMPRESSIBLE = 0.97
_POORLY_COMPRESSIBLE = 0.8

# zstd contexts are not thread-safe: one set per thread.
_local = threading.local()


def _compressors() -> dict[int, zstandard.ZstdCompressor]:
    c: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "c", None)
    if c is None:
        c = _local.c = {level: zstandard.ZstdCompressor(level=level) for level in (1, 2, LEVEL)}
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


def encode(data: bytes | memoryview) -> bytes:
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


def decode(payload: bytes | memoryview, raw_length: int) -> bytes | memoryview:
    """Inverse of :func:`encode`; ``raw_length`` bounds the output. Stored data
    comes back as a slice of ``payload`` (no copy)."""
    if not payload:
        raise ValueError("empty payload")
    flag = payload[0]
    if flag == RAW:
        return payload[1:]
    if flag == ZSTD:
        return _decompressor().decompress(payload[1:], max_output_size=raw_length)
    raise ValueError(f"unknown payload flag {flag:#04x}")
