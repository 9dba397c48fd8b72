"""The index: which pack holds each blob.

An index object's plaintext (before compression and sealing)::

    magic "SWIX" | version u8 = 1 or 2 | 3 zero bytes
    n_supersedes u32 | n_supersedes x index id [32]
    n_packs u32      | n_packs x (pack id [32] | pack size u64 | pack salt [16])
    n_blobs u64      | n_blobs x record (49 bytes, see BLOB_DTYPE), sorted by blob id
    version 2 only:
    n_bases u64      | n_bases x (delta blob id [32] | its base blob id [32])

Version 2 is written only when the object lists delta blobs (whose bases
prune must keep: they are inside the encrypted payloads otherwise).

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

import contextlib
import ctypes
import struct
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from seawall.errors import FormatError
from seawall.repository.pack import DELTA, PackedBlob

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
_MAGIC_V2 = b"SWIX\x02\x00\x00\x00"
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
    """One index object: packs with their blobs, and the bases of its delta blobs."""

    packs: list[tuple[bytes, int, bytes]] = field(default_factory=list)
    entries: Entries = field(default_factory=lambda: np.zeros(0, BLOB_DTYPE))
    supersedes: list[bytes] = field(default_factory=list)
    bases: dict[bytes, bytes] = field(default_factory=dict)

    @classmethod
    def from_packs(
        cls,
        packs: Iterable[tuple[bytes, int, bytes, list[PackedBlob]]],
        supersedes: Iterable[bytes] = (),
    ) -> IndexObject:
        pack_list: list[tuple[bytes, int, bytes]] = []
        rows: list[tuple[bytes, int, int, int, int, int]] = []
        bases: dict[bytes, bytes] = {}
        for pack_id, size, salt, blobs in packs:
            n = len(pack_list)
            pack_list.append((pack_id, size, salt))
            rows.extend((b.id, n, b.offset, b.length, b.raw_length, b.type) for b in blobs)
            bases.update((b.id, b.base) for b in blobs if b.base)
        return cls(pack_list, np.array(rows, dtype=BLOB_DTYPE), list(supersedes), bases)

    def encode(self) -> bytes:
        magic = _MAGIC_V2 if self.bases else _MAGIC
        parts = [magic, struct.pack("<I", len(self.supersedes)), *self.supersedes]
        parts.append(struct.pack("<I", len(self.packs)))
        parts.extend(_PACK.pack(*p) for p in self.packs)
        parts.append(struct.pack("<Q", len(self.entries)))
        # Sorted by id: loading many index objects is then a cheap merge of sorted runs.
        order = np.argsort(self.entries["id"], kind="stable")
        parts.append(self.entries[order].astype(BLOB_DTYPE).tobytes())
        if self.bases:
            parts.append(struct.pack("<Q", len(self.bases)))
            parts.extend(k + v for k, v in sorted(self.bases.items()))
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> IndexObject:
        try:
            if data[:8] not in (_MAGIC, _MAGIC_V2):
                raise FormatError("index object has an unknown magic or version")
            pos = 8
            (n_sup,) = struct.unpack_from("<I", data, pos)
            pos += 4
            # Check counts against the length first: a garbled count must not
            # make us build billions of slices.
            if pos + 32 * n_sup > len(data):
                raise FormatError("index object is truncated (supersedes list)")
            supersedes = [data[pos + 32 * i : pos + 32 * (i + 1)] for i in range(n_sup)]
            pos += 32 * n_sup
            (n_packs,) = struct.unpack_from("<I", data, pos)
            pos += 4
            if pos + _PACK.size * n_packs > len(data):
                raise FormatError("index object is truncated (pack list)")
            packs = [_PACK.unpack_from(data, pos + _PACK.size * i) for i in range(n_packs)]
            pos += _PACK.size * n_packs
            (n_blobs,) = struct.unpack_from("<Q", data, pos)
            pos += 8
            end = pos + n_blobs * BLOB_DTYPE.itemsize
            bases: dict[bytes, bytes] = {}
            if data[:8] == _MAGIC_V2:
                (n_bases,) = struct.unpack_from("<Q", data, end)
                if len(data) != end + 8 + 64 * n_bases:
                    raise FormatError("index object has a wrong length")
                table = data[end + 8 :]
                bases = {
                    table[i : i + 32]: table[i + 32 : i + 64] for i in range(0, len(table), 64)
                }
            elif len(data) != end:
                raise FormatError("index object has a wrong length")
            entries = np.frombuffer(data, BLOB_DTYPE, count=n_blobs, offset=pos)
        except struct.error as err:
            raise FormatError(f"index object is truncated: {err}") from None
        if n_blobs and int(entries["pack"].max()) >= n_packs:
            raise FormatError("index object references a pack it does not list")
        packs_list = [(bytes(p), int(n), bytes(s)) for p, n, s in packs]
        return cls(packs_list, entries, supersedes, bases)


class _Table:
    """A growable numpy array (amortized appends, no Python object per row)."""

    def __init__(self, dtype: np.dtype[np.void]) -> None:
        self.buf: Entries = np.zeros(0, dtype)
        self.n = 0

    def append(self, rows: Entries) -> None:
        need = self.n + len(rows)
        if need > len(self.buf):
            grown = np.zeros(max(need, len(self.buf) * 3 // 2, 1024), self.buf.dtype)
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown
        self.buf[self.n : need] = rows
        self.n = need

    @property
    def rows(self) -> Entries:
        return self.buf[: self.n]


def _release_freed_memory() -> None:
    """Hand the freed run buffers back to the OS (glibc keeps them otherwise)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def _sort_unique(rows: Entries) -> Entries:
    """Sort by id in place (stable: of equal ids the first stays) and drop repeats."""
    rows.sort(order="id", kind="stable")
    ids = rows["id"]
    dup = np.zeros(len(rows), dtype=bool)
    dup[1:] = ids[1:] == ids[:-1]
    return rows[~dup] if dup.any() else rows


