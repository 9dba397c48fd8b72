"""What every source is: capture an asset into entries, and put it back.

A source turns one asset of the plan (a database, an MLflow server, config
and secrets, the environment) into *entries* for the archiver (files on disk
and streams, laid out as the asset's tree in its snapshot), at one
consistency point that it records, and knows how to bring the asset back from
those files once they are restored to a directory.

Sources stream: a capture may write into its private stage directory (a
SQLite online backup needs a destination file) but never holds an asset in
memory.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from seawall.engine.archiver import Entry, PathEntry, StreamEntry
from seawall.errors import UsageError

__all__ = [
    "Captured",
    "Entry",
    "PathEntry",
    "Source",
    "StreamEntry",
    "bytes_entry",
    "refuse_unknown_options",
]


@dataclass
class Captured:
    """What a capture produced: the entries to store and the facts to record."""

    entries: list[Entry]
    #: the instant (or transaction, LSN, schema revision...) the capture represents,
    #: recorded in the snapshot; JSON-serialisable, and never a secret
    consistency: dict[str, Any] = field(default_factory=dict)
    #: links to other assets of the same group (e.g. a model version's dataset)
    lineage: dict[str, Any] = field(default_factory=dict)
    #: patterns of files to leave out below the path entries (the archiver's excludes)
    excludes: list[str] = field(default_factory=list)


class Source(Protocol):
    """One kind of asset. Implementations are small classes built from the plan's
    settings for the asset (the plan layer maps ``kind`` to a class)."""

    kind: str

    def capture(self, stage: Path) -> AbstractContextManager[Captured]:
        """Capture the asset consistently. ``stage`` is an empty private directory
        the source may write into; it is removed after the backup. Entries'
        streams are opened (and dump processes started) only while the context
        is open."""
        ...

    def restore(self, restored: Path, options: Mapping[str, str]) -> dict[str, Any]:
        """Bring the asset back from its files, restored under ``restored``.

        ``options`` say where to (a database name or DSN, a directory, a
        tracking URI...; each source documents its own). Returns facts for the
        report (what was created where). Never overwrites a live target unless
        an option says so explicitly."""
        ...


def refuse_unknown_options(options: Mapping[str, str], known: Mapping[str, str], kind: str) -> None:
    """Raise UsageError for an option the source does not take (``known``: name -> help)."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        takes = "; ".join(f"{k}: {v}" for k, v in known.items()) or "none"
        raise UsageError(
            f"a {kind} asset takes no restore option {', '.join(map(repr, unknown))} "
            f"(its options: {takes})"
        )


def bytes_entry(dest: str, data: bytes, mode: int = 0o600) -> StreamEntry:
    """A small generated file (facts, a variables file) as an entry at ``dest``."""

    @contextmanager
    def opener() -> Iterator[BinaryIO]:
        yield io.BytesIO(data)

    return StreamEntry(dest, opener, mode)
