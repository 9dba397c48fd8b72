"""Drills: restore a plan's assets into a sandbox, prove them whole, and time it.

:func:`run_drill` takes each asset of the plan from the newest complete
snapshot group holding it (or the assets of the group ``snapshot`` names)
and, asset by asset in the group's order (MLflow last), restores it under a
fresh sandbox directory with fresh databases (new names on the asset's
PostgreSQL server) and, for an MLflow asset, a fresh ``mlflow server`` on
the restored stores. Then it verifies:

- **bytes**: every restored file is read back from disk and cut into the
  snapshot's chunks, each of which must hash to its id in the snapshot (the
  restore checked the repository's data; this checks what landed on disk),
  and each file's SHA-256 is recorded;
- **tables**: rows and checksums per table, against those the capture saw;
- **golden outputs**: the asset's smoke test on the restored model, fed the
  inputs recorded at backup, must give the recorded outputs (hooks.py);
- **registry**: ``verify mlflow`` between the captured manifest and the
  fresh server;
- **checks**: the plan's commands, each with its timeout (hooks.py).

**Where from.** The primary repository first, then each replica in the
plan's order (only the one named with ``from_replica``). An asset whose
restore fails (the repository is unreachable, its index or data damaged)
is tried from the next repository; the damage is diagnosed (``check
--read-data``: the damaged packs are named, with the assets they hurt) and
reported as a finding, and each asset says where it was recovered from.
A replica holds copies made by ``copy``: its groups are found from the
group and asset its snapshots record.

**Time.** RTO per asset is the time from the start of the drill to that
asset verified (assets are recovered one after another, so this is when it
would be back in service); the drill's RTO is the time to the last one.
RPO is the age of the restored data at the start of the drill, and the
worst gap between consecutive groups holding the asset within its retention
window (the span its finest keep_* rule covers: keep_last N, the newest N;
keep_hourly N, N hours...; all groups without a retention), the gap up to
the drill included. Both are compared with the asset's targets.

**Cleanup.** The sandbox, the databases and the servers are removed at the
end, also when the drill fails or is interrupted (SIGINT, SIGTERM).

A record of kind ``drill`` is appended to the primary repository (to the
replica recovered from when the primary is unreachable), and the report
(report.py) draws the history of those records.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from seawall.errors import (
    Cancelled,
    RepositoryNotFound,
    SeawallError,
    SnapshotNotFound,
    SourceError,
    StorageError,
    UsageError,
)
from seawall.operations.check import check
from seawall.plan.anomaly import clean_groups
from seawall.plan.hooks import compare_outputs, model_paths, run_command, run_smoke
from seawall.plan.model import (
    AnyAsset,
    MlflowAsset,
    Plan,
    PostgresAsset,
    Retention,
    SqliteAsset,
    parse_plan,
)
from seawall.plan.model import (
    Repository as RepositorySpec,
)
from seawall.plan.runner import Group, find_group, list_groups, parse_at, restore_plan
from seawall.repository.repo import Repository
from seawall.repository.snapshot import DIR, FILE, SYMLINK, Snapshot
from seawall.storage import Storage, open_storage

RECORD_KIND = "drill"
PRIMARY = "primary"
#: Files per asset whose SHA-256 a drill record keeps (a record must stay small).
FILES_IN_RECORD = 10_000

#: Exit codes of `seawall drill` (docs/ci.md).
EXIT_FAILED = 1
EXIT_TARGET_MISSED = 4
EXIT_DEGRADED = 5

Log = Callable[[str], None]

_MLFLOW_ENV = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}


# --- the repositories of a plan -----------------------------------------------------------------


def read_password(spec_env: str | None, spec_file: Path | None, fallback: str | None) -> str:
    """A repository's password: from where its plan entry says, else ``fallback``."""
    if spec_env:
        value = os.environ.get(spec_env)
        if not value:
            raise UsageError(f"the plan reads a repository password from ${spec_env}, not set")
        return value
    if spec_file:
        try:
            return spec_file.read_text().rstrip("\r\n")
        except OSError as err:
            raise UsageError(f"cannot read the password file {spec_file}: {err.strerror}") from None
    if not fallback:
        raise UsageError(
            "no password for the repository: set password_env or password_file in the plan"
        )
    return fallback


@dataclass
class Repositories:
    """The plan's primary repository and replicas, opened when first needed.

    ``opened`` holds repositories opened elsewhere (a chaos copy); ``wrap`` wraps a
    store before it is opened; ``password`` is the primary's, and serves the
    replicas whose plan entry names no password of their own.
    """

    plan: Plan
    password: str | None = None
    opened: dict[str, Repository] = field(default_factory=dict)
    wrap: Callable[[str, Storage], Storage] | None = None
    #: a location for the primary other than the plan's (the command line's --repo)
    primary_location: str | None = None
    primary_s3_endpoint: str | None = None
    #: called with each repository opened (the CLI's audit log hooks in here)
    on_open: Callable[[Repository], None] | None = None
    _failed: dict[str, SeawallError] = field(default_factory=dict, init=False, repr=False)

    def names(self) -> list[str]:
        return [PRIMARY, *(r.name for r in self.plan.repositories.replicas)]

    def label(self, name: str) -> str:
        return "the primary repository" if name == PRIMARY else f"replica {name}"

    def location(self, name: str) -> str:
        if name in self.opened:
            return self.opened[name].storage.location
        if name == PRIMARY:
            return self.primary_location or self.plan.repositories.primary.location
        return self.spec(name).location

    def spec(self, name: str) -> RepositorySpec:
        if name == PRIMARY:
            return self.plan.repositories.primary
        for replica in self.plan.repositories.replicas:
            if replica.name == name:
                return replica
        names = ", ".join(r.name for r in self.plan.repositories.replicas) or "none"
        raise UsageError(f"the plan {self.plan.origin} has no replica {name!r} (replicas: {names})")

    def open(self, name: str) -> Repository:
        if name in self.opened:
            return self.opened[name]
        if name in self._failed:
            raise self._failed[name]
        spec = self.spec(name)
        try:
            endpoint = spec.s3_endpoint
            if name == PRIMARY and self.primary_s3_endpoint:
                endpoint = self.primary_s3_endpoint
            storage = open_storage(self.location(name), s3_endpoint=endpoint)
            if self.wrap is not None:
                storage = self.wrap(name, storage)
            # The primary's password, when given, was already found the way the command
            # line finds it (its options first, then the plan's entry).
            password = (
                self.password
                if name == PRIMARY and self.password
                else read_password(spec.password_env, spec.password_file, self.password)
            )
            repo = Repository.open(storage, password)
        except SeawallError as err:
            self._failed[name] = err
            raise
        self.opened[name] = repo
        if self.on_open is not None:
            self.on_open(repo)
        return repo


