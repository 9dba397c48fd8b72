"""Generate the format test vectors in this directory (docs/format.md, section 21).

Every vector is built here from the primitives the spec names (BLAKE3,
AES-256-GCM, Argon2id, zstd, struct, JSON), not from seawall's encoders, with
fixed salts and nonces so that each file is deterministic. The tests in
tests/test_format_spec.py check each vector against seawall's code in both
directions, so a drift of either the code or this script shows up.

The vectors are part of the format: regenerate them only when the format
version changes. Run from the repository root::

    .venv/bin/python docs/vectors/make_vectors.py
"""

from __future__ import annotations

import base64
import json
import math
import struct
from pathlib import Path
from typing import Any

import blake3
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from pyfastcdc.py.constants import GEAR, MASKS

OUT = Path(__file__).resolve().parent

MASTER_SECRET = bytes(range(32))
CONTEXTS = {
    "encryption_key": "seawall 2026-11-24 encryption key",
    "id_key": "seawall 2026-11-24 blob id key",
    "chunker_seed": "seawall 2026-11-24 chunker seed",
}
U64 = (1 << 64) - 1


def xof(label: str, n: int) -> bytes:
    """Reproducible pseudo-random bytes: the BLAKE3 XOF of a label."""
    return blake3.blake3(label.encode()).digest(length=n)


def derive(context: str, secret: bytes) -> bytes:
    return blake3.blake3(secret, derive_key_context=context).digest()


ENC_KEY = derive(CONTEXTS["encryption_key"], MASTER_SECRET)
ID_KEY = derive(CONTEXTS["id_key"], MASTER_SECRET)
SEED_BYTES = derive(CONTEXTS["chunker_seed"], MASTER_SECRET)
CHUNKER_SEED = int.from_bytes(SEED_BYTES[:8], "little") & ((1 << 62) - 1)


def blob_id(data: bytes) -> bytes:
    return blake3.blake3(data, key=ID_KEY).digest()


def object_key(salt: bytes) -> bytes:
    return blake3.blake3(salt, key=ENC_KEY).digest()


def seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def payload(data: bytes) -> bytes:
    """The compressed payload: flag 0x01 + zstd frame if it saves 1/32, else 0x00 + data."""
    packed = zstandard.ZstdCompressor(level=3).compress(data)
    if len(packed) < len(data) - len(data) // 32:
        return b"\x01" + packed
    return b"\x00" + data


