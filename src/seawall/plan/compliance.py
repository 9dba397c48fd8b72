"""The compliance view of a plan: per asset, where its copies are and how they are kept.

For auditors (``seawall report compliance``, the dashboard): for each asset,
every copy (the primary repository and each replica holding its snapshots)
with its location, region, encryption and immutability (the Object Lock
mode and the date its newest and oldest snapshots are retained until);
its residency rule and whether every copy obeys it; its retention policy;
its RPO and RTO targets and how old its newest copy is; its last drill and
last successful drill. What an auditor would flag is listed as findings.

Everything is read from the repositories themselves (their config, keys,
snapshots, drill records), not from the plan's say-so: a replica the plan
names but that holds no copy shows as such, an unreachable one as
unreachable. The report is JSON for machines and one self-contained HTML
page (no scripts, nothing loaded from elsewhere) for people.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from seawall.errors import SeawallError
from seawall.plan.drill import PRIMARY, RECORD_KIND, Repositories
from seawall.plan.model import AnyAsset, Plan, format_duration
from seawall.repository.repo import Repository
from seawall.repository.residency import residency_allows
from seawall.repository.snapshot import Snapshot

JSON_NAME = "compliance.json"
HTML_NAME = "compliance.html"
#: How repositories are encrypted (docs/format.md): every object but the public config.
ENCRYPTION = "AES-256-GCM, every object but the public config; master key wrapped with Argon2id"


@dataclass
class Copy:
    #: "primary" or the replica's name
    repository: str
    location: str
    region: str
    snapshots: int = 0
    newest: str | None = None
    oldest: str | None = None
    encryption: str = ENCRYPTION
    keys: int = 0
    #: {"mode", "days", "newest_until", "oldest_until"}; None: not immutable
    immutability: dict[str, Any] | None = None
    residency_ok: bool = True
    #: why the repository could not be read ("" when it could)
    error: str = ""


@dataclass
class Drill:
    time: str
    passed: bool
    rto_s: float | None
    rpo_s: float | None
    record: str
    rto_target_s: float | None = None
    rpo_target_s: float | None = None
    #: why it failed ("" if it passed)
    why: str = ""


@dataclass
class AssetCompliance:
    name: str
    kind: str
    residency: str | None
    retention: str | None
    rpo: str | None
    rto: str | None
    newest_age_s: float | None = None
    copies: list[Copy] = field(default_factory=list)
    last_drill: Drill | None = None
    last_successful_drill: Drill | None = None
    findings: list[str] = field(default_factory=list)


@dataclass
class ComplianceReport:
    time: datetime
    plan_file: str
    assets: list[AssetCompliance] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(a.findings for a in self.assets)

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat(),
            "plan_file": self.plan_file,
            "ok": self.ok,
            "assets": [asdict(a) for a in self.assets],
        }


def compliance(plan: Plan, repos: Repositories, *, now: datetime | None = None) -> ComplianceReport:
    """The compliance view of ``plan``, read from its repositories (opened through
    ``repos``; one that cannot be opened is reported unreachable, not raised)."""
    now = now or datetime.now(UTC)
    report = ComplianceReport(now, plan.origin)
    snapshots: dict[str, list[Snapshot]] = {}
    opened: dict[str, Repository] = {}
    errors: dict[str, str] = {}
    for name in repos.names():
        try:
            opened[name] = repos.open(name)
            snapshots[name] = opened[name].list_snapshots()
        except SeawallError as err:
            errors[name] = str(err)
    drills = opened[PRIMARY].list_records(RECORD_KIND) if PRIMARY in opened else []
    for asset in plan.assets:
        item = AssetCompliance(
            asset.name,
            asset.kind,
            asset.residency,
            asset.retention.describe() if asset.retention else None,
            format_duration(asset.rpo) if asset.rpo else None,
            format_duration(asset.rto) if asset.rto else None,
        )
        for name in repos.names():
            region = repos.spec(name).region or ""
            copy = Copy(name, repos.location(name), region)
            if name in errors:
                copy.error = errors[name]
            else:
                _describe_copy(copy, opened[name], asset, snapshots[name])
            if copy.snapshots or copy.error or name == PRIMARY:
                item.copies.append(copy)
        primary = next(c for c in item.copies if c.repository == PRIMARY)
        if primary.newest:
            item.newest_age_s = round(
                (now - datetime.fromisoformat(primary.newest)).total_seconds()
            )
        history = drill_history(drills, asset.name)
        item.last_drill = history[-1] if history else None
        item.last_successful_drill = next((d for d in reversed(history) if d.passed), None)
        item.findings = _findings(item, asset)
        report.assets.append(item)
    return report


def _describe_copy(copy: Copy, repo: Repository, asset: AnyAsset, snaps: list[Snapshot]) -> None:
    mine = [s for s in snaps if s.asset.get("name") == asset.name]
    copy.region = repo.config.region
    copy.keys = len(repo.list_keys())
    copy.snapshots = len(mine)
    copy.residency_ok = residency_allows(asset.residency or "", repo.config.region)
    if mine:
        copy.newest, copy.oldest = mine[-1].time, mine[0].time
    lock = repo.config.immutability
    if lock is not None:
        copy.immutability = {"mode": lock.mode, "days": lock.days}
        if mine:
            copy.immutability["newest_until"] = _retained_until(repo, mine[-1])
            copy.immutability["oldest_until"] = _retained_until(repo, mine[0])


def _retained_until(repo: Repository, snap: Snapshot) -> str | None:
    """The date the store retains the snapshot's object until (None: unknown)."""
    if repo.view is None:
        return None
    try:
        until = repo.view.retention(f"snapshots/{snap.id.hex()}")
    except SeawallError:  # ObjectNotFound too: the object is gone
        return None
    return until.isoformat() if until else None


