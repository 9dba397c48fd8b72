"""seawall: disaster recovery for AI systems.

The public Python API. Every CLI command is a thin layer over these::

    from seawall import LocalStorage, Repository, backup, restore

    repo = Repository.init(LocalStorage("/backups/repo"), password)
    result = backup(repo, ["/data"], tags=["nightly"])
    restore(repo, repo.resolve_snapshot("latest"), "/restore")

and, for a whole AI stack declared in a plan file::

    from seawall import backup_plan, load_plan, restore_plan, run_drill

    plan = load_plan("seawall.yaml")
    backup_plan(plan, repo)
    report = run_drill(plan, repo)
"""

import importlib
from typing import TYPE_CHECKING, Any

from seawall.version import __version__

# Attributes are imported on first use (PEP 562), so that `import seawall` and
# the CLI start fast: the CLI derives the key while the heavy modules load.
_EXPORTS = {
    "BackupResult": "seawall.operations.backup",
    "Cancelled": "seawall.errors",
    "Change": "seawall.operations.inspect",
    "CheckResult": "seawall.operations.check",
    "CopyResult": "seawall.operations.copy",
    "DamagedSnapshot": "seawall.errors",
    "DrillReport": "seawall.plan.drill",
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
    "Plan": "seawall.plan.model",
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
    "backup_plan": "seawall.plan.runner",
    "check": "seawall.operations.check",
    "compliance": "seawall.plan.compliance",
    "copy": "seawall.operations.copy",
    "copy_groups": "seawall.plan.runner",
    "diff": "seawall.operations.inspect",
    "forget": "seawall.operations.forget",
    "forget_ids": "seawall.operations.forget",
    "heal": "seawall.operations.heal",
    "list_groups": "seawall.plan.runner",
    "load_plan": "seawall.plan.model",
    "ls": "seawall.operations.inspect",
    "open_storage": "seawall.storage",
    "plan_status": "seawall.plan.status",
    "prune": "seawall.operations.prune",
    "remove_locks": "seawall.repository.lock",
    "repair_index": "seawall.operations.repair",
    "repair_versions": "seawall.operations.versions",
    "restore": "seawall.operations.restore",
    "restore_plan": "seawall.plan.runner",
    "run_chaos": "seawall.plan.chaos",
    "run_drill": "seawall.plan.drill",
    "stats": "seawall.operations.inspect",
    "storage_report": "seawall.operations.inspect",
    "verify_mlflow": "seawall.operations.verify_mlflow",
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
    from seawall.operations.heal import heal
    from seawall.operations.inspect import Change, RepoStats, diff, ls, stats, storage_report
    from seawall.operations.prune import PruneResult, prune
    from seawall.operations.repair import repair_index
    from seawall.operations.restore import RestoreResult, restore
    from seawall.operations.verify_mlflow import verify_mlflow
    from seawall.operations.versions import repair_versions
    from seawall.plan.chaos import run_chaos
    from seawall.plan.compliance import compliance
    from seawall.plan.drill import DrillReport, run_drill
    from seawall.plan.model import Plan, load_plan
    from seawall.plan.runner import backup_plan, copy_groups, list_groups, restore_plan
    from seawall.plan.status import plan_status
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
    "DrillReport",
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
    "Plan",
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
    "backup_plan",
    "check",
    "compliance",
    "copy",
    "copy_groups",
    "diff",
    "forget",
    "forget_ids",
    "heal",
    "list_groups",
    "load_plan",
    "ls",
    "open_storage",
    "plan_status",
    "prune",
    "remove_locks",
    "repair_index",
    "repair_versions",
    "restore",
    "restore_plan",
    "run_chaos",
    "run_drill",
    "stats",
    "storage_report",
    "verify_mlflow",
]