def compact(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def write(name: str, doc: dict[str, Any]) -> None:
    (OUT / name).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


# --- (a) subkeys -------------------------------------------------------------------------------


def vector_keys() -> None:
    write(
        "subkeys.json",
        {
            "description": "Subkeys derived from a fixed master secret (format.md section 4.1).",
            "master_secret_hex": MASTER_SECRET.hex(),
            "contexts": CONTEXTS,
            "encryption_key_hex": ENC_KEY.hex(),
            "id_key_hex": ID_KEY.hex(),
            "chunker_seed_derived_hex": SEED_BYTES.hex(),
            "chunker_seed": CHUNKER_SEED,
            "chunker_seed_hex": f"{CHUNKER_SEED:016x}",
        },
    )


# --- (b) ids --------------------------------------------------------------------------------------


def vector_ids() -> None:
    inputs = [b"", b"seawall test vector blob\n", xof("seawall id vector", 3000)]
    write(
        "ids.json",
        {
            "description": "Keyed blob ids (BLAKE3 keyed with id_key) and storage ids (plain "
            "BLAKE3) of fixed inputs (format.md section 7).",
            "id_key_hex": ID_KEY.hex(),
            "cases": [
                {
                    "input_hex": data.hex(),
                    "blob_id_hex": blob_id(data).hex(),
                    "storage_id_hex": blake3.blake3(data).hexdigest(),
                }
                for data in inputs
            ],
        },
    )


# --- (c) sealed standalone objects ----------------------------------------------------------------

SNAPSHOT_PLAIN = compact(
    {
        "time": "2026-11-24T12:00:00.123456+00:00",
        "tree": blob_id(compact({"nodes": []})).hex(),
        "paths": ["/srv/models", "/srv/data"],
        "hostname": "vector-host",
        "username": "root",
        "tags": ["nightly", "vector"],
        "parent": None,
        "excludes": ["*.tmp"],
        "program_version": "seawall 0.1.0",
        "summary": {
            "files_new": 3,
            "files_changed": 0,
            "files_unmodified": 0,
            "dirs": 2,
            "bytes_total": 1000,
            "bytes_read": 1000,
            "data_added": 1000,
            "data_stored": 1200,
            "blobs_added": 4,
            "unreadable": 0,
            "duration_s": 0.5,
        },
        "version": 1,
    }
)
LOCK_PLAIN = compact(
    {
        "exclusive": False,
        "hostname": "vector-host",
        "pid": 4242,
        "username": "root",
        "time": 1795953600.25,
    }
)


def sealed_object(kind: str, aad: bytes, plain: bytes, salt: bytes, nonce: bytes) -> dict[str, Any]:
    pay = payload(plain)
    data = salt + seal(object_key(salt), nonce, pay, aad)
    return {
        "kind": kind,
        "aad": aad.decode(),
        "salt_hex": salt.hex(),
        "nonce_hex": nonce.hex(),
        "object_key_hex": object_key(salt).hex(),
        "plaintext_hex": plain.hex(),
        "payload_flag": pay[0],
        "payload_hex": pay.hex(),
        "sealed_hex": data.hex(),
        "storage_id_hex": blake3.blake3(data).hexdigest(),
        "name": f"{kind}/{blake3.blake3(data).hexdigest()}",
    }


def vector_sealed() -> None:
    snap = sealed_object(
        "snapshots",
        b"seawall snapshot",
        SNAPSHOT_PLAIN,
        bytes(range(0x40, 0x50)),
        bytes(range(0x50, 0x5C)),
    )
    lock = sealed_object(
        "locks", b"seawall lock", LOCK_PLAIN, bytes(range(0x60, 0x70)), bytes(range(0x70, 0x7C))
    )
    assert snap["payload_flag"] == 1 and lock["payload_flag"] == 0  # cover both flags
    write(
        "sealed_objects.json",
        {
            "description": "Standalone sealed objects (salt || nonce || ciphertext || tag over a "
            "compressed payload) with fixed salts and nonces (format.md section 10).",
            "encryption_key_hex": ENC_KEY.hex(),
            "objects": [snap, lock],
        },
    )


# --- (d) a pack -----------------------------------------------------------------------------------

DATA, TREE = 0, 1
EMPTY_TREE = compact({"nodes": []})
FOX = b"The quick brown fox jumps over the lazy dog.\n" * 20
NOISE = xof("seawall pack vector raw blob", 200)


def _name(raw: bytes, key: str, doc: dict[str, Any]) -> None:
    try:
        doc[key] = raw.decode("utf-8")
    except UnicodeDecodeError:
        doc[key + "_raw"] = base64.b64encode(raw).decode()


def tree_blob() -> bytes:
    nodes: list[tuple[bytes, dict[str, Any]]] = []

    def node(name: bytes, kind: str, mode: int, mtime_ns: int, **rest: Any) -> None:
        doc: dict[str, Any] = {}
        _name(name, "name", doc)
        doc.update(type=kind, mode=mode, mtime_ns=mtime_ns, uid=1000, gid=1000)
        target = rest.pop("target", None)
        doc.update(rest)
        if target is not None:
            _name(target, "target", doc)
        nodes.append((name, doc))

    node(
        b"fox.txt",
        "file",
        0o644,
        1795953600_000000001,
        size=len(FOX),
        inode=11,
        content=[blob_id(FOX).hex()],
    )
    node(
        b"noise.bin",
        "file",
        0o600,
        1795953600_000000002,
        size=len(NOISE) * 2,
        inode=12,
        content=[blob_id(NOISE).hex(), blob_id(NOISE).hex()],
    )
    node(b"sub", "dir", 0o755, 1795953600_000000003, subtree=blob_id(EMPTY_TREE).hex())
    node(b"latin1-\xe9.txt", "file", 0o644, 1795953600_000000004, size=0, inode=13, content=[])
    node(
        "café-link".encode(), "symlink", 0o777, 1795953600_000000005, target=b"\xff\xfe-raw-target"
    )
    nodes.sort(key=lambda item: item[0])
    return compact({"nodes": [doc for _name_bytes, doc in nodes]})


PACK_BLOBS = [(DATA, FOX), (DATA, NOISE), (TREE, tree_blob()), (TREE, EMPTY_TREE)]
PACK_SALT = bytes(range(0x80, 0x90))
PACK_NONCES = [bytes([0x90 + i]) * 12 for i in range(len(PACK_BLOBS))]
HEADER_NONCE = bytes([0xA0]) * 12


def build_pack() -> tuple[bytes, list[dict[str, Any]], bytes]:
    key = object_key(PACK_SALT)
    body = bytearray()
    records = []
    for (btype, plain), nonce in zip(PACK_BLOBS, PACK_NONCES, strict=True):
        bid = blob_id(plain)
        pay = payload(plain)
        sealed = seal(key, nonce, pay, bytes([btype]) + bid)
        records.append(
            {
                "type": btype,
                "id_hex": bid.hex(),
                "offset": len(body),
                "length": len(sealed),
                "raw_length": len(plain),
                "nonce_hex": nonce.hex(),
                "plaintext_hex": plain.hex(),
                "payload_flag": pay[0],
                "payload_hex": pay.hex(),
            }
        )
        body += sealed
    header = b"".join(
        struct.pack(
            "<B32sIII",
            r["type"],
            bytes.fromhex(r["id_hex"]),
            r["offset"],
            r["length"],
            r["raw_length"],
        )
        for r in records
    )
    sealed_header = seal(key, HEADER_NONCE, header, b"seawall pack header")
    pack = bytes(body) + sealed_header + PACK_SALT + struct.pack("<I", len(sealed_header))
    return pack, records, header


def vector_pack() -> None:
    pack, records, header = build_pack()
    assert {r["payload_flag"] for r in records} == {0, 1}
    pack_id = blake3.blake3(pack).digest()
    write(
        "pack.json",
        {
            "description": "A complete pack of two data blobs and two tree blobs, with fixed salt "
            "and nonces (format.md section 8). The tree blob exercises name_raw, target_raw and "
            "non-ASCII names; the empty tree is the subtree of its 'sub' directory.",
            "encryption_key_hex": ENC_KEY.hex(),
            "id_key_hex": ID_KEY.hex(),
            "salt_hex": PACK_SALT.hex(),
            "object_key_hex": object_key(PACK_SALT).hex(),
            "header_nonce_hex": HEADER_NONCE.hex(),
            "blobs": records,
            "header_plaintext_hex": header.hex(),
            "header_length": len(header) + 28,
            "pack_hex": pack.hex(),
            "pack_size": len(pack),
            "pack_id_hex": pack_id.hex(),
            "name": f"data/{pack_id.hex()[:2]}/{pack_id.hex()}",
        },
    )


# --- (e) an index object --------------------------------------------------------------------------


def vector_index() -> None:
    pack, records, _header = build_pack()
    pack_id = blake3.blake3(pack).digest()
    other_pack = (blake3.blake3(b"another pack").digest(), 70000, bytes([0x77]) * 16)
    other_blob = {
        "id_hex": blob_id(b"a blob in another pack").hex(),
        "pack": 1,
        "offset": 0,
        "length": 51,
        "raw_length": 22,
        "type": DATA,
    }
    supersedes = [blake3.blake3(b"old index 1").digest(), blake3.blake3(b"old index 2").digest()]
    packs = [(pack_id, len(pack), PACK_SALT), other_pack]
    entries = [
        {
            "id_hex": r["id_hex"],
            "pack": 0,
            "offset": r["offset"],
            "length": r["length"],
            "raw_length": r["raw_length"],
            "type": r["type"],
        }
        for r in records
    ] + [other_blob]
    # Writers store the records sorted by blob id (readers must not rely on it).
    entries.sort(key=lambda e: bytes.fromhex(e["id_hex"]))
    plain = b"SWIX\x01\x00\x00\x00" + struct.pack("<I", len(supersedes)) + b"".join(supersedes)
    plain += struct.pack("<I", len(packs)) + b"".join(struct.pack("<32sQ16s", *p) for p in packs)
    plain += struct.pack("<Q", len(entries))
    plain += b"".join(
        struct.pack(
            "<32sIIIIB",
            bytes.fromhex(e["id_hex"]),
            e["pack"],
            e["offset"],
            e["length"],
            e["raw_length"],
            e["type"],
        )
        for e in entries
    )
    sealed = sealed_object(
        "index", b"seawall index", plain, bytes(range(0xB0, 0xC0)), bytes(range(0xC0, 0xCC))
    )
    assert sealed["payload_flag"] == 1
    write(
        "index.json",
        {
            "description": "An index object: its plaintext, decoded fields, and the sealed object "
            "(format.md section 9). Pack 0 is the pack of pack.json.",
            "encryption_key_hex": ENC_KEY.hex(),
            "plaintext_hex": plain.hex(),
            "supersedes_hex": [s.hex() for s in supersedes],
            "packs": [{"id_hex": p.hex(), "size": n, "salt_hex": s.hex()} for p, n, s in packs],
            "entries": entries,
            "sealed": sealed,
        },
    )


# --- (f) a key file -------------------------------------------------------------------------------


def vector_key_file() -> None:
    password = "correct horse battery staple"
    repo_id = blake3.blake3(b"seawall vector repository").hexdigest()
    time_cost, memory_kib, lanes = 2, 1024, 1
    salt = bytes(range(0xD0, 0xE0))
    nonce = bytes(range(0xE0, 0xEC))
    kek = Argon2id(
        salt=salt, length=32, iterations=time_cost, lanes=lanes, memory_cost=memory_kib
    ).derive(password.encode())
    aad = f"seawall key v1|{repo_id}|argon2id|{time_cost}|{memory_kib}|{lanes}|".encode() + salt
    data = seal(kek, nonce, MASTER_SECRET, aad)
    doc = {
        "version": 1,
        "created": "2026-11-24T12:00:00+00:00",
        "hostname": "vector-host",
        "username": "root",
        "kdf": {
            "algorithm": "argon2id",
            "time_cost": time_cost,
            "memory_cost_kib": memory_kib,
            "parallelism": lanes,
            "salt": base64.b64encode(salt).decode(),
        },
        "data": base64.b64encode(data).decode(),
    }
    key_file = json.dumps(doc, indent=2).encode() + b"\n"
    write(
        "key_file.json",
        {
            "description": "A key file wrapping the master secret of subkeys.json under a "
            "password, with deliberately cheap Argon2id parameters (format.md section 4.2).",
            "password": password,
            "repository_id": repo_id,
            "kdf": {
                "algorithm": "argon2id",
                "version": 19,
                "time_cost": time_cost,
                "memory_cost_kib": memory_kib,
                "parallelism": lanes,
                "hash_length": 32,
            },
            "salt_hex": salt.hex(),
            "nonce_hex": nonce.hex(),
            "key_encryption_key_hex": kek.hex(),
            "aad_hex": aad.hex(),
            "master_secret_hex": MASTER_SECRET.hex(),
            "key_file": key_file.decode(),
            "key_id_hex": blake3.blake3(key_file).hexdigest(),
        },
    )


# --- (g) chunk boundaries -------------------------------------------------------------------------


def cut(buf: bytes, min_size: int, avg_size: int, max_size: int, seed: int) -> list[int]:
    """FastCDC as format.md describes it (normalization level 1): chunk lengths."""
    bits = math.floor(math.log2(avg_size) + 0.5)
    mask_s, mask_l = MASKS[bits + 1], MASKS[bits - 1]
    gear = [g ^ seed for g in GEAR]
    gear_ls = [((g << 1) & U64) ^ ((seed << 1) & U64) for g in GEAR]
    lengths = []
    pos0 = 0
    while pos0 < len(buf):
        view = buf[pos0:]
        remaining = len(view)
        cut_at = remaining
        if remaining > min_size:
            center = avg_size
            if remaining > max_size:
                remaining = max_size
            elif remaining < center:
                center = remaining
            h = 0
            cut_at = remaining
            for lo, hi, m in (
                (min_size // 2 * 2, center // 2 * 2, mask_s),
                (center // 2 * 2, remaining // 2 * 2, mask_l),
            ):
                found = False
                for i in range(lo, hi, 2):
                    h = ((h << 2) + gear_ls[view[i]]) & U64
                    if h & ((m << 1) & U64) == 0:
                        cut_at, found = i, True
                        break
                    h = (h + gear[view[i + 1]]) & U64
                    if h & m == 0:
                        cut_at, found = i + 1, True
                        break
                if found:
                    break
        lengths.append(cut_at)
        pos0 += cut_at
    return lengths


def vector_chunker() -> None:
    min_size, avg_size, max_size = 4096, 16384, 65536
    label = "seawall chunker test vector"
    size = 256 * 1024
    buf = xof(label, size)
    chunks = []
    offset = 0
    for length in cut(buf, min_size, avg_size, max_size, CHUNKER_SEED):
        chunks.append(
            {
                "offset": offset,
                "length": length,
                "blob_id_hex": blob_id(buf[offset : offset + length]).hex(),
            }
        )
        offset += length
    unkeyed = cut(buf, min_size, avg_size, max_size, 0)
    assert unkeyed != [c["length"] for c in chunks]
    bits = math.floor(math.log2(avg_size) + 0.5)
    write(
        "chunker.json",
        {
            "description": "FastCDC chunk boundaries of a pseudo-random buffer, with the keyed "
            "gear table (format.md section 15). The buffer is the first `size` bytes of the BLAKE3 "
            "XOF of `buffer_label` (UTF-8); the seed is the chunker_seed of subkeys.json.",
            "buffer_label": label,
            "size": size,
            "buffer_blake3_hex": blake3.blake3(buf).hexdigest(),
            "params": {
                "algorithm": "fastcdc",
                "min_size": min_size,
                "avg_size": avg_size,
                "max_size": max_size,
                "normalization": 1,
            },
            "seed": CHUNKER_SEED,
            "id_key_hex": ID_KEY.hex(),
            "bits": bits,
            "mask_s_hex": f"{MASKS[bits + 1]:016x}",
            "mask_l_hex": f"{MASKS[bits - 1]:016x}",
            "gear_hex": [f"{g:016x}" for g in GEAR],
            "chunks": chunks,
        },
    )


# --- (h) float planes and deltas ------------------------------------------------------------------

# seawall's plane compressor: zstd level 1 with 6 hash bits and 7-byte matches (section 6.1).
PLANE_ZSTD = zstandard.ZstdCompressor(
    compression_params=zstandard.ZstdCompressionParameters.from_level(1, hash_log=6, min_match=7)
)
SPECIAL_FP32 = [
    0x7FC00000,  # quiet NaN
    0x7F800001,  # signalling NaN with a payload
    0xFFC00123,  # negative NaN with a payload
    0x7F800000,  # +inf
    0xFF800000,  # -inf
    0x80000000,  # -0.0
    0x00000001,  # smallest denormal
    0x807FFFFF,  # largest negative denormal
    0x7F7FFFFF,  # largest finite
]


def fp32_words(label: str, n: int, scale: float = 0.1) -> list[int]:
    """``n`` weight-like fp32 bit patterns: BLAKE3-XOF uniforms in [-scale, scale), with the
    special values first."""
    raw = xof(label, 4 * n)
    values = [
        (int.from_bytes(raw[4 * i : 4 * i + 4], "little") / 2**32 - 0.5) * 2 * scale
        for i in range(n)
    ]
    words = [struct.unpack("<I", struct.pack("<f", v))[0] for v in values]
    return SPECIAL_FP32 + words[len(SPECIAL_FP32) :]


def drift(words: list[int], label: str) -> list[int]:
    """A "next checkpoint": each value below 1e38 times (1 + u), u uniform in [-1%, 1%)."""
    raw = xof(label, 4 * len(words))
    out = []
    for i, w in enumerate(words):
        (v,) = struct.unpack("<f", struct.pack("<I", w))
        if abs(v) < 1e38:  # not NaN, infinite, or about to overflow
            u = (int.from_bytes(raw[4 * i : 4 * i + 4], "little") / 2**32 - 0.5) * 0.02
            w = struct.unpack("<I", struct.pack("<f", v * (1 + u)))[0]
        out.append(w)
    return out


def to_bytes(words: list[int], width: int) -> bytes:
    return b"".join(w.to_bytes(width, "little") for w in words)


def rotl(word: int, bits: int, width: int) -> int:
    size = 8 * width
    return ((word << bits) | (word >> (size - bits))) & ((1 << size) - 1)


def plane_section(words: list[int], width: int, rotate: int) -> tuple[bytes, list[int]]:
    """Planes of the rotated words, each stored with zstd if that saves 1/32 of it; the modes."""
    rotated = [rotl(w, rotate, width) for w in words]
    out, modes = b"", []
    for i in range(width):
        plane = bytes((w >> (8 * i)) & 0xFF for w in rotated)
        packed = PLANE_ZSTD.compress(plane)
        if len(packed) < len(plane) - len(plane) // 32:
            out += struct.pack("<BI", 1, len(packed)) + packed
            modes.append(1)
        else:
            out += struct.pack("<BI", 0, len(plane)) + plane
            modes.append(0)
    return out, modes


def residual(x: list[int], b: list[int], op: int, width: int) -> list[int]:
    size = 8 * width
    mask = (1 << size) - 1
    if op == 1:  # XOR
        return [a ^ c for a, c in zip(x, b, strict=True)]
    out = []
    for a, c in zip(x, b, strict=True):  # SUB: zigzag of the signed difference
        d = (a - c) & mask
        signed = d - (1 << size) if d >> (size - 1) else d
        out.append(((signed << 1) ^ (signed >> (size - 1))) & mask)
    return out


def vector_floats() -> None:
    fp32 = fp32_words("seawall float vector fp32", 1024)
    fp32_next = drift(fp32, "seawall float vector drift")
    bf16 = [w >> 16 for w in fp32[:512]]
    bf16_next = [w >> 16 for w in fp32_next[:512]]
    fp64 = [struct.unpack("<Q", struct.pack("<d", v))[0] for v in (0.5, -1.25, 1e-310, 3.0e300)]
    fp64 += [0x7FF8000000000001, 0xFFF0000000000000, 0x8000000000000000, 0x3FB999999999999A]
    fp8 = list(xof("seawall float vector fp8", 48))
    cases: list[dict[str, Any]] = []

    def planes_case(name: str, words: list[int], width: int, rotate: int) -> None:
        section, modes = plane_section(words, width, rotate)
        cases.append(
            {
                "name": name,
                "flag": 2,
                "width": width,
                "rotate": rotate,
                "plane_modes": modes,
                "plaintext_hex": to_bytes(words, width).hex(),
                "payload_hex": (bytes([2, width, rotate]) + section).hex(),
            }
        )

    def delta_case(
        name: str, words: list[int], base: list[int], width: int, op: int, rotate: int
    ) -> None:
        section, modes = plane_section(residual(words, base, op, width), width, rotate)
        base_bytes = to_bytes(base, width)
        base_id = blob_id(base_bytes)
        cases.append(
            {
                "name": name,
                "flag": 3,
                "width": width,
                "rotate": rotate,
                "op": op,
                "plane_modes": modes,
                "base_id_hex": base_id.hex(),
                "base_hex": base_bytes.hex(),
                "plaintext_hex": to_bytes(words, width).hex(),
                "payload_hex": (bytes([3]) + base_id + bytes([op, width, rotate]) + section).hex(),
            }
        )

    planes_case("fp32 planes, rotate 1", fp32, 4, 1)
    planes_case("bf16 planes, rotate 1", bf16, 2, 1)
    planes_case("fp64 planes, rotate 0 (all planes raw)", fp64, 8, 0)
    planes_case("1-byte words, rotate 3", fp8, 1, 3)
    delta_case("fp32 delta, SUB, rotate 0", fp32_next, fp32, 4, 2, 0)
    delta_case("bf16 delta, XOR, rotate 1", bf16_next, bf16, 2, 1, 1)
    delta_case("bf16 delta, SUB, rotate 0", bf16_next, bf16, 2, 2, 0)
    modes = {m for c in cases for m in c["plane_modes"]}
    assert modes == {0, 1}, modes  # cover both plane modes
    write(
        "floats.json",
        {
            "description": "Float planes (flag 0x02) and delta (flag 0x03) payloads (format.md "
            "sections 6.1 and 6.2): plaintext, base, and payload. Planes are stored with zstd "
            "(level 1, hash_log 6, min_match 7) when that saves 1/32 of the plane, as seawall "
            "writes them; fp32 values are BLAKE3-XOF uniforms in [-0.1, 0.1) after NaNs with "
            "payloads, infinities, -0.0 and denormals, bf16 their top halves, the next "
            "checkpoint each value below 1e38 times 1 + u, u uniform in [-1%, 1%). The base id is "
            "the base's keyed blob id (id_key of subkeys.json).",
            "cases": cases,
        },
    )


def main() -> None:
    vector_keys()
    vector_ids()
    vector_sealed()
    vector_pack()
    vector_index()
    vector_key_file()
    vector_chunker()
    vector_floats()


if __name__ == "__main__":
    main()
