"""Progress counters shared between an operation and whoever displays it.

Operations only add to the counters; an interface polls ``view()`` from its
own thread to draw a bar. Totals may be unknown (None) while a scan runs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from seawall.errors import Cancelled


@dataclass(frozen=True)
class ProgressView:
    phase: str
    files_done: int
    bytes_done: int
    files_total: int | None
    bytes_total: int | None
    elapsed: float

    @property
    def rate(self) -> float:
        return self.bytes_done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        if not self.bytes_total or not self.rate:
            return None
        return max(0.0, (self.bytes_total - self.bytes_done) / self.rate)


class Progress:
    def __init__(self, phase: str = "") -> None:
        self._lock = threading.Lock()
        self.phase = phase
        self.files_done = 0
        self.bytes_done = 0
        self.files_total: int | None = None
        self.bytes_total: int | None = None
        self._start = time.monotonic()
        self.cancel_event = threading.Event()

    def add(self, files: int = 0, nbytes: int = 0) -> None:
        with self._lock:
            self.files_done += files
            self.bytes_done += nbytes

    def set_totals(self, files: int | None, nbytes: int | None) -> None:
        with self._lock:
            self.files_total, self.bytes_total = files, nbytes

    def start(self, phase: str) -> None:
        with self._lock:
            self.phase = phase
            self.files_done = self.bytes_done = 0
            self.files_total = self.bytes_total = None
            self._start = time.monotonic()

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled(
                "interrupted; the repository is unchanged except for data a rerun reuses"
            )

    def view(self) -> ProgressView:
        with self._lock:
            return ProgressView(
                self.phase,
                self.files_done,
                self.bytes_done,
                self.files_total,
                self.bytes_total,
                time.monotonic() - self._start,
            )