def drill_history(records: list[dict[str, Any]], name: str) -> list[Drill]:
    """The drills of asset ``name`` in ``records`` (drill records, oldest first). A
    drill passed for the asset when its checks did and it met the asset's targets."""
    out = []
    for record in records:
        entry = (record.get("assets") or {}).get(name)
        if not isinstance(entry, dict):
            continue
        missed = [
            str(m)[len(name) + 2 :]
            for m in record.get("missed_targets") or []
            if str(m).startswith(f"{name}: ")
        ]
        failed = [c.get("name", "?") for c in entry.get("checks") or [] if not c.get("passed")]
        why = entry.get("error") or "; ".join([*(f"check {c} failed" for c in failed), *missed])
        out.append(
            Drill(
                str(record.get("time")),
                bool(entry.get("passed")) and not missed,
                entry.get("rto_s"),
                entry.get("rpo_s"),
                str(record.get("id")),
                entry.get("rto_target_s"),
                entry.get("rpo_target_s"),
                why,
            )
        )
    return out


def _findings(item: AssetCompliance, asset: AnyAsset) -> list[str]:
    out = []
    held = [c for c in item.copies if c.snapshots]
    for copy in item.copies:
        if copy.error:
            out.append(f"{copy.repository} cannot be read: {copy.error}")
    if not held:
        out.append("no repository holds a copy of it")
    elif len(held) == 1 and not any(c.error for c in item.copies):
        out.append(f"its only copy is in {held[0].repository}: no replica holds it")
    for copy in held:
        if not copy.residency_ok:
            region = copy.region or "no region"
            out.append(
                f"the copy in {copy.repository} ({region}) breaks its residency rule "
                f"{asset.residency!r}"
            )
    if held and not any(c.immutability for c in held):
        out.append("no copy is immutable (Object Lock)")
    if asset.retention is None:
        out.append("no retention policy")
    age, rpo = item.newest_age_s, asset.rpo
    if age is not None and rpo is not None and age > rpo.total_seconds():
        out.append(f"its newest copy is older than its RPO ({item.rpo})")
    if item.last_drill is None:
        out.append("never drilled")
    elif item.last_successful_drill is None:
        out.append("no drill of it has passed")
    elif not item.last_drill.passed:
        out.append(f"its last drill ({item.last_drill.time[:19]}) failed")
    return out


# --- output ---------------------------------------------------------------------------------


