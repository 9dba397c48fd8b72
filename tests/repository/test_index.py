"""Index objects (binary round trip, damage -> FormatError) and the in-memory MasterIndex."""

from __future__ import annotations

import contextlib
import os
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.errors import FormatError
from seawall.repository.index import BLOB_DTYPE, IndexObject, MasterIndex
from seawall.repository.pack import DATA, TREE, PackedBlob

# Ids that end in NUL bytes matter: numpy's S32 strips them on access.
ids = st.binary(min_size=32, max_size=32) | st.builds(
    lambda head, n: (head + b"\x00" * 32)[:32], st.binary(max_size=31), st.integers(0, 31)
)
blobs = st.builds(
    PackedBlob,
    st.sampled_from([DATA, TREE]),
    ids,
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
)
packs = st.lists(
    st.tuples(
        st.binary(min_size=32, max_size=32),
        st.integers(0, 2**64 - 1),
        st.binary(min_size=16, max_size=16),
        st.lists(blobs, max_size=6),
    ),
    max_size=5,
)


def full(value: bytes) -> bytes:
    return bytes(value).ljust(32, b"\0")


def rows(obj: IndexObject) -> list[tuple[bytes, int, int, int, int, int]]:
    return [
        (
            full(r["id"]),
            int(r["pack"]),
            int(r["offset"]),
            int(r["length"]),
            int(r["raw_length"]),
            int(r["type"]),
        )
        for r in obj.entries
    ]


@settings(max_examples=80, deadline=None)
@given(packs=packs, supersedes=st.lists(st.binary(min_size=32, max_size=32), max_size=4))
def test_index_object_round_trip(
    packs: list[tuple[bytes, int, bytes, list[PackedBlob]]], supersedes: list[bytes]
) -> None:
    obj = IndexObject.from_packs(packs, supersedes)
    decoded = IndexObject.decode(obj.encode())
    assert decoded.supersedes == supersedes
    assert decoded.packs == [(p, size, salt) for p, size, salt, _ in packs]
    expected = [
        (b.id, n, b.offset, b.length, b.raw_length, b.type)
        for n, (_, _, _, bl) in enumerate(packs)
        for b in bl
    ]
    # Records may be reordered (the encoder sorts them by id); none is lost or changed.
    assert sorted(rows(decoded)) == sorted(rows(obj)) == sorted(expected)
    assert decoded.encode() == obj.encode()


def sample_index() -> bytes:
    blob_list = [PackedBlob(DATA, os.urandom(32), i * 100, 100, 90) for i in range(3)]
    return IndexObject.from_packs(
        [
            (os.urandom(32), 1000, os.urandom(16), blob_list),
            (os.urandom(32), 500, os.urandom(16), blob_list[:1]),
        ],
        supersedes=[os.urandom(32)],
    ).encode()


def test_truncated_index_is_a_format_error() -> None:
    data = sample_index()
    for n in range(len(data)):
        with pytest.raises(FormatError):
            IndexObject.decode(data[:n])
    with pytest.raises(FormatError):
        IndexObject.decode(data + b"\x00")


def test_garbled_index_is_a_format_error() -> None:
    data = sample_index()
    with pytest.raises(FormatError, match="magic"):
        IndexObject.decode(b"XXXX" + data[4:])
    with pytest.raises(FormatError, match="magic"):
        IndexObject.decode(data[:4] + b"\x03" + data[5:])  # a future version
    with pytest.raises(FormatError):
        IndexObject.decode(data[:4] + b"\x02" + data[5:])  # version 2 without its bases table
    # Counts that claim more than the object holds (must fail fast, not allocate).
    for offset, fmt in [(8, "<I"), (8 + 4 + 32, "<I")]:
        for value in (2**32 - 1, 2**31, 1000):
            garbled = bytearray(data)
            struct.pack_into(fmt, garbled, offset, value)
            with pytest.raises(FormatError):
                IndexObject.decode(bytes(garbled))
    n_blobs_at = 8 + 4 + 32 + 4 + 2 * 56
    for value in (2**64 - 1, 5, 3, 0):  # it holds 4
        garbled = bytearray(data)
        struct.pack_into("<Q", garbled, n_blobs_at, value)
        with pytest.raises(FormatError):
            IndexObject.decode(bytes(garbled))
    # An entry naming a pack the index does not list.
    garbled = bytearray(data)
    first_entry = n_blobs_at + 8
    struct.pack_into("<I", garbled, first_entry + 32, 7)
    with pytest.raises(FormatError, match="pack"):
        IndexObject.decode(bytes(garbled))