# --- groups, in a primary (records) or a replica (copied snapshots) ------------------------------


def groups_in(repo: Repository, plan: Plan) -> list[Group]:
    """The complete groups of ``repo``, oldest first: its group records, or in a
    replica (copy does not copy records) the groups its copied snapshots record,
    complete when they hold every asset of the plan that may be stored there."""
    recorded = list_groups(repo)
    if recorded:
        return recorded
    found: dict[str, dict[str, Snapshot]] = {}
    for snap in repo.list_snapshots():
        group, name = snap.asset.get("group"), snap.asset.get("name")
        if isinstance(group, str) and isinstance(name, str):
            found.setdefault(group, {})[name] = snap
    region = repo.config.region
    needed = [a.name for a in plan.assets if not a.residency or a.residency == region]
    groups = []
    for group_id, snaps in found.items():
        if not needed or any(name not in snaps for name in needed):
            continue
        ordered = sorted(snaps.values(), key=lambda s: (s.asset.get("kind") == "mlflow", s.time))
        groups.append(
            Group(
                id=group_id,
                time=min(_captured_at(s) for s in ordered),
                hostname=ordered[0].hostname,
                plan_file=plan.origin,
                plan_text=plan.text,
                assets={s.asset["name"]: s.id.hex() for s in ordered},
            )
        )
    return sorted(groups, key=lambda g: (g.time, g.id))


def pick_group(repo: Repository, plan: Plan, snapshot: str | None, asset: str | None) -> Group:
    """The group to drill in ``repo``: the one ``snapshot`` names (a group or snapshot
    id, a time, "latest"), else the newest holding ``asset`` (or the newest)."""
    groups = groups_in(repo, plan)
    where = repo.storage.location
    if snapshot and snapshot != "latest":
        if list_groups(repo):
            return find_group(repo, parse_at(snapshot), clean=True, asset=asset)
        name = snapshot.lower()
        originals = {s.id.hex(): (s.original or s.id).hex() for s in repo.list_snapshots()}
        for group in reversed(groups):
            ids = [*group.assets.values(), *(originals.get(i, "") for i in group.assets.values())]
            if group.id.startswith(name) or any(i.startswith(name) for i in ids if i):
                return group
        raise SnapshotNotFound(f"no complete snapshot group in {where} matches {snapshot!r}")
    usable = [g for g in groups if asset is None or asset in g.assets]
    what = f" holding asset {asset!r}" if asset else ""
    if not usable:
        raise SnapshotNotFound(
            f"{where} has no complete snapshot group{what}: run `seawall backup --plan` first"
        )
    clean = clean_groups(repo, usable, asset)
    if not clean:
        raise SnapshotNotFound(
            f"every complete snapshot group{what} in {where} holds a snapshot marked suspect "
            "by the anomaly check: give a group id to drill one anyway"
        )
    return clean[-1]


def _captured_at(snap: Snapshot) -> datetime:
    text = snap.asset.get("captured_at")
    try:
        return datetime.fromisoformat(text) if isinstance(text, str) else snap.datetime
    except ValueError:
        return snap.datetime


# --- the report ----------------------------------------------------------------------------------


