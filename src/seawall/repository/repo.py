"""The repository: opening it, and reading and writing its objects.

Read/write ordering (the crash-safety invariant): a pack is stored before any
index names it, an index before any snapshot relies on it, and a snapshot
last. So whatever instant a writer dies at, every snapshot that exists can be
read in full; what a dead writer leaves behind is at most unreferenced packs
(indexed again by the next backup, or removed by prune).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from seawall.codec import crypto
from seawall.codec.chunker import Chunker, ChunkerParams
from seawall.codec.compress import DELTA as DELTA_FLAG
from seawall.codec.compress import (
    PLANES,
    decode,
    delta_base,
    encode,
    encode_delta,
    encode_tensor,
)
from seawall.codec.crypto import MasterKey, Sealer
from seawall.codec.ids import blob_id, storage_id
from seawall.errors import (
    FormatError,
    IntegrityError,
    ObjectNotFound,
    ObjectRetained,
    RepositoryExists,
    SeawallError,
    SnapshotNotFound,
    UsageError,
)
from seawall.repository.config import CONFIG_NAME, DEFAULT_PACK_SIZE, Immutability, RepoConfig
from seawall.repository.index import INDEX_AAD, Entries, IndexObject, MasterIndex
from seawall.repository.keys import KdfParams, KeyInfo, make_key_file, parse_key_file, unlock
from seawall.repository.pack import (
    DATA,
    DELTA,
    TRAILER_SIZE,
    TREE,
    PackBuilder,
    PackedBlob,
    open_blob,
    open_payload,
    pack_name,
    parse_tail,
    tail_length,
)
from seawall.repository.residency import normalize_label
from seawall.repository.snapshot import SNAPSHOT_AAD, Snapshot
from seawall.repository.versions import (
    VersionedView,
    hidden_config,
    open_view,
    require_object_lock,
)
from seawall.storage import Storage

#: Blobs per index object when the whole index is rewritten (about 24 MiB of records).
_INDEX_OBJECT_BLOBS = 500_000
#: The longest chain of delta blobs a writer makes: reading a blob reads at
#: most this many others (its bases), so restore time stays bounded. Two:
#: restoring the newest of a series decodes at most three blobs per piece, and
#: a deeper chain saved under 1% of a fine-tune series (benchmarks/checkpoints.py).
MAX_DELTA_DEPTH = 2
#: The most delta blobs a reader decodes for one blob, that one included
#: (format.md 6.2): a longer chain, or a loop, is refused.
MAX_READ_CHAIN = 16

_AAD = {
    "index": INDEX_AAD,
    "snapshots": SNAPSHOT_AAD,
    "locks": b"seawall lock",
    "records": b"seawall record",
}


class Repository:
    """An open repository. Thread-safe for reads and for one BlobWriter per backup."""

    def __init__(self, storage: Storage, config: RepoConfig, key: MasterKey, key_id: str) -> None:
        self.storage = storage
        self.config = config
        self.key = key
        self.key_id = key_id
        self.index = MasterIndex()
        self._enc_key = key.encryption_key
        self._id_key = key.id_key
        #: warnings for the user (collected, never raised): e.g. objects read from
        #: an older retained version because the current one was deleted
        self.notes: list[str] = []
        #: index objects that another index object supersedes (see load_index)
        self.superseded: set[bytes] = set()
        #: immutable repositories read through a view of the store's versions
        self.view: VersionedView | None = None
        if config.immutability is not None:
            self.view = open_view(storage, config, self.notes)
            if self.view is not None:
                self.storage = self.view

    # --- opening -------------------------------------------------------------

    @classmethod
    def init(
        cls,
        storage: Storage,
        password: str,
        *,
        kdf: KdfParams | None = None,
        chunker: ChunkerParams | None = None,
        pack_size: int = DEFAULT_PACK_SIZE,
        region: str = "",
        immutability: Immutability | None = None,
    ) -> Repository:
        """Create a repository. With ``immutability``, the store must have Object Lock
        (UsageError otherwise), and every object but locks is written retained."""
        region = normalize_label(region)
        try:
            storage.stat(CONFIG_NAME)
            raise RepositoryExists(
                f"a repository already exists at {storage.location}; "
                "open it, or choose another location"
            )
        except ObjectNotFound:
            if hidden_config(storage):
                raise RepositoryExists(
                    f"a repository exists at {storage.location}: its config was deleted, but "
                    "the store retains an older version. Open it as usual (seawall reads that "
                    "version) and run `seawall repair versions`, or choose another location"
                ) from None
        if immutability is not None:
            require_object_lock(storage, immutability)
        config = RepoConfig(
            chunker=chunker or ChunkerParams(),
            pack_size=pack_size,
            region=region,
            immutability=immutability,
        )
        key = MasterKey.generate()
        key_file = make_key_file(key, password, config.id, kdf or KdfParams())
        key_id = storage_id(key_file).hex()
        # Keys first, config last: a location with a config is a usable repository.
        storage.put(f"keys/{key_id}", key_file)
        storage.put(CONFIG_NAME, config.to_bytes(), if_absent=True)
        return cls(storage, config, key, key_id)

    @classmethod
    def open(cls, storage: Storage, password: str) -> Repository:
        notes: list[str] = []
        repo = cls(storage, *unlock(storage, password, notes))
        repo.notes[:0] = notes
        return repo

    @property
    def warnings(self) -> list[str]:
        """What the user should know about this session (see ``notes``)."""
        return self.notes + (self.view.notes if self.view is not None else [])

    def distrust(self, name: str) -> bool:
        """``name`` failed authentication: whether reading it again may succeed (an
        immutable repository then reads an intact older version)."""
        return self.view is not None and self.view.distrust(name)

    def close(self) -> None:
        self.storage.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- keys -----------------------------------------------------------------

    def add_key(self, password: str, kdf: KdfParams | None = None) -> str:
        data = make_key_file(self.key, password, self.config.id, kdf or KdfParams())
        key_id = storage_id(data).hex()
        self.storage.put(f"keys/{key_id}", data)
        return key_id

    def list_keys(self) -> list[KeyInfo]:
        keys = []
        for info in self.storage.list("keys/"):
            key_id = info.name.split("/", 1)[1]
            keys.append(parse_key_file(self.storage.get(info.name), key_id)[0])
        return sorted(keys, key=lambda k: k.created)

    def remove_key(self, key_id_prefix: str) -> str:
        matches = [
            k.id for k in self.list_keys() if key_id_prefix and k.id.startswith(key_id_prefix)
        ]
        if not matches:
            raise UsageError(f"no key matches {key_id_prefix!r}; list them with `seawall key list`")
        if len(matches) > 1:
            raise UsageError(f"{len(matches)} keys match {key_id_prefix!r}; give more of the id")
        if matches[0] == self.key_id:
            raise UsageError("refusing to remove the key in use; open with another password first")
        self.storage.delete(f"keys/{matches[0]}")
        return matches[0]

    def change_password(self, new_password: str, kdf: KdfParams | None = None) -> str:
        """Replace the key in use by one for ``new_password``; return the new key's id.

        The new key is stored before the old one is deleted, so a crash in
        between leaves both passwords working. No data is rewritten.
        """
        new_id = self.add_key(new_password, kdf)
        old, self.key_id = self.key_id, new_id
        try:
            self.storage.delete(f"keys/{old}")
        except ObjectRetained as err:
            until = err.until.isoformat(timespec="seconds") if err.until else "a later date"
            raise ObjectRetained(
                f"the new password works, but the old key {old[:12]} is retained until {until} "
                "(immutable repository) and opens the repository until then; remove it "
                f"afterwards with `seawall key remove {old[:12]}`",
                until=err.until,
            ) from None
        return new_id

    # --- sealed objects ---------------------------------------------------------

    def save_object(self, kind: str, plaintext: bytes) -> bytes:
        data = crypto.seal_object(self._enc_key, encode(plaintext), _AAD[kind])
        object_id = storage_id(data)
        self.storage.put(f"{kind}/{object_id.hex()}", data)
        return object_id

    def load_object(self, kind: str, object_id: bytes) -> bytes:
        name = f"{kind}/{object_id.hex()}"
        data = self.storage.get(name)
        if storage_id(data) != object_id and self.distrust(name):
            data = self.storage.get(name)
        if storage_id(data) != object_id:
            raise IntegrityError(f"{name} does not match its id: it was corrupted or tampered with")
        payload = crypto.open_object(self._enc_key, data, _AAD[kind], name)
        try:
            return bytes(decode(payload, 1 << 34))  # bytes already: no copy
        except Exception as err:  # zstd's own errors
            raise FormatError(f"{name} does not decompress: {err}") from None

    def list_ids(self, kind: str) -> list[bytes]:
        ids = []
        for info in self.storage.list(f"{kind}/"):
            try:
                object_id = bytes.fromhex(info.name.rsplit("/", 1)[1])
            except ValueError:
                continue  # not ours
            if len(object_id) == 32:  # anything else is not ours either
                ids.append(object_id)
        return ids

    def delete_object(self, kind: str, object_id: bytes) -> None:
        self.storage.delete(f"{kind}/{object_id.hex()}")

    # --- records ------------------------------------------------------------------------

    def save_record(self, kind: str, doc: dict[str, Any]) -> bytes:
        """Append a record (a drill report, an audit entry...) to the repository.

        Records are sealed JSON objects under ``records/``, write-once like
        snapshots, so they survive the loss of whatever host wrote them and are
        retained and replicated with the data. ``time`` (UTC, ISO 8601) is
        added when missing.
        """
        if not kind or not kind.replace("-", "").isalnum():
            raise UsageError(f"invalid record kind {kind!r}")
        doc = {"kind": kind, **doc}
        doc.setdefault("time", datetime.now(UTC).isoformat())
        return self.save_object("records", json.dumps(doc, separators=(",", ":")).encode())

    def list_records(self, kind: str) -> list[dict[str, Any]]:
        """Every record of ``kind``, oldest first; each has ``id`` (hex) added.

        A damaged record raises IntegrityError: records are evidence, and a
        gap in them must not pass unnoticed."""
        out = []
        for rid in self.list_ids("records"):
            try:
                doc = json.loads(self.load_object("records", rid))
            except ObjectNotFound:
                continue
            except ValueError:
                raise FormatError(f"record {rid.hex()[:8]} is not valid JSON") from None
            if isinstance(doc, dict) and doc.get("kind") == kind:
                doc["id"] = rid.hex()
                out.append(doc)
        return sorted(out, key=lambda d: (str(d.get("time", "")), d["id"]))

    # --- index ---------------------------------------------------------------------

    def load_index(self, *, strict: bool = True) -> list[tuple[bytes, SeawallError]]:
        """Load every index object. Returns the ones that failed (strict: raise the first).

        An index superseded by another that exists is skipped: prune writes the
        superseding index before it deletes packs, so the superseded one may
        name packs that are gone.
        """
        failed: list[tuple[bytes, SeawallError]] = []
        objects: dict[bytes, IndexObject] = {}
        for index_id in self.list_ids("index"):
            if index_id in self.index.loaded_index_ids:
                continue
            try:
                objects[index_id] = IndexObject.decode(self.load_object("index", index_id))
            except ObjectNotFound:
                continue  # superseded and removed by a prune while we listed
            except (IntegrityError, FormatError) as err:
                if strict:
                    raise IntegrityError(
                        f"index {index_id.hex()[:8]} is damaged ({err}); run `seawall check` "
                        "and `seawall repair index`"
                    ) from None
                failed.append((index_id, err))
        superseded = {old for obj in objects.values() for old in obj.supersedes}
        self.superseded |= superseded
        for index_id, obj in objects.items():
            if index_id in superseded:
                self.index.loaded_index_ids.add(index_id)
                continue
            self.index.add_index(index_id, obj)
        return failed

    def save_index(self, obj: IndexObject) -> bytes:
        index_id = self.save_object("index", obj.encode())
        self.index.loaded_index_ids.add(index_id)
        return index_id

    def rewrite_index(self, rows: Entries, supersedes: list[bytes]) -> int:
        """Write ``rows`` (entries of the master index) as new index objects that
        supersede ``supersedes``; return how many were written. Deletes nothing."""
        packs = self.index.packs()
        written = 0
        for start in range(0, max(len(rows), 1), _INDEX_OBJECT_BLOBS):
            part = rows[start : start + _INDEX_OBJECT_BLOBS]
            numbers = np.unique(part["pack"])
            local = part.copy()
            local["pack"] = np.searchsorted(numbers, part["pack"])
            obj = IndexObject(
                [packs[int(n)] for n in numbers], local, supersedes, self.index.bases_of(part)
            )
            self.save_index(obj)
            written += 1
        return written

    def read_pack_header(self, pack_id: bytes, size: int) -> tuple[bytes, list[PackedBlob]]:
        try:
            return self._read_pack_header(pack_id, size)
        except (IntegrityError, FormatError):
            if not self.distrust(pack_name(pack_id)):
                raise
            return self._read_pack_header(pack_id, self.storage.stat(pack_name(pack_id)).size)

    def _read_pack_header(self, pack_id: bytes, size: int) -> tuple[bytes, list[PackedBlob]]:
        name = pack_name(pack_id)
        trailer = self.storage.get(name, max(0, size - TRAILER_SIZE), TRAILER_SIZE)
        n = min(size, tail_length(trailer))
        return parse_tail(self._enc_key, self.storage.get(name, size - n, n), size)

    def sync_index_with_packs(self) -> int:
        """Reconcile the loaded index with the packs that exist; before writing.

        - Packs that exist but no index names (left by a killed backup) are
          indexed, so a rerun reuses them instead of uploading them again.
        - Index entries whose pack is gone (lost, or named by a replayed old
          index) are dropped from memory, so nothing new deduplicates against
          data that is not there: the next backup stores it again.

        Returns how many orphan packs were indexed. Damaged orphans are left for check.
        """
        found = []
        present = set()
        for info in self.storage.list("data/"):
            try:
                pack_id = bytes.fromhex(info.name.rsplit("/", 1)[1])
            except ValueError:
                continue
            present.add(pack_id)
            if self.index.has_pack(pack_id):
                continue
            try:
                salt, blobs = self.read_pack_header(pack_id, info.size)
                blobs = self.with_delta_bases(pack_id, salt, blobs)
            except (IntegrityError, FormatError, ObjectNotFound):
                continue
            found.append((pack_id, info.size, salt, blobs))
        found = self._without_baseless_deltas(found)
        if found:
            for pack_id, size, salt, blobs in found:
                self.index.add_pack(pack_id, size, salt, blobs)
            self.save_index(IndexObject.from_packs(found))
        gone = {
            no
            for no, (pack_id, _s, _salt) in enumerate(self.index.packs())
            if pack_id not in present
        }
        if gone and self.index.drop_packs(gone):
            # Readers must not find the lost copies either: an index without them
            # supersedes every index read (those stay until prune removes them).
            self.rewrite_index(self.index.entries(), sorted(self.index.loaded_index_ids))
        return len(found)

    def with_delta_bases(
        self, pack_id: bytes, salt: bytes, blobs: list[PackedBlob]
    ) -> list[PackedBlob]:
        """``blobs`` (from a pack header) with the base of each delta blob, read from
        its payload (pack headers do not record bases); deltas whose payload
        cannot be read are left out."""
        out = []
        for b in blobs:
            if b.type == DELTA and not b.base:
                sealed = self.storage.get(pack_name(pack_id), b.offset, b.length)
                what = f"blob {b.id.hex()[:12]} in {pack_name(pack_id)}"
                try:
                    base = delta_base(open_payload(Sealer(self._enc_key, salt), b, sealed, what))
                except (IntegrityError, FormatError, ValueError):
                    base = None
                if base is None:
                    continue  # unreadable: left out, so check reports what needed it
                b = dataclasses.replace(b, base=base)
            out.append(b)
        return out

    def _without_baseless_deltas(
        self, found: list[tuple[bytes, int, bytes, list[PackedBlob]]]
    ) -> list[tuple[bytes, int, bytes, list[PackedBlob]]]:
        """Orphan packs' blobs minus deltas whose base is nowhere (a killed backup
        stored the delta's pack but not its base's): nothing may deduplicate
        against a blob that cannot be read."""
        orphan = {b.id for _p, _n, _s, blobs in found for b in blobs if b.type != DELTA}
        deltas = {b.id: b.base for _p, _n, _s, blobs in found for b in blobs if b.type == DELTA}
        readable: set[bytes] = set()
        changed = True
        while changed:
            changed = False
            for bid, base in deltas.items():
                if bid not in readable and (
                    base in orphan or base in readable or self.index.has(base)
                ):
                    readable.add(bid)
                    changed = True
        return [
            (p, n, s, [b for b in blobs if b.type != DELTA or b.id in readable])
            for p, n, s, blobs in found
        ]

    # --- blobs ---------------------------------------------------------------------------

    def blob_id(self, data: bytes | memoryview) -> bytes:
        return blob_id(self._id_key, data)

    def chunker(self) -> Chunker:
        return Chunker(self.config.chunker, self.key.chunker_seed)

    def load_blob(self, bid: bytes, _depth: int = 0) -> bytes:
        loc = self.index.lookup(bid)
        if loc is None:
            raise IntegrityError(f"blob {bid.hex()[:12]} is not in the index: data is missing")
        name = pack_name(loc.pack_id)
        what = f"blob {bid.hex()[:12]} in {name}"
        for attempt in range(2):
            sealed = self.storage.get(name, loc.offset, loc.length)
            try:
                data = open_blob(
                    Sealer(self._enc_key, loc.pack_salt),
                    loc.as_packed(bid),
                    sealed,
                    what,
                    load_base=lambda base: self._load_base(base, _depth + 1),
                )
                if self.blob_id(data) != bid:
                    raise IntegrityError(f"{what} does not match its id")
            except (IntegrityError, FormatError):
                if attempt or not self.distrust(name):
                    raise
                continue  # an immutable repository reads an intact older version
            return bytes(data)  # bytes already without a scratch buffer: no copy
        raise AssertionError("unreachable")

    def _load_base(self, base_id: bytes, depth: int = 1) -> bytes:
        if depth >= MAX_READ_CHAIN:
            raise FormatError(f"a chain of more than {MAX_READ_CHAIN} delta blobs: refused")
        try:
            return self.load_blob(base_id, depth)
        except FormatError as err:
            if "chain of more than" in str(err):
                raise
            raise IntegrityError(f"the base of a delta blob cannot be read: {err}") from None
        except SeawallError as err:
            raise IntegrityError(f"the base of a delta blob cannot be read: {err}") from None

    def delta_depth(self, bid: bytes) -> int:
        """How many delta steps reading ``bid`` takes (0: not a delta)."""
        depth = 0
        while bid in self.index.bases:
            bid = self.index.bases[bid]
            depth += 1
            if depth >= MAX_READ_CHAIN:
                raise FormatError("a chain of delta blobs is too long, or loops")
        return depth

    def read_pack_blobs(
        self,
        pack_id: bytes,
        salt: bytes,
        blobs: list[PackedBlob],
        *,
        scratch: bytearray | None = None,
    ) -> Iterator[tuple[PackedBlob, bytes | memoryview | SeawallError]]:
        """Yield each blob's plaintext (or the error that stopped it) with one ranged read.

        With ``scratch``, plaintexts may be views of it, valid only until the
        next one is taken (restore writes each one out at once: no copies).
        """
        name = pack_name(pack_id)
        blobs = sorted(blobs, key=lambda b: b.offset)
        start = blobs[0].offset
        end = max(b.offset + b.length for b in blobs)
        try:
            data = self.storage.get(name, start, end - start)
        except SeawallError as err:
            for b in blobs:
                yield b, err
            return
        failed: list[tuple[PackedBlob, SeawallError]] = []
        for b, result in self.read_pack_blobs_from(
            data, pack_id, salt, blobs, base=start, scratch=scratch
        ):
            if self.view is not None and isinstance(result, IntegrityError | FormatError):
                failed.append((b, result))  # perhaps overwritten: see below
            else:
                yield b, result
        if not failed:
            return
        if not self.distrust(name):
            yield from failed
            return
        # An immutable repository whose pack was overwritten: read the intact version.
        again = sorted((b for b, _err in failed), key=lambda b: b.offset)
        start = again[0].offset
        end = max(b.offset + b.length for b in again)
        try:
            data = self.storage.get(name, start, end - start)
        except SeawallError as err:
            for b in again:
                yield b, err
            return
        yield from self.read_pack_blobs_from(
            data, pack_id, salt, again, base=start, scratch=scratch
        )

    def read_pack_blobs_from(
        self,
        data: bytes,
        pack_id: bytes,
        salt: bytes,
        blobs: list[PackedBlob],
        base: int = 0,
        *,
        scratch: bytearray | None = None,
    ) -> Iterator[tuple[PackedBlob, bytes | memoryview | SeawallError]]:
        """Like read_pack_blobs, on bytes already read (``data`` starts at pack offset ``base``)."""
        name = pack_name(pack_id)
        sealer = Sealer(self._enc_key, salt)
        view = memoryview(data)
        for b in blobs:
            what = f"blob {b.id.hex()[:12]} in {name}"
            try:
                sealed = view[b.offset - base : b.offset - base + b.length]
                if len(sealed) != b.length:
                    raise IntegrityError(f"{what} is truncated")
                plain = open_blob(sealer, b, sealed, what, scratch, self._load_base)
                if self.blob_id(plain) != b.id:
                    raise IntegrityError(f"{what} does not match its id")
                yield b, plain
            except SeawallError as err:
                yield b, err

    def writer(self, *, upload_threads: int = 2, dedup_index: bool = True) -> BlobWriter:
        return BlobWriter(self, upload_threads=upload_threads, dedup_index=dedup_index)

    # --- snapshots ----------------------------------------------------------------------------

    def save_snapshot(self, snap: Snapshot) -> bytes:
        snap.id = self.save_object("snapshots", snap.to_bytes())
        return snap.id

    def load_snapshot(self, snapshot_id: bytes) -> Snapshot:
        return Snapshot.from_bytes(self.load_object("snapshots", snapshot_id), snapshot_id)

    def list_snapshots(self) -> list[Snapshot]:
        """Every snapshot, oldest first."""
        snaps = []
        for sid in self.list_ids("snapshots"):
            try:
                snaps.append(self.load_snapshot(sid))
            except ObjectNotFound:
                continue  # forgotten while we listed
        return sorted(snaps, key=lambda s: (s.time, s.id))

    def resolve_snapshot(self, name: str) -> Snapshot:
        """``latest``, a full id, or a unique prefix of one."""
        if name == "latest":
            snaps = self.list_snapshots()
            if not snaps:
                raise SnapshotNotFound(
                    f"the repository at {self.storage.location} has no snapshots yet"
                )
            return snaps[-1]
        matches = [sid for sid in self.list_ids("snapshots") if sid.hex().startswith(name.lower())]
        if not matches or not name:
            raise SnapshotNotFound(
                f"no snapshot matches {name!r}; list them with `seawall snapshots`"
            )
        if len(matches) > 1:
            raise SnapshotNotFound(f"{len(matches)} snapshots match {name!r}; give more of the id")
        return self.load_snapshot(matches[0])


@dataclass
class WriteStats:
    blobs_added: int = 0
    bytes_added: int = 0
    stored_bytes: int = 0
    packs_written: int = 0
    #: how new data blobs were encoded: "generic", "planes" (float transform) or
    #: "delta", each [plaintext bytes, payload bytes]
    encodings: dict[str, list[int]] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class DeltaBase:
    """A stored blob that a new tensor piece may be encoded against."""

    id: bytes
    data: bytes | memoryview


class BlobWriter:
    """Adds blobs to a repository, deduplicated, packed and uploaded in the background.

    ``add`` may be called from many threads: each thread fills its own packs.
    ``flush`` (from one thread, once no ``add`` is running) stores every
    pending pack and writes the index that names them.
    """

    INDEX_EVERY = 32  # packs: how much a killed backup can leave unindexed

    def __init__(
        self, repo: Repository, *, upload_threads: int = 2, dedup_index: bool = True
    ) -> None:
        self.repo = repo
        # prune's repacking writer must not skip blobs because the packs it empties hold them
        self._dedup_index = dedup_index
        self.stats = WriteStats()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._builders: list[dict[int, PackBuilder]] = []
        self._reserved: set[bytes] = set()
        self._unindexed: list[tuple[bytes, int, bytes, list[PackedBlob]]] = []
        self._uploads = ThreadPoolExecutor(upload_threads, thread_name_prefix="upload")
        self._slots = threading.BoundedSemaphore(upload_threads * 2)
        self._futures: list[Future[None]] = []
        self._error: BaseException | None = None
        self.new_packs: list[bytes] = []

    def add(
        self,
        blob_type: int,
        data: bytes | memoryview,
        bid: bytes | None = None,
        *,
        width: int = 0,
        base: DeltaBase | None = None,
    ) -> bytes:
        """Store ``data`` unless the repository already has it; return its id.

        ``width``: the data is a piece of a float tensor of that element width
        (bytes): it gets the float transform when that is smaller. ``base``: it
        may be stored as a delta against that blob, when smaller and the chain
        stays short (repository format version 2 only).
        """
        if self._error is not None:
            raise self._error
        bid = self.repo.blob_id(data) if bid is None else bid
        with self._lock:
            if bid in self._reserved or (self._dedup_index and self.repo.index.has(bid)):
                return bid
            self._reserved.add(bid)
        payload, blob_type = self._encode(blob_type, data, bid, width, base)
        builders: dict[int, PackBuilder] | None = getattr(self._local, "builders", None)
        if builders is None:
            builders = self._local.builders = {}
            with self._lock:
                self._builders.append(builders)
        builder = builders.get(blob_type)
        if builder is None:
            builder = builders[blob_type] = PackBuilder(self.repo._enc_key)
        blob = builder.add(blob_type, bid, data, payload)
        with self._lock:
            self.stats.blobs_added += 1
            self.stats.bytes_added += blob.raw_length
            if blob_type != TREE:
                kind = {PLANES: "planes", DELTA_FLAG: "delta"}.get(payload[0], "generic")
                sizes = self.stats.encodings.setdefault(kind, [0, 0])
                sizes[0] += blob.raw_length
                sizes[1] += blob.length
        if builder.size >= self.repo.config.pack_size:
            del builders[blob_type]
            self._submit(builder)
        return bid

    def _encode(
        self,
        blob_type: int,
        data: bytes | memoryview,
        bid: bytes,
        width: int,
        base: DeltaBase | None,
    ) -> tuple[bytes, int]:
        """The payload for a new blob, and the type to store it as."""
        if blob_type != DATA or not width or not self.repo.config.tensor_codecs:
            return encode(data), blob_type
        if base is not None and len(base.data) == len(data):
            base = self._within_bound(base)
        if base is not None:
            delta = encode_delta(data, base.data, base.id, width)
            if delta is not None:
                with self._lock:  # known before the pack is: bounds the next chain
                    self.repo.index.bases.setdefault(bid, base.id)
                return delta, DELTA
        return encode_tensor(data, width), DATA

    def _within_bound(self, base: DeltaBase) -> DeltaBase | None:
        """The base to store a delta against: ``base`` if it is stored (or being
        stored by this writer) and a delta on it stays within MAX_DELTA_DEPTH; else,
        when ``base`` is itself at the bound, its own base (a delta of the next
        checkpoint against the previous one's base, so a long series never needs
        a new full copy); else None."""
        with self._lock:
            if base.id not in self._reserved and not self.repo.index.has(base.id):
                return None
        try:
            depth = self.repo.delta_depth(base.id)
        except FormatError:
            return None
        if depth < MAX_DELTA_DEPTH:
            return base
        if depth > MAX_DELTA_DEPTH:
            return None  # written under a looser bound: its base is too deep too
        under = self.repo.index.bases.get(base.id)
        if under is None or not self.repo.index.has(under):
            return None  # not uploaded yet: a full copy instead
        try:
            return DeltaBase(under, self.repo.load_blob(under))
        except SeawallError:
            return None

    def _submit(self, builder: PackBuilder) -> None:
        blobs = list(builder.blobs)
        salt = builder.salt
        pack_id, data = builder.finish()
        self._slots.acquire()  # bounds the memory held by packs waiting to upload
        try:
            future = self._uploads.submit(self._upload, pack_id, data, salt, blobs)
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            self._futures.append(future)
            self.new_packs.append(pack_id)

    def _upload(self, pack_id: bytes, data: bytes, salt: bytes, blobs: list[PackedBlob]) -> None:
        try:
            self.repo.storage.put(pack_name(pack_id), data)
            self.repo.index.add_pack(pack_id, len(data), salt, blobs)
            with self._lock:
                self.stats.packs_written += 1
                self.stats.stored_bytes += len(data)
                self._unindexed.append((pack_id, len(data), salt, blobs))
                batch = self._take_batch(self.INDEX_EVERY)
            if batch:
                self.repo.save_index(IndexObject.from_packs(batch))
        except BaseException as err:
            self._error = self._error or err
            raise
        finally:
            self._slots.release()

    def _take_batch(self, at_least: int) -> list[tuple[bytes, int, bytes, list[PackedBlob]]]:
        if len(self._unindexed) < at_least:
            return []
        batch, self._unindexed = self._unindexed, []
        return batch

    def flush(self) -> None:
        """Store everything added so far; after it returns, it is all indexed."""
        for builders in self._builders:
            for blob_type in list(builders):
                builder = builders.pop(blob_type)
                if builder.blobs:
                    self._submit(builder)
        with self._lock:
            futures, self._futures = self._futures, []
        for future in futures:
            future.result()
        if self._error is not None:
            raise self._error
        with self._lock:
            batch = self._take_batch(1)
        if batch:
            self.repo.save_index(IndexObject.from_packs(batch))

    def close(self) -> None:
        self._uploads.shutdown(wait=True, cancel_futures=True)