@settings(max_examples=100, deadline=None)
@given(
    st.binary(max_size=300)
    | st.builds(lambda b: b"SWIX\x01\x00\x00\x00" + b, st.binary(max_size=300))
)
def test_garbage_only_ever_raises_format_error(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        IndexObject.decode(data)


def pack_of(n_blobs: int) -> tuple[bytes, int, bytes, list[PackedBlob]]:
    return (
        os.urandom(32),
        4096,
        os.urandom(16),
        [PackedBlob(DATA, os.urandom(32), i * 40, 40, 12 + i) for i in range(n_blobs)],
    )


def check_all(mi: MasterIndex, packs: list[tuple[bytes, int, bytes, list[PackedBlob]]]) -> None:
    for pack_id, _size, salt, blob_list in packs:
        for b in blob_list:
            assert mi.has(b.id)
            loc = mi.lookup(b.id)
            assert loc is not None
            assert (loc.pack_id, loc.pack_salt) == (pack_id, salt)
            assert loc.as_packed(b.id) == b


def test_master_index_add_pack_and_lookup() -> None:
    mi = MasterIndex()
    packs = [pack_of(5), pack_of(3)]
    for p in packs:
        mi.add_pack(*p)
    check_all(mi, packs)
    assert not mi.has(os.urandom(32))
    assert mi.lookup(os.urandom(32)) is None
    assert len(mi) == 8
    assert all(mi.has_pack(p[0]) for p in packs)
    assert not mi.has_pack(os.urandom(32))
    assert [p[0] for p in mi.packs()] == [p[0] for p in packs]
    check_all(mi, packs)  # still right after entries() merged everything


def test_master_index_add_index() -> None:
    mi = MasterIndex()
    packs = [pack_of(4), pack_of(2)]
    index_id = os.urandom(32)
    mi.add_index(index_id, IndexObject.decode(IndexObject.from_packs(packs).encode()))
    assert index_id in mi.loaded_index_ids
    check_all(mi, packs)
    later = [pack_of(3)]
    mi.add_pack(*later[0])
    check_all(mi, packs + later)
    assert len(mi) == 9
    entries = mi.entries()
    assert [full(i) for i in entries["id"]] == sorted(full(i) for i in entries["id"])


def test_master_index_merges_past_the_batch_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MasterIndex, "_MERGE_AT", 4)
    mi = MasterIndex()
    packs = []
    for i in range(12):
        p = pack_of(3)
        packs.append(p)
        if i % 3:
            mi.add_pack(*p)
        else:
            mi.add_index(None, IndexObject.from_packs([p]))
        # Blobs added one pack at a time join the sorted table in batches.
        assert len(mi._pending_ids) < 4
        if i % 4 == 3:
            check_all(mi, packs)  # lookups between merges see everything added so far
    check_all(mi, packs)
    assert len(mi) == 36
    entries = mi.entries()
    assert [full(i) for i in entries["id"]] == sorted(
        full(i) for p in packs for i in [b.id for b in p[3]]
    )


def test_master_index_keeps_duplicates_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MasterIndex, "_MERGE_AT", 2)
    mi = MasterIndex()
    shared = os.urandom(32)
    nul_id = b"\x05" + b"\x00" * 31
    packs = []
    for _ in range(4):
        pid, size, salt, blob_list = pack_of(2)
        blob_list += [PackedBlob(DATA, shared, 80, 40, 7), PackedBlob(TREE, nul_id, 120, 40, 9)]
        packs.append((pid, size, salt, blob_list))
    mi.add_pack(*packs[0])
    mi.add_index(None, IndexObject.from_packs(packs[1:3]))
    mi.add_pack(*packs[3])
    assert len(mi) == 4 * 2 + 2
    ids = [full(i) for i in mi.entries()["id"]]
    assert ids.count(shared) == 1
    assert ids.count(nul_id) == 1
    for bid, raw in [(shared, 7), (nul_id, 9)]:
        loc = mi.lookup(bid)
        assert loc is not None
        assert loc.raw_length == raw
        assert loc.pack_id in {p[0] for p in packs}
    # The pack a duplicate was kept from really holds it.
    loc = mi.lookup(shared)
    assert loc is not None and loc.offset == 80


def test_master_index_entries_dtype() -> None:
    mi = MasterIndex()
    mi.add_pack(*pack_of(2))
    assert mi.entries().dtype == BLOB_DTYPE
    assert isinstance(mi.entries(), np.ndarray)


def test_delta_bases_round_trip_in_version_2() -> None:
    from seawall.repository.pack import DELTA

    base, delta = os.urandom(32), os.urandom(32)
    blobs = [PackedBlob(DATA, base, 0, 100, 90), PackedBlob(DELTA, delta, 100, 50, 90, base)]
    obj = IndexObject.from_packs([(os.urandom(32), 1000, os.urandom(16), blobs)])
    data = obj.encode()
    assert data[4] == 2
    back = IndexObject.decode(data)
    assert back.bases == {delta: base}
    for n in range(len(data) - 70, len(data)):
        with pytest.raises(FormatError):
            IndexObject.decode(data[:n])
    # Without deltas the object stays version 1, byte for byte as before.
    assert (
        IndexObject.from_packs([(os.urandom(32), 1000, os.urandom(16), blobs[:1])]).encode()[4] == 1
    )
    index = MasterIndex()
    index.add_index(None, back)
    ids = np.array(sorted([delta]), dtype="S32")
    assert {bytes(i).ljust(32, b"\0") for i in index.with_bases(ids)} == {delta, base}
