"""check: verify the repository's structure and, with ``read_data``, every byte.

Without ``read_data`` it checks that every index loads and authenticates,
that every pack an index names exists with the right size, and that every
snapshot, every tree and every blob they reference is there. With it, it also
reads every pack, checks it against its name, and decrypts and hashes every
blob. It reports which snapshots and files each problem affects.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from seawall.codec.ids import storage_id
from seawall.engine.progress import Progress
from seawall.engine.trees import load_tree, safe_name
from seawall.errors import FormatError, IntegrityError, ObjectNotFound, SeawallError
from seawall.repository.index import blobs_by_pack
from seawall.repository.lock import Lock
from seawall.repository.pack import DELTA, PackedBlob, pack_name, parse_tail
from seawall.repository.repo import MAX_READ_CHAIN, Repository
from seawall.repository.snapshot import DIR, FILE, Snapshot


@dataclass
class CheckResult:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: snapshot short id -> paths that cannot be restored in full
    damaged: dict[str, list[str]] = field(default_factory=dict)
    #: immutable repositories: objects whose current version is not what seawall
    #: wrote, name -> "deleted", "overwritten" (an intact version is retained:
    #: `repair versions` puts it back) or "lost" (none is)
    touched: dict[str, str] = field(default_factory=dict)
    #: pack id (hex) -> what is wrong with it: missing, wrong size, corrupted, unreadable
    damaged_packs: dict[str, str] = field(default_factory=dict)
    snapshots: int = 0
    packs: int = 0
    blobs: int = 0
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


class _Checker:
    def __init__(self, repo: Repository, progress: Progress, workers: int) -> None:
        self.repo = repo
        self.progress = progress
        self.workers = workers
        self.result = CheckResult()
        #: blob id -> why it cannot be read
        self.bad_blobs: dict[bytes, str] = {}
        self._tree_cache: dict[bytes, list[tuple[str, str]]] = {}

    def run(self, read_data: bool) -> CheckResult:
        r = self.result
        if self.repo.view is not None:
            self.progress.start("check: object versions")
            for touched in self.repo.view.audit(self.repo.config):
                r.touched[touched.name] = touched.state
                r.errors.append(touched.describe())
        self.progress.start("check: index")
        for index_id, err in self.repo.load_index(strict=False):
            r.errors.append(f"index {index_id.hex()[:8]} is damaged: {err}")
        self._check_packs(read_data)
        self.progress.start("check: snapshots")
        for sid in self.repo.list_ids("snapshots"):
            try:
                snap = self.repo.load_snapshot(sid)
            except ObjectNotFound:
                continue
            except SeawallError as err:
                r.errors.append(f"snapshot {sid.hex()[:8]} is damaged: {err}")
                r.damaged[sid.hex()[:8]] = ["/ (the whole snapshot)"]
                continue
            r.snapshots += 1
            self._check_snapshot(snap)
        return r

    # --- packs -------------------------------------------------------------------------------

    def _check_packs(self, read_data: bool) -> None:
        r = self.result
        stored = {}
        for info in self.repo.storage.list("data/"):
            try:
                stored[bytes.fromhex(info.name.rsplit("/", 1)[1])] = info.size
            except ValueError:
                r.warnings.append(f"unexpected object {info.name} in data/")
        entries = self.repo.index.entries()
        packs = self.repo.index.packs()
        r.blobs = len(entries)
        by_pack: dict[int, list[PackedBlob]] = {}
        if read_data:
            by_pack = blobs_by_pack(entries)
        missing_packs = set()
        for pack_no, (pack_id, size, _salt) in enumerate(packs):
            have = stored.get(pack_id)
            if have is None:
                r.errors.append(f"pack {pack_id.hex()[:12]} is missing")
                r.damaged_packs[pack_id.hex()] = "missing"
                missing_packs.add(pack_no)
            elif have != size:
                r.errors.append(
                    f"pack {pack_id.hex()[:12]} has {have} bytes, the index says {size}"
                )
                r.damaged_packs[pack_id.hex()] = f"has {have} bytes, the index says {size}"
        if missing_packs:
            for row in entries:
                if int(row["pack"]) in missing_packs:
                    self.bad_blobs[bytes(row["id"]).ljust(32, b"\0")] = "its pack is missing"
        for pack_id in stored:
            if not self.repo.index.has_pack(pack_id):
                r.warnings.append(
                    f"pack {pack_id.hex()[:12]} is not in any index (left by an interrupted "
                    "backup); the next backup reuses it, prune removes it if unused"
                )
        r.packs = len(stored)
        if not read_data:
            return
        todo = [(no, p) for no, p in enumerate(packs) if no not in missing_packs]
        self.progress.start("check: read data")
        self.progress.set_totals(len(todo), sum(p[1] for _no, p in todo))
        with ThreadPoolExecutor(self.workers, thread_name_prefix="check") as pool:
            for _ in pool.map(
                lambda item: self._read_pack(item[1], by_pack.get(item[0], [])), todo
            ):
                self.progress.check_cancelled()

    def _read_pack(self, pack: tuple[bytes, int, bytes], blobs: list[PackedBlob]) -> None:
        pack_id, _size, salt = pack
        name = pack_name(pack_id)
        try:
            data = self.repo.storage.get(name)
        except SeawallError as err:
            self._pack_failed(pack_id, blobs, f"cannot be read: {err}")
            return
        self.progress.add(files=1, nbytes=len(data))
        self.result.bytes_read += len(data)
        if storage_id(data) != pack_id:
            self.result.errors.append(
                f"pack {pack_id.hex()[:12]} does not match its name: it is corrupted"
            )
            self.result.damaged_packs[pack_id.hex()] = "corrupted"
        try:
            _salt, header = parse_tail(self.repo.key.encryption_key, data, len(data))
            # Subset, not equality: the index keeps one location per blob, and a blob
            # that two concurrent writers both stored is in two packs' headers.
            if not {b.id for b in blobs} <= {b.id for b in header}:
                self.result.errors.append(f"pack {pack_id.hex()[:12]}: header and index disagree")
        except (IntegrityError, FormatError) as err:
            self.result.errors.append(f"pack {pack_id.hex()[:12]}: header is damaged: {err}")
        for blob, outcome in self.repo.read_pack_blobs_from(data, pack_id, salt, blobs):
            if isinstance(outcome, SeawallError):
                self.bad_blobs[blob.id] = str(outcome)
                self.result.errors.append(str(outcome))

    def _pack_failed(self, pack_id: bytes, blobs: list[PackedBlob], why: str) -> None:
        self.result.errors.append(f"pack {pack_id.hex()[:12]} {why}")
        self.result.damaged_packs[pack_id.hex()] = why
        for b in blobs:
            self.bad_blobs[b.id] = f"its pack {why}"

    # --- snapshots --------------------------------------------------------------------------------

    def _check_snapshot(self, snap: Snapshot) -> None:
        problems = self._tree_problems(snap.tree)
        if problems:
            paths = sorted({p or "/" for p, _ in problems})
            self.result.damaged[snap.short_id] = paths
            for path, why in problems:
                self.result.errors.append(f"snapshot {snap.short_id}: {path or '/'}: {why}")

    def _blob_problem(self, bid: bytes, depth: int = 0) -> str | None:
        bad = self.bad_blobs.get(bid)
        if bad is not None:
            return bad
        loc = self.repo.index.lookup(bid)
        if loc is None:
            return f"blob {bid.hex()[:12]} is missing"
        base = self.repo.index.bases.get(bid) if loc.type == DELTA else None
        if loc.type == DELTA and base is None:
            return f"delta blob {bid.hex()[:12]} has no known base"
        if base is not None:
            if depth >= MAX_READ_CHAIN - 1:
                return f"delta blob {bid.hex()[:12]} has a chain of bases that is too long"
            why = self._blob_problem(base, depth + 1)
            if why:
                return f"the base of delta blob {bid.hex()[:12]} is unreadable: {why}"
        return None

    def _tree_problems(self, tree_id: bytes) -> list[tuple[str, str]]:
        """(relative path, reason) for everything unreadable under a tree; memoized."""
        cached = self._tree_cache.get(tree_id)
        if cached is not None:
            return cached
        problems: list[tuple[str, str]] = []
        bad = self._blob_problem(tree_id)
        try:
            nodes = [] if bad else load_tree(self.repo, tree_id)
        except SeawallError as err:
            bad = str(err)
        if bad:
            problems.append(("", f"directory listing unreadable: {bad}"))
        else:
            for node in nodes:
                try:
                    name = "/" + safe_name(node).decode("utf-8", "surrogateescape")
                except FormatError as err:
                    problems.append(("", str(err)))
                    continue
                if node.type == DIR and node.subtree is not None:
                    problems.extend((name + p, why) for p, why in self._tree_problems(node.subtree))
                elif node.type == FILE:
                    for bid in node.content:
                        why = self._blob_problem(bid)
                        if why:
                            problems.append((name, why))
                            break
        self._tree_cache[tree_id] = problems
        return problems


def check(
    repo: Repository, *, read_data: bool = False, progress: Progress | None = None, workers: int = 2
) -> CheckResult:
    with Lock(repo, exclusive=False):
        return _Checker(repo, progress or Progress("check"), workers).run(read_data)
