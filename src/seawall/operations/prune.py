"""prune: delete data no snapshot needs, and repack what is fragmented.

Under an exclusive lock, prune finds every blob reachable from a snapshot
(memory: numpy arrays of ids, no Python object per blob), then:

1. repacks the still-used blobs of packs that are mostly unused or small,
   writing new packs (and an index for them);
2. writes a new index of everything kept, superseding every index it read;
3. deletes the old index objects;
4. deletes the packs no index names any more.

A crash between any two steps leaves a valid repository: at worst some data
is stored twice, or unused packs remain for the next prune. Prune refuses to
run on a repository whose index or snapshots are damaged, because it could
not tell what is in use.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from seawall.engine.progress import Progress
from seawall.engine.trees import load_tree
from seawall.errors import ObjectRetained, SeawallError
from seawall.operations.retention import (
    extend_retention,
    referenced_names,
    require_view,
    retention_of,
    split_by_retention,
)
from seawall.repository.index import blobs_by_pack
from seawall.repository.lock import Lock
from seawall.repository.pack import DATA, DELTA, pack_name
from seawall.repository.repo import Repository
from seawall.repository.snapshot import DIR, FILE
from seawall.storage.base import refuse_if_append_only

#: Repack a pack once this share of its bytes is unused.
REPACK_UNUSED = 0.2
#: Packs smaller than pack_size / SMALL_DIVISOR are combined when there are several.
SMALL_DIVISOR = 8


@dataclass
class PruneResult:
    packs_deleted: int = 0
    packs_repacked: int = 0
    packs_written: int = 0
    bytes_freed: int = 0
    blobs_removed: int = 0
    index_objects: int = 0
    dry_run: bool = False
    #: immutable repositories: objects not deleted (nor repacked) because their
    #: retention runs until later, name -> ISO date
    retained: dict[str, str] = field(default_factory=dict)
    #: immutable repositories: objects in use whose retention was extended
    retention_extended: int = 0


def used_blobs(repo: Repository, progress: Progress | None = None) -> np.ndarray:
    """Sorted unique ids (S32) of every blob a snapshot reaches."""
    seen_trees: set[bytes] = set()
    batches: list[np.ndarray] = []
    batch: list[bytes] = []

    def flush() -> None:
        if batch:
            batches.append(np.unique(np.array(batch, dtype="S32")))
            batch.clear()

    stack = [s.tree for s in repo.list_snapshots()]
    while stack:
        tree_id = stack.pop()
        if tree_id in seen_trees:
            continue
        seen_trees.add(tree_id)
        batch.append(tree_id)
        for node in load_tree(repo, tree_id):
            if node.type == DIR and node.subtree is not None:
                stack.append(node.subtree)
            elif node.type == FILE:
                batch.extend(node.content)
        if len(batch) > 200_000:
            flush()
        if progress:
            progress.add(files=1)
    flush()
    if not batches:
        return np.zeros(0, dtype="S32")
    return np.unique(np.concatenate(batches))


def member_of(ids: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``ids`` in ``sorted_set`` (sorted, unique), by binary search: a few bytes
    per id of working memory, where np.isin would sort a copy of both."""
    if not len(sorted_set):
        return np.zeros(len(ids), dtype=bool)
    pos = np.searchsorted(sorted_set, ids)
    np.minimum(pos, len(sorted_set) - 1, out=pos)
    return np.asarray(sorted_set[pos] == ids)


