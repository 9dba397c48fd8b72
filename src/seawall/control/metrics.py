"""Prometheus metrics of the plan ``seawall serve`` watches, read from the monitor at scrape.

Per asset (label ``asset``)::

    seawall_asset_newest_snapshot_age_seconds   age of the newest complete group holding it
    seawall_asset_newest_snapshot_timestamp_seconds
    seawall_asset_rpo_target_seconds            its RPO target (absent: none)
    seawall_asset_rto_target_seconds            its RTO target (absent: none)
    seawall_asset_rpo_met                       1 if its newest copy is within the RPO, else 0
    seawall_asset_last_backup_duration_seconds  how long its newest backup took
    seawall_asset_last_backup_added_bytes       data its newest backup added (before compression)
    seawall_asset_size_bytes                    its size in the newest backup
    seawall_asset_suspect                       1 if its newest backup is marked suspect
    seawall_asset_anomaly_score                 that mark's score (0 when not marked)
    seawall_asset_last_drill_passed             1 passed, 0 failed (absent: never drilled)
    seawall_asset_last_drill_rto_seconds        the RTO its last drill measured
    seawall_asset_last_drill_rpo_seconds        the RPO (age of the data) its last drill measured
    seawall_asset_last_drill_timestamp_seconds

Replicas (labels ``replica``, ``asset``)::

    seawall_replica_up                          1 if the replica could be read
    seawall_replica_newest_copy_age_seconds     age of its newest copy of the asset

Jobs and alerts::

    seawall_job_failures_total{kind}            jobs that failed (or were cut short), ever
    seawall_jobs_running{kind}
    seawall_alerts_firing{kind}

Everything is computed at scrape time from the monitor's overview (at most a
second old), so the values are those the dashboard shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from seawall.control.alerts import FIRING, SEVERITY
from seawall.control.monitor import Monitor

_ASSET_GAUGES: list[tuple[str, str, Callable[[dict[str, Any]], Any]]] = [
    # (name, help, how to read the value from an asset of the overview)
    ("newest_snapshot_age_seconds", "Age of the newest complete snapshot group holding the asset",
     lambda a: a["age_s"]),
    ("newest_snapshot_timestamp_seconds", "When the newest group holding the asset was taken",
     lambda a: _stamp(a["time"])),
    ("rpo_target_seconds", "The asset's RPO target", lambda a: a["rpo_target_s"]),
    ("rto_target_seconds", "The asset's RTO target", lambda a: a["rto_target_s"]),
    ("rpo_met", "1 if the asset's newest copy is within its RPO target, else 0",
     lambda a: None if a["rpo_target_s"] is None else float(bool(a["within_rpo"]))),
    ("last_backup_duration_seconds", "How long the asset's newest backup took",
     lambda a: _get(a["last_backup"], "duration_s")),
    ("last_backup_added_bytes", "Data the asset's newest backup added (before compression)",
     lambda a: _get(a["last_backup"], "data_added")),
    ("size_bytes", "The asset's size in its newest backup",
     lambda a: _get(a["last_backup"], "bytes_total")),
    ("suspect", "1 if the asset's newest backup is marked suspect by the anomaly check",
     lambda a: float(bool(a["suspect"]))),
    ("anomaly_score", "Anomaly score of the asset's newest backup if marked, else 0",
     lambda a: float(a["anomaly"]["score"]) if a["anomaly"] else 0.0),
    ("last_drill_passed", "1 if the asset's last drill passed, 0 if it failed",
     lambda a: _get(a["last_drill"], "passed")),
    ("last_drill_rto_seconds", "The RTO the asset's last drill measured",
     lambda a: _get(a["last_drill"], "rto_s")),
    ("last_drill_rpo_seconds", "The RPO (age of the restored data) the asset's last drill measured",
     lambda a: _drill_rpo(a)),
    ("last_drill_timestamp_seconds", "When the asset's last drill ran",
     lambda a: _stamp(_get(a["last_drill"], "time"))),
]  # fmt: skip


def _get(doc: dict[str, Any] | None, key: str) -> Any:
    return None if doc is None else doc.get(key)


def _stamp(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def _drill_rpo(asset: dict[str, Any]) -> float | None:
    history = asset.get("drill_history") or []
    return history[-1]["rpo_s"] if history else None


class WatchCollector(Collector):
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        view = self.monitor.overview()
        for name, doc, read in _ASSET_GAUGES:
            family = GaugeMetricFamily(f"seawall_asset_{name}", doc, labels=["asset"])
            for asset in view["assets"]:
                asset = {**asset, "drill_history": view["drills"].get(asset["name"])}
                value = read(asset)
                if value is not None:
                    family.add_metric([asset["name"]], float(value))
            yield family
        up = GaugeMetricFamily(
            "seawall_replica_up", "1 if the replica could be read", labels=["replica"]
        )
        age = GaugeMetricFamily(
            "seawall_replica_newest_copy_age_seconds",
            "Age of the replica's newest copy of the asset",
            labels=["replica", "asset"],
        )
        for replica in view["replicas"]:
            up.add_metric([replica["name"]], float(replica["reachable"]))
            for asset, copy in replica["assets"].items():
                if copy.get("age_s") is not None:
                    age.add_metric([replica["name"], asset], float(copy["age_s"]))
        yield up
        yield age
        failures = CounterMetricFamily(
            "seawall_job_failures", "Jobs that failed or were cut short", labels=["kind"]
        )
        for kind, count in sorted(view["jobs"]["failed"].items()):
            failures.add_metric([kind], float(count))
        yield failures
        running = GaugeMetricFamily("seawall_jobs_running", "Jobs running now", labels=["kind"])
        for kind, count in sorted(view["jobs"]["running"].items()):
            running.add_metric([kind], float(count))
        yield running
        firing = GaugeMetricFamily("seawall_alerts_firing", "Alerts firing now", labels=["kind"])
        counts = dict.fromkeys(SEVERITY, 0)
        for alert in self.monitor.alerter.alerts(status=FIRING):
            counts[alert.kind] = counts.get(alert.kind, 0) + 1
        for kind, count in sorted(counts.items()):
            firing.add_metric([kind], float(count))
        yield firing


def metrics_registry(monitor: Monitor) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WatchCollector(monitor))
    return registry
