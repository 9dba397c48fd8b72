"""repair index: rebuild the index from the packs themselves.

Every pack ends with a sealed header listing its blobs, so the index is a
cache that can always be rebuilt: read each pack's tail, write new index
objects superseding all existing ones, then delete the old ones. Packs whose
header fails authentication are reported and left alone (check names what
they held; prune will not delete them while they are unreadable).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from seawall.engine.progress import Progress
from seawall.errors import FormatError, IntegrityError, ObjectNotFound, SeawallError
from seawall.repository.index import IndexObject
from seawall.repository.lock import Lock
from seawall.repository.pack import PackedBlob
from seawall.repository.repo import Repository

_PACKS_PER_INDEX = 10_000


@dataclass
class RepairResult:
    packs_indexed: int = 0
    blobs_indexed: int = 0
    index_objects_written: int = 0
    index_objects_removed: int = 0
    damaged_packs: list[str] = field(default_factory=list)


def repair_index(repo: Repository, *, progress: Progress | None = None) -> RepairResult:
    progress = progress or Progress("repair index")
    result = RepairResult()
    with Lock(repo, exclusive=True):
        old = repo.list_ids("index")
        infos = list(repo.storage.list("data/"))
        progress.start("repair index: read pack headers")
        progress.set_totals(len(infos), None)
        found: list[tuple[bytes, int, bytes, list[PackedBlob]]] = []
        for info in infos:
            progress.check_cancelled()
            try:
                pack_id = bytes.fromhex(info.name.rsplit("/", 1)[1])
                salt, blobs = repo.read_pack_header(pack_id, info.size)
                blobs = repo.with_delta_bases(pack_id, salt, blobs)
            except ValueError:
                continue  # not a pack name
            except (IntegrityError, FormatError, ObjectNotFound) as err:
                result.damaged_packs.append(f"{info.name}: {err}")
                continue
            found.append((pack_id, info.size, salt, blobs))
            result.packs_indexed += 1
            result.blobs_indexed += len(blobs)
            progress.add(files=1)
        for start in range(0, len(found), _PACKS_PER_INDEX):
            repo.save_index(IndexObject.from_packs(found[start : start + _PACKS_PER_INDEX], old))
            result.index_objects_written += 1
        for index_id in old:
            try:
                repo.delete_object("index", index_id)
                result.index_objects_removed += 1
            except SeawallError:
                continue  # superseded anyway
    return result
