"""Snapshots and trees.

A tree blob is the JSON of one directory: ``{"nodes": [...]}``, nodes sorted
by name (as bytes). A node is a file (``content``: blob ids in order), a
directory (``subtree``: the tree blob id) or a symlink (``target``). Names
and targets that are not valid UTF-8 are stored base64-encoded in
``name_raw`` / ``target_raw`` instead. Equal directories give equal tree
blobs, so unchanged subtrees are stored once.

A snapshot object is sealed JSON naming the root tree and what was backed
up; its name is the hash of its stored bytes.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from seawall.errors import FormatError

SNAPSHOT_AAD = b"seawall snapshot"

FILE = "file"
DIR = "dir"
SYMLINK = "symlink"


def _enc_name(raw: bytes, key: str, out: dict[str, Any]) -> None:
    try:
        out[key] = raw.decode("utf-8")
    except UnicodeDecodeError:
        out[key + "_raw"] = base64.b64encode(raw).decode()


def _dec_name(doc: dict[str, Any], key: str) -> bytes:
    if key + "_raw" in doc:
        return base64.b64decode(doc[key + "_raw"], validate=True)
    value: str = doc[key]
    return value.encode("utf-8")


@dataclass
class Node:
    name: bytes
    type: str
    mode: int = 0
    mtime_ns: int = 0
    size: int = 0
    uid: int = 0
    gid: int = 0
    inode: int = 0
    content: list[bytes] = field(default_factory=list)
    subtree: bytes | None = None
    target: bytes | None = None
    #: a model checkpoint stored tensor by tensor: {"format": ..., "tensors":
    #: [[name, dtype, shape, first content index, blob count], ...]}; informational
    #: (readers need only ``content``), it lets later backups find delta parents
    checkpoint: dict[str, Any] | None = None

    @property
    def display_name(self) -> str:
        return os.fsdecode(self.name)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        _enc_name(self.name, "name", doc)
        doc.update(
            type=self.type, mode=self.mode, mtime_ns=self.mtime_ns, uid=self.uid, gid=self.gid
        )
        if self.type == FILE:
            doc.update(size=self.size, inode=self.inode, content=[c.hex() for c in self.content])
            if self.checkpoint is not None:
                doc["checkpoint"] = self.checkpoint
        elif self.type == DIR:
            assert self.subtree is not None
            doc["subtree"] = self.subtree.hex()
        elif self.type == SYMLINK:
            assert self.target is not None
            _enc_name(self.target, "target", doc)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Node:
        kind = doc["type"]
        if kind not in (FILE, DIR, SYMLINK):
            raise FormatError(f"unknown node type {kind!r}")
        return cls(
            name=_dec_name(doc, "name"),
            type=kind,
            mode=int(doc.get("mode", 0)),
            mtime_ns=int(doc.get("mtime_ns", 0)),
            size=int(doc.get("size", 0)),
            uid=int(doc.get("uid", 0)),
            gid=int(doc.get("gid", 0)),
            inode=int(doc.get("inode", 0)),
            content=[bytes.fromhex(c) for c in doc.get("content", [])],
            subtree=bytes.fromhex(doc["subtree"]) if kind == DIR else None,
            target=_dec_name(doc, "target") if kind == SYMLINK else None,
            checkpoint=doc.get("checkpoint") if kind == FILE else None,
        )


def encode_tree(nodes: list[Node]) -> bytes:
    nodes = sorted(nodes, key=lambda n: n.name)
    return json.dumps({"nodes": [n.to_json() for n in nodes]}, separators=(",", ":")).encode()


def decode_tree(data: bytes) -> list[Node]:
    try:
        return [Node.from_json(d) for d in json.loads(data)["nodes"]]
    except (ValueError, KeyError, TypeError) as err:
        raise FormatError(f"tree blob is malformed: {err}") from None


@dataclass
class Snapshot:
    time: str
    tree: bytes
    paths: list[str]
    hostname: str
    username: str
    tags: list[str] = field(default_factory=list)
    parent: bytes | None = None
    excludes: list[str] = field(default_factory=list)
    program_version: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    #: residency rule: the region label this snapshot's data must stay in ("" = none)
    residency: str = ""
    #: for a copy, the id of the snapshot it copies (the first of a chain of copies)
    original: bytes | None = None
    #: for a snapshot of one asset of a plan: its name, kind, group (the plan run
    #: it belongs to), consistency point and lineage (version 3)
    asset: dict[str, Any] = field(default_factory=dict)
    #: set after loading: the snapshot's storage id
    id: bytes = b""

    @property
    def datetime(self) -> datetime:
        return datetime.fromisoformat(self.time)

    @property
    def short_id(self) -> str:
        return self.id.hex()[:8]

    def to_bytes(self) -> bytes:
        doc = asdict(self)
        del doc["id"]
        doc["tree"] = self.tree.hex()
        doc["parent"] = self.parent.hex() if self.parent else None
        # Version 2 adds residency and original, written only when set: a snapshot
        # without them stays version 1, byte for byte, and readable by seawall 0.1.
        del doc["residency"], doc["original"], doc["asset"]
        if self.residency:
            doc["residency"] = self.residency
        if self.original:
            doc["original"] = self.original.hex()
        if self.asset:
            doc["asset"] = self.asset
        doc["version"] = 3 if self.asset else 2 if self.residency or self.original else 1
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes, snapshot_id: bytes) -> Snapshot:
        try:
            doc = json.loads(data)
            version = doc.pop("version", None)
            if version not in (1, 2, 3):
                raise FormatError(
                    f"snapshot {snapshot_id.hex()[:8]} has an unknown version; upgrade seawall"
                )
            if version == 1 and {"residency", "original"} & set(doc):
                raise ValueError("residency and original need snapshot version 2")
            if version < 3 and "asset" in doc:
                raise ValueError("asset needs snapshot version 3")
            doc["tree"] = bytes.fromhex(doc["tree"])
            doc["parent"] = bytes.fromhex(doc["parent"]) if doc.get("parent") else None
            doc["original"] = bytes.fromhex(doc["original"]) if doc.get("original") else None
            return cls(**doc, id=snapshot_id)
        except (ValueError, KeyError, TypeError) as err:
            raise FormatError(f"snapshot {snapshot_id.hex()[:8]} is malformed: {err}") from None
