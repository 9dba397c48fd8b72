"""Make tests/data/frozen-v1: a small repository of format version 1, frozen forever.

DO NOT RERUN THIS SCRIPT unless the repository format version changes (and
then write a make_frozen_v2.py beside it, keeping frozen-v1 as it is). The
point of the frozen repository is that it was written once, by the seawall
of its day: tests/test_format_spec.py checks that every later seawall still
opens it, lists its snapshots, restores every file bit for bit and finds it
clean under ``check --read-data``. Regenerating it with a later seawall would
test nothing. The script is kept so that one can see exactly how it was made.

It builds a tiny tree under /tmp/seawall-frozen-v1/src (text files, a binary
file, an empty file, an executable, symlinks including a dangling one and one
with a non-UTF-8 target, a unicode name, a non-UTF-8 name, nested and empty
directories), backs it up, changes it (an edit, bytes inserted in the middle
of the binary file, a new file, a deleted file) and backs it up again, with a
cheap KDF and small chunker and pack parameters. It writes the repository to
``frozen-v1/repo`` and what a restore must give to ``frozen-v1/manifest.json``
and ``frozen-v1/README.md``.

Usage (from the repository root)::

    .venv/bin/python tests/data/make_frozen_v1.py --i-know-the-format-version-changed
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import blake3

from seawall.codec.chunker import ChunkerParams
from seawall.operations.backup import backup
from seawall.operations.check import check
from seawall.repository.keys import KdfParams
from seawall.repository.repo import Repository
from seawall.storage import LocalStorage

HERE = Path(__file__).resolve().parent
OUT = HERE / "frozen-v1"
SRC = Path("/tmp/seawall-frozen-v1/src")
PASSWORD = "frozen-v1 password"
KDF = KdfParams(time_cost=1, memory_cost_kib=1024, parallelism=1)
CHUNKER = ChunkerParams(min_size=4096, avg_size=16384, max_size=65536)
PACK_SIZE = 65536
HOSTNAME = "frozen-v1-host"
#: 2026-11-24 00:00:00 UTC, and a second apart from there on.
EPOCH_NS = 1795910400 * 10**9


def xof(label: str, n: int) -> bytes:
    return blake3.blake3(label.encode()).digest(length=n)


def write(rel: str | bytes, data: bytes, mode: int = 0o644) -> None:
    path = Path(os.fsdecode(os.path.join(os.fsencode(SRC), os.fsencode(rel))))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def link(rel: str, target: str | bytes) -> None:
    path = SRC / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def settle_times() -> None:
    """Give every entry a fixed mtime (deepest first, so parents keep theirs)."""
    found = [Path(d) / n for d, dirs, files in os.walk(SRC) for n in dirs + files]
    entries = sorted(found, key=lambda p: (-len(p.parts), os.fsencode(p)))
    for i, path in enumerate([*entries, SRC]):
        ns = EPOCH_NS + i * 10**9 + 123
        os.utime(path, ns=(ns, ns), follow_symlinks=False)


def first_tree() -> None:
    write("README.txt", b"seawall frozen repository, format version 1.\n" * 3)
    write("notes/todo.md", b"# todo\n\n- back up the models\n- drill the restore\n")
    rows = "".join(f"{i},{i * i},{(i * 7919) % 1000 / 10:.1f},label-{i % 5}\n" for i in range(600))
    write("data/table.csv", ("id,square,score,label\n" + rows).encode())
    write("models/v1/weights.bin", xof("frozen-v1 weights", 40_000))
    write("models/v1/config.json", b'{"layers": 4, "hidden": 64, "dtype": "float32"}\n')
    write(
        "donn\u00e9es/r\u00e9sum\u00e9 \u2014 \u65e5\u672c.txt",
        "unicode name: café, 日本\n".encode(),
    )
    write(b"latin1-\xe9.bin", b"a file whose name is not valid UTF-8\n")
    write("empty.txt", b"")
    write("scripts/run.sh", b"#!/bin/sh\necho restore drill\n", mode=0o755)
    (SRC / "empty-dir").mkdir()
    link("link-to-readme", "README.txt")
    link("models/latest", "v1")
    link("dangling", "/nonexistent/seawall/target")
    link("latin1-link", b"latin1-\xe9.bin")


def second_tree() -> None:
    write("notes/todo.md", b"# todo\n\n- back up the models\n- drill the restore\n- prune\n")
    weights = xof("frozen-v1 weights", 40_000)
    write("models/v1/weights.bin", weights[:20_000] + xof("inserted", 100) + weights[20_000:])
    write("models/v2/weights.bin", xof("frozen-v1 weights v2", 12_000))
    (SRC / "empty.txt").unlink()


def describe(root: Path) -> list[dict[str, Any]]:
    """Every entry under ``root`` a restore must produce, by its path in the snapshot."""
    out: list[dict[str, Any]] = []
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.fsdecode(full)
            st = os.lstat(full)
            entry: dict[str, Any] = {"path": rel, "mode": f"{stat.S_IMODE(st.st_mode):o}"}
            if stat.S_ISLNK(st.st_mode):
                entry.update(type="symlink", target=os.fsdecode(os.readlink(full)))
            elif stat.S_ISDIR(st.st_mode):
                entry.update(type="dir")
            else:
                data = Path(os.fsdecode(full)).read_bytes()
                entry.update(
                    type="file",
                    size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                    mtime_ns=st.st_mtime_ns,
                )
            out.append(entry)
    return sorted(out, key=lambda e: os.fsencode(e["path"]))


def readme(manifest: dict[str, Any]) -> str:
    lines = [
        "# frozen-v1: a repository of format version 1, frozen forever",
        "",
        "Written once by `tests/data/make_frozen_v1.py` (seawall "
        f"{manifest['made_by']}). **Never regenerate it**: `tests/test_format_spec.py` "
        "checks that every later seawall still opens it, lists its snapshots, restores every "
        "file bit for bit, finds it clean under `check --read-data`, and that an independent "
        "reader written from `docs/format.md` alone reads the same files.",
        "",
        f"- repository: `repo/` (format version {manifest['format_version']})",
        f"- password: `{manifest['password']}`",
        f"- KDF: Argon2id time_cost={KDF.time_cost}, memory_cost_kib={KDF.memory_cost_kib}, "
        f"parallelism={KDF.parallelism} (deliberately cheap)",
        f"- chunker: FastCDC min/avg/max = {CHUNKER.min_size}/{CHUNKER.avg_size}/"
        f"{CHUNKER.max_size}; pack size {PACK_SIZE}",
        f"- source tree: `{SRC}` on host `{HOSTNAME}`; a restore to DIR writes it under `DIR{SRC}`",
        "",
        "The full machine-readable list (modes, sizes, symlink targets, directories) is "
        "`manifest.json`; paths that are not valid UTF-8 appear there with Python's "
        "surrogate escapes (`\\udce9` is the byte 0xe9).",
        "",
    ]
    for snap in manifest["snapshots"]:
        lines += [
            f"## snapshot {snap['id'][:8]} (tags: {', '.join(snap['tags'])})",
            "",
            f"id `{snap['id']}`, time {snap['time']}",
            "",
            "| path | sha256 / symlink target |",
            "|---|---|",
        ]
        for e in snap["entries"]:
            if e["type"] == "dir":
                continue
            shown = e["path"].encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            value = f"`{e['sha256']}`" if e["type"] == "file" else f"-> `{e['target']}`"
            value = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            lines.append(f"| `{shown}` | {value} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    if "--i-know-the-format-version-changed" not in sys.argv:
        sys.exit(__doc__)
    if OUT.exists():
        sys.exit(f"{OUT} exists: it is frozen. Make a new frozen-vN for a new format version.")
    shutil.rmtree(SRC.parent, ignore_errors=True)
    SRC.mkdir(parents=True)
    repo_dir = OUT / "repo"
    repo = Repository.init(
        LocalStorage(repo_dir), PASSWORD, kdf=KDF, chunker=CHUNKER, pack_size=PACK_SIZE
    )
    snapshots = []
    for tags, build in ((["first"], first_tree), (["second"], second_tree)):
        build()
        settle_times()
        result = backup(repo, [SRC], tags=tags, hostname=HOSTNAME, workers=2)
        assert not result.stats.unreadable, result.stats.unreadable
        snap = result.snapshot
        snapshots.append(
            {
                "id": snap.id.hex(),
                "time": snap.time,
                "tags": snap.tags,
                "paths": snap.paths,
                "entries": describe(SRC),
            }
        )
    report = check(Repository.open(LocalStorage(repo_dir), PASSWORD), read_data=True)
    assert report.ok and not report.warnings, (report.errors, report.warnings)
    from seawall import __version__
    from seawall.repository.config import FORMAT_VERSION

    manifest = {
        "format_version": FORMAT_VERSION,
        "made_by": __version__,
        "password": PASSWORD,
        "source": str(SRC),
        "hostname": HOSTNAME,
        "snapshots": snapshots,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (OUT / "README.md").write_text(readme(manifest))
    shutil.rmtree(SRC.parent)
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
