"""Alerts: conditions that need a person, sent to webhooks and logged, each once.

The monitor (monitor.py) says, at every check, which :class:`Condition` s
hold right now: an asset's newest copy older than its RPO, its last drill
failed, its last backup failed, its newest snapshot marked suspect by the
anomaly check, a replica behind. :class:`Alerter` turns that set into alerts
with their own life, kept in the state database (table ``alerts``):

- a condition that starts to hold opens an alert, sent at once (``firing``);
- while it holds, nothing more is sent until ``repeat`` has passed since the
  last send (then it is sent again, with its count of repeats): repeated
  checks never flood a channel;
- when it stops holding, the alert is closed and sent once more
  (``resolved``). If it comes back later, that is a new alert.

Every send is also a log line (logger ``seawall.alerts``). Webhooks get a
JSON POST, from one background thread so a slow receiver never holds up a
check or a job; each is tried up to three times. A webhook's URL may hold a
secret (Slack's do): logs and errors name only its scheme and host.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from seawall.control.store import StateStore

log = logging.getLogger("seawall.alerts")

#: Kinds of alerts, and how bad each is.
SEVERITY = {
    "anomaly": "critical",
    "backup_failed": "critical",
    "drill_failed": "critical",
    "rpo_breach": "critical",
    "replica_behind": "warning",
}
FIRING, RESOLVED = "firing", "resolved"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    asset TEXT,
    severity TEXT NOT NULL,
    summary TEXT NOT NULL,
    details TEXT NOT NULL,
    status TEXT NOT NULL,
    started TEXT NOT NULL,
    updated TEXT NOT NULL,
    resolved TEXT,
    last_sent TEXT NOT NULL,
    sends INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_status ON alerts (status, key);
"""
_COLUMNS = (
    "id, key, kind, asset, severity, summary, details, status, started, updated, "
    "resolved, last_sent, sends"
)


@dataclass(frozen=True)
class Condition:
    """Something wrong right now. ``key`` names it (``rpo_breach:dataset``): the same
    key at the next check is the same alert going on."""

    key: str
    kind: str
    asset: str | None
    summary: str
    details: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass
