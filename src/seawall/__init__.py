"""seawall: disaster recovery for AI systems.

The public Python API. Every CLI command is a thin layer over these::

    from seawall import LocalStorage, Repository, backup, restore

    repo = Repository.init(LocalStorage("/backups/repo"), password)
    result = backup(repo, ["/data"], tags=["nightly"])
    restore(repo, repo.resolve_snapshot("latest"), "/restore")
"""

__version__ = "0.1.0"

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
    SeawallError,
    SnapshotNotFound,
    StorageError,
    StorageFull,
    UsageError,
    WrongPassword,
)
from seawall.operations.backup import BackupResult, backup
from seawall.operations.check import CheckResult, check
from seawall.operations.forget import KeepPolicy, apply_policy, forget, forget_ids
from seawall.operations.inspect import Change, RepoStats, diff, ls, stats
from seawall.operations.prune import PruneResult, prune
from seawall.operations.restore import RestoreResult, restore
from seawall.repository.keys import KdfParams
from seawall.repository.lock import remove_locks
from seawall.repository.repo import Repository
from seawall.repository.snapshot import Node, Snapshot
from seawall.storage import LocalStorage, MemoryStorage, Storage, open_storage

__all__ = [
    "BackupResult",
    "Cancelled",
    "Change",
    "CheckResult",
    "DamagedSnapshot",
    "FormatError",
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
    "diff",
    "forget",
    "forget_ids",
    "ls",
    "open_storage",
    "prune",
    "remove_locks",
    "restore",
    "stats",
]
