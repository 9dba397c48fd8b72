"""The index: which pack holds each blob.

An index object's plaintext (before compression and sealing)::

    magic "SWIX" | version u8 = 1 | 3 zero bytes
    n_supersedes u32 | n_supersedes x index id [32]
    n_packs u32      | n_packs x (pack id [32] | pack size u64 | pack salt [16])
    n_blobs u64      | n_blobs x record (49 bytes, see BLOB_DTYPE), sorted by blob id

Writers sort records by id (readers must not rely on it, but loading is
fastest when they are sorted).
It is then encoded like a blob payload (flag byte + zstd) and sealed with
associated data ``b"seawall index"``. Index objects are named by the hash of
their stored bytes. An index that supersedes others makes them redundant:
prune writes one before it deletes them, so a crash in between only leaves
duplicates, never a gap.

In memory, the master index keeps every entry in one sorted numpy array (49
bytes per blob, no Python object per blob), so a repository of 10 million
chunks holds about 500 MB once open (benchmarks/index_memory.py measures the
peak), and lookups are binary searches.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from seawall.errors import FormatError
from seawall.repository.pack import PackedBlob

BLOB_DTYPE = np.dtype(
    [
        ("id", "S32"),
        ("pack", "<u4"),
        ("offset", "<u4"),
        ("length", "<u4"),
        ("raw_length", "<u4"),
        ("type", "u1"),
    ]
)
assert BLOB_DTYPE.itemsize == 49
INDEX_AAD = b"seawall index"
_MAGIC = b"SWIX\x01\x00\x00\x00"
_PACK = struct.Struct("<32sQ16s")

Entries = npt.NDArray[np.void]


def _full_id(value: bytes) -> bytes:
    # numpy's S32 strips trailing NULs on access; ids are always 32 bytes.
    return bytes(value).ljust(32, b"\0")


@dataclass(frozen=True)
class BlobLocation:
    pack_id: bytes
    pack_salt: bytes
    type: int
    offset: int
    length: int
    raw_length: int

    def as_packed(self, blob_id: bytes) -> PackedBlob:
        return PackedBlob(self.type, blob_id, self.offset, self.length, self.raw_length)


@dataclass
class IndexObject:
    """One index object: packs with their blobs."""

    packs: list[tuple[bytes, int, bytes]] = field(default_factory=list)
    entries: Entries = field(default_factory=lambda: np.zeros(0, BLOB_DTYPE))
    supersedes: list[bytes] = field(default_factory=list)

    @classmethod
    def from_packs(
        cls,
        packs: Iterable[tuple[bytes, int, bytes, list[PackedBlob]]],
        supersedes: Iterable[bytes] = (),
    ) -> IndexObject:
        pack_list: list[tuple[bytes, int, bytes]] = []
        rows = []
        for pack_id, size, salt, blobs in packs:
            n = len(pack_list)
            pack_list.append((pack_id, size, salt))
            rows.extend((b.id, n, b.offset, b.length, b.raw_length, b.type) for b in blobs)
        return cls(pack_list, np.array(rows, dtype=BLOB_DTYPE), list(supersedes))

    def encode(self) -> bytes:
        parts = [_MAGIC, struct.pack("<I", len(self.supersedes)), *self.supersedes]
        parts.append(struct.pack("<I", len(self.packs)))
        parts.extend(_PACK.pack(*p) for p in self.packs)
        parts.append(struct.pack("<Q", len(self.entries)))
        # Sorted by id: loading many index objects is then a cheap merge of sorted runs.
        order = np.argsort(self.entries["id"], kind="stable")
        parts.append(self.entries[order].astype(BLOB_DTYPE).tobytes())
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> IndexObject:
        try:
            if data[:8] != _MAGIC:
                raise FormatError("index object has an unknown magic or version")
            pos = 8
            (n_sup,) = struct.unpack_from("<I", data, pos)
            pos += 4
            supersedes = [data[pos + 32 * i : pos + 32 * (i + 1)] for i in range(n_sup)]
            pos += 32 * n_sup
            (n_packs,) = struct.unpack_from("<I", data, pos)
            pos += 4
            packs = [_PACK.unpack_from(data, pos + _PACK.size * i) for i in range(n_packs)]
            pos += _PACK.size * n_packs
            (n_blobs,) = struct.unpack_from("<Q", data, pos)
            pos += 8
            if len(data) - pos != n_blobs * BLOB_DTYPE.itemsize:
                raise FormatError("index object has a wrong length")
            entries = np.frombuffer(data, BLOB_DTYPE, count=n_blobs, offset=pos)
        except struct.error as err:
            raise FormatError(f"index object is truncated: {err}") from None
        if n_blobs and int(entries["pack"].max()) >= n_packs:
            raise FormatError("index object references a pack it does not list")
        return cls([(bytes(p), int(n), bytes(s)) for p, n, s in packs], entries, supersedes)


class MasterIndex:
    """Every known blob, from all index objects plus what this process added.

    Thread-safe. Entries added during a session wait in a dict and are merged
    into the sorted array in batches.
    """

    _MERGE_AT = 65536

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pack_ids: list[bytes] = []
        self.pack_sizes: list[int] = []
        self.pack_salts: list[bytes] = []
        self._pack_no: dict[bytes, int] = {}
        self._sorted: Entries = np.zeros(0, BLOB_DTYPE)
        self._pending: list[Entries] = []
        self._pending_ids: dict[bytes, tuple[int, int, int, int, int]] = {}
        self.loaded_index_ids: set[bytes] = set()

    def _pack_number(self, pack_id: bytes, size: int, salt: bytes) -> int:
        n = self._pack_no.get(pack_id)
        if n is None:
            n = self._pack_no[pack_id] = len(self.pack_ids)
            self.pack_ids.append(pack_id)
            self.pack_sizes.append(size)
            self.pack_salts.append(salt)
        return n

    def add_index(self, index_id: bytes | None, obj: IndexObject) -> None:
        with self._lock:
            remap = np.array([self._pack_number(*p) for p in obj.packs] or [0], dtype="<u4")
            entries = obj.entries.copy()
            if len(entries):
                entries["pack"] = remap[entries["pack"]]
                self._pending.append(entries)
            if index_id is not None:
                self.loaded_index_ids.add(index_id)
            # Merged on first lookup: one merge for however many index objects are loaded.

    def add_pack(self, pack_id: bytes, size: int, salt: bytes, blobs: list[PackedBlob]) -> None:
        with self._lock:
            n = self._pack_number(pack_id, size, salt)
            for b in blobs:
                self._pending_ids.setdefault(b.id, (n, b.offset, b.length, b.raw_length, b.type))
            if len(self._pending_ids) >= self._MERGE_AT:
                self._maybe_merge(force=True)

    def _maybe_merge(self, force: bool) -> None:
        if not force:
            return
        parts = [self._sorted, *self._pending]
        if self._pending_ids:
            rows = [(k, *v) for k, v in self._pending_ids.items()]
            parts.append(np.array(rows, dtype=BLOB_DTYPE))
        merged = np.concatenate(parts)
        # Stable sort (timsort) is fast on a concatenation of sorted runs.
        merged = merged[np.argsort(merged["id"], kind="stable")]
        if len(merged) > 1:
            # The same blob may sit in several packs (concurrent writers); keep one.
            keep = np.ones(len(merged), dtype=bool)
            keep[1:] = merged["id"][1:] != merged["id"][:-1]
            merged = merged[keep]
        self._sorted = merged
        self._pending = []
        self._pending_ids = {}

    def _find(self, blob_id: bytes) -> tuple[int, int, int, int, int] | None:
        hit = self._pending_ids.get(blob_id)
        if hit is not None:
            return hit
        if self._pending:
            self._maybe_merge(force=True)
        arr = self._sorted
        i = int(np.searchsorted(arr["id"], blob_id))
        if i < len(arr) and _full_id(arr["id"][i]) == blob_id:
            row = arr[i]
            return (int(row["pack"]), int(row["offset"]), int(row["length"]),
                    int(row["raw_length"]), int(row["type"]))
        return None

    def has(self, blob_id: bytes) -> bool:
        with self._lock:
            return self._find(blob_id) is not None

    def has_all(self, blob_ids: list[bytes]) -> bool:
        """Whether every id is known, with one vectorized search."""
        if not blob_ids:
            return True
        with self._lock:
            if self._pending:
                self._maybe_merge(force=True)
            rest = [b for b in blob_ids if b not in self._pending_ids]
            if not rest:
                return True
            keys = self._sorted["id"]
            wanted = np.array(rest, dtype="S32")
            pos = np.searchsorted(keys, wanted)
            if (pos >= len(keys)).any():
                return False
            return bool((keys[pos] == wanted).all())

    def lookup(self, blob_id: bytes) -> BlobLocation | None:
        with self._lock:
            hit = self._find(blob_id)
            if hit is None:
                return None
            pack, offset, length, raw, btype = hit
            return BlobLocation(self.pack_ids[pack], self.pack_salts[pack], btype, offset, length, raw)

    def entries(self) -> Entries:
        """All entries (merged, sorted by id, one per blob); ``pack`` indexes ``pack_ids``."""
        with self._lock:
            self._maybe_merge(force=bool(self._pending or self._pending_ids))
            return self._sorted

    def packs(self) -> list[tuple[bytes, int, bytes]]:
        """(id, size, salt) of every pack; position i is pack number i in entries()."""
        with self._lock:
            return list(zip(self.pack_ids, self.pack_sizes, self.pack_salts, strict=True))

    def has_pack(self, pack_id: bytes) -> bool:
        with self._lock:
            return pack_id in self._pack_no

    def __len__(self) -> int:
        return len(self.entries())
