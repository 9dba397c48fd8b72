"""seawall: disaster recovery for AI systems.

The public Python API. Every CLI command is a thin layer over these::

    from seawall import LocalStorage, Repository, backup, restore

    repo = Repository.init(LocalStorage("/backups/repo"), password)
    result = backup(repo, ["/data"], tags=["nightly"])
    restore(repo, repo.resolve_snapshot("latest"), "/restore")
"""

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

# Attributes are imported on first use (PEP 562), so that `import seawall` and
# the CLI start fast: the CLI derives the key while the heavy modules load.
_EXPORTS = {
    "BackupResult": "seawall.operations.backup",
    "Cancelled": "seawall.errors",
    "Change": "seawall.operations.inspect",
    "CheckResult": "seawall.operations.check",
    "CopyResult": "seawall.operations.copy",
    "DamagedSnapshot": "seawall.errors",
    "FormatError": "seawall.errors",
    "Immutability": "seawall.repository.config",
    "IntegrityError": "seawall.errors",
    "KdfParams": "seawall.repository.keys",
    "KeepPolicy": "seawall.operations.forget",
    "LocalStorage": "seawall.storage",
    "MemoryStorage": "seawall.storage",
    "Node": "seawall.repository.snapshot",
    "ObjectExists": "seawall.errors",
    "ObjectNotFound": "seawall.errors",
    "Progress": "seawall.engine.progress",
    "ProgressView": "seawall.engine.progress",
    "PruneResult": "seawall.operations.prune",
    "RepoStats": "seawall.operations.inspect",
    "Repository": "seawall.repository.repo",
    "RepositoryExists": "seawall.errors",
    "RepositoryLocked": "seawall.errors",
    "RepositoryNotFound": "seawall.errors",
    "ResidencyViolation": "seawall.errors",
    "RestoreResult": "seawall.operations.restore",
    "SeawallError": "seawall.errors",
    "Snapshot": "seawall.repository.snapshot",
    "SnapshotNotFound": "seawall.errors",
    "Storage": "seawall.storage",
    "StorageError": "seawall.errors",
    "StorageFull": "seawall.errors",
    "UsageError": "seawall.errors",
    "WrongPassword": "seawall.errors",
    "apply_policy": "seawall.operations.forget",
    "backup": "seawall.operations.backup",
    "check": "seawall.operations.check",
    "copy": "seawall.operations.copy",
    "diff": "seawall.operations.inspect",
    "forget": "seawall.operations.forget",
    "forget_ids": "seawall.operations.forget",
    "ls": "seawall.operations.inspect",
    "open_storage": "seawall.storage",
    "prune": "seawall.operations.prune",
    "remove_locks": "seawall.repository.lock",
    "repair_index": "seawall.operations.repair",
    "repair_versions": "seawall.operations.versions",
    "restore": "seawall.operations.restore",
    "stats": "seawall.operations.inspect",
}

if TYPE_CHECKING:
    from seawall.engine.progress import Progress, ProgressView
    from seawall.errors import (
        Cancelled,
        DamagedSnapshot,
        FormatError,
        IntegrityError,
        ObjectExists,
        ObjectNotFound,
        RepositoryExists,
        RepositoryLocked,
        RepositoryNotFound,
        ResidencyViolation,
        SeawallError,
        SnapshotNotFound,
        StorageError,
        StorageFull,
        UsageError,
        WrongPassword,
    )
    from seawall.operations.backup import BackupResult, backup
    from seawall.operations.check import CheckResult, check
    from seawall.operations.copy import CopyResult, copy
    from seawall.operations.forget import KeepPolicy, apply_policy, forget, forget_ids
    from seawall.operations.inspect import Change, RepoStats, diff, ls, stats
    from seawall.operations.prune import PruneResult, prune
    from seawall.operations.repair import repair_index
    from seawall.operations.restore import RestoreResult, restore
    from seawall.operations.versions import repair_versions
    from seawall.repository.config import Immutability
    from seawall.repository.keys import KdfParams
    from seawall.repository.lock import remove_locks
    from seawall.repository.repo import Repository
    from seawall.repository.snapshot import Node, Snapshot
    from seawall.storage import LocalStorage, MemoryStorage, Storage, open_storage


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'seawall' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BackupResult",
    "Cancelled",
    "Change",
    "CheckResult",
    "CopyResult",
    "DamagedSnapshot",
    "FormatError",
    "Immutability",
    "IntegrityError",
    "KdfParams",
    "KeepPolicy",
    "LocalStorage",
    "MemoryStorage",
    "Node",
    "ObjectExists",
    "ObjectNotFound",
    "Progress",
    "ProgressView",
    "PruneResult",
    "RepoStats",
    "Repository",
    "RepositoryExists",
    "RepositoryLocked",
    "RepositoryNotFound",
    "ResidencyViolation",
    "RestoreResult",
    "SeawallError",
    "Snapshot",
    "SnapshotNotFound",
    "Storage",
    "StorageError",
    "StorageFull",
    "UsageError",
    "WrongPassword",
    "__version__",
    "apply_policy",
    "backup",
    "check",
    "copy",
    "diff",
    "forget",
    "forget_ids",
    "ls",
    "open_storage",
    "prune",
    "remove_locks",
    "repair_index",
    "repair_versions",
    "restore",
    "stats",
]
