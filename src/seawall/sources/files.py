"""Files and checkpoints: paths on disk, stored as they are under their own names.

Each path of the asset is stored at the top of the asset's tree under its
base name (the plan refuses two with one name), so a restore puts
``/data/train`` back as ``TARGET/ASSET/train``. Checkpoints are files too:
the archiver recognises tensor files and cuts them at tensor boundaries.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from seawall.errors import SourceError
from seawall.sources.base import Captured, PathEntry, refuse_unknown_options


class FilesSource:
    def __init__(
        self, paths: list[Path], excludes: list[str] | None = None, kind: str = "files"
    ) -> None:
        self.kind = kind
        self.paths = paths
        self.excludes = excludes or []

    @contextmanager
    def capture(self, stage: Path) -> Iterator[Captured]:
        missing = [str(p) for p in self.paths if not os.path.lexists(p)]
        if missing:
            raise SourceError(f"cannot back up {', '.join(missing)}: no such file or directory")
        yield Captured(
            [PathEntry(p.name, p) for p in self.paths],
            # Files have no consistency point: a file changed while read is noted by the
            # archiver. Where each came from says where to put it back.
            {"paths": {p.name: str(p) for p in self.paths}},
            excludes=self.excludes,
        )

    def restore(self, restored: Path, options: Mapping[str, str]) -> dict[str, Any]:
        """The files are the asset: they are in place under ``restored`` already."""
        refuse_unknown_options(options, {}, self.kind)
        return {"restored": sorted(str(restored / name) for name in os.listdir(restored))}
