"""repair heal: put back into a damaged repository the data a replica still holds.

A replica made by ``copy`` holds each snapshot under other keys and other
blob ids, but with the source's chunk boundaries, so a snapshot copied back
(``copy_contents``) gives the primary the very blobs and trees it lost: same
plaintexts, same ids. Healing is therefore:

1. ``check`` the primary (``read_data``: every pack read and hashed) to find
   the damaged packs (missing, truncated, corrupted) and the damaged
   snapshots; a damaged index is rebuilt from the packs first (repair index).
2. Under an exclusive lock: salvage every blob of a corrupted pack that
   still authenticates into new packs, then forget the damaged packs in the
   index, so that nothing deduplicates against data that is not there.
3. For each damaged snapshot, copy back the replica's copy of it (the
   replica snapshot whose ``original`` it is): only blobs the primary now
   lacks are read and uploaded, re-encrypted under the primary's keys, and
   read back to verify. The rebuilt root tree must be the snapshot's own.
4. Write an index that supersedes every index read (readers no longer see
   the damaged packs), then delete the corrupted packs, whose readable
   content now lives elsewhere (only if every damaged snapshot was healed:
   otherwise they are left for a later run or for ``check`` to name).
5. ``check`` again.

A snapshot with no copy in the replica (never copied, or refused there by its
residency rule) cannot be healed; it is reported, and nothing else is lost.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from seawall.engine.progress import Progress
from seawall.errors import SeawallError, StorageError, UsageError
from seawall.operations.check import CheckResult, check
from seawall.operations.copy import copy_contents
from seawall.operations.repair import repair_index
from seawall.repository.index import blobs_by_pack
from seawall.repository.lock import Lock
from seawall.repository.pack import DATA, TREE, pack_name
from seawall.repository.repo import Repository
from seawall.repository.snapshot import Snapshot


@dataclass
class HealResult:
    #: the primary's check before healing
    before: CheckResult
    #: and after (None when nothing was damaged)
    after: CheckResult | None = None
    #: the index was damaged and rebuilt from the packs first
    index_rebuilt: bool = False
    #: pack id (hex) -> what was wrong with it
    damaged_packs: dict[str, str] = field(default_factory=dict)
    #: blobs of corrupted packs still readable, rewritten into new packs
    salvaged_blobs: int = 0
    #: short ids of the snapshots healed, and of those that could not be, with why
    healed: list[str] = field(default_factory=list)
    unhealed: dict[str, str] = field(default_factory=dict)
    #: corrupted packs deleted once their content was stored again
    packs_deleted: list[str] = field(default_factory=list)
    #: bytes of the new packs written (salvaged and copied back)
    bytes_uploaded: int = 0

    @property
    def ok(self) -> bool:
        return not self.unhealed and (self.after is None or self.after.ok)


def heal(
    primary: Repository,
    replica: Repository,
    *,
    read_data: bool = True,
    progress: Progress | None = None,
) -> HealResult:
    """Heal ``primary`` from ``replica`` (see the module docstring)."""
    if primary.config.id == replica.config.id:
        raise UsageError("the replica is the damaged repository itself: name another one")
    progress = progress or Progress("repair heal")
    index_rebuilt = False
    if _fresh(primary).load_index(strict=False):
        repair_index(primary, progress=progress)
        index_rebuilt = True
    primary = _fresh(primary)
    before = check(primary, read_data=read_data, progress=progress)
    result = HealResult(before, index_rebuilt=index_rebuilt)
    result.damaged_packs = dict(before.damaged_packs)
    if before.ok:
        return result
    primary = _fresh(primary)
    with Lock(primary, exclusive=True), Lock(replica, exclusive=False):
        primary.load_index()
        replica.load_index()
        packs_before = len(primary.index.packs())
        _forget_damaged_packs(primary, result, progress)
        damaged = [s for s in primary.list_snapshots() if s.short_id in before.damaged]
        copies = {s.original or s.id: s for s in replica.list_snapshots()}
        todo: list[tuple[Snapshot, Snapshot]] = []
        for snap in damaged:
            copy = copies.get(snap.original or snap.id)
            if copy is None:
                result.unhealed[snap.short_id] = (
                    f"the replica at {replica.storage.location} holds no copy of it"
                )
            else:
                todo.append((snap, copy))
        roots = copy_contents(replica, primary, [c for _s, c in todo], progress=progress)
        for snap, copy in todo:
            root = roots[copy.id]
            if isinstance(root, str):
                result.unhealed[snap.short_id] = f"the replica's copy is damaged too: {root}"
            elif root != snap.tree:
                result.unhealed[snap.short_id] = (
                    "the replica's copy does not rebuild the same tree (it was not made "
                    "from this repository)"
                )
            else:
                result.healed.append(snap.short_id)
        new_packs = primary.index.packs()[packs_before:]
        result.bytes_uploaded = sum(size for _id, size, _salt in new_packs)
        # Readers must stop finding the damaged packs' blobs: one index, superseding all.
        primary.rewrite_index(primary.index.entries(), sorted(primary.index.loaded_index_ids))
        if not result.unhealed:
            for pack_id, why in result.damaged_packs.items():
                if why == "missing":
                    continue
                with contextlib.suppress(StorageError):  # an immutable store keeps it
                    primary.storage.delete(pack_name(bytes.fromhex(pack_id)))
                    result.packs_deleted.append(pack_id)
    result.after = check(_fresh(primary), read_data=read_data, progress=progress)
    return result


def _fresh(repo: Repository) -> Repository:
    """The same repository with nothing loaded (an index rebuilt on disk is read anew)."""
    return Repository(repo.storage, repo.config, repo.key, repo.key_id)


def _forget_damaged_packs(repo: Repository, result: HealResult, progress: Progress) -> None:
    """Drop the damaged packs from the in-memory index, and store again (in new packs)
    every blob of theirs that still authenticates.

    The index keeps one location per blob, so the readable blobs are read first,
    then the packs dropped, then the blobs added: memory holds what the damaged
    packs still hold, at most their size."""
    packs = repo.index.packs()
    numbers = {pid.hex(): no for no, (pid, _size, _salt) in enumerate(packs)}
    damaged = {numbers[p] for p in result.damaged_packs if p in numbers}
    if not damaged:
        return
    by_pack = blobs_by_pack(repo.index.entries())
    readable: list[tuple[int, bytes, bytes]] = []
    for no in sorted(damaged):
        progress.check_cancelled()
        pack_id, _size, salt = packs[no]
        blobs = by_pack.get(no, [])
        if result.damaged_packs[pack_id.hex()] == "missing" or not blobs:
            continue
        for blob, plain in repo.read_pack_blobs(pack_id, salt, blobs):
            if not isinstance(plain, SeawallError):
                # Deltas are stored whole again: their bases may be in a damaged pack.
                readable.append((TREE if blob.type == TREE else DATA, blob.id, bytes(plain)))
    repo.index.drop_packs(damaged)
    writer = repo.writer()
    try:
        for blob_type, bid, plain in readable:
            writer.add(blob_type, plain, bid)
        writer.flush()
    finally:
        writer.close()
    result.salvaged_blobs = len(readable)
