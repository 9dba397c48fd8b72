"""Tree and snapshot JSON: round trips, including names that are not UTF-8."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.errors import FormatError
from seawall.repository.snapshot import (
    DIR,
    FILE,
    SYMLINK,
    Node,
    Snapshot,
    decode_tree,
    encode_tree,
)

names = st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b)
ids = st.binary(min_size=32, max_size=32)
u32 = st.integers(0, 2**32 - 1)


@st.composite
def nodes(draw: st.DrawFn) -> Node:
    kind = draw(st.sampled_from([FILE, DIR, SYMLINK]))
    node = Node(
        name=draw(names),
        type=kind,
        mode=draw(st.integers(0, 0o7777)),
        mtime_ns=draw(st.integers(-(2**62), 2**62)),
        uid=draw(u32),
        gid=draw(u32),
    )
    if kind == FILE:
        node.size = draw(st.integers(0, 2**50))
        node.inode = draw(st.integers(0, 2**63))
        node.content = draw(st.lists(ids, max_size=4))
    elif kind == DIR:
        node.subtree = draw(ids)
    else:
        node.target = draw(st.binary(min_size=1, max_size=60))
    return node


trees = st.lists(nodes(), max_size=8, unique_by=lambda n: n.name)


@settings(max_examples=80, deadline=None)
@given(trees)
def test_tree_round_trip(tree: list[Node]) -> None:
    data = encode_tree(tree)
    json.loads(data)  # always valid JSON, whatever the names
    assert decode_tree(data) == sorted(tree, key=lambda n: n.name)
    # Canonical: the same directory always gives the same bytes (so dedup works).
    assert encode_tree(list(reversed(tree))) == data


def test_non_utf8_names_use_raw_fields() -> None:
    node = Node(name=b"caf\xe9-\xff.bin", type=SYMLINK, target=b"/tmp/\xfe\xfd")
    doc = node.to_json()
    assert "name" not in doc and "target" not in doc
    assert "name_raw" in doc and "target_raw" in doc
    assert Node.from_json(doc) == node
    assert node.display_name == os.fsdecode(b"caf\xe9-\xff.bin")
    utf8 = Node(name="données ✓".encode(), type=FILE, content=[b"\x01" * 32])
    assert utf8.to_json()["name"] == "données ✓"
    assert decode_tree(encode_tree([node, utf8])) == sorted([node, utf8], key=lambda n: n.name)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b'{"nodes": [{"type": "file"}]}',
        b'{"nodes": [{"name": "a", "type": "socket"}]}',
        b'{"nodes": [{"name": "a", "type": "dir"}]}',
        b'{"nodes": [{"name": "a", "type": "file", "content": ["zz"]}]}',
        b'{"nodes": [{"name_raw": "!!!", "type": "file"}]}',
    ],
)
def test_malformed_tree_is_a_format_error(data: bytes) -> None:
    with pytest.raises(FormatError):
        decode_tree(data)


@settings(max_examples=40, deadline=None)
@given(
    tree=ids,
    parent=st.none() | ids,
    paths=st.lists(st.text(min_size=1, max_size=30), max_size=3),
    tags=st.lists(st.text(max_size=10), max_size=3),
    summary=st.dictionaries(st.text(max_size=10), st.integers(0, 2**40), max_size=3),
)
def test_snapshot_round_trip(
    tree: bytes, parent: bytes | None, paths: list[str], tags: list[str], summary: dict[str, int]
) -> None:
    snap = Snapshot(
        time="2026-01-02T03:04:05.123456+00:00",
        tree=tree,
        paths=paths,
        hostname="host",
        username="user",
        tags=tags,
        parent=parent,
        excludes=["*.tmp"],
        program_version="1.0",
        summary=summary,
    )
    back = Snapshot.from_bytes(snap.to_bytes(), b"\x09" * 32)
    assert back.id == b"\x09" * 32
    back.id = b""
    assert back == snap
    assert back.datetime.year == 2026


def test_malformed_snapshot_is_a_format_error() -> None:
    good = json.loads(Snapshot("2026-01-01T00:00:00+00:00", b"\x01" * 32, [], "h", "u").to_bytes())
    for bad in [
        b"{",
        b"{}",
        json.dumps({**good, "tree": "xyz"}).encode(),
        json.dumps({k: v for k, v in good.items() if k != "hostname"}).encode(),
    ]:
        with pytest.raises(FormatError):
            Snapshot.from_bytes(bad, b"\x02" * 32)