def prune(
    repo: Repository, *, dry_run: bool = False, progress: Progress | None = None
) -> PruneResult:
    progress = progress or Progress("prune")
    result = PruneResult(dry_run=dry_run)
    with Lock(repo, exclusive=True):
        repo.load_index(strict=True)
        progress.start("prune: find used data")
        used = used_blobs(repo, progress)  # raises, changing nothing, if a snapshot is unreadable
        used = repo.index.with_bases(used)  # what kept deltas are stored against
        repo.sync_index_with_packs()
        entries = repo.index.entries()
        packs = repo.index.packs()
        in_use = member_of(entries["id"], used)
        used_bytes = np.bincount(
            entries["pack"], weights=entries["length"] * in_use, minlength=len(packs)
        )
        result.blobs_removed = int((~in_use).sum())

        # A pack holds one blob type; small packs are combined only with others of
        # their type, so a lone small tree pack beside a small data pack stays put.
        pack_type = np.zeros(len(packs), dtype=np.int64)
        pack_type[entries["pack"]] = entries["type"]
        limit = repo.config.pack_size // SMALL_DIVISOR
        small = {no for no, (_p, size, _s) in enumerate(packs) if size < limit and used_bytes[no]}
        small_of_type = np.bincount([int(pack_type[no]) for no in small] or [0], minlength=2)
        # Bytes of blobs no snapshot needs (a pack's header is not waste).
        unused = np.bincount(
            entries["pack"], weights=entries["length"] * ~in_use, minlength=len(packs)
        )
        delete, repack = set(), set()
        for no, (_pid, size, _salt) in enumerate(packs):
            if used_bytes[no] == 0:
                delete.add(no)
            elif unused[no] / size > REPACK_UNUSED or (
                no in small and small_of_type[pack_type[no]] > 1
            ):
                repack.add(no)
        # An immutable repository: a pack under retention is neither deleted nor
        # repacked; it stays, indexed, until its retention runs out. (Only the unused
        # ones are reported: a pack in use has its retention extended, so repacking
        # it waits for good, and saying so at every prune would be noise.)
        view = require_view(repo, "prune would delete data")
        held: set[int] = set()
        if view is not None and (delete or repack):
            names = {no: pack_name(packs[no][0]) for no in delete | repack}
            _free, kept = split_by_retention(retention_of(view, names.values()), datetime.now(UTC))
            held = {no for no, name in names.items() if name in kept}
            delete -= held
            repack -= held
            result.retained.update(
                {names[no]: kept[names[no]].isoformat() for no in held if not used_bytes[no]}
            )
            result.blobs_removed = int((~in_use & ~np.isin(entries["pack"], list(held))).sum())
        result.packs_deleted = len(delete)
        result.packs_repacked = len(repack)
        # An estimate until the repack is done: a repacked pack frees its unused part.
        result.bytes_freed = sum(packs[no][1] for no in delete) + int(
            sum(packs[no][1] - used_bytes[no] for no in repack)
        )
        if dry_run or not (delete or repack):
            if not dry_run:
                kept_packs = [pack_name(p[0]) for no, p in enumerate(packs) if used_bytes[no]]
                live = repo.index.loaded_index_ids - repo.superseded
                _extend_kept(repo, result, kept_packs, live)
            return result
        refuse_if_append_only(
            repo.storage,
            f"prune would delete {len(delete)} and repack {len(repack)} of {len(packs)} packs",
        )

        # The index objects this prune replaces. The repack writer indexes its new
        # packs in index objects of its own, which must not be superseded: the
        # master index keeps the first copy of a blob, so the repacked copies are
        # not in ``repo.index.entries()``.
        old_index_ids = sorted(repo.index.loaded_index_ids)
        progress.start("prune: repack")
        writer = repo.writer(dedup_index=False)
        try:
            wanted = blobs_by_pack(entries[in_use & np.isin(entries["pack"], list(repack))])
            for no, blobs in wanted.items():
                pack_id, _size, salt = packs[no]
                for blob, data in repo.read_pack_blobs(pack_id, salt, blobs):
                    if isinstance(data, SeawallError):
                        raise SeawallError(
                            f"prune stopped before deleting anything: {data}; "
                            "run `seawall check --read-data`"
                        )
                    # A delta is rewritten whole: its chain only gets shorter.
                    writer.add(DATA if blob.type == DELTA else blob.type, data, blob.id)
                    progress.add(nbytes=len(data))
            writer.flush()
        finally:
            writer.close()
        result.packs_written = len(writer.new_packs)
        gone_bytes = sum(packs[no][1] for no in delete | repack)
        result.bytes_freed = max(0, gone_bytes - writer.stats.stored_bytes)

        # The new index: kept entries of kept packs (the writer has indexed the new packs).
        gone = delete | repack
        keep_rows = in_use | np.isin(entries["pack"], list(held)) if held else in_use
        rows = (
            entries[keep_rows & ~np.isin(entries["pack"], list(gone))]
            if gone
            else entries[keep_rows]
        )
        result.index_objects = repo.rewrite_index(rows, old_index_ids)
        old_names = [f"index/{i.hex()}" for i in old_index_ids]
        if view is not None:
            _free, kept = split_by_retention(retention_of(view, old_names), datetime.now(UTC))
            result.retained.update({name: date.isoformat() for name, date in kept.items()})
            old_names = [name for name in old_names if name not in kept]
        for name in old_names:
            _delete(repo, name, result)
        for no in sorted(gone):
            _delete(repo, pack_name(packs[no][0]), result)
        kept_packs = [
            pack_name(p[0]) for no, p in enumerate(packs) if used_bytes[no] and no not in gone
        ]
        _extend_kept(repo, result, kept_packs, [])  # the new index objects are new
        return result


def _delete(repo: Repository, name: str, result: PruneResult) -> None:
    try:
        repo.storage.delete(name)
    except ObjectRetained as err:  # retained after all (a version prune did not see)
        result.retained[name] = err.until.isoformat() if err.until else "a later date"


def _extend_kept(
    repo: Repository, result: PruneResult, packs: list[str], index_ids: Iterable[bytes]
) -> None:
    """Immutable repositories: extend the retention of everything still in use."""
    if repo.config.immutability is None:
        return
    done = extend_retention(repo, referenced_names(repo, packs, index_ids))
    result.retention_extended = len(done.extended)
