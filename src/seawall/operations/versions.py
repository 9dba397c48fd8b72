"""repair versions: put back, on top, the intact versions an attacker hid.

In an immutable repository an attacker holding the backup's credentials can
delete objects (a delete marker on top) or overwrite them (a new version on
top), but not destroy the retained versions below. Reads already go to the
newest intact version (repository/versions.py); this makes it the current one
again, so other tools see the repository whole and ``check`` is clean:

1. remove what lies on top of it: the delete markers and the versions that
   are not intact (they hold no retention the attacker could not set, so
   usually they can go);
2. if any of those cannot be removed (retained by the attacker, or the client
   may not delete versions), copy the intact version on top instead, written
   with the repository's retention.

Intact versions are never deleted. Takes an exclusive lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from seawall.engine.progress import Progress
from seawall.errors import StorageError, UsageError
from seawall.repository.lock import Lock
from seawall.repository.repo import Repository
from seawall.repository.versions import Touched, VersionedView


@dataclass
class RepairVersionsResult:
    #: name -> what was done to put its intact version back on top
    restored: dict[str, str] = field(default_factory=dict)
    #: objects with no intact version left (check names what they held)
    lost: list[str] = field(default_factory=list)
    dry_run: bool = False


def repair_versions(
    repo: Repository, *, dry_run: bool = False, progress: Progress | None = None
) -> RepairVersionsResult:
    progress = progress or Progress("repair versions")
    result = RepairVersionsResult(dry_run=dry_run)
    if repo.config.immutability is None:
        raise UsageError(
            "this repository is not immutable: its store keeps no retained versions to "
            "repair from; use `seawall repair index` for a damaged index"
        )
    view = repo.view
    if view is None:
        raise StorageError(
            f"this repository is immutable, but the store at {repo.storage.location} shows "
            "no Object Lock, so it has no versions to repair from. Nothing was changed"
        )
    with Lock(repo, exclusive=True):
        progress.start("repair versions: look at every object's versions")
        touched = view.audit(repo.config)
        progress.set_totals(len(touched), None)
        for item in touched:
            progress.check_cancelled()
            if item.good is None:
                result.lost.append(item.name)
            elif dry_run:
                result.restored[item.name] = f"would put back the intact version ({item.state})"
            else:
                result.restored[item.name] = _put_back(view, item)
                view.forget(item.name)
            progress.add(files=1)
    return result


def _put_back(view: VersionedView, item: Touched) -> str:
    assert item.good is not None
    found = [v for v in view.versions.versions(item.name) if v.name == item.name]
    newer = []
    for version in found:
        if version.version_id == item.good.version_id:
            break
        if not version.deleted:
            newer.append(version)
    markers = [v for v in found if v.deleted]
    try:
        for version in markers + newer:
            view.versions.delete_version(item.name, version.version_id)
    except StorageError:
        view.versions.restore_version(item.name, item.good.version_id)
        return f"{item.state}: copied the intact version back on top"
    parts = []
    if markers:
        parts.append(f"removed {len(markers)} delete marker(s)")
    if newer:
        parts.append(f"removed {len(newer)} version(s) written over it")
    return f"{item.state}: " + " and ".join(parts)
