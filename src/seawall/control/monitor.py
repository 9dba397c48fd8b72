"""The monitor: what ``seawall serve`` watches, for the dashboard, the metrics and alerts.

:class:`Monitor` reads the plan's repositories and the jobs the server ran
and builds one *overview*: per asset its RPO status and newest backup (its
duration, size and data added, whether the anomaly check marked it), its
snapshots over time, its drills with RTO and RPO against the targets; per
replica, how old its newest copy of each asset is. The dashboard shows it,
``/metrics`` exports it, and :meth:`Monitor.check` derives the alert
conditions from it (alerts.py sends them).

It checks every ``alerts.check_every`` of the plan (a minute by default)
and at once after a job ends. Reading stays cheap however often it runs:
snapshots and records are write-once objects named by their content, so
:class:`CachedRepository` reads each one once and afterwards only lists
names. A replica that cannot be opened is retried at the next check (and
reported behind meanwhile).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from seawall.control.alerts import Alerter, Condition, Webhooks
from seawall.control.jobs import FAILED, INTERRUPTED, OK, Event
from seawall.control.plane import ControlPlane
from seawall.errors import FormatError, ObjectNotFound, SeawallError
from seawall.plan.anomaly import marks
from seawall.plan.compliance import ComplianceReport, compliance, drill_history
from seawall.plan.drill import PRIMARY, RECORD_KIND, Repositories
from seawall.plan.model import approx_duration, format_duration
from seawall.plan.runner import list_groups
from seawall.plan.status import plan_status
from seawall.repository.repo import Repository
from seawall.repository.residency import residency_allows
from seawall.repository.snapshot import Snapshot

log = logging.getLogger("seawall.monitor")


class CachedRepository(Repository):
    """A repository whose snapshots and records are each read once (they never change:
    their names are the hashes of their bytes); listings still come from the store."""

    def __init__(self, repo: Repository) -> None:
        super().__init__(repo.storage, repo.config, repo.key, repo.key_id)
        self._lock = threading.Lock()
        self._snapshots: dict[bytes, Snapshot] = {}
        #: record id -> its document (None: not a JSON object)
        self._records: dict[bytes, dict[str, Any] | None] = {}

    def list_snapshots(self) -> list[Snapshot]:
        ids = self.list_ids("snapshots")
        for sid in ids:
            if sid not in self._snapshots:
                try:
                    snap = self.load_snapshot(sid)
                except ObjectNotFound:
                    continue  # forgotten while we listed
                with self._lock:
                    self._snapshots[sid] = snap
        with self._lock:
            found = [self._snapshots[i] for i in ids if i in self._snapshots]
        return sorted(found, key=lambda s: (s.time, s.id))

    def list_records(self, kind: str) -> list[dict[str, Any]]:
        ids = self.list_ids("records")
        for rid in ids:
            if rid not in self._records:
                try:
                    doc = json.loads(self.load_object("records", rid))
                except ObjectNotFound:
                    continue
                except ValueError:
                    raise FormatError(f"record {rid.hex()[:8]} is not valid JSON") from None
                with self._lock:
                    self._records[rid] = doc if isinstance(doc, dict) else None
        out = []
        with self._lock:
            for rid in ids:
                doc = self._records.get(rid)
                if doc is not None and doc.get("kind") == kind:
                    out.append({**doc, "id": rid.hex()})
        return sorted(out, key=lambda d: (str(d.get("time", "")), d["id"]))


class Monitor:
    """See the module docstring. ``start`` runs the checks in a thread; ``check`` and
    ``overview`` may also be called directly."""

    def __init__(self, plane: ControlPlane, *, clock: Callable[[], datetime] | None = None) -> None:
        self.plane = plane
        self.plan = plane.plan
        settings = plane.plan.alerts
        self.clock = clock or (lambda: datetime.now(UTC))
        self.webhooks = Webhooks(settings.webhooks)
        self.alerter = Alerter(
            plane.store,
            self.webhooks,
            repeat=settings.repeat,
            context={"host": plane.host, "plan": plane.plan.origin},
            clock=self.clock,
        )
        self.every = settings.check_every.total_seconds()
        self._repos: dict[str, CachedRepository] = {}
        self._open_lock = threading.Lock()
        self._view_lock = threading.Lock()
        self._view: tuple[float, dict[str, Any]] | None = None
        self._compliance: tuple[float, ComplianceReport] | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        plane.jobs.subscribe(self._on_event)

    # --- life -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="seawall-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
        self.webhooks.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.check()
            except Exception as err:  # a check that fails must not stop the next ones
                log.error("the monitor's check failed: %s: %s", type(err).__name__, err)
            self._wake.wait(self.every)
            self._wake.clear()

    def _on_event(self, event: Event) -> None:
        if event.type == "job.finished":
            self._view = self._compliance = None
            self._wake.set()

    # --- repositories ---------------------------------------------------------------------

    def repo(self, name: str = PRIMARY) -> CachedRepository:
        """The repository ``name`` of the plan, opened once it can be (a replica that
        could not be opened is tried again next time)."""
        with self._open_lock:
            if name not in self._repos:
                repos = self.plane.repos
                if name != PRIMARY:  # plane.repos remembers a failure for good
                    repos = Repositories(
                        self.plan,
                        password=repos.password,
                        wrap=repos.wrap,
                        primary_location=repos.primary_location,
                        primary_s3_endpoint=repos.primary_s3_endpoint,
                    )
                self._repos[name] = CachedRepository(repos.open(name))
            return self._repos[name]

    # --- the overview ---------------------------------------------------------------------

    def overview(self, max_age: float = 1.0) -> dict[str, Any]:
        """Everything the dashboard and the metrics show, at most ``max_age`` seconds old."""
        with self._view_lock:
            cached = self._view
            if cached is not None and time.monotonic() - cached[0] <= max_age:
                return cached[1]
            view = self._compute()
            self._view = (time.monotonic(), view)
            return view

    def _compute(self) -> dict[str, Any]:
        now = self.clock()
        repo = self.repo()
        status = plan_status(self.plan, repo, now=now)
        complete = {g.id for g in list_groups(repo)}
        marked = marks(repo)
        by_asset: dict[str, list[Snapshot]] = {}
        for snap in repo.list_snapshots():
            by_asset.setdefault(str(snap.asset.get("name", "")), []).append(snap)
        drills = repo.list_records(RECORD_KIND)
        assets, timeline, history = [], {}, {}
        for item in status.assets:
            mine = by_asset.get(item.name, [])
            timeline[item.name] = [_point(s, marked, complete) for s in mine]
            history[item.name] = [d.__dict__ for d in drill_history(drills, item.name)]
            doc = item.to_dict()
            # The newest backup, even one marked suspect (status's copy is the newest
            # clean one): a mark on it is what the anomaly alert is about.
            newest = mine[-1] if mine else None
            doc["last_backup"] = _backup(newest) if newest else None
            mark = marked.get(newest.id.hex()) if newest else None
            doc["suspect"] = mark is not None
            doc["anomaly"] = _mark(mark) if mark else None
            doc["last_drill_why"] = history[item.name][-1]["why"] if history[item.name] else ""
            assets.append(doc)
        return {
            "time": now.isoformat(),
            "plan_file": self.plan.origin,
            "repository": repo.storage.location,
            "ok": status.ok,
            "assets": assets,
            "timeline": timeline,
            "drills": history,
            "replicas": self._replicas(now, by_asset),
            "jobs": self._jobs(),
            "webhook_failures": [
                {"webhook": url, "error": why} for url, why in self.webhooks.failures
            ],
        }

    def _replicas(self, now: datetime, by_asset: dict[str, list[Snapshot]]) -> list[dict[str, Any]]:
        out = []
        for spec in self.plan.repositories.replicas:
            item: dict[str, Any] = {
                "name": spec.name,
                "region": spec.region or "",
                "reachable": True,
                "error": "",
                "assets": {},
            }
            out.append(item)
            try:
                replica = self.repo(spec.name)
                snaps = replica.list_snapshots()
            except SeawallError as err:
                item["reachable"], item["error"] = False, str(err)
                continue
            item["region"] = replica.config.region
            for asset in self.plan.assets:
                if not residency_allows(asset.residency or "", replica.config.region):
                    item["assets"][asset.name] = {"expected": False}
                    continue
                copies = [s for s in snaps if s.asset.get("name") == asset.name]
                newest = copies[-1].datetime if copies else None
                primary = by_asset.get(asset.name) or []
                age = (now - newest).total_seconds() if newest else None
                lagging = bool(primary) and (newest is None or primary[-1].datetime > newest)
                over = asset.rpo is not None and (age is None or age > asset.rpo.total_seconds())
                item["assets"][asset.name] = {
                    "expected": True,
                    "snapshots": len(copies),
                    "newest": newest.isoformat() if newest else None,
                    "age_s": None if age is None else round(age, 1),
                    "behind": lagging and over,
                }
        return out

    def _jobs(self) -> dict[str, Any]:
        failed = self.plane.store.rows(
            "SELECT kind, COUNT(*) FROM runs WHERE state IN (?, ?) GROUP BY kind",
            (FAILED, INTERRUPTED),
        )
        running: dict[str, int] = {}
        for job in self.plane.jobs.live():
            running[job.kind] = running.get(job.kind, 0) + 1
        return {"failed": {str(k): int(n) for k, n in failed}, "running": running}

    def compliance(self, max_age: float = 30.0) -> ComplianceReport:
        """The compliance view (it reads retention dates: cached for ``max_age`` s)."""
        cached = self._compliance
        if cached is not None and time.monotonic() - cached[0] <= max_age:
            return cached[1]
        repos = Repositories(self.plan, password=self.plane.repos.password)
        repos.opened.update(self._repos)
        report = compliance(self.plan, repos, now=self.clock())
        self._compliance = (time.monotonic(), report)
        return report

    # --- alerts ---------------------------------------------------------------------------

    def check(self) -> list[Condition]:
        """Find what is wrong now and update the alerts (sending what is new)."""
        conditions = self.conditions(self.overview(max_age=0))
        self.alerter.update(conditions)
        return conditions

    def conditions(self, view: dict[str, Any]) -> list[Condition]:
        out = []
        for a in view["assets"]:
            name = a["name"]
            if a["rpo_target_s"] is not None and not a["within_rpo"]:
                rpo = approx_duration(a["rpo_target_s"])
                summary = (
                    f"{name}: no complete snapshot group holds it (RPO {rpo})"
                    if a["age_s"] is None
                    else (
                        f"{name}: its newest copy is {approx_duration(a['age_s'])} old, "
                        f"over its RPO of {rpo}"
                    )
                )
                out.append(Condition(f"rpo_breach:{name}", "rpo_breach", name, summary, a))
            drill = a["last_drill"]
            if drill and drill["passed"] is False:
                why = a["last_drill_why"] or "a check failed"
                out.append(
                    Condition(
                        f"drill_failed:{name}",
                        "drill_failed",
                        name,
                        f"{name}: its last drill failed: {why}",
                        drill,
                    )
                )
            if a["anomaly"]:
                mark = a["anomaly"]
                out.append(
                    Condition(
                        f"anomaly:{name}",
                        "anomaly",
                        name,
                        f"{name}: its newest backup looks like ransomware, snapshot "
                        f"{mark['snapshot'][:8]} is marked suspect: {mark['summary']}",
                        mark,
                    )
                )
        out += self._failed_backups(view)
        for replica in view["replicas"]:
            if not replica["reachable"]:
                out.append(
                    Condition(
                        f"replica_behind:{replica['name']}",
                        "replica_behind",
                        None,
                        f"replica {replica['name']} cannot be read: {replica['error']}",
                        replica,
                    )
                )
            for name, copy in replica["assets"].items():
                if copy.get("behind"):
                    target = self.plan.asset(name).rpo
                    rpo = format_duration(target) if target else "-"
                    age = (
                        "none" if copy["age_s"] is None else f"{approx_duration(copy['age_s'])} old"
                    )
                    out.append(
                        Condition(
                            f"replica_behind:{replica['name']}:{name}",
                            "replica_behind",
                            name,
                            f"replica {replica['name']}: its newest copy of {name} is {age}, "
                            f"over its RPO of {rpo}",
                            {"replica": replica["name"], **copy},
                        )
                    )
        return out

    def _failed_backups(self, view: dict[str, Any]) -> list[Condition]:
        """Assets whose last backup job failed, and that no backup has captured since."""
        runs = self.plane.store.runs(kind="backup", limit=500)
        out = []
        for a in view["assets"]:
            name = a["name"]
            last = next(
                (r for r in runs if name in r.assets and r.state in (OK, FAILED, INTERRUPTED)),
                None,
            )
            if last is None or last.state == OK:
                continue
            if a["time"] and last.finished and _at(a["time"]) > _at(last.finished):
                continue  # captured since (by another run, or from the command line)
            out.append(
                Condition(
                    f"backup_failed:{name}",
                    "backup_failed",
                    name,
                    f"{name}: its last backup (job {last.id}) failed: {last.error or last.state}",
                    {"job": last.id, "finished": last.finished, "error": last.error},
                )
            )
        return out


def _point(snap: Snapshot, marked: dict[str, dict[str, Any]], complete: set[str]) -> dict[str, Any]:
    mark = marked.get(snap.id.hex())
    s = snap.summary
    return {
        "time": snap.time,
        "snapshot": snap.id.hex(),
        "group": snap.asset.get("group"),
        "complete": snap.asset.get("group") in complete,
        "bytes_total": s.get("bytes_total"),
        "data_added": s.get("data_added"),
        "files": sum(int(s.get(k, 0)) for k in ("files_new", "files_changed", "files_unmodified")),
        "duration_s": s.get("duration_s"),
        "suspect": mark is not None,
        "score": mark.get("score") if mark else None,
    }


def _backup(snap: Snapshot) -> dict[str, Any]:
    s = snap.summary
    return {
        "time": snap.time,
        "snapshot": snap.id.hex(),
        "duration_s": s.get("duration_s"),
        "bytes_total": s.get("bytes_total"),
        "data_added": s.get("data_added"),
        "data_stored": s.get("data_stored"),
    }


def _mark(mark: dict[str, Any]) -> dict[str, Any]:
    return {
        "record": mark["id"],
        "snapshot": mark.get("snapshot"),
        "group": mark.get("group"),
        "score": mark.get("score"),
        "summary": mark.get("summary", ""),
        "signals": mark.get("signals", []),
        "files": mark.get("files", []),
        "files_total": mark.get("files_total", 0),
    }


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)