def _search(table: Entries, blob_id: bytes) -> np.void | None:
    ids = table["id"]
    i = int(np.searchsorted(ids, blob_id))
    if i < len(table) and _full_id(ids[i]) == blob_id:
        row: np.void = table[i]
        return row
    return None


_PACK_DTYPE = np.dtype([("id", "S32"), ("size", "<u8"), ("salt", "S16")])


def blobs_by_pack(entries: Entries) -> dict[int, list[PackedBlob]]:
    """Entries grouped by pack number, as PackedBlobs (for reading packs blob by blob)."""
    by_pack: dict[int, list[PackedBlob]] = {}
    for row in entries:
        by_pack.setdefault(int(row["pack"]), []).append(
            PackedBlob(
                int(row["type"]),
                _full_id(row["id"]),
                int(row["offset"]),
                int(row["length"]),
                int(row["raw_length"]),
            )
        )
    return by_pack


class MasterIndex:
    """Every known blob, from all index objects plus what this process added.

    Thread-safe, and no Python object per blob. Three tiers:

    - ``_main``: one array sorted by id, built on the first lookup from the
      loaded index objects (``_runs``). It is filled by copying each run into
      an array of the final size and sorted in place, so opening peaks at
      about the table's own size plus one run. (Index objects store sorted
      runs, which the stable sort merges quickly.)
    - ``_extra``: a small sorted array of blobs added during this session.
    - ``_pending_ids``: the newest additions, merged into ``_extra`` in batches.
    """

    _MERGE_AT = 65536

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._packs = _Table(_PACK_DTYPE)
        self._pack_order: npt.NDArray[np.intp] | None = None  # argsort of pack ids, when valid
        self._runs: list[Entries] = []
        self._main: Entries = np.zeros(0, BLOB_DTYPE)
        self._extra: Entries = np.zeros(0, BLOB_DTYPE)
        self._pending_ids: dict[bytes, tuple[int, int, int, int, int]] = {}
        self.loaded_index_ids: set[bytes] = set()
        #: delta blob id -> its base's id (few: one per stored tensor piece delta)
        self.bases: dict[bytes, bytes] = {}

    # --- packs -----------------------------------------------------------------------

    def _pack_numbers(self, ids: npt.NDArray[np.bytes_]) -> npt.NDArray[np.int64]:
        """Table positions of pack ids, -1 where unknown."""
        table = self._packs.rows["id"]
        out = np.full(len(ids), -1, dtype=np.int64)
        if not len(table) or not len(ids):
            return out
        if self._pack_order is None:
            self._pack_order = np.argsort(table, kind="stable")
        ordered = table[self._pack_order]
        pos = np.minimum(np.searchsorted(ordered, ids), len(ordered) - 1)
        found = ordered[pos] == ids
        out[found] = self._pack_order[pos[found]]
        return out

    def _add_packs(self, packs: Entries) -> npt.NDArray[np.int64]:
        numbers = self._pack_numbers(packs["id"])
        new = numbers < 0
        if new.any():
            # A pack listed twice within one batch gets one row.
            _uniq, first, inverse = np.unique(
                packs["id"][new], return_index=True, return_inverse=True
            )
            start = self._packs.n
            self._packs.append(packs[new][first])
            numbers[new] = start + inverse.ravel()
            self._pack_order = None
        return numbers

    def has_pack(self, pack_id: bytes) -> bool:
        with self._lock:
            return bool(self._pack_numbers(np.array([pack_id], dtype="S32"))[0] >= 0)

    def packs(self) -> list[tuple[bytes, int, bytes]]:
        """(id, size, salt) of every pack; position i is pack number i in entries()."""
        with self._lock:
            return [
                (_full_id(r["id"]), int(r["size"]), bytes(r["salt"]).ljust(16, b"\0"))
                for r in self._packs.rows
            ]

    # --- blobs ---------------------------------------------------------------------------

    def add_index(self, index_id: bytes | None, obj: IndexObject) -> None:
        with self._lock:
            packs = (
                np.array(obj.packs, dtype=_PACK_DTYPE) if obj.packs else np.zeros(0, _PACK_DTYPE)
            )
            remap = self._add_packs(packs)
            if len(obj.entries):
                run = obj.entries.copy()
                run["pack"] = remap[obj.entries["pack"]]
                self._runs.append(run)
            self.bases.update(obj.bases)
            if index_id is not None:
                self.loaded_index_ids.add(index_id)

    def add_pack(self, pack_id: bytes, size: int, salt: bytes, blobs: list[PackedBlob]) -> None:
        with self._lock:
            n = int(self._add_packs(np.array([(pack_id, size, salt)], dtype=_PACK_DTYPE))[0])
            for b in blobs:
                self._pending_ids.setdefault(b.id, (n, b.offset, b.length, b.raw_length, b.type))
                if b.base:
                    self.bases.setdefault(b.id, b.base)
            if len(self._pending_ids) >= self._MERGE_AT:
                self._merge_pending()

    def _merge_runs(self) -> None:
        if not self._runs:
            return
        merged = np.empty(len(self._main) + sum(len(r) for r in self._runs), BLOB_DTYPE)
        merged[: len(self._main)] = self._main
        pos = len(self._main)
        self._main = merged[:0]
        while self._runs:
            run = self._runs.pop(0)  # dropped as soon as it is copied
            merged[pos : pos + len(run)] = run
            pos += len(run)
        self._main = _sort_unique(merged)
        _release_freed_memory()

    def _merge_pending(self) -> None:
        if self._pending_ids:
            rows = np.array([(k, *v) for k, v in self._pending_ids.items()], dtype=BLOB_DTYPE)
            self._extra = _sort_unique(np.concatenate([self._extra, rows]))
            self._pending_ids = {}

    def _find(self, blob_id: bytes) -> tuple[int, int, int, int, int] | None:
        hit = self._pending_ids.get(blob_id)
        if hit is not None:
            return hit
        self._merge_runs()
        for table in (self._extra, self._main):
            row = _search(table, blob_id)
            if row is not None:
                return (
                    int(row["pack"]),
                    int(row["offset"]),
                    int(row["length"]),
                    int(row["raw_length"]),
                    int(row["type"]),
                )
        return None

    def has(self, blob_id: bytes) -> bool:
        with self._lock:
            return self._find(blob_id) is not None

    def has_all(self, blob_ids: list[bytes]) -> bool:
        """Whether every id is known, with one vectorized search per tier."""
        with self._lock:
            self._merge_runs()
            rest = np.array([b for b in blob_ids if b not in self._pending_ids], dtype="S32")
            for table in (self._main, self._extra):
                if not len(rest) or not len(table):
                    continue
                keys = table["id"]
                pos = np.minimum(np.searchsorted(keys, rest), len(keys) - 1)
                rest = rest[keys[pos] != rest]
            return not len(rest)

    def lookup(self, blob_id: bytes) -> BlobLocation | None:
        with self._lock:
            hit = self._find(blob_id)
            if hit is None:
                return None
            pack, offset, length, raw, btype = hit
            row = self._packs.buf[pack]
            return BlobLocation(
                _full_id(row["id"]), bytes(row["salt"]).ljust(16, b"\0"), btype, offset, length, raw
            )

    def entries(self) -> Entries:
        """All entries (sorted by id, one per blob); ``pack`` indexes ``packs()``.

        Folds every tier into one array (for check and prune, which scan it all).
        """
        with self._lock:
            self._merge_pending()
            if len(self._extra):
                self._runs.append(self._extra)
                self._extra = np.zeros(0, BLOB_DTYPE)
            self._merge_runs()
            return self._main

    def with_bases(self, ids: npt.NDArray[np.bytes_]) -> npt.NDArray[np.bytes_]:
        """``ids`` (sorted, unique) plus the bases their delta blobs need, transitively."""
        found = set(self.bases).intersection(_full_id(i) for i in ids) if self.bases else set()
        extra: set[bytes] = set()
        while found:
            bases = {self.bases[i] for i in found} - extra
            extra |= bases
            found = bases & set(self.bases)
        if not extra:
            return ids
        return np.unique(np.concatenate([ids, np.array(sorted(extra), dtype="S32")]))

    def bases_of(self, rows: Entries) -> dict[bytes, bytes]:
        """The bases of the delta blobs among ``rows`` (for writing them in an index)."""
        return {
            bid: self.bases[bid]
            for bid in (_full_id(i) for i in rows["id"][rows["type"] == DELTA])
            if bid in self.bases
        }

    def drop_packs(self, pack_numbers: set[int]) -> int:
        """Forget every blob stored in these packs; return how many were dropped."""
        entries = self.entries()
        with self._lock:
            gone = np.isin(entries["pack"], np.fromiter(pack_numbers, dtype=np.int64))
            dropped = int(gone.sum())
            if dropped:
                self._main = entries[~gone]
            return dropped

    def __len__(self) -> int:
        return len(self.entries())
