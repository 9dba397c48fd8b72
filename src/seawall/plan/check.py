"""``seawall plan check``: what a valid plan would protect, and what stands in the way.

:func:`survey` looks at each asset as the machine has it now (files counted,
the database reached, variables looked up by name) without capturing
anything. Problems (a missing path, a server that does not answer) would
make a backup fail; notes are what the user should know (an asset whose
residency keeps it out of a replica). Secret values are never read, only
whether they are set.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from seawall.errors import SeawallError
from seawall.plan.model import (
    AnyAsset,
    CheckpointsAsset,
    ConfigAsset,
    EnvironmentAsset,
    FilesAsset,
    MlflowAsset,
    Plan,
    PostgresAsset,
    SqliteAsset,
    format_duration,
)
from seawall.plan.runner import missing


@dataclass
class Item:
    """One thing an asset protects: a path, a database, a variable."""

    what: str
    files: int | None = None
    bytes: int | None = None
    note: str = ""


@dataclass
class AssetSurvey:
    name: str
    kind: str
    policies: dict[str, Any]
    items: list[Item] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class PlanSurvey:
    plan: Plan
    assets: list[AssetSurvey]
    notes: list[str]

    @property
    def problems(self) -> list[str]:
        return [f"{a.name}: {p}" for a in self.assets for p in a.problems]


def survey(plan: Plan, *, probe: bool = True) -> PlanSurvey:
    """Each asset's policies and what it protects; with ``probe``, sizes and reachability."""
    assets = [_survey_asset(a, probe) for a in plan.assets]
    notes = []
    for asset in plan.assets:
        for replica in plan.repositories.replicas:
            if asset.residency and asset.residency != (replica.region or ""):
                notes.append(
                    f"{asset.name} must stay in region {asset.residency!r}: it will not be "
                    f"copied to replica {replica.name} (region {replica.region or 'none'})"
                )
    return PlanSurvey(plan, assets, notes)


def policies(asset: AnyAsset) -> dict[str, Any]:
    return {
        "rpo": format_duration(asset.rpo) if asset.rpo else None,
        "rto": format_duration(asset.rto) if asset.rto else None,
        "retention": asset.retention.describe() if asset.retention else None,
        "residency": asset.residency,
        "tags": asset.tags,
    }


def _survey_asset(asset: AnyAsset, probe: bool) -> AssetSurvey:
    out = AssetSurvey(asset.name, asset.kind, policies(asset))
    if probe:
        out.problems += missing(asset)
    if isinstance(asset, FilesAsset | CheckpointsAsset):
        excludes = asset.excludes if isinstance(asset, FilesAsset) else []
        for path in asset.paths:
            files, size = _tree_size(str(path), excludes) if probe else (None, None)
            out.items.append(Item(str(path), files, size))
        if excludes:
            out.items.append(Item("excluded: " + ", ".join(excludes)))
    elif isinstance(asset, SqliteAsset):
        size = asset.path.stat().st_size if probe and asset.path.is_file() else None
        out.items.append(Item(str(asset.path), 1 if size is not None else None, size))
    elif isinstance(asset, PostgresAsset):
        _survey_postgres(asset, probe, out)
    elif isinstance(asset, ConfigAsset):
        for label, paths in (("file", asset.files), ("secret file", asset.secret_files)):
            out.items += [Item(f"{label} {p}") for p in paths]
        for label, names in (("variable", asset.env), ("secret variable", asset.secret_env)):
            for name in names:
                state = ("set" if name in os.environ else "not set") if probe else ""
                out.items.append(Item(f"{label} ${name}", note=state))
    elif isinstance(asset, EnvironmentAsset):
        python = str(asset.python) if asset.python else "the Python running seawall"
        out.items.append(Item(f"packages of {python}; OS, CPU, CUDA facts"))
        out.items += [Item(f"lock file {p}") for p in asset.lock_files]
    elif isinstance(asset, MlflowAsset):
        out.items.append(Item(f"backend store {_redact(asset.backend_uri)}"))
        out.items.append(Item(f"artifact store {asset.artifacts}"))
        if probe:
            out.problems += _mlflow_problems(asset)
    return out


def _survey_postgres(asset: PostgresAsset, probe: bool, out: AssetSurvey) -> None:
    from seawall.sources.postgres import PostgresSource

    source = PostgresSource(asset.dsn, asset.schemas, asset.tables)
    selection = (
        f"schemas {', '.join(asset.schemas)}"
        if asset.schemas
        else f"tables {', '.join(asset.tables)}"
        if asset.tables
        else "the whole database"
    )
    item = Item(f"PostgreSQL {source.where}: {selection}")
    out.items.append(item)
    if source.has_password:
        out.problems.append(
            "the dsn holds a password: put it in $PGPASSWORD or ~/.pgpass instead "
            "(the plan is stored with every group)"
        )
    if not probe:
        return
    try:
        facts = source.describe()
    except SeawallError as err:
        out.problems.append(str(err))
        return
    item.bytes = facts["bytes"]
    tables = f"{facts['tables']} table" + ("" if facts["tables"] == 1 else "s")
    item.note = f"{tables}, PostgreSQL {facts['server_version']}"


def _mlflow_problems(asset: MlflowAsset) -> list[str]:
    problems = []
    match = re.match(r"sqlite:///(.+)", asset.backend_uri)
    if match and not os.path.isfile(match[1]):
        problems.append(f"the backend store {match[1]} does not exist")
    if "://" not in asset.artifacts and not os.path.isdir(asset.artifacts):
        problems.append(f"the artifact store {asset.artifacts} does not exist")
    return problems


def _redact(uri: str) -> str:
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", uri)


def _tree_size(root: str, excludes: list[str]) -> tuple[int | None, int | None]:
    """Files and bytes below ``root``, as a backup would read them (excludes applied)."""
    if not os.path.lexists(root):
        return None, None
    if not os.path.isdir(root):
        return 1, os.lstat(root).st_size
    from seawall.engine.archiver import Excluder  # numpy and the repository: on demand

    exclude = Excluder(excludes)
    files = size = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not exclude(os.path.join(dirpath, d))]
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not exclude(path):
                try:
                    size += os.lstat(path).st_size
                    files += 1
                except OSError:
                    continue
    return files, size
