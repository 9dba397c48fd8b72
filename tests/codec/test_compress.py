"""zstd payloads: round trips, and incompressible data stored raw."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.codec import compress


@settings(max_examples=80, deadline=None)
@given(
    st.binary(max_size=8192)
    | st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=16), st.integers(1, 2000))
)
def test_round_trip(data: bytes) -> None:
    payload = compress.encode(data)
    assert payload[0] in (compress.RAW, compress.ZSTD)
    assert compress.decode(payload, len(data)) == data
    assert compress.decode(compress.encode(memoryview(data)), len(data)) == data
    # Never more than one byte over the input.
    assert len(payload) <= len(data) + 1


def test_empty() -> None:
    payload = compress.encode(b"")
    assert payload == b"\x00"
    assert compress.decode(payload, 0) == b""


def test_incompressible_is_stored_raw() -> None:
    data = os.urandom(256 * 1024)
    payload = compress.encode(data)
    assert payload[0] == compress.RAW
    assert payload[1:] == data
    assert compress.decode(payload, len(data)) == data


def test_highly_compressible_is_compressed() -> None:
    data = b"seawall " * 128 * 1024
    payload = compress.encode(data)
    assert payload[0] == compress.ZSTD
    assert len(payload) < len(data) // 100
    assert compress.decode(payload, len(data)) == data


def test_barely_compressible_is_stored_raw() -> None:
    """Saving less than 1/32 is not worth a decompression: stored raw."""
    rng = random.Random(1)
    data = bytes(rng.getrandbits(8) for _ in range(30_000)) + b"\x00" * 200
    payload = compress.encode(data)
    assert payload[0] == compress.RAW
    assert compress.decode(payload, len(data)) == data


def test_unknown_flag_is_rejected() -> None:
    with pytest.raises(ValueError, match="flag"):
        compress.decode(b"\x07abc", 3)
    with pytest.raises(ValueError):
        compress.decode(b"", 0)


def test_threads_each_use_their_own_context() -> None:
    from concurrent.futures import ThreadPoolExecutor

    inputs = [bytes([i]) * (1000 + i) + os.urandom(50) for i in range(64)]
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda d: compress.decode(compress.encode(d), len(d)), inputs))
    assert outs == inputs
