"""``seawall status``: per asset, how old its newest copy is and how its last drill went.

An asset is *behind* when its newest complete group is older than its RPO
target (or it has none), and *unproven* when its last drill failed; both
make :attr:`PlanStatus.ok` false. Assets never drilled are shown as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from seawall.plan.anomaly import clean_groups
from seawall.plan.drill import RECORD_KIND, groups_in
from seawall.plan.model import Plan, approx_duration
from seawall.repository.repo import Repository


@dataclass
class AssetStatus:
    name: str
    kind: str
    rpo_target_s: float | None
    rto_target_s: float | None
    #: the newest complete group holding the asset, and its snapshot there
    group: str | None = None
    snapshot: str | None = None
    time: str | None = None
    age_s: float | None = None
    #: the newest drill of this asset
    drill_time: str | None = None
    drill_passed: bool | None = None
    drill_rto_s: float | None = None
    drill_record: str | None = None
    drills: int = 0

    @property
    def behind(self) -> bool:
        if self.age_s is None:
            return True
        return self.rpo_target_s is not None and self.age_s > self.rpo_target_s

    @property
    def problems(self) -> list[str]:
        out = []
        if self.age_s is None:
            out.append("no complete snapshot group holds it")
        elif self.behind:
            out.append(f"its newest copy is {approx_duration(self.age_s)} old, over its RPO")
        if self.drill_passed is False:
            out.append("its last drill failed")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "group": self.group,
            "snapshot": self.snapshot,
            "time": self.time,
            "age_s": None if self.age_s is None else round(self.age_s, 1),
            "rpo_target_s": self.rpo_target_s,
            "rto_target_s": self.rto_target_s,
            "within_rpo": None if self.age_s is None else not self.behind,
            "last_drill": {
                "time": self.drill_time,
                "passed": self.drill_passed,
                "rto_s": self.drill_rto_s,
                "record": self.drill_record,
            }
            if self.drill_time
            else None,
            "drills": self.drills,
            "problems": self.problems,
        }


@dataclass
class PlanStatus:
    plan_file: str
    repository: str
    time: datetime
    groups: int
    assets: list[AssetStatus] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(a.problems for a in self.assets)

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan_file": self.plan_file,
            "repository": self.repository,
            "time": self.time.isoformat(),
            "groups": self.groups,
            "ok": self.ok,
            "assets": [a.to_dict() for a in self.assets],
        }


def plan_status(plan: Plan, repo: Repository, *, now: datetime | None = None) -> PlanStatus:
    now = now or datetime.now(UTC)
    groups = groups_in(repo, plan)
    drills = repo.list_records(RECORD_KIND)
    out = PlanStatus(plan.origin, repo.storage.location, now, len(groups))
    for asset in plan.assets:
        item = AssetStatus(
            asset.name,
            asset.kind,
            asset.rpo.total_seconds() if asset.rpo else None,
            asset.rto.total_seconds() if asset.rto else None,
        )
        # A snapshot marked suspect (ransomware signals) is no good copy: the RPO
        # counts from the newest clean one.
        holding = clean_groups(repo, [g for g in groups if asset.name in g.assets], asset.name)
        if holding:
            newest = holding[-1]
            item.group, item.snapshot = newest.id, newest.assets[asset.name]
            item.time = newest.time.isoformat()
            item.age_s = max(0.0, (now - newest.time).total_seconds())
        mine = [d for d in drills if asset.name in (d.get("assets") or {})]
        item.drills = len(mine)
        if mine:
            last = mine[-1]
            entry = last["assets"][asset.name]
            item.drill_time = str(last.get("time"))
            item.drill_passed = bool(entry.get("passed")) and not _missed(last, asset.name)
            item.drill_rto_s = entry.get("rto_s")
            item.drill_record = last.get("id")
        out.assets.append(item)
    return out


def _missed(record: dict[str, Any], name: str) -> bool:
    """Whether the drill missed one of the asset's targets."""
    return any(str(m).startswith(f"{name}: ") for m in record.get("missed_targets") or [])