def write_compliance(report: ComplianceReport, directory: str | Path) -> tuple[Path, Path]:
    """Write ``compliance.json`` and ``compliance.html`` into ``directory``."""
    out = Path(directory).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / JSON_NAME, out / HTML_NAME
    json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    html_path.write_text(render_html(report))
    return json_path, html_path


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1200px;color:#1f2328;padding:0 1em}h1{font-size:1.5em}
h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
table{border-collapse:collapse;width:100%;margin:.5em 0}
td,th{border:1px solid #d0d7de;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f6f8fa}.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}
.muted{color:#6e7781}
"""


def render_html(report: ComplianceReport) -> str:
    verdict = (
        "<span class='ok'>no findings</span>"
        if report.ok
        else f"<span class='bad'>{sum(len(a.findings) for a in report.assets)} findings</span>"
    )
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>seawall compliance report</title><style>{_STYLE}</style></head><body>",
        f"<h1>seawall compliance report: {verdict}</h1>",
        f"<p class='muted'>plan {escape(report.plan_file)} &middot; "
        f"{escape(_when(report.time.isoformat()))}</p>",
        "<table><tr><th>asset</th><th>kind</th><th>copies (region)</th><th>encrypted</th>"
        "<th>immutable until</th><th>residency</th><th>retention</th><th>RPO / RTO</th>"
        "<th>last successful drill</th><th>findings</th></tr>",
    ]
    for a in report.assets:
        held = [c for c in a.copies if c.snapshots]
        copies = "<br>".join(
            f"{escape(c.repository)} ({escape(c.region or 'no region')})"
            + (" <span class='bad'>unreachable</span>" if c.error else "")
            for c in a.copies
            if c.snapshots or c.error
        )
        locked = "<br>".join(
            f"{escape(c.repository)}: {escape(_until(c.immutability))}" for c in held
        )
        drill = a.last_successful_drill
        findings = "".join(f"<li>{escape(f)}</li>" for f in a.findings)
        parts.append(
            f"<tr><td>{escape(a.name)}</td><td>{escape(a.kind)}</td><td>{copies or '-'}</td>"
            f"<td>{'yes' if held else '-'}</td><td>{locked or '-'}</td>"
            f"<td>{escape(a.residency or 'none')}"
            + ("" if all(c.residency_ok for c in held) else " <span class='bad'>broken</span>")
            + f"</td><td>{escape(a.retention or 'none')}</td>"
            f"<td>{escape(a.rpo or '-')} / {escape(a.rto or '-')}</td>"
            f"<td>{escape(_when(drill.time)) if drill else 'never'}"
            + (f" (RTO {drill.rto_s:.1f}s)" if drill and drill.rto_s is not None else "")
            + f"</td><td>{'<ul>' + findings + '</ul>' if findings else 'none'}</td></tr>"
        )
    parts.append("</table><h2>Copies</h2>")
    parts.append(
        "<table><tr><th>asset</th><th>repository</th><th>location</th><th>region</th>"
        "<th>snapshots</th><th>newest</th><th>oldest</th><th>encryption</th><th>keys</th>"
        "<th>immutability</th></tr>"
    )
    for a in report.assets:
        for c in a.copies:
            parts.append(
                f"<tr><td>{escape(a.name)}</td><td>{escape(c.repository)}</td>"
                f"<td><code>{escape(c.location)}</code></td>"
                f"<td>{escape(c.region or '-')}</td>"
                + (
                    f"<td colspan='6' class='bad'>{escape(c.error)}</td></tr>"
                    if c.error
                    else f"<td>{c.snapshots}</td><td>{escape(_when(c.newest))}</td>"
                    f"<td>{escape(_when(c.oldest))}</td><td>{escape(c.encryption)}</td>"
                    f"<td>{c.keys}</td><td>{escape(_lock(c.immutability))}</td></tr>"
                )
            )
    parts.append("</table></body></html>\n")
    return "".join(parts)


def _until(lock: dict[str, Any] | None) -> str:
    if lock is None:
        return "not immutable"
    return _when(lock.get("newest_until")) if lock.get("newest_until") else "immutable"


def _lock(lock: dict[str, Any] | None) -> str:
    if lock is None:
        return "not immutable"
    text = f"{lock['mode']} mode, {lock['days']} days"
    if lock.get("oldest_until"):
        text += f"; oldest snapshot until {_when(lock['oldest_until'])}"
    if lock.get("newest_until"):
        text += f", newest until {_when(lock['newest_until'])}"
    return text


def _when(iso: str | None) -> str:
    if not iso:
        return "-"
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso
