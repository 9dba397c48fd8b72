"""Content-defined chunking (FastCDC, normalized level 1).

The gear table is keyed with a seed derived from the master key, so chunk
boundaries (and hence sizes visible in packs) do not fingerprint known files.
Boundaries depend only on local content: inserting bytes changes the chunks
around the insertion and no others.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pyfastcdc.cy import FastCDC


@dataclass(frozen=True)
class ChunkerParams:
    min_size: int = 512 * 1024
    avg_size: int = 1024 * 1024
    max_size: int = 8 * 1024 * 1024

    def to_json(self) -> dict[str, int | str]:
        return {
            "algorithm": "fastcdc",
            "min_size": self.min_size,
            "avg_size": self.avg_size,
            "max_size": self.max_size,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> ChunkerParams:
        if data.get("algorithm") != "fastcdc":
            raise ValueError(f"unsupported chunker {data.get('algorithm')!r}")
        return cls(
            int(str(data["min_size"])), int(str(data["avg_size"])), int(str(data["max_size"]))
        )


class Chunker:
    def __init__(self, params: ChunkerParams, seed: int) -> None:
        self.params = params
        self._cdc = FastCDC(
            avg_size=params.avg_size,
            min_size=params.min_size,
            max_size=params.max_size,
            normalized_chunking=1,
            seed=seed,
        )

    def chunks(self, data: bytes | memoryview) -> Iterator[memoryview]:
        for chunk in self._cdc.cut_buf(data):
            yield chunk.data

    def stream(self, f: BinaryIO) -> Iterator[memoryview]:
        """Chunks of a stream. Each view is valid only until the next one is taken."""
        for chunk in self._cdc.cut_stream(f):
            yield chunk.data
