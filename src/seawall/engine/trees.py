"""Reading snapshot trees: walking them and checking node names."""

from __future__ import annotations

from collections.abc import Iterator

from seawall.errors import FormatError
from seawall.repository.repo import Repository
from seawall.repository.snapshot import DIR, Node, decode_tree


def safe_name(node: Node) -> bytes:
    """A node name that is safe to join to a path (a damaged or hostile tree cannot escape)."""
    if not node.name or node.name in (b".", b"..") or b"/" in node.name or b"\0" in node.name:
        raise FormatError(f"tree holds an unsafe file name {node.name!r}")
    return node.name


def load_tree(repo: Repository, tree_id: bytes) -> list[Node]:
    return decode_tree(repo.load_blob(tree_id))


def walk(repo: Repository, tree_id: bytes, prefix: str = "") -> Iterator[tuple[str, Node]]:
    """Every node under a tree, depth first, with its path ("/a/b")."""
    for node in load_tree(repo, tree_id):
        path = f"{prefix}/{safe_name(node).decode('utf-8', 'surrogateescape')}"
        yield path, node
        if node.type == DIR and node.subtree is not None:
            yield from walk(repo, node.subtree, path)


def find(repo: Repository, tree_id: bytes, path: str) -> Node | None:
    """The node at ``path`` ("/a/b") in a tree, or None."""
    parts = [p for p in path.split("/") if p]
    node: Node | None = None
    current: bytes | None = tree_id
    for part in parts:
        if current is None:
            return None
        raw = part.encode("utf-8", "surrogateescape")
        node = next((n for n in load_tree(repo, current) if n.name == raw), None)
        if node is None:
            return None
        current = node.subtree
    return node
