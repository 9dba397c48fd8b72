"""Chaos: inject a fault, run a drill, and check that it caught what it must.

Faults that change a repository are injected into a *copy* of the primary
repository (all its objects, in a temporary directory), never into the real
one unless ``in_place``; the others go through the storage fault wrappers.
Replicas are only read. Chaos drills record nothing in any repository.

======================  ==========================================================
fault                   what must happen
======================  ==========================================================
``lose-pack``           a pack holding data of the newest group is deleted: the
                        drill names the pack and the damaged assets; with a
                        replica it recovers them from there, and ``repair heal``
                        then makes the primary whole (a second drill, from the
                        primary alone, passes)
``corrupt-pack``        the same, with bytes of a data blob flipped in the pack
``corrupt-index``       an index object is damaged: the drill names it (and
                        recovers from a replica if there is one); ``repair
                        index`` rebuilds it, and a second drill passes
``primary-down``        the primary does not answer: the drill recovers every
                        asset from a replica and says which
``slow-storage``        every call to the primary is slow and some fail
                        (retried): the drill still verifies everything, and its
                        RTO under those conditions is held to the targets
``kill-backup``         a backup in a real process is killed (SIGKILL) halfway:
                        the repository checks clean and records no group for
                        it; the backup run again completes, and its group
                        passes a drill
======================  ==========================================================
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seawall.errors import SeawallError, UsageError
from seawall.operations.check import check
from seawall.operations.heal import heal
from seawall.operations.repair import repair_index
from seawall.plan.drill import (
    PRIMARY,
    DrillReport,
    Repositories,
    groups_in,
    read_password,
    run_drill,
)
from seawall.plan.model import Plan, load_plan
from seawall.plan.runner import backup_plan
from seawall.repository.pack import DATA, DELTA, pack_name
from seawall.repository.repo import Repository
from seawall.repository.snapshot import FILE
from seawall.storage import (
    ChaosStorage,
    FaultPlan,
    FaultyStorage,
    LocalStorage,
    RetryingStorage,
    Storage,
    open_storage,
)

FAULTS = (
    "lose-pack",
    "corrupt-pack",
    "corrupt-index",
    "primary-down",
    "slow-storage",
    "kill-backup",
)

Log = Callable[[str], None]


@dataclass
class ChaosResult:
    fault: str
    #: where the fault went: a copy of the primary, the primary itself, or a wrapper
    injected_into: str
    #: what was done
    injected: str = ""
    #: what had to happen, and what did
    expected: str = ""
    observed: list[str] = field(default_factory=list)
    passed: bool = False
    drill: DrillReport | None = None
    #: what repaired the primary (copy), and the drill after it
    repair: str = ""
    after: DrillReport | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "fault": self.fault,
            "injected_into": self.injected_into,
            "injected": self.injected,
            "expected": self.expected,
            "observed": self.observed,
            "passed": self.passed,
            "drill": self.drill.to_dict() if self.drill else None,
            "repair": self.repair,
            "after_repair": self.after.to_dict() if self.after else None,
        }


def run_chaos(
    plan: Plan,
    repos: Repositories,
    fault: str,
    *,
    asset: str | None = None,
    in_place: bool = False,
    seed: int = 0,
    latency: float = 0.05,
    workdir: str | Path | None = None,
    log: Log | None = None,
) -> ChaosResult:
    """Inject ``fault`` (one of FAULTS) and judge the drill that follows (of ``asset``
    only, if given)."""
    if fault not in FAULTS:
        raise UsageError(f"unknown fault {fault!r}: choose one of {', '.join(FAULTS)}")
    say = log or (lambda _m: None)
    with tempfile.TemporaryDirectory(prefix="seawall-chaos-", dir=workdir) as work:
        primary = repos.open(PRIMARY)
        replicas = [r.name for r in plan.repositories.replicas]
        if fault in ("primary-down", "slow-storage"):
            target = _wrapped(primary, fault, seed, latency)
            where = f"the primary ({primary.storage.location}) through a fault wrapper"
        elif in_place:
            target, where = primary, f"the primary repository itself ({primary.storage.location})"
        else:
            say(f"copying the primary repository ({primary.storage.location}) to inject into")
            target = _clone(primary, Path(work) / "primary-copy")
            where = f"a copy of the primary repository ({target.storage.location})"
        result = ChaosResult(fault, where)
        drilled = Repositories(
            plan,
            repos.password,
            opened={**{k: v for k, v in repos.opened.items() if k != PRIMARY}, PRIMARY: target},
        )

        def drill(**kw: Any) -> DrillReport:
            return run_drill(plan, drilled, asset=asset, record=False, sandbox=work, log=say, **kw)

        if fault in ("lose-pack", "corrupt-pack"):
            _pack_fault(result, plan, target, fault, seed, replicas, drill, drilled, say)
        elif fault == "corrupt-index":
            _index_fault(result, target, seed, replicas, drill, drilled, say)
        elif fault == "primary-down":
            _primary_down(result, replicas, drill)
        elif fault == "slow-storage":
            _slow(result, target, drill)
        else:
            password = read_password(
                plan.repositories.primary.password_env,
                plan.repositories.primary.password_file,
                repos.password,
            )
            _kill_backup(result, plan, target, password, Path(work), drill, say)
    return result


# --- where faults go ------------------------------------------------------------------------------


def _clone(repo: Repository, dest: Path) -> Repository:
    """Every object of ``repo`` but its locks, copied into a directory: the same
    repository (same keys), somewhere the fault can do no harm."""
    for info in repo.storage.list(""):
        if info.name.startswith("locks/"):
            continue
        path = dest / info.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(repo.storage.get(info.name))
    return _same_keys(repo, LocalStorage(dest))


def _same_keys(repo: Repository, storage: Storage) -> Repository:
    return Repository(storage, repo.config, repo.key, repo.key_id)


def _wrapped(repo: Repository, fault: str, seed: int, latency: float) -> Repository:
    if fault == "primary-down":
        gone = ChaosStorage(repo.storage, seed=seed)
        gone.disappear()
        return _same_keys(repo, gone)

    def slow(_op: str, _name: str) -> None:
        time.sleep(latency)

    flaky = ChaosStorage(
        FaultyStorage(repo.storage, slow),
        FaultPlan(error_rate=0.05, timeout_rate=0.05, timeout=latency * 4),
        seed=seed,
    )
    return _same_keys(repo, RetryingStorage(flaky, attempts=10, base_delay=latency / 4))


# --- lose-pack, corrupt-pack ---------------------------------------------------------------------


def data_packs(repo: Repository, plan: Plan) -> dict[bytes, set[str]]:
    """The packs holding file data of the newest complete group: pack id -> the
    assets whose files have data in it."""
    from seawall.engine.trees import walk

    groups = groups_in(repo, plan)
    if not groups:
        raise UsageError(
            f"the repository at {repo.storage.location} has no complete snapshot group to "
            "inject a fault into: run `seawall backup --plan` first"
        )
    repo.load_index()
    out: dict[bytes, set[str]] = {}
    for name, sid in groups[-1].assets.items():
        snap = repo.load_snapshot(bytes.fromhex(sid))
        for _path, node in walk(repo, snap.tree):
            if node.type != FILE:
                continue
            for bid in node.content:
                loc = repo.index.lookup(bid)
                if loc is not None and loc.type in (DATA, DELTA):
                    out.setdefault(loc.pack_id, set()).add(name)
    return out


def _pack_fault(
    result: ChaosResult,
    plan: Plan,
    target: Repository,
    fault: str,
    seed: int,
    replicas: list[str],
    drill: Callable[..., DrillReport],
    drilled: Repositories,
    say: Log,
) -> None:
    packs = data_packs(target, plan)
    if not packs:
        raise UsageError("the newest group holds no file data: there is no pack to damage")
    pack_id = random.Random(seed).choice(sorted(packs))
    hurt = sorted(packs[pack_id])
    name = pack_name(pack_id)
    if fault == "lose-pack":
        target.storage.delete(name)
        result.injected = f"deleted pack {pack_id.hex()[:12]}"
    else:
        data = bytearray(target.storage.get(name))
        blob = next(
            loc
            for loc in (target.index.lookup(b) for b in _blobs_in(target, pack_id))
            if loc is not None and loc.type in (DATA, DELTA)
        )
        middle = blob.offset + blob.length // 2
        data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
        target.storage.put(name, bytes(data))
        result.injected = f"flipped 16 bytes of a data blob in pack {pack_id.hex()[:12]}"
    result.injected += f", which holds data of {', '.join(hurt)}"
    say(f"injected: {result.injected}")
    result.expected = (
        f"the drill names pack {pack_id.hex()[:12]} and the damaged assets ({', '.join(hurt)})"
        + (
            "; it recovers them from a replica; repair heal makes the primary whole"
            if replicas
            else " (no replica is configured: they cannot be recovered)"
        )
    )
    report = result.drill = drill()
    text = _all_findings(report)
    named = pack_id.hex()[:12] in text and all(a in text for a in hurt)
    result.observed.append(
        f"the drill named the pack and {', '.join(hurt)}"
        if named
        else f"the drill did not name pack {pack_id.hex()[:12]} with {', '.join(hurt)}: "
        + (text or "it reported nothing")
    )
    caught = all(not (a.source == PRIMARY and a.passed) for a in report.assets if a.name in hurt)
    if not caught:
        result.observed.append("the damaged assets passed from the primary: the fault went unseen")
    if not replicas:
        result.passed = named and caught and not report.checks_passed
        return
    recovered = _recovered_from_replicas(result, report, hurt)
    say("healing the damaged primary from a replica (repair heal)")
    healed = heal(target, drilled.open(replicas[0]))
    result.repair = (
        f"repair heal from replica {replicas[0]}: healed {len(healed.healed)} snapshot(s), "
        f"salvaged {healed.salvaged_blobs} blob(s), "
        + ("the primary checks clean" if healed.ok else f"still damaged: {healed.unhealed}")
    )
    result.observed.append(result.repair)
    whole = _drill_after_repair(result, drilled, target, drill, "healing")
    result.passed = named and caught and recovered and healed.ok and whole


def _blobs_in(repo: Repository, pack_id: bytes) -> list[bytes]:
    from seawall.repository.index import blobs_by_pack

    number = [p for p, _size, _salt in repo.index.packs()].index(pack_id)
    return [b.id for b in blobs_by_pack(repo.index.entries()).get(number, [])]


def _recovered_from_replicas(result: ChaosResult, report: DrillReport, hurt: list[str]) -> bool:
    sources = {a.name: a.source for a in report.assets}
    recovered = report.checks_passed and all(sources.get(a, PRIMARY) != PRIMARY for a in hurt)
    result.observed.append(
        "the drill recovered "
        + ", ".join(f"{a} from replica {sources[a]}" for a in hurt if sources.get(a))
        if recovered
        else "the drill did not recover everything from a replica: " + _all_findings(report)
    )
    return recovered


def _drill_after_repair(
    result: ChaosResult,
    drilled: Repositories,
    target: Repository,
    drill: Callable[[], DrillReport],
    repair: str,
) -> bool:
    """Drill again once ``repair`` ran on the primary: whether every asset now passes
    from the primary alone (recorded in ``result``)."""
    drilled.opened[PRIMARY] = _same_keys(target, target.storage)  # as a new process sees it
    after = result.after = drill()
    whole = after.checks_passed and all(a.source == PRIMARY for a in after.assets)
    result.observed.append(
        f"after {repair}, the drill passed from the primary alone"
        if whole
        else f"after {repair}, the drill still failed: " + _all_findings(after)
    )
    return whole


def _all_findings(report: DrillReport) -> str:
    parts = [report.error, *report.findings]
    for a in report.assets:
        parts += [a.error, *a.findings]
    return " | ".join(p for p in parts if p)


# --- corrupt-index --------------------------------------------------------------------------------


def _index_fault(
    result: ChaosResult,
    target: Repository,
    seed: int,
    replicas: list[str],
    drill: Callable[..., DrillReport],
    drilled: Repositories,
    say: Log,
) -> None:
    ids = sorted(target.list_ids("index"))
    if not ids:
        raise UsageError("the repository has no index object to damage")
    index_id = random.Random(seed).choice(ids)
    name = f"index/{index_id.hex()}"
    data = bytearray(target.storage.get(name))
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    target.storage.put(name, bytes(data))
    result.injected = f"flipped 8 bytes of index object {index_id.hex()[:8]}"
    say(f"injected: {result.injected}")
    result.expected = (
        f"the drill names index {index_id.hex()[:8]} as damaged"
        + ("; it recovers every asset from a replica" if replicas else "")
        + "; repair index rebuilds the index from the packs and a second drill passes"
    )
    report = result.drill = drill()
    text = _all_findings(report)
    named = f"index {index_id.hex()[:8]}" in text
    result.observed.append(
        f"the drill named index {index_id.hex()[:8]}"
        if named
        else "the drill did not name the damaged index: " + (text or "it reported nothing")
    )
    recovered = not replicas or _recovered_from_replicas(
        result, report, [a.name for a in report.assets]
    )
    repaired = repair_index(_same_keys(target, target.storage))
    result.repair = (
        f"repair index: {repaired.packs_indexed} packs, {repaired.blobs_indexed} blobs indexed "
        f"into {repaired.index_objects_written} new index object(s)"
    )
    result.observed.append(result.repair)
    whole = _drill_after_repair(result, drilled, target, drill, "repair index")
    result.passed = named and recovered and whole


# --- primary-down, slow-storage ------------------------------------------------------------------


def _primary_down(
    result: ChaosResult, replicas: list[str], drill: Callable[..., DrillReport]
) -> None:
    result.injected = "every call to the primary repository fails: store unreachable"
    result.expected = (
        "the drill recovers every asset from a replica and says which"
        if replicas
        else "recovery from a replica: none is configured, so the drill must fail"
    )
    report = result.drill = drill()
    if not replicas:
        result.observed.append(
            "the drill failed: " + (_all_findings(report) or "no message")
            if not report.checks_passed
            else "the drill passed with its primary down and no replica: impossible"
        )
        result.passed = False  # nothing can recover: the plan lacks a replica
        return
    result.passed = _recovered_from_replicas(
        result, report, [a.name for a in report.assets]
    ) and bool(report.assets)


def _slow(result: ChaosResult, target: Repository, drill: Callable[..., DrillReport]) -> None:
    chaos = _chaos_of(target.storage)
    result.injected = "every call to the primary is slowed down; some fail and are retried"
    result.expected = (
        "the drill still verifies every asset, and its RTO under slow storage meets the targets"
    )
    report = result.drill = drill()
    if chaos is not None:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(chaos.injected.items()))
        result.observed.append(f"faults injected: {counts or 'none'} in {chaos.calls} calls")
    result.observed.append(
        f"the drill {'verified every asset' if report.checks_passed else 'FAILED'} "
        f"in {report.rto_s:.1f}s"
    )
    result.observed += report.missed_targets
    result.passed = report.passed and not report.degraded


def _chaos_of(storage: Storage) -> ChaosStorage | None:
    inner: Any = storage
    while inner is not None and not isinstance(inner, ChaosStorage):
        inner = getattr(inner, "inner", None)
    return inner


# --- kill-backup ---------------------------------------------------------------------------------


def _kill_backup(
    result: ChaosResult,
    plan: Plan,
    target: Repository,
    password: str,
    work: Path,
    drill: Callable[..., DrillReport],
    say: Log,
) -> None:
    before = {g.id for g in groups_in(target, plan)}
    halfway = max(1, (len(plan.assets) + 1) // 2)
    result.expected = (
        "the killed backup leaves a repository that checks clean and no group; the backup "
        "run again completes, and a drill of its group passes"
    )
    marker = work / "blocked"
    say(f"starting a backup and killing it (SIGKILL) at snapshot {halfway} of {len(plan.assets)}")
    code, output = _run_and_kill(plan, target.storage.location, password, marker, halfway)
    result.injected = (
        f"a backup process was killed with SIGKILL while writing snapshot {halfway} of "
        f"{len(plan.assets)}"
        if code == -signal.SIGKILL
        else f"the backup process ended on its own (exit {code}) before it could be killed: "
        + output
    )
    if code != -signal.SIGKILL:
        result.observed.append(result.injected)
        return
    fresh = _same_keys(target, target.storage)
    checked = check(fresh)
    added = {g.id for g in groups_in(fresh, plan)} - before
    valid = checked.ok and not added
    result.observed.append(
        "after the kill the repository checks clean and records no new group"
        if valid
        else "after the kill: "
        + "; ".join(checked.errors[:3] + ([f"a group {added} was recorded"] if added else []))
    )
    orphans = len([w for w in checked.warnings if "not in any index" in w])
    say("running the backup again")
    resumed = backup_plan(plan, _same_keys(target, target.storage), log=say)
    added_bytes = sum(a.snapshot.summary.get("data_added", 0) for a in resumed.assets)
    result.repair = (
        f"the backup run again completed as group {resumed.group[:8]}, adding "
        f"{added_bytes} bytes of data (what the killed run stored was reused)"
        + (f"; {orphans} pack(s) it left unindexed were indexed" if orphans else "")
    )
    result.observed.append(result.repair)
    after = result.after = drill(snapshot=resumed.group)
    result.observed.append(
        "its group passed a drill"
        if after.checks_passed
        else "its group failed a drill: " + _all_findings(after)
    )
    result.passed = valid and after.checks_passed


_CHILD = (
    "import sys\n"
    "from seawall.plan.chaos import backup_until_blocked\n"
    "backup_until_blocked(*sys.argv[1:])\n"
)


def _run_and_kill(
    plan: Plan, location: str, password: str, marker: Path, halfway: int
) -> tuple[int, str]:
    """A real backup process, killed with SIGKILL once it blocks at snapshot ``halfway``."""
    endpoint = plan.repositories.primary.s3_endpoint or ""
    args = [
        sys.executable,
        "-c",
        _CHILD,
        plan.origin,
        location,
        endpoint,
        str(marker),
        str(halfway),
    ]
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
        try:
            assert proc.stdin is not None
            proc.stdin.write(password.encode() + b"\n")
            proc.stdin.close()
            deadline = time.monotonic() + 600
            while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            code = proc.wait()
        out.seek(0)
        tail = out.read()[-2000:].decode(errors="replace").strip()
    return code, " | ".join(tail.splitlines()[-3:])


def backup_until_blocked(
    plan_file: str, location: str, endpoint: str, marker: str, halfway: str
) -> None:
    """The backup process of kill-backup (its password on stdin): a backup of the plan
    whose store blocks, forever, the put of snapshot number ``halfway``, once the ones
    before it are stored; it says so by creating ``marker``."""
    password = sys.stdin.readline().rstrip("\n")
    plan = load_plan(plan_file)
    snapshots = 0

    def block(op: str, name: str) -> None:
        nonlocal snapshots
        if op == "put" and name.startswith("snapshots/"):
            snapshots += 1
            if snapshots >= int(halfway):
                Path(marker).write_text(str(os.getpid()))
                while True:
                    time.sleep(60)  # until killed

    storage = FaultyStorage(open_storage(location, s3_endpoint=endpoint or None), block)
    try:
        backup_plan(plan, Repository.open(storage, password))
    except SeawallError as err:
        print(f"backup failed: {err}", flush=True)
        raise SystemExit(1) from None


__all__ = ["FAULTS", "ChaosResult", "backup_until_blocked", "data_packs", "run_chaos"]
