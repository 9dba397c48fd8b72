"""The public repository config: the one object stored in clear.

It names the format version and the non-secret parameters a reader needs
before it has a key. Everything secret derives from the master key.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

from seawall.codec.chunker import ChunkerParams
from seawall.errors import FormatError
from seawall.storage.retention import LOCK_MODES

#: The version new repositories get. Version 2 adds tensor payloads (float
#: planes, deltas: format.md section 6) and delta blobs (type 2); version 1
#: repositories are read, and written without them.
FORMAT_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
CONFIG_NAME = "config"
DEFAULT_PACK_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class Immutability:
    """Objects are written with S3 Object Lock retention of ``days`` days in ``mode``
    (``governance`` or ``compliance``); see repository/versions.py."""

    days: int
    mode: str = "governance"

    def to_json(self) -> dict[str, int | str]:
        return {"days": self.days, "mode": self.mode}

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> Immutability:
        days, mode = doc["days"], doc.get("mode", "governance")
        if not isinstance(days, int) or isinstance(days, bool) or days < 1:
            raise ValueError(f"immutability days must be a whole number >= 1, not {days!r}")
        if mode not in LOCK_MODES:
            raise ValueError(f"unknown immutability mode {mode!r}")
        return cls(days, str(mode))


@dataclass(frozen=True)
class RepoConfig:
    id: str = field(default_factory=lambda: os.urandom(32).hex())
    version: int = FORMAT_VERSION
    chunker: ChunkerParams = field(default_factory=ChunkerParams)
    pack_size: int = DEFAULT_PACK_SIZE
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    #: region or jurisdiction label (``eu``, ``us``...); "" is unlabelled (see residency.py)
    region: str = ""
    #: Object Lock retention of every object but locks; None: not immutable
    immutability: Immutability | None = None

    @property
    def tensor_codecs(self) -> bool:
        """Whether writers may use the version-2 tensor payloads and delta blobs."""
        return self.version >= 2

    def to_bytes(self) -> bytes:
        doc = {
            "format": "seawall-repository",
            "version": self.version,
            "id": self.id,
            "created": self.created,
            "chunker": self.chunker.to_json(),
            "pack_size": self.pack_size,
            "compression": "zstd",
            "encryption": "aes-256-gcm",
        }
        if self.region:  # written only when set: unlabelled configs keep their old bytes
            doc["region"] = self.region
        if self.immutability is not None:  # likewise: written only when set
            doc["immutability"] = self.immutability.to_json()
        return json.dumps(doc, indent=2).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> RepoConfig:
        try:
            doc = json.loads(data)
            if doc.get("format") != "seawall-repository":
                raise FormatError("this is not a seawall repository config")
            version = int(doc["version"])
            if version not in SUPPORTED_VERSIONS:
                raise FormatError(
                    f"repository format version {version} is not supported by this seawall "
                    f"(it reads versions {', '.join(map(str, SUPPORTED_VERSIONS))}); "
                    "upgrade seawall"
                )
            return cls(
                id=str(doc["id"]),
                version=version,
                chunker=ChunkerParams.from_json(doc["chunker"]),
                pack_size=int(doc["pack_size"]),
                created=str(doc["created"]),
                region=str(doc.get("region", "")),
                immutability=(
                    Immutability.from_json(doc["immutability"]) if "immutability" in doc else None
                ),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise FormatError(f"the repository config is malformed: {err}") from None