@dataclass
class DrillCheck:
    name: str
    passed: bool
    detail: str = ""
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "detail": self.detail,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass
class AssetDrill:
    name: str
    kind: str
    #: the group it was drilled from
    group: str = ""
    #: where it was recovered from: "primary" or a replica's name ("" if nowhere)
    source: str = ""
    #: the snapshot restored (id hex in that repository) and its original (the primary's)
    snapshot: str = ""
    original: str = ""
    captured_at: str = ""
    #: step -> seconds (restore, verify bytes, golden outputs...)
    steps: dict[str, float] = field(default_factory=dict)
    checks: list[DrillCheck] = field(default_factory=list)
    #: path in the snapshot ("/ckpt/model.pt") -> SHA-256 of the restored file
    files: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    rto_s: float | None = None
    rpo_s: float | None = None
    rpo_worst_gap_s: float | None = None
    rto_target_s: float | None = None
    rpo_target_s: float | None = None
    error: str = ""
    #: what went wrong on the way (a repository that failed, damage it has)
    findings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Restored, and every check passed (targets are judged apart)."""
        return not self.error and bool(self.checks) and all(c.passed for c in self.checks)

    def missed_targets(self) -> list[str]:
        out = []
        rto, rto_target = self.rto_s, self.rto_target_s
        if rto is not None and rto_target is not None and rto > rto_target:
            out.append(f"RTO {_secs(rto)} exceeds the target {_secs(rto_target)}")
        if self.rpo_target_s is not None:
            if self.rpo_s is not None and self.rpo_s > self.rpo_target_s:
                out.append(
                    f"RPO: the restored data is {_secs(self.rpo_s)} old, over the "
                    f"target {_secs(self.rpo_target_s)}"
                )
            if self.rpo_worst_gap_s is not None and self.rpo_worst_gap_s > self.rpo_target_s:
                out.append(
                    f"RPO: a gap of {_secs(self.rpo_worst_gap_s)} without a snapshot, over "
                    f"the target {_secs(self.rpo_target_s)}"
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "group": self.group,
            "source": self.source,
            "snapshot": self.snapshot,
            "original": self.original,
            "captured_at": self.captured_at,
            "passed": self.passed,
            "rto_s": _round(self.rto_s),
            "rpo_s": _round(self.rpo_s),
            "rpo_worst_gap_s": _round(self.rpo_worst_gap_s),
            "rto_target_s": self.rto_target_s,
            "rpo_target_s": self.rpo_target_s,
            "missed_targets": self.missed_targets(),
            "steps": {k: round(v, 3) for k, v in self.steps.items()},
            "checks": [c.to_dict() for c in self.checks],
            "error": self.error,
            "findings": self.findings,
            "facts": self.facts,
            "files": self.files,
        }


@dataclass
class DrillReport:
    time: datetime
    plan_file: str
    group: str = ""
    group_time: str = ""
    repository: str = ""
    assets: list[AssetDrill] = field(default_factory=list)
    rto_s: float = 0.0
    #: what went wrong outside any one asset (no group found, a repository unreachable)
    findings: list[str] = field(default_factory=list)
    error: str = ""
    sandbox: str = ""
    #: the drill record's id, and the repository it was appended to
    record: str = ""
    recorded_in: str = ""
    #: every drill record of that repository, oldest first (this one last)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def checks_passed(self) -> bool:
        return not self.error and bool(self.assets) and all(a.passed for a in self.assets)

    @property
    def missed_targets(self) -> list[str]:
        return [f"{a.name}: {m}" for a in self.assets for m in a.missed_targets()]

    @property
    def passed(self) -> bool:
        return self.checks_passed and not self.missed_targets

    @property
    def degraded(self) -> bool:
        """Recovered, but not all from the primary repository."""
        return any(a.source and a.source != PRIMARY for a in self.assets)

    @property
    def exit_code(self) -> int:
        if not self.checks_passed:
            return EXIT_FAILED
        if self.missed_targets:
            return EXIT_TARGET_MISSED
        return EXIT_DEGRADED if self.degraded else 0

    def record_doc(self, recorded_in: str) -> dict[str, Any]:
        """The drill record: small, and with the keys seawall.degrade reads. Snapshot ids
        are those of ``recorded_in`` (PRIMARY or a replica's name)."""
        assets = {}
        for a in self.assets:
            snapshot = a.snapshot if a.source == recorded_in or not a.original else a.original
            assets[a.name] = {
                "kind": a.kind,
                "group": a.group,
                "snapshot": snapshot,
                "source": a.source,
                "passed": a.passed,
                "rto_s": _round(a.rto_s),
                "rpo_s": _round(a.rpo_s),
                "rpo_worst_gap_s": _round(a.rpo_worst_gap_s),
                "rto_target_s": a.rto_target_s,
                "rpo_target_s": a.rpo_target_s,
                "checks": [c.to_dict() for c in a.checks],
                "error": a.error,
                "files": dict(list(a.files.items())[:FILES_IN_RECORD]),
            }
        return {
            "time": self.time.isoformat(),
            "passed": self.passed,
            "checks_passed": self.checks_passed,
            "missed_targets": self.missed_targets,
            "degraded": self.degraded,
            "plan_file": self.plan_file,
            "group": self.group,
            "rto_s": _round(self.rto_s),
            "findings": self.findings + [f for a in self.assets for f in a.findings],
            "error": self.error,
            "assets": assets,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat(),
            "plan_file": self.plan_file,
            "repository": self.repository,
            "group": self.group,
            "group_time": self.group_time,
            "passed": self.passed,
            "checks_passed": self.checks_passed,
            "missed_targets": self.missed_targets,
            "degraded": self.degraded,
            "exit_code": self.exit_code,
            "rto_s": round(self.rto_s, 3),
            "error": self.error,
            "findings": self.findings,
            "record": self.record,
            "recorded_in": self.recorded_in,
            "assets": {a.name: a.to_dict() for a in self.assets},
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _secs(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.1f}h"


# --- cleanup, also on SIGINT and SIGTERM ---------------------------------------------------------


#: Where running drills note what they created (one JSON ledger each), so that the
#: next drill undoes what one killed outright (SIGKILL, a lost host) left behind.
LEDGERS = Path(tempfile.gettempdir()) / "seawall-drills"


class Cleanup(contextlib.ExitStack):
    """Undo what the drill created (servers, databases, the sandbox), last first, however
    the drill ends. SIGTERM is turned into KeyboardInterrupt while it is open (in the
    main thread), and both signals wait while the cleanup runs, so that a second
    Ctrl-C cannot leave a database or a server behind. What it must undo is also noted
    in a ledger on disk (``track``), for :func:`sweep_leftovers` should this process die
    without running its cleanup."""

    def __init__(self, ledgers: Path = LEDGERS) -> None:
        super().__init__()
        self.ledger = ledgers / f"{os.getpid()}-{secrets.token_hex(4)}.json"
        self._noted: dict[str, Any] = {"pid": os.getpid(), "started": _now_iso()}

    def __enter__(self) -> Cleanup:
        super().__enter__()
        self._previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, _interrupt)
        self._write()
        self.callback(self.ledger.unlink, missing_ok=True)  # registered first: undone last
        return self

    def track(self, kind: str, value: Any) -> None:
        """Note something to undo (kind: sandboxes, databases, backends or servers).
        Never a password: connection strings are noted without one."""
        self._noted.setdefault(kind, []).append(value)
        self._write()

    def _write(self) -> None:
        # Best effort: a drill must not fail because the temporary directory is full.
        with contextlib.suppress(OSError):
            self.ledger.parent.mkdir(mode=0o700, exist_ok=True)
            tmp = self.ledger.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._noted))
            tmp.chmod(0o600)
            tmp.replace(self.ledger)

    def __exit__(self, *exc: Any) -> bool:
        main = threading.current_thread() is threading.main_thread()
        blocked = {signal.SIGINT, signal.SIGTERM}
        if main:
            signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            return bool(super().__exit__(*exc))
        finally:
            if main:
                signal.signal(signal.SIGTERM, self._previous)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def sweep_leftovers(ledgers: Path = LEDGERS) -> list[str]:
    """Undo what drills killed outright left behind (their process is gone, their ledger
    is not): stop their MLflow servers, drop their databases, remove their sandboxes.
    Returns what was cleaned, for the report."""
    done = []
    for path in sorted(ledgers.glob("*.json")) if ledgers.is_dir() else []:
        try:
            noted = json.loads(path.read_text())
            pid = int(noted["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(pid):
            continue
        for server in noted.get("servers", []):
            _stop_orphan_server(int(server))
        for dsn, name in noted.get("databases", []):
            _drop_database(str(dsn), str(name))
        for uri in noted.get("backends", []):
            from seawall.sources.mlflow import drop_backend
            from seawall.sources.mlflow_stores import parse_backend

            with contextlib.suppress(SeawallError, ValueError):
                drop_backend(parse_backend(str(uri)))
        for box in noted.get("sandboxes", []):
            shutil.rmtree(box, ignore_errors=True)
        path.unlink(missing_ok=True)
        what = ", ".join(
            f"{len(noted.get(k, []))} {k}"
            for k in ("servers", "databases", "backends", "sandboxes")
            if noted.get(k)
        )
        done.append(
            f"cleaned up after a drill killed at {noted.get('started', '?')} (process {pid}): "
            + (what or "nothing was left")
        )
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: not ours to judge
    return True


def _stop_orphan_server(pid: int) -> None:
    """Stop a drill's `mlflow server` (the leader of its own process group), if that
    pid is still one: a pid reused by another program is left alone."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"mlflow" in cmdline:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGTERM)


def _without_password(dsn: str) -> str:
    """A connection string (libpq or URL form) without its password, for the ledger."""
    from urllib.parse import urlsplit, urlunsplit

    if "://" in dsn:
        parts = urlsplit(dsn)
        if parts.password is not None:
            host = parts.hostname or ""
            netloc = f"{parts.username}@{host}" if parts.username else host
            netloc += f":{parts.port}" if parts.port else ""
            return urlunsplit(parts._replace(netloc=netloc))
        return dsn
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(dsn)
    params.pop("password", None)
    return make_conninfo(**{k: str(v) for k, v in params.items()})


# --- the drill -----------------------------------------------------------------------------------


def run_drill(
    plan: Plan,
    repo: Repository | Repositories | None,
    *,
    asset: str | None = None,
    snapshot: str | None = None,
    from_replica: str | None = None,
    sandbox: str | Path | None = None,
    keep_sandbox: bool = False,
    record: bool = True,
    log: Log | None = None,
) -> DrillReport:
    """Drill ``plan`` (see the module docstring). ``repo`` is the primary repository
    (or the plan's repositories; None: open them from the plan). The report says
    what passed; nothing is raised for a failed check, a missed target or a damaged
    repository, only for bad input (UsageError) or an interrupt."""
    repos = repo if isinstance(repo, Repositories) else Repositories(plan)
    if isinstance(repo, Repository):
        repos.opened.setdefault(PRIMARY, repo)
    if asset is not None:
        plan.asset(asset)  # UsageError for a name the plan lacks
    if from_replica:
        repos.spec(from_replica)  # UsageError for a replica the plan lacks
    order = [from_replica] if from_replica else repos.names()
    started = datetime.now(UTC)
    t0 = time.monotonic()
    report = DrillReport(started, plan.origin, repository=repos.location(order[0]))
    say = log or (lambda _m: None)
    for line in sweep_leftovers():
        say(line)
        report.findings.append(line)
    with Cleanup() as cleanup:
        box = _sandbox(sandbox, cleanup, keep_sandbox)
        report.sandbox = str(box)
        drill = _Drill(plan, repos, order, box, cleanup, say, report, t0)
        drill.run(asset, snapshot)
        report.rto_s = time.monotonic() - t0
    if record:
        _save_record(report, repos, order)
    return report


def _sandbox(sandbox: str | Path | None, cleanup: Cleanup, keep: bool) -> Path:
    if sandbox is None:
        box = Path(tempfile.mkdtemp(prefix="seawall-drill-"))
    else:
        parent = Path(sandbox).expanduser().absolute()
        parent.mkdir(parents=True, exist_ok=True)
        box = Path(tempfile.mkdtemp(prefix="drill-", dir=parent))
    if not keep:
        cleanup.callback(shutil.rmtree, box, ignore_errors=True)
        cleanup.track("sandboxes", str(box))
    return box


@dataclass
class _Restored:
    repo: Repository
    snapshot: Snapshot
    #: where the asset's files are
    dest: Path
    facts: dict[str, Any]
    mismatches: list[str]
    options: dict[str, str]


class _Drill:
    def __init__(
        self,
        plan: Plan,
        repos: Repositories,
        order: list[str],
        box: Path,
        cleanup: Cleanup,
        log: Log,
        report: DrillReport,
        t0: float,
    ) -> None:
        self.plan, self.repos, self.order, self.box = plan, repos, order, box
        self.cleanup, self.log, self.report, self.t0 = cleanup, log, report, t0
        self.plan_dir = Path(plan.origin).absolute().parent
        self.token = secrets.token_hex(4)
        #: repository name -> its complete groups
        self.groups: dict[str, list[Group]] = {}
        #: repository name -> what check found damaged in it
        self.diagnosed: dict[str, list[str]] = {}
        #: what every check is told: the sandbox, and each asset restored so far
        self.env: dict[str, str] = {
            "SEAWALL_SANDBOX": str(box),
            "SEAWALL_PLAN_DIR": str(self.plan_dir),
        }

    # --- the group ---------------------------------------------------------------------------

    def run(self, asset: str | None, snapshot: str | None) -> None:
        found = self._first_group(asset, snapshot)
        if found is None:
            return
        where, group = found
        self.report.group, self.report.group_time = group.id, group.time.isoformat()
        if asset and asset not in group.assets:
            self.report.error = f"group {group.short_id} has no asset {asset!r}"
            return
        if asset or snapshot:
            todo = [(name, group) for name in ([asset] if asset else group.assets)]
        else:
            todo = self._newest_of_each(where, group)
        recorded: dict[str, Plan] = {}
        for name, of in todo:
            if of.id not in recorded:
                recorded[of.id] = parse_plan(
                    of.plan_text,
                    origin=f"the plan recorded in group {of.short_id}",
                    base=self.plan_dir,
                )
            spec = _spec_in(recorded[of.id], self.plan, name)
            item = AssetDrill(name, spec.kind, group=of.id)
            self.report.assets.append(item)
            self._drill_asset(item, spec, of)

    def _newest_of_each(self, where: str, newest: Group) -> list[tuple[str, Group]]:
        """Each asset of the plan from the newest group holding it (a scheduled backup
        makes groups of the assets due together); the newest group's order, MLflow
        last. An asset no group holds fails the drill."""
        groups = self._groups(where)
        names = list(newest.assets)
        names += sorted(
            (a.name for a in self.plan.assets if a.name not in names),
            key=lambda n: self.plan.asset(n).kind == "mlflow",
        )
        todo = []
        for name in names:
            holding = [g for g in groups if name in g.assets]
            clean = clean_groups(self.repos.open(where), holding, name, self.log)
            if clean:
                todo.append((name, clean[-1]))
                continue
            current = self._current(name)
            item = AssetDrill(name, current.kind if current is not None else "")
            item.error = (
                f"every complete snapshot group holding it in {self.repos.label(where)} is "
                "marked suspect by the anomaly check"
                if holding
                else f"no complete snapshot group in {self.repos.label(where)} holds it"
            )
            self.report.assets.append(item)
        return todo

    def _first_group(self, asset: str | None, snapshot: str | None) -> tuple[str, Group] | None:
        """The repository to start from (the first that answers) and the group there."""
        for name in self.order:
            try:
                repo = self.repos.open(name)
                group = pick_group(repo, self.plan, snapshot, asset)
            except (SnapshotNotFound, UsageError) as err:
                self.report.error = str(err)
                return None
            except SeawallError as err:
                self.report.findings.append(f"{self.repos.label(name)}: {_unreachable(err)}")
                continue
            where = self.repos.label(name)
            self.log(f"drilling group {group.short_id} of {group.time.isoformat()} from {where}")
            return name, group
        self.report.error = "no repository of the plan could be read: " + "; ".join(
            self.report.findings
        )
        return None

    def _groups(self, name: str) -> list[Group]:
        if name not in self.groups:
            self.groups[name] = groups_in(self.repos.open(name), self.plan)
        return self.groups[name]

    def _group_in(self, name: str, group_id: str) -> Group | None:
        return next((g for g in self._groups(name) if g.id == group_id), None)

    # --- one asset -----------------------------------------------------------------------------

    def _drill_asset(self, item: AssetDrill, spec: AnyAsset, group: Group) -> None:
        current = self._current(item.name)
        if current is not None:
            item.rto_target_s = current.rto.total_seconds() if current.rto else None
            item.rpo_target_s = current.rpo.total_seconds() if current.rpo else None
        done = self._restore(item, spec, group)
        if done is None:
            return
        item.facts = {k: v for k, v in done.facts.items() if k not in _LOCAL_FACTS}
        self._verify_bytes(item, done)
        if done.mismatches:
            item.checks.append(DrillCheck("tables", False, "; ".join(done.mismatches)))
        elif isinstance(done.facts.get("tables"), dict):
            count = len(done.facts["tables"])
            item.checks.append(DrillCheck("tables", True, f"{count} tables: rows and checksums"))
        env = self._asset_env(item.name, spec, done)
        if isinstance(spec, MlflowAsset):
            self._verify_registry(item, done, env)
        self._goldens(item, spec, done, env)
        self._checks(item, spec, env)
        item.rto_s = time.monotonic() - self.t0
        times = [g.time for g in self._groups(item.source) if item.name in g.assets]
        retention = current.retention if current is not None else None
        item.rpo_s = max(0.0, (self.report.time - _captured_at(done.snapshot)).total_seconds())
        item.rpo_worst_gap_s = worst_gap(times, self.report.time, retention)
        verdict = "passed" if item.passed else "FAILED"
        self.log(f"  {item.name}: {verdict}, RTO {_secs(item.rto_s)}")

    def _current(self, name: str) -> AnyAsset | None:
        """The asset as the plan has it now (its targets, hooks), if it still has it."""
        try:
            return self.plan.asset(name)
        except UsageError:
            return None

    def _restore(self, item: AssetDrill, spec: AnyAsset, group: Group) -> _Restored | None:
        """Restore the asset from the first repository that can; None if none could."""
        for attempt, name in enumerate(self.order):
            started = time.monotonic()
            label = self.repos.label(name)
            try:
                repo = self.repos.open(name)
                here = self._group_in(name, group.id)
            except SeawallError as err:
                item.findings.append(f"{label}: {_unreachable(err)}")
                continue
            if here is None or item.name not in here.assets:
                item.findings.append(
                    f"{label} holds no complete copy of it in group {group.short_id}"
                )
                continue
            target = self.box / f"restore-{attempt}"
            options = self._options(item.name, spec, attempt)
            self.log(f"restoring {item.name} ({spec.kind}) from {label}")
            try:
                result = restore_plan(
                    self.plan, repo, target, asset=item.name, at=here, options=options
                )
            except (UsageError, Cancelled):
                raise
            except StorageError as err:
                item.findings.append(f"{label}: {_unreachable(err)}")
                continue
            except SeawallError as err:  # damaged data or index, a restore that failed
                item.findings.append(f"{label}: {err}{self._diagnose(name, repo, here)}")
                continue
            restored = result.assets[0]
            snap = restored.snapshot
            item.source, item.snapshot = name, snap.id.hex()
            item.original = (snap.original or snap.id).hex()
            item.captured_at = _captured_at(snap).isoformat()
            item.steps["restore"] = time.monotonic() - started
            if attempt:
                self.log(f"  {item.name}: recovered from {label}")
            return _Restored(
                repo,
                snap,
                target / item.name,
                dict(restored.facts),
                restored.mismatches,
                options.get(item.name, {}),
            )
        item.error = "it could not be restored from any repository: " + "; ".join(item.findings)
        return None

    def _diagnose(self, name: str, repo: Repository, group: Group) -> str:
        """What is damaged in ``repo`` (check --read-data, once per repository): the
        packs, the index, and the assets of the group that lose data."""
        if name not in self.diagnosed:
            self.log(f"checking {self.repos.label(name)} to locate the damage")
            try:
                result = check(_fresh(repo), read_data=True)
            except SeawallError as err:
                self.diagnosed[name] = [f"it cannot be checked: {err}"]
            else:
                lines = [f"pack {p[:12]} is {why}" for p, why in result.damaged_packs.items()]
                lines += [e for e in result.errors if e.startswith("index ")]
                assets = {sid[:8]: asset for asset, sid in group.assets.items()}
                hurt = sorted(
                    f"{assets[s]} ({', '.join(paths[:3])}{', ...' if len(paths) > 3 else ''})"
                    for s, paths in result.damaged.items()
                    if s in assets
                )
                if hurt:
                    lines.append("damaged assets: " + "; ".join(hurt))
                self.diagnosed[name] = lines
        found = self.diagnosed[name]
        return (". Diagnosis: " + "; ".join(found)) if found else ""

    def _options(self, name: str, spec: AnyAsset, attempt: int) -> dict[str, dict[str, str]]:
        """Fresh databases and a fresh artifact store, removed at the end."""
        suffix = f"drill_{self.token}_{attempt}"
        if isinstance(spec, PostgresAsset):
            from psycopg.conninfo import conninfo_to_dict

            from seawall.sources.postgres import replace_dbname

            source = str(conninfo_to_dict(spec.dsn).get("dbname") or "db")
            database = f"{source[: 62 - len(suffix)]}_{suffix}"
            server = replace_dbname(spec.dsn, "postgres")
            self.cleanup.callback(_drop_database, server, database)
            self.cleanup.track("databases", [_without_password(server), database])
            return {name: {"database": database}}
        if isinstance(spec, MlflowAsset):
            from seawall.sources.mlflow import drop_backend
            from seawall.sources.mlflow_stores import parse_backend

            uri = _fresh_backend(spec.backend_uri, self.box / f"{name}-{attempt}.db", suffix)
            self.cleanup.callback(drop_backend, parse_backend(uri))
            if not uri.startswith("sqlite"):  # a SQLite backend goes with the sandbox
                self.cleanup.track("backends", _without_password(uri))
            artifacts = self.box / f"{name}-{attempt}-artifacts"
            return {name: {"backend_uri": uri, "artifacts": str(artifacts)}}
        return {}

    # --- verification ----------------------------------------------------------------------------

    def _verify_bytes(self, item: AssetDrill, done: _Restored) -> None:
        started = time.monotonic()
        try:
            files, problems, size = verify_restored(done.repo, done.snapshot, done.dest)
        except SeawallError as err:
            files, problems, size = {}, [str(err)], 0
        item.files = files
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        detail = (
            "; ".join(problems[:5]) + more
            if problems
            else f"{len(files)} files, {size} bytes: every chunk hashes to its id in the snapshot"
        )
        took = time.monotonic() - started
        item.steps["verify bytes"] = took
        item.checks.append(DrillCheck("bytes", not problems, detail, took))

    def _verify_registry(self, item: AssetDrill, done: _Restored, env: dict[str, str]) -> None:
        """A fresh ``mlflow server`` on the restored stores, compared through its API
        with the manifest captured with the registry."""
        from seawall.operations.verify_mlflow import MANIFEST, verify_mlflow
        from seawall.sources.mlflow import MlflowServer

        started = time.monotonic()
        server = MlflowServer(
            _server_uri(done.options["backend_uri"]),
            done.options["artifacts"],
            port=_free_port(),
            log=self.box / f"mlflow-{item.name}.log",
            env=_MLFLOW_ENV,
        )
        self.cleanup.callback(server.stop)
        try:
            server.start(timeout=120)
        except SourceError as err:
            item.checks.append(DrillCheck("registry", False, str(err)))
            return
        if server.pid is not None:
            self.cleanup.track("servers", server.pid)
        item.steps["start mlflow server"] = time.monotonic() - started
        env["MLFLOW_TRACKING_URI"] = server.url
        self.env[f"SEAWALL_MLFLOW_{_env_name(item.name)}"] = server.url
        item.facts["server_url"] = server.url
        started = time.monotonic()
        try:
            result = verify_mlflow(str(done.dest / MANIFEST), server.url)
        except SeawallError as err:
            item.checks.append(DrillCheck("registry", False, str(err)))
            return
        took = time.monotonic() - started
        item.steps["verify registry"] = took
        counts = result.counts["restored"]
        detail = (
            ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items())
            + ": as captured, through a fresh server"
            if result.ok
            else "; ".join(str(d) for d in result.differences[:5])
        )
        item.checks.append(DrillCheck("registry", result.ok, detail, took))

    def _goldens(
        self, item: AssetDrill, spec: AnyAsset, done: _Restored, env: dict[str, str]
    ) -> None:
        test = getattr(self._current(item.name) or spec, "smoke_test", None)
        if test is None:
            return
        started = time.monotonic()
        golden = done.snapshot.asset.get("goldens")
        if not isinstance(golden, dict) or "outputs" not in golden:
            why = golden.get("error") if isinstance(golden, dict) else None
            detail = (
                f"no golden outputs were recorded at backup: {why}"
                if why
                else "no golden outputs were recorded at backup (the snapshot predates "
                "the smoke test)"
            )
            item.checks.append(DrillCheck("golden outputs", False, detail))
            return
        store = Path(done.options["artifacts"]) if isinstance(spec, MlflowAsset) else done.dest
        try:
            got = run_smoke(
                test,
                model_paths(spec, store),
                plan_dir=self.plan_dir,
                inputs=golden["inputs"],
                tracking_uri=env.get("MLFLOW_TRACKING_URI"),
            )
        except SourceError as err:
            item.checks.append(DrillCheck("golden outputs", False, str(err)))
            return
        diff = compare_outputs(golden["outputs"], got["outputs"], test.rtol, test.atol)
        took = time.monotonic() - started
        item.steps["golden outputs"] = took
        detail = (
            f"{_count(golden['outputs'])} outputs on the recorded inputs, within rtol "
            f"{test.rtol:g} and atol {test.atol:g}"
            if diff is None
            else f"the restored model gives other outputs: {diff}"
        )
        item.checks.append(DrillCheck("golden outputs", diff is None, detail, took))

    def _checks(self, item: AssetDrill, spec: AnyAsset, env: dict[str, str]) -> None:
        current = self._current(item.name) or spec
        for i, custom in enumerate(getattr(current, "checks", [])):
            name = f"check {custom.name or i + 1}"
            timeout = custom.timeout.total_seconds()
            self.log(f"  {item.name}: {name}")
            ran = run_command(
                custom.command, env={**self.env, **env}, cwd=self.box, timeout=timeout
            )
            detail = "exit code 0" if ran.ok else ran.describe(timeout)
            item.checks.append(DrillCheck(name, ran.ok, detail, ran.duration))
            item.steps[name] = ran.duration

    def _asset_env(self, name: str, spec: AnyAsset, done: _Restored) -> dict[str, str]:
        """What this asset's checks are told; later assets' checks see it by name."""
        var = _env_name(name)
        env = {"SEAWALL_ASSET": name, "SEAWALL_ASSET_DIR": str(done.dest)}
        self.env[f"SEAWALL_ASSET_DIR_{var}"] = str(done.dest)
        database = None
        if isinstance(spec, SqliteAsset) and done.facts.get("database"):
            database = str(done.facts["database"])
        elif isinstance(spec, PostgresAsset) and done.facts.get("database"):
            from seawall.sources.postgres import replace_dbname

            database = replace_dbname(spec.dsn, str(done.facts["database"]))
        if database:
            env["SEAWALL_DATABASE"] = database
            self.env[f"SEAWALL_DATABASE_{var}"] = database
        return env


#: Facts a restore reports that are of no use once the drill's sandbox is gone.
_LOCAL_FACTS = ("restored", "server_command", "files", "secret_files", "env_file")


def _spec_in(recorded: Plan, current: Plan, name: str) -> AnyAsset:
    """The asset as the group recorded it (how it was captured), else as the plan has it."""
    try:
        return recorded.asset(name)
    except UsageError:
        return current.asset(name)


def _unreachable(err: SeawallError) -> str:
    if isinstance(err, RepositoryNotFound | StorageError):
        return f"unreachable ({err})"
    return str(err)


def _fresh(repo: Repository) -> Repository:
    """The same repository with nothing loaded (a check reads everything anew)."""
    return Repository(repo.storage, repo.config, repo.key, repo.key_id)


def _drop_database(server_dsn: str, name: str) -> None:
    """Drop a database the drill created (best effort: the drill is ending)."""
    import psycopg
    from psycopg import sql

    from seawall.sources.postgres import connect

    with (
        contextlib.suppress(psycopg.Error, SourceError),
        connect(server_dsn, autocommit=True) as conn,
    ):
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _fresh_backend(uri: str, sqlite_file: Path, suffix: str) -> str:
    """A backend store URI like ``uri`` that does not exist yet: a file in the sandbox,
    or a new database on the same PostgreSQL server."""
    scheme, _, rest = uri.partition("://")
    if scheme.split("+", 1)[0].lower() == "sqlite":
        return f"sqlite:///{sqlite_file}"
    base, _, _query = rest.partition("?")
    server, _, database = base.rpartition("/")
    name = f"{(database or 'mlflow')[: 62 - len(suffix)]}_{suffix}"
    return f"{scheme}://{server}/{name}"


def _server_uri(uri: str) -> str:
    """The URI for ``mlflow server``'s SQLAlchemy: psycopg (3) is what seawall ships."""
    scheme, sep, rest = uri.partition("://")
    if scheme in ("postgresql", "postgres"):
        import importlib.util

        if importlib.util.find_spec("psycopg2") is None:
            return f"postgresql+psycopg{sep}{rest}"
    return uri


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def _count(value: Any) -> int:
    return len(value) if isinstance(value, list | dict) else 1


def verify_restored(
    repo: Repository, snap: Snapshot, dest: Path
) -> tuple[dict[str, str], list[str], int]:
    """Read what a restore wrote under ``dest`` and check it against the snapshot:
    each file cut into the snapshot's chunks, each chunk hashed to its id; links and
    directories present. Returns (path in the snapshot -> SHA-256, problems, bytes)."""
    from seawall.engine.trees import walk

    files: dict[str, str] = {}
    problems: list[str] = []
    total = 0
    for path, node in walk(repo, snap.tree):
        on_disk = dest / path.lstrip("/")
        if node.type == DIR:
            if not on_disk.is_dir():
                problems.append(f"{path}: directory missing")
        elif node.type == SYMLINK:
            target = os.fsencode(os.readlink(on_disk)) if on_disk.is_symlink() else None
            if target != node.target:
                problems.append(f"{path}: symbolic link missing or pointing elsewhere")
        elif node.type == FILE:
            why, digest, size = _check_file(repo, node.content, on_disk)
            total += size
            if why:
                problems.append(f"{path}: {why}")
            else:
                files[path] = digest
    return files, problems, total


def _check_file(repo: Repository, content: list[bytes], path: Path) -> tuple[str, str, int]:
    """(what is wrong or "", SHA-256, bytes read) of a restored file."""
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as f:
            for i, bid in enumerate(content):
                loc = repo.index.lookup(bid)
                if loc is None:
                    return f"chunk {i} is not in the repository's index", "", size
                piece = f.read(loc.raw_length)
                size += len(piece)
                if len(piece) != loc.raw_length or repo.blob_id(piece) != bid:
                    return (
                        f"differs from the snapshot in chunk {i} (from byte {size - len(piece)})",
                        "",
                        size,
                    )
                digest.update(piece)
            if f.read(1):
                return "is longer than in the snapshot", "", size
    except OSError as err:
        return f"cannot be read: {err.strerror}", "", size
    return "", digest.hexdigest(), size


def _save_record(report: DrillReport, repos: Repositories, order: list[str]) -> None:
    """Append the drill record to the primary repository, else to the first of the
    drilled repositories that takes it; read back the history there."""
    used = [a.source for a in report.assets if a.source]
    for name in dict.fromkeys([PRIMARY, *used, *order]):
        try:
            repo = repos.open(name)
            report.record = repo.save_record(RECORD_KIND, report.record_doc(name)).hex()
            report.history = repo.list_records(RECORD_KIND)
        except SeawallError as err:
            report.findings.append(
                f"the drill record could not be saved to {repos.label(name)}: {err}"
            )
            continue
        report.recorded_in = name
        return


def worst_gap(times: list[datetime], now: datetime, retention: Retention | None) -> float | None:
    """The longest time without a snapshot within the retention window, up to ``now``."""
    if not times:
        return None
    times = sorted(times)
    start = window_start(times, now, retention)
    # A gap that began before the window counts from where the window begins.
    gaps = [
        (later - max(earlier, start)).total_seconds()
        for earlier, later in itertools.pairwise(times)
        if later > start
    ]
    gaps.append(max(0.0, (now - times[-1]).total_seconds()))
    return max(gaps)


def window_start(times: list[datetime], now: datetime, retention: Retention | None) -> datetime:
    """Where the retention window begins: the span of its finest keep_* rule."""
    if retention is None:
        return times[0]
    if retention.keep_last:
        return times[-min(retention.keep_last, len(times))]
    spans = (
        (retention.keep_hourly, timedelta(hours=1)),
        (retention.keep_daily, timedelta(days=1)),
        (retention.keep_weekly, timedelta(weeks=1)),
        (retention.keep_monthly, timedelta(days=30)),
        (retention.keep_yearly, timedelta(days=365)),
    )
    for count, unit in spans:
        if count:
            return now - count * unit
    return times[0]
