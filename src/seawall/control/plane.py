"""The control plane: one object that the API, ``seawall serve`` and the scheduler share.

:class:`ControlPlane` holds the plan, the state store, the users, the jobs,
the scheduler and the audit log of the plan's primary repository, and
offers every operation as a method taking a :class:`Principal` (who asks,
through what, from where, with which second factor). Each method checks
access first (:meth:`Users.authorize`), so no interface can forget to; a
refusal is itself recorded in the audit log (outcome ``denied``) before the
error is raised, and nothing else happens.

Long operations return a :class:`~seawall.control.jobs.Job` at once and run
in the background. Each appends two audit entries: ``started`` when
accepted (an operation that cannot be audited is not started), and its
outcome when it ends. Reads are not audited (refused ones are).

Repositories are opened once (the key derived once) and every job gets its
own :class:`Repository` object over the same store and key, so jobs never
share an index or a writer.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from seawall.control.access import TOKEN_TTL, Action, NewCredentials, Role, User, Users
from seawall.control.audit import AuditLog, Entry, Verification, copy_audit_log, select, verify
from seawall.control.jobs import Job, Jobs
from seawall.control.schedule import Scheduler, local_now
from seawall.control.store import StateStore
from seawall.errors import AccessDenied, AuditError, SeawallError, UsageError
from seawall.operations.forget import KeepPolicy
from seawall.operations.prune import PruneResult
from seawall.plan.drill import PRIMARY, Repositories
from seawall.plan.drill import RECORD_KIND as DRILL_RECORD
from seawall.plan.model import Plan, Retention, format_duration
from seawall.plan.runner import Group, copy_groups, list_groups
from seawall.repository.repo import Repository
from seawall.repository.residency import residency_violation

log = logging.getLogger("seawall.control")
T = TypeVar("T")

#: Where the state directory is by default: beside the plan file.
STATE_DIR_NAME = ".seawall"


def default_state_dir(plan: Plan) -> Path:
    return Path(plan.origin).absolute().parent / STATE_DIR_NAME


@dataclass(frozen=True)
class Principal:
    """Who asks, through what (``api``, ``schedule``), from where, with which TOTP code.
    ``user`` is None only for the server itself (the scheduler), which is trusted."""

    name: str
    via: str
    user: User | None = None
    remote: str | None = None
    totp: str | None = None


SCHEDULER = Principal("scheduler", "schedule")


class ControlPlane:
    def __init__(
        self,
        plan: Plan,
        store: StateStore,
        *,
        password: str | None = None,
        workers: int = 4,
        clock: Callable[[], datetime] = local_now,
    ) -> None:
        self.plan = plan
        self.store = store
        self.users = Users(store)
        self.jobs = Jobs(store, workers=workers)
        #: the plan's repositories as configured (password, wrap); jobs get a fresh copy
        self.repos = Repositories(plan, password=password)
        self.host = socket.gethostname()
        self.sandbox = store.directory / "sandbox"
        self.scheduler = Scheduler(
            plan, store, self._start_scheduled, busy=self.jobs.holds, clock=clock
        )
        self._primary: Repository | None = None
        self._audit: AuditLog | None = None
        self._opening = threading.Lock()

    # --- life -------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the primary repository (failing early on a wrong password), mark runs a
        previous server left unfinished, and start the scheduler."""
        self.primary()
        interrupted = self.jobs.recover()
        if interrupted:
            log.warning("%d job(s) were cut short by the last stop", len(interrupted))
        self.scheduler.run_in_thread()

    def stop(self, timeout: float = 30.0) -> None:
        self.scheduler.stop()
        self.jobs.shutdown(timeout)

    # --- repositories -----------------------------------------------------------------------

    def primary(self) -> Repository:
        """A fresh Repository object for the primary (its own index and writer); the
        key is derived once, when it is first opened."""
        with self._opening:
            if self._primary is None:
                self._primary = self.repos.open(PRIMARY)
                self._audit = AuditLog(_fresh(self._primary))
        return _fresh(self._primary)

    def repositories(self) -> Repositories:
        """The plan's repositories, the primary open: a new set for each job, so that a
        replica unreachable once is tried again next time."""
        repos = Repositories(
            self.plan,
            password=self.repos.password,
            wrap=self.repos.wrap,
            primary_location=self.repos.primary_location,
        )
        repos.opened[PRIMARY] = self.primary()
        return repos

    @property
    def audit_log(self) -> AuditLog:
        self.primary()
        assert self._audit is not None
        return self._audit

    # --- access -----------------------------------------------------------------------------

    def authenticate(self, token: str | None) -> User:
        return self.users.authenticate(token)

    def authorize(
        self,
        who: Principal,
        actions: Action | Iterable[Action],
        operation: str,
        *,
        assets: Iterable[str] = (),
        audit_denied: bool = True,
    ) -> None:
        """Raise AccessDenied unless ``who`` may do every one of ``actions`` (one TOTP
        code covers them all); a refusal is audited first."""
        if who.user is None:
            return
        wanted = [actions] if isinstance(actions, Action) else list(actions)
        try:
            self.users.authorize(who.user, wanted, who.totp)
        except AccessDenied as err:
            if audit_denied:
                self.record(who, operation, "denied", assets=assets, detail=str(err))
            raise

    def record(
        self,
        who: Principal,
        operation: str,
        outcome: str,
        *,
        assets: Iterable[str] = (),
        snapshots: Iterable[str] = (),
        detail: str = "",
        params: dict[str, Any] | None = None,
    ) -> Entry | None:
        """Append to the audit log; an entry that cannot be written is logged loudly and
        None returned (for denials and outcomes: the operation is over already)."""
        try:
            return self._append(who, operation, outcome, assets, snapshots, detail, params)
        except AuditError as err:
            log.error("AUDIT LOG NOT WRITTEN for %s %s (%s): %s", who.name, operation, outcome, err)
            return None

    def _append(
        self,
        who: Principal,
        operation: str,
        outcome: str,
        assets: Iterable[str],
        snapshots: Iterable[str],
        detail: str,
        params: dict[str, Any] | None,
    ) -> Entry:
        entry = self.audit_log.append(
            user=who.name,
            via=who.via,
            host=self.host,
            remote=who.remote,
            operation=operation,
            outcome=outcome,
            assets=assets,
            snapshots=snapshots,
            detail=detail,
            params=params,
        )
        self.store.raise_audit_head(self.audit_log.repo.config.id, entry.seq, entry.digest)
        return entry

    # --- jobs -------------------------------------------------------------------------------

    def _submit(
        self,
        who: Principal,
        kind: str,
        assets: list[str],
        work: Callable[[Job], dict[str, Any]],
        *,
        params: dict[str, Any],
        keys: frozenset[str] | None = None,
        exclusive: bool = False,
        trigger: str = "api",
        on_done: Callable[[Job], None] | None = None,
    ) -> Job:
        """Run ``work`` as a job, audited when accepted (or not run) and when it ends."""

        def done(job: Job) -> None:
            result = job.result or {}
            outcome = {"ok": "ok", "failed": "failed"}.get(job.state, "failed")
            if outcome == "ok" and result.get("partial"):
                outcome = "partial"
            entry = self.record(
                who,
                kind,
                outcome,
                assets=job.assets,
                snapshots=_snapshots_of(result),
                detail=job.error or result.get("summary", ""),
                params={**params, "job": job.id, "state": job.state},
            )
            if entry is None and job.result is not None:
                job.result["audit"] = "the audit entry of this job's outcome could not be written"
            if on_done is not None:
                on_done(job)

        def admit(job: Job) -> None:
            try:
                self._append(
                    who,
                    kind,
                    "started",
                    assets,
                    (),
                    "",
                    {**params, "job": job.id, "trigger": trigger},
                )
            except AuditError as err:
                raise AuditError(f"{kind} not started: {err}") from err

        return self.jobs.submit(
            kind,
            work,
            assets=assets,
            user=who.name,
            trigger=trigger,
            keys=keys,
            exclusive=exclusive,
            admit=admit,
            on_done=done,
        )

    def _assets(self, names: Iterable[str] | None) -> list[str]:
        chosen = list(names or [a.name for a in self.plan.assets])
        for name in chosen:
            self.plan.asset(name)  # UsageError naming the plan's assets
        return sorted(set(chosen), key=[a.name for a in self.plan.assets].index)

    def _start_scheduled(
        self, kind: str, assets: list[str], trigger: str, on_done: Callable[[Job], None]
    ) -> Job:
        start = {
            "backup": self.start_backup,
            "copy": self.start_copy,
            "forget": self.start_forget,
            "drill": self.start_drill,
        }[kind]
        return start(SCHEDULER, assets, trigger=trigger, on_done=on_done)

    # --- operations -------------------------------------------------------------------------

    def start_backup(
        self,
        who: Principal,
        assets: Iterable[str] | None = None,
        *,
        trigger: str = "api",
        on_done: Callable[[Job], None] | None = None,
    ) -> Job:
        names = self._assets(assets)
        self.authorize(who, Action.backup, "backup", assets=names)
        subset = self.plan.model_copy(update={"assets": [self.plan.asset(n) for n in names]})

        def work(job: Job) -> dict[str, Any]:
            from seawall.plan.runner import backup_plan

            result = backup_plan(subset, self.primary(), progress=job.progress)
            return {
                "group": result.group,
                "time": result.time.isoformat(),
                "duration_s": round(result.duration, 3),
                "partial": result.partial,
                "snapshots": {a.name: a.snapshot.id.hex() for a in result.assets},
                "summary": f"group {result.group[:8]}: "
                + ", ".join(f"{a.name} {a.snapshot.short_id}" for a in result.assets),
            }

        return self._submit(who, "backup", names, work, params={}, trigger=trigger, on_done=on_done)

    def start_restore(
        self,
        who: Principal,
        *,
        asset: str | None = None,
        at: str | None = None,
        target: str | None = None,
        options: dict[str, dict[str, str]] | None = None,
    ) -> Job:
        """Restore the group ``at`` names (newest holding ``asset``, by default). Into a
        new directory of the sandbox unless ``target`` or ``options`` say where: that
        reaches outside the sandbox (a database on a live server, a path in production)
        and needs the admin role and a second factor."""
        names = self._assets([asset] if asset else None)
        production = target is not None or bool(options)
        action = Action.restore_production if production else Action.restore_sandbox
        self.authorize(who, action, "restore", assets=names)
        where = Path(target) if target else self.sandbox / f"restore-{_stamp()}"
        params = {"at": at, "target": str(where), "production": production}

        def work(job: Job) -> dict[str, Any]:
            from seawall.plan.runner import parse_at, restore_plan

            result = restore_plan(
                self.plan,
                self.primary(),
                where,
                asset=asset,
                at=parse_at(at) if at else None,
                options=options,
                progress=job.progress,
            )
            return {
                "group": result.group.id,
                "target": str(result.target),
                "duration_s": round(result.duration, 3),
                "snapshots": {a.name: a.snapshot.id.hex() for a in result.assets},
                "assets": {
                    a.name: {"files": a.result.stats.files, "bytes": a.result.stats.bytes}
                    for a in result.assets
                },
                "summary": f"group {result.group.short_id} restored to {result.target}",
            }

        return self._submit(
            who, "restore", names, work, params=params, keys=frozenset({f"restore:{where}"})
        )

    def start_drill(
        self,
        who: Principal,
        assets: Iterable[str] | None = None,
        *,
        snapshot: str | None = None,
        from_replica: str | None = None,
        trigger: str = "api",
        on_done: Callable[[Job], None] | None = None,
    ) -> Job:
        """Drill the assets (one drill per asset given, or the whole plan)."""
        names = self._assets(assets)
        self.authorize(who, Action.drill, "drill", assets=names)
        if from_replica:
            self.repositories().spec(from_replica)  # UsageError for a name the plan lacks
        every = names == [a.name for a in self.plan.assets]

        def work(job: Job) -> dict[str, Any]:
            from seawall.plan.drill import run_drill

            reports = []
            for name in [None] if every else names:
                job.progress.start(f"drill {name or 'all assets'}")
                report = run_drill(
                    self.plan,
                    self.repositories(),
                    asset=name,
                    snapshot=snapshot,
                    from_replica=from_replica,
                    sandbox=self.sandbox,  # the drill makes and removes its own directory there
                )
                reports.append(report.to_dict())
            passed = all(r["passed"] for r in reports)
            failed = [r for r in reports if not r["passed"]]
            if failed:
                raise _Failed(
                    "drill failed: "
                    + "; ".join(
                        r["error"] or ", ".join(r["missed_targets"]) or "a check failed"
                        for r in failed
                    ),
                    {"passed": False, "reports": reports},
                )
            return {"passed": passed, "reports": reports, "summary": "drill passed"}

        params = {"snapshot": snapshot, "from_replica": from_replica}
        return self._submit(
            who, "drill", names, work, params=params, trigger=trigger, on_done=on_done
        )

    def start_copy(
        self,
        who: Principal,
        assets: Iterable[str] | None = None,
        *,
        replica: str | None = None,
        trigger: str = "api",
        on_done: Callable[[Job], None] | None = None,
    ) -> Job:
        """Copy the assets' snapshots to every replica (or ``replica``), skipping an asset
        whose residency rule forbids a replica's region (the result says so)."""
        names = self._assets(assets)
        self.authorize(who, Action.copy, "copy", assets=names)
        replicas = [replica] if replica else [r.name for r in self.plan.repositories.replicas]
        if not replicas:
            raise UsageError(f"the plan {self.plan.origin} has no replicas to copy to")
        repos = self.repositories()
        for name in replicas:
            repos.spec(name)  # UsageError for a name the plan lacks

        def work(job: Job) -> dict[str, Any]:
            from seawall.operations.copy import copy

            src = self.primary()
            snaps = [s for s in src.list_snapshots() if s.asset.get("name") in names]
            out: dict[str, Any] = {}
            for name in replicas:
                dst = _fresh(repos.open(name))
                allowed = [
                    s
                    for s in snaps
                    if not residency_violation(s.residency, dst.config.region, "", "")
                ]
                refused = sorted({str(s.asset.get("name")) for s in snaps if s not in allowed})
                result = copy(src, dst, [s.id.hex() for s in allowed], progress=job.progress)
                copy_groups(src, dst)
                copy_audit_log(src, dst)
                out[name] = {
                    "copied": [c.source.id.hex() for c in result.copied],
                    "skipped": len(result.skipped),
                    "refused_by_residency": refused,
                }
            return {
                "replicas": out,
                "snapshots": sorted({i for r in out.values() for i in r["copied"]}),
                "summary": "; ".join(
                    f"{n}: {len(r['copied'])} copied, {r['skipped']} there already"
                    for n, r in out.items()
                ),
            }

        return self._submit(
            who,
            "copy",
            names,
            work,
            params={"replicas": replicas},
            trigger=trigger,
            on_done=on_done,
        )

    def start_forget(
        self,
        who: Principal,
        assets: Iterable[str] | None = None,
        *,
        prune: bool = True,
        trigger: str = "api",
        on_done: Callable[[Job], None] | None = None,
    ) -> Job:
        """Forget each asset's snapshots its retention does not keep, then prune."""
        names = self._assets(assets)
        actions = [Action.forget, Action.prune] if prune else [Action.forget]
        self.authorize(who, actions, "forget", assets=names)
        lacking = [n for n in names if self.plan.asset(n).retention is None]
        if lacking:
            raise UsageError(
                f"no retention policy for {', '.join(lacking)}: forget keeps what an asset's "
                "retention says (set retention in the plan)"
            )

        def work(job: Job) -> dict[str, Any]:
            from seawall.operations.forget import apply_policy, forget_ids
            from seawall.operations.prune import prune as prune_repo

            repo = self.primary()
            every = repo.list_snapshots()
            removed: dict[str, list[str]] = {}
            for name in names:
                retention = self.plan.asset(name).retention
                assert retention is not None
                mine = [s for s in every if s.asset.get("name") == name]
                doomed = [s for g in apply_policy(mine, _keep(retention)) for s in g.remove]
                if doomed:
                    group = forget_ids(repo, [s.id.hex() for s in doomed])
                    removed[name] = [s.id.hex() for s in group.remove]
            out: dict[str, Any] = {"removed": removed}
            if prune:
                out["prune"] = _pruned(prune_repo(self.primary(), progress=job.progress))
            out["snapshots"] = sorted(i for ids in removed.values() for i in ids)
            out["summary"] = f"{len(out['snapshots'])} snapshot(s) forgotten" + (
                ", pruned" if prune else ""
            )
            return out

        keys = frozenset({*(f"forget:{n}" for n in names), *(["prune"] if prune else [])})
        return self._submit(
            who,
            "forget",
            names,
            work,
            params={"prune": prune},
            keys=keys,
            exclusive=True,
            trigger=trigger,
            on_done=on_done,
        )

    def start_prune(self, who: Principal) -> Job:
        self.authorize(who, Action.prune, "prune")

        def work(job: Job) -> dict[str, Any]:
            from seawall.operations.prune import prune

            result = _pruned(prune(self.primary(), progress=job.progress))
            return {**result, "summary": f"{result['packs_deleted']} pack(s) deleted"}

        return self._submit(
            who, "prune", [], work, params={}, keys=frozenset({"prune"}), exclusive=True
        )

    # --- users and keys ---------------------------------------------------------------------

    def list_users(self, who: Principal) -> list[User]:
        self.authorize(who, Action.read_users, "user.list")
        return self.users.all()

    def add_user(
        self, who: Principal, name: str, role: Role, ttl: timedelta | None = TOKEN_TTL
    ) -> NewCredentials:
        """A new user; its token works for ``ttl`` (None: until rotated)."""
        self.authorize(who, Action.manage_users, "user.add")
        return self._audited(
            who, "user.add", lambda: self.users.add(name, role, ttl), name=name, role=role.name
        )

    def remove_user(self, who: Principal, name: str) -> User:
        self.authorize(who, Action.manage_users, "user.remove")
        return self._audited(who, "user.remove", lambda: self.users.remove(name), name=name)

    def rotate_token(
        self, who: Principal, name: str, ttl: timedelta | None = TOKEN_TTL
    ) -> NewCredentials:
        own = who.user is not None and who.user.name == name
        action = Action.rotate_own_token if own else Action.manage_users
        self.authorize(who, action, "token.rotate")
        return self._audited(who, "token.rotate", lambda: self.users.rotate(name, ttl), name=name)

    def clear_anomaly(self, who: Principal, which: str, reason: str) -> dict[str, Any]:
        """Clear the anomaly mark of a snapshot judged a false alarm (plan/anomaly.py)."""
        from seawall.plan.anomaly import clear_mark

        self.authorize(who, Action.clear_anomaly, "anomalies.clear")
        return self._audited(
            who,
            "anomalies.clear",
            lambda: clear_mark(self.primary(), which, reason=reason, by=who.name),
            mark=which,
            reason=reason,
        )

    def list_keys(self, who: Principal) -> list[dict[str, Any]]:
        self.authorize(who, Action.read_keys, "key.list")
        repo = self.primary()
        return [{**k.__dict__, "current": k.id == repo.key_id} for k in repo.list_keys()]

    def add_key(self, who: Principal, password: str) -> str:
        self.authorize(who, Action.manage_keys, "key.add")
        if not password:
            raise UsageError("an empty password is not allowed")
        return self._audited(who, "key.add", lambda: self.primary().add_key(password))

    def remove_key(self, who: Principal, key_id: str) -> str:
        self.authorize(who, Action.manage_keys, "key.remove")
        return self._audited(
            who, "key.remove", lambda: self.primary().remove_key(key_id), key=key_id
        )

    def _audited(self, who: Principal, operation: str, act: Callable[[], T], **params: Any) -> T:
        """Do a quick operation, then audit its outcome; if it cannot be audited, say so
        (the operation is done: undoing it could lose more than the entry)."""
        try:
            result = act()
        except SeawallError as err:
            self.record(who, operation, "failed", detail=str(err), params=params)
            raise
        try:
            self._append(who, operation, "ok", (), (), "", params)
        except AuditError as err:
            raise AuditError(f"{operation} was done, but could not be audited: {err}") from err
        return result

    # --- reads ------------------------------------------------------------------------------

    def assets(self, who: Principal) -> list[dict[str, Any]]:
        """Each asset: kind, policies, schedule, and its status (plan/status.py: the
        newest group holding it, its age against the RPO, its last drill)."""
        from seawall.plan.status import plan_status

        self.authorize(who, Action.read_status, "status")
        status = {a.name: a.to_dict() for a in plan_status(self.plan, self.primary()).assets}
        return [
            {
                "name": asset.name,
                "kind": asset.kind,
                "rpo": format_duration(asset.rpo) if asset.rpo else None,
                "rto": format_duration(asset.rto) if asset.rto else None,
                "retention": asset.retention.describe() if asset.retention else None,
                "residency": asset.residency,
                "tags": asset.tags,
                "schedule": asset.schedule.jobs() if asset.schedule else {},
                "status": status[asset.name],
            }
            for asset in self.plan.assets
        ]

    def groups(self, who: Principal) -> list[Group]:
        self.authorize(who, Action.read_status, "groups")
        return list_groups(self.primary())

    def job(self, who: Principal, job_id: str) -> dict[str, Any] | None:
        self.authorize(who, Action.read_status, "job")
        return self.jobs.get(job_id)

    def cancel_job(self, who: Principal, job_id: str) -> bool | None:
        """Ask a job to stop: whether it was running, None if there is no such job."""
        self.authorize(who, Action.cancel, "job.cancel")
        if self.jobs.get(job_id) is None:
            return None
        cancelled = self.jobs.cancel(job_id)
        if cancelled:
            self.record(who, "job.cancel", "ok", params={"job": job_id})
        return cancelled

    def list_jobs(
        self, who: Principal, *, kind: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        self.authorize(who, Action.read_status, "jobs")
        return self.jobs.query(kind=kind, state=state, limit=limit)

    def schedule(self, who: Principal) -> list[dict[str, str | None]]:
        self.authorize(who, Action.read_status, "schedule")
        return self.scheduler.upcoming()

    def drill_reports(self, who: Principal, limit: int = 50) -> list[dict[str, Any]]:
        self.authorize(who, Action.read_reports, "drill.reports")
        return self.primary().list_records(DRILL_RECORD)[-limit:][::-1]

    def audit_entries(self, who: Principal, **filters: Any) -> list[Entry]:
        self.authorize(who, Action.read_audit, "audit.log")
        entries, _unreadable = self.audit_log.entries()
        return select(entries, **filters)

    def verify_audit(self, who: Principal) -> Verification:
        self.authorize(who, Action.read_audit, "audit.verify")
        entries, unreadable = self.audit_log.entries()
        return verify(
            entries, unreadable, anchor=self.store.audit_head(self.audit_log.repo.config.id)
        )


class _Failed(SeawallError):
    """A job that ran to its end but did not succeed (a drill that failed): its result
    is kept with the failure."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


def _fresh(repo: Repository) -> Repository:
    return Repository(repo.storage, repo.config, repo.key, repo.key_id)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def _snapshots_of(result: dict[str, Any]) -> list[str]:
    snaps = result.get("snapshots", [])
    return list(snaps.values()) if isinstance(snaps, dict) else list(snaps)


def _pruned(result: PruneResult) -> dict[str, Any]:
    return {
        "packs_deleted": result.packs_deleted,
        "packs_repacked": result.packs_repacked,
        "bytes_freed": result.bytes_freed,
        "retained": len(result.retained),
    }


def _keep(retention: Retention) -> KeepPolicy:
    return KeepPolicy(
        last=retention.keep_last,
        hourly=retention.keep_hourly,
        daily=retention.keep_daily,
        weekly=retention.keep_weekly,
        monthly=retention.keep_monthly,
        yearly=retention.keep_yearly,
    )
