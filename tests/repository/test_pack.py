"""Packs: build, read the header back from the tail, open every blob; any damage is caught."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.codec.crypto import MasterKey, Sealer
from seawall.codec.ids import blob_id, storage_id
from seawall.errors import FormatError, IntegrityError
from seawall.repository.pack import (
    DATA,
    TRAILER_SIZE,
    TREE,
    PackBuilder,
    PackedBlob,
    open_blob,
    pack_name,
    parse_tail,
    tail_length,
)

MASTER = MasterKey(b"\x11" * 32)
KEY = MASTER.encryption_key

blob_contents = st.lists(
    st.tuples(
        st.sampled_from([DATA, TREE]),
        st.binary(max_size=600)
        | st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=4), st.integers(1, 500)),
    ),
    min_size=1,
    max_size=8,
)


def build(blobs: list[tuple[int, bytes]]) -> tuple[bytes, bytes, list[PackedBlob], list[bytes]]:
    builder = PackBuilder(KEY)
    contents = []
    for blob_type, data in blobs:
        builder.add(blob_type, blob_id(MASTER.id_key, data), data)
        contents.append(data)
    listed = list(builder.blobs)
    pack_id, packed = builder.finish()
    return pack_id, packed, listed, contents


def open_all(salt: bytes, listed: list[PackedBlob], packed: bytes) -> list[bytes]:
    sealer = Sealer(KEY, salt)
    return [open_blob(sealer, b, packed[b.offset : b.offset + b.length], "blob") for b in listed]


@settings(max_examples=40, deadline=None)
@given(blobs=blob_contents)
def test_pack_round_trip(blobs: list[tuple[int, bytes]]) -> None:
    pack_id, packed, listed, contents = build(blobs)
    assert pack_id == storage_id(packed)
    assert pack_name(pack_id) == f"data/{pack_id.hex()[:2]}/{pack_id.hex()}"
    salt, parsed = parse_tail(KEY, packed, len(packed))
    assert parsed == listed
    assert [b.raw_length for b in parsed] == [len(c) for c in contents]
    assert [b.type for b in parsed] == [t for t, _ in blobs]
    assert open_all(salt, parsed, packed) == contents
    # A reader needs only the tail: its length comes from the last bytes.
    n = tail_length(packed[-TRAILER_SIZE:])
    assert n <= len(packed)
    assert parse_tail(KEY, packed[-n:], len(packed)) == (salt, listed)


@settings(max_examples=60, deadline=None)
@given(blobs=blob_contents, data=st.data())
def test_any_damaged_byte_is_detected(blobs: list[tuple[int, bytes]], data: st.DataObject) -> None:
    pack_id, packed, listed, contents = build(blobs)
    pos = data.draw(st.integers(0, len(packed) - 1), label="pos")
    xor = data.draw(st.integers(1, 255), label="xor")
    bad = bytearray(packed)
    bad[pos] ^= xor
    assert storage_id(bytes(bad)) != pack_id  # the name no longer matches either
    data_end = listed[-1].offset + listed[-1].length
    try:
        salt, parsed = parse_tail(KEY, bytes(bad), len(bad))
    except (IntegrityError, FormatError):
        assert pos >= data_end  # only damage to the header or trailer breaks the header
        return
    assert pos < data_end
    assert parsed == listed
    hit = [b for b in listed if b.offset <= pos < b.offset + b.length]
    assert len(hit) == 1
    sealer = Sealer(KEY, salt)
    for b, content in zip(listed, contents, strict=True):
        sealed = bytes(bad[b.offset : b.offset + b.length])
        if b is hit[0]:
            with pytest.raises(IntegrityError):
                open_blob(sealer, b, sealed, "blob")
        else:
            assert open_blob(sealer, b, sealed, "blob") == content


def test_blob_is_bound_to_its_type_and_id() -> None:
    _, packed, listed, _ = build([(DATA, b"hello world"), (TREE, b'{"nodes":[]}')])
    salt, _ = parse_tail(KEY, packed, len(packed))
    sealer = Sealer(KEY, salt)
    b = listed[0]
    sealed = packed[b.offset : b.offset + b.length]
    with pytest.raises(IntegrityError):
        open_blob(sealer, PackedBlob(TREE, b.id, b.offset, b.length, b.raw_length), sealed, "blob")
    with pytest.raises(IntegrityError):
        open_blob(
            sealer,
            PackedBlob(DATA, os.urandom(32), b.offset, b.length, b.raw_length),
            sealed,
            "blob",
        )
    with pytest.raises(IntegrityError):  # a blob moved to another pack (another salt)
        open_blob(Sealer(KEY, os.urandom(16)), b, sealed, "blob")


def test_wrong_key_cannot_read_the_header() -> None:
    _, packed, _, _ = build([(DATA, b"x" * 100)])
    with pytest.raises(IntegrityError):
        parse_tail(MasterKey(b"\x22" * 32).encryption_key, packed, len(packed))


def test_truncated_pack_is_rejected() -> None:
    _, packed, _, _ = build([(DATA, os.urandom(300)), (DATA, os.urandom(300))])
    for cut in [1, 10, TRAILER_SIZE, TRAILER_SIZE + 5, len(packed) // 2, len(packed) - 1]:
        with pytest.raises((IntegrityError, FormatError)):
            parse_tail(KEY, packed[: len(packed) - cut], len(packed) - cut)
    with pytest.raises(FormatError):
        parse_tail(KEY, b"short", 5)


def test_absurd_header_length_is_rejected() -> None:
    trailer = b"\x00" * 16 + (2**31).to_bytes(4, "little")
    with pytest.raises(FormatError):
        tail_length(trailer)
    with pytest.raises(FormatError):
        parse_tail(KEY, b"\x00" * 100 + trailer, 120)


def test_builder_size_and_reuse() -> None:
    builder = PackBuilder(KEY)
    assert builder.size == 0
    data = os.urandom(1000)
    blob = builder.add(DATA, blob_id(MASTER.id_key, data), data)
    assert builder.size == blob.length == 1000 + 1 + 28  # flag byte, nonce and tag
    _pack_id, packed = builder.finish()
    assert len(packed) > builder.size
