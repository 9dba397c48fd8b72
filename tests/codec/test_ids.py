"""Blob ids are keyed and deterministic; storage ids are plain hashes."""

from __future__ import annotations

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.codec.ids import ID_SIZE, blob_id, parse_hex_id, storage_id

keys = st.binary(min_size=32, max_size=32)


@settings(max_examples=60, deadline=None)
@given(key=keys, other_key=keys, data=st.binary(max_size=4096))
def test_blob_id_is_keyed_and_deterministic(key: bytes, other_key: bytes, data: bytes) -> None:
    bid = blob_id(key, data)
    assert len(bid) == ID_SIZE
    assert blob_id(key, data) == bid
    assert blob_id(key, memoryview(data)) == bid
    if other_key != key:
        assert blob_id(other_key, data) != bid
    # Without the key, the id is not the content's public hash.
    assert bid != storage_id(data)


@settings(max_examples=60, deadline=None)
@given(key=keys, a=st.binary(max_size=512), b=st.binary(max_size=512))
def test_different_content_different_id(key: bytes, a: bytes, b: bytes) -> None:
    if a != b:
        assert blob_id(key, a) != blob_id(key, b)


def test_storage_id_is_the_plain_hash() -> None:
    assert storage_id(b"abc") == blake3.blake3(b"abc").digest()
    assert storage_id(b"") == bytes.fromhex(
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    )


def test_parse_hex_id() -> None:
    raw = bytes(range(32))
    assert parse_hex_id(raw.hex()) == raw
    with pytest.raises(ValueError):
        parse_hex_id(raw.hex()[:-2])
    with pytest.raises(ValueError):
        parse_hex_id("zz" * 32)