class Alert:
    id: int
    key: str
    kind: str
    asset: str | None
    severity: str
    summary: str
    details: dict[str, Any]
    status: str
    started: str
    updated: str
    resolved: str | None
    last_sent: str
    sends: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def redact(url: str) -> str:
    """A webhook URL as logs may show it: scheme and host, no path or query."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


class Webhooks:
    """POSTs alert payloads to every URL, from one background thread, in order."""

    TRIES = 3

    def __init__(self, urls: list[str], *, timeout: float = 10.0, backoff: float = 1.0) -> None:
        self.urls = list(urls)
        self._backoff, self._timeout = backoff, timeout
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        #: (redacted URL, error) of the last sends that failed for good (the dashboard
        #: shows them: an alert nobody received is worth knowing about)
        self.failures: list[tuple[str, str]] = []

    def send(self, payload: dict[str, Any]) -> None:
        if not self.urls:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="seawall-webhooks", daemon=True)
            self._thread.start()
        self._queue.put(payload)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every payload queued so far was sent (or given up on)."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put({"__flush__": done})
        return done.wait(timeout)

    def close(self) -> None:
        self._closing.set()  # a send waiting to try again gives up
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(10)

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout, follow_redirects=False) as client:
            while True:
                payload = self._queue.get()
                if payload is None:
                    return
                if "__flush__" in payload:
                    payload["__flush__"].set()
                    continue
                for url in self.urls:
                    self._post(client, url, payload)

    def _post(self, client: httpx.Client, url: str, payload: dict[str, Any]) -> None:
        why = ""
        for attempt in range(self.TRIES):
            try:
                response = client.post(url, json=payload)
                if response.status_code < 300:
                    return
                why = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    break  # the receiver refuses it: trying again will not help
            except httpx.HTTPError as err:
                why = type(err).__name__
            if attempt + 1 < self.TRIES and self._closing.wait(self._backoff * 2**attempt):
                break
        shown = redact(url)
        self.failures = [*self.failures[-9:], (shown, why)]
        log.error("alert %s not delivered to the webhook at %s: %s", payload["key"], shown, why)


class Alerter:
    """Turns the conditions of each check into alerts (see the module docstring)."""

    def __init__(
        self,
        store: StateStore,
        webhooks: Webhooks,
        *,
        repeat: timedelta,
        context: dict[str, Any] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.webhooks = webhooks
        self.repeat = repeat
        #: what every payload says besides the alert (the host, the plan)
        self.context = dict(context or {})
        self.clock = clock
        self._lock = threading.Lock()
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                store.execute(statement)

    def update(self, conditions: Iterable[Condition]) -> list[Alert]:
        """Open, repeat and resolve alerts for the conditions holding now (every
        condition there is, of every kind); returns the alerts sent."""
        sent = []
        with self._lock:
            now = self.clock()
            holding = {c.key: c for c in conditions}
            firing = {a.key: a for a in self.alerts(status=FIRING)}
            for key, condition in holding.items():
                alert = firing.get(key)
                if alert is None:
                    sent.append(self._open(condition, now))
                elif now - datetime.fromisoformat(alert.last_sent) >= self.repeat:
                    sent.append(self._touch(alert, condition, now, send=True))
                else:
                    self._touch(alert, condition, now, send=False)
            for key, alert in firing.items():
                if key not in holding:
                    sent.append(self._resolve(alert, now))
        return sent

    def alerts(self, *, status: str | None = None, limit: int = 500) -> list[Alert]:
        """Alerts, newest first (``status``: only firing or only resolved ones)."""
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        rows = self.store.rows(
            f"SELECT {_COLUMNS} FROM alerts {where} ORDER BY id DESC LIMIT ?", (*params, limit)
        )
        return [_alert(row) for row in rows]

    def _open(self, c: Condition, now: datetime) -> Alert:
        stamp = now.isoformat()
        severity = SEVERITY.get(c.kind, "warning")
        with self.store.transaction() as db:
            cursor = db.execute(
                f"INSERT INTO alerts ({_COLUMNS.split(', ', 1)[1]}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    c.key,
                    c.kind,
                    c.asset,
                    severity,
                    c.summary,
                    json.dumps(c.details, default=str),
                    FIRING,
                    stamp,
                    stamp,
                    None,
                    stamp,
                    1,
                ),
            )
            alert_id = int(cursor.lastrowid or 0)
        alert = Alert(
            alert_id,
            c.key,
            c.kind,
            c.asset,
            severity,
            c.summary,
            c.details,
            FIRING,
            stamp,
            stamp,
            None,
            stamp,
            1,
        )
        self._send(alert)
        return alert

    def _touch(self, alert: Alert, c: Condition, now: datetime, *, send: bool) -> Alert:
        alert.summary, alert.details, alert.updated = c.summary, c.details, now.isoformat()
        if send:
            alert.last_sent, alert.sends = alert.updated, alert.sends + 1
        self.store.execute(
            "UPDATE alerts SET summary = ?, details = ?, updated = ?, last_sent = ?, sends = ? "
            "WHERE id = ?",
            (
                alert.summary,
                json.dumps(alert.details, default=str),
                alert.updated,
                alert.last_sent,
                alert.sends,
                alert.id,
            ),
        )
        if send:
            self._send(alert)
        return alert

    def _resolve(self, alert: Alert, now: datetime) -> Alert:
        alert.status, alert.resolved = RESOLVED, now.isoformat()
        alert.updated = alert.last_sent = alert.resolved
        alert.sends += 1
        self.store.execute(
            "UPDATE alerts SET status = ?, resolved = ?, updated = ?, last_sent = ?, sends = ? "
            "WHERE id = ?",
            (RESOLVED, alert.resolved, alert.updated, alert.last_sent, alert.sends, alert.id),
        )
        self._send(alert)
        return alert

    def _send(self, alert: Alert) -> None:
        level = logging.INFO if alert.status == RESOLVED else logging.WARNING
        log.log(level, "alert %s %s: %s", alert.status, alert.key, alert.summary)
        self.webhooks.send(
            {
                "source": "seawall",
                "status": alert.status,
                "kind": alert.kind,
                "key": alert.key,
                "asset": alert.asset,
                "severity": alert.severity,
                "summary": alert.summary,
                "details": alert.details,
                "started": alert.started,
                "resolved": alert.resolved,
                "repeat": alert.sends - 1 if alert.status == FIRING else None,
                "time": alert.last_sent,
                **self.context,
            }
        )


def _alert(row: tuple[Any, ...]) -> Alert:
    values = list(row)
    values[6] = json.loads(values[6])
    return Alert(*values)
