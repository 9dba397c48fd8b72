"""The format spec (docs/format.md) against the code, and the frozen repositories.

Three kinds of checks:

1. Every test vector in docs/vectors/ is decoded with seawall's code, and,
   where the encoding is deterministic, re-encoded by it to the same bytes.
   Salts and nonces are random in production; to re-encode a sealed object
   or a pack byte for byte, the tests hand seawall's crypto module a scripted
   randomness source (``_scripted_random``) instead of ``os``. No production
   code takes a nonce.
2. :class:`SpecReader`, a second reader written from docs/format.md alone
   (cryptography, blake3, zstandard, numpy, json, struct; no seawall module),
   opens tests/data/frozen-v1 and frozen-v2, lists their snapshots, walks
   their trees and rebuilds every file (float planes and delta chains
   included), and must agree with seawall's restore and the recorded
   sha256s. It also rebuilds the index, delta bases included, from the pack
   tails alone.
3. Every later seawall must still read tests/data/frozen-v1 and frozen-v2:
   open, list, restore each snapshot bit for bit, and ``check --read-data``
   clean.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import math
import os
import shutil
import stat
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import numpy as np
import pytest
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from seawall.codec import compress, crypto
from seawall.codec.chunker import Chunker, ChunkerParams
from seawall.codec.crypto import MasterKey, Sealer, open_object, seal_object
from seawall.codec.ids import blob_id, storage_id
from seawall.errors import FormatError, IntegrityError
from seawall.operations.check import check
from seawall.operations.restore import restore
from seawall.repository.config import FORMAT_VERSION, RepoConfig
from seawall.repository.index import BLOB_DTYPE, IndexObject, MasterIndex
from seawall.repository.keys import KdfParams, make_key_file, open_key_file, parse_key_file
from seawall.repository.pack import (
    PackBuilder,
    PackedBlob,
    open_blob,
    pack_name,
    parse_tail,
    tail_length,
)
from seawall.repository.repo import Repository
from seawall.repository.snapshot import Node, Snapshot, decode_tree, encode_tree
from seawall.storage import LocalStorage, MemoryStorage

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "docs" / "vectors"
FORMAT_MD = ROOT / "docs" / "format.md"
#: The frozen repositories, one per format version (format.md 21), and what they hold.
FROZEN = {v: ROOT / "tests" / "data" / f"frozen-{v}" for v in ("v1", "v2")}


def vector(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return doc


def h(text: str) -> bytes:
    return bytes.fromhex(text)


SUBKEYS = vector("subkeys.json")
MASTER = MasterKey(h(SUBKEYS["master_secret_hex"]))
ENC_KEY = h(SUBKEYS["encryption_key_hex"])
ID_KEY = h(SUBKEYS["id_key_hex"])


class _ScriptedRandom:
    """Stands in for ``os`` inside seawall.codec.crypto: ``urandom`` returns the
    given byte strings in order (each must have the size asked for)."""

    def __init__(self, values: list[bytes]) -> None:
        self._values = list(values)

    def urandom(self, n: int) -> bytes:
        value = self._values.pop(0)
        assert len(value) == n, f"crypto asked for {n} random bytes, the script has {len(value)}"
        return value

    def exhausted(self) -> bool:
        return not self._values


@pytest.fixture
def scripted_random(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    scripts: list[_ScriptedRandom] = []

    def install(values: list[bytes]) -> _ScriptedRandom:
        script = _ScriptedRandom(values)
        monkeypatch.setattr(crypto, "os", script)
        scripts.append(script)
        return script

    yield install
    for script in scripts:
        assert script.exhausted(), "seawall drew fewer random values than the format predicts"


def vector_repo(storage: MemoryStorage | None = None, repo_id: str | None = None) -> Repository:
    """A Repository over the vectors' master key (no key file needed to read objects)."""
    config = RepoConfig(id=repo_id or "00" * 32)
    return Repository(storage or MemoryStorage(), config, MASTER, "vector")


# --- (a) subkeys ---------------------------------------------------------------------------


def test_subkeys_from_master_secret() -> None:
    assert MASTER.encryption_key == ENC_KEY
    assert MASTER.id_key == ID_KEY
    assert MASTER.chunker_seed == SUBKEYS["chunker_seed"] == int(SUBKEYS["chunker_seed_hex"], 16)
    # The spec's recipe, without seawall: BLAKE3 derive_key, and for the seed the
    # first 8 bytes little-endian masked to 62 bits.
    secret = h(SUBKEYS["master_secret_hex"])
    contexts = SUBKEYS["contexts"]
    assert blake3.blake3(secret, derive_key_context=contexts["encryption_key"]).digest() == ENC_KEY
    assert blake3.blake3(secret, derive_key_context=contexts["id_key"]).digest() == ID_KEY
    derived = blake3.blake3(secret, derive_key_context=contexts["chunker_seed"]).digest()
    assert derived.hex() == SUBKEYS["chunker_seed_derived_hex"]
    assert int.from_bytes(derived[:8], "little") & (2**62 - 1) == SUBKEYS["chunker_seed"]
    assert "<secret>" in repr(MASTER) and secret.hex() not in repr(MASTER)


# --- (b) ids -----------------------------------------------------------------------------------


def test_blob_and_storage_ids() -> None:
    doc = vector("ids.json")
    assert h(doc["id_key_hex"]) == ID_KEY
    for case in doc["cases"]:
        data = h(case["input_hex"])
        assert blob_id(ID_KEY, data).hex() == case["blob_id_hex"]
        assert vector_repo().blob_id(data).hex() == case["blob_id_hex"]
        assert storage_id(data).hex() == case["storage_id_hex"]
        # A blob id is keyed: without the key it is not the plain hash.
        assert case["blob_id_hex"] != case["storage_id_hex"]


# --- (c) sealed standalone objects ----------------------------------------------------------------

SEALED = vector("sealed_objects.json")


@pytest.mark.parametrize("obj", SEALED["objects"], ids=lambda o: o["kind"])
def test_sealed_object_decodes(obj: dict[str, Any]) -> None:
    assert h(SEALED["encryption_key_hex"]) == ENC_KEY
    data = h(obj["sealed_hex"])
    salt, nonce = h(obj["salt_hex"]), h(obj["nonce_hex"])
    assert data[:16] == salt and data[16:28] == nonce
    assert blake3.blake3(salt, key=ENC_KEY).hexdigest() == obj["object_key_hex"]
    payload = open_object(ENC_KEY, data, obj["aad"].encode(), "vector")
    assert payload.hex() == obj["payload_hex"] and payload[0] == obj["payload_flag"]
    assert compress.decode(payload, 1 << 20).hex() == obj["plaintext_hex"]
    # The full read path: the object under its name in a store.
    storage = MemoryStorage()
    storage.put(obj["name"], data)
    assert obj["name"] == f"{obj['kind']}/{storage_id(data).hex()}"
    plain = vector_repo(storage).load_object(obj["kind"], h(obj["storage_id_hex"]))
    assert plain.hex() == obj["plaintext_hex"]


@pytest.mark.parametrize("obj", SEALED["objects"], ids=lambda o: o["kind"])
def test_sealed_object_reencodes(obj: dict[str, Any], scripted_random: Any) -> None:
    salt, nonce, payload = h(obj["salt_hex"]), h(obj["nonce_hex"]), h(obj["payload_hex"])
    # Sealer with the vector's salt, and AES-GCM with its nonce, by hand.
    aead = AESGCM(h(obj["object_key_hex"]))
    assert salt + nonce + aead.encrypt(nonce, payload, obj["aad"].encode()) == h(obj["sealed_hex"])
    # seawall's own sealing, drawing the vector's salt and nonce.
    scripted_random([salt, nonce])
    assert seal_object(ENC_KEY, payload, obj["aad"].encode()).hex() == obj["sealed_hex"]
    plain = h(obj["plaintext_hex"])
    # zstandard is pinned (pyproject.toml): its frames are the vector's, byte for byte.
    assert compress.encode(plain) == payload, (
        "zstd no longer compresses as when the vector was made"
    )
    scripted_random([salt, nonce])
    storage = MemoryStorage()
    object_id = vector_repo(storage).save_object(obj["kind"], plain)
    assert object_id.hex() == obj["storage_id_hex"]
    assert storage.get(obj["name"]).hex() == obj["sealed_hex"]


def test_sealed_snapshot_and_lock_fields() -> None:
    snap_obj, lock_obj = SEALED["objects"]
    plain = h(snap_obj["plaintext_hex"])
    snap = Snapshot.from_bytes(plain, h(snap_obj["storage_id_hex"]))
    assert snap.paths == ["/srv/models", "/srv/data"] and snap.tags == ["nightly", "vector"]
    assert snap.hostname == "vector-host" and snap.parent is None and snap.excludes == ["*.tmp"]
    assert snap.tree == blob_id(ID_KEY, b'{"nodes":[]}')
    assert snap.to_bytes() == plain  # the canonical encoding, byte for byte
    lock = json.loads(h(lock_obj["plaintext_hex"]))
    assert set(lock) == {"exclusive", "hostname", "pid", "username", "time"}


def test_sealed_object_every_byte_is_authenticated() -> None:
    obj = SEALED["objects"][0]
    data = h(obj["sealed_hex"])
    aad = obj["aad"].encode()
    for pos in range(len(data)):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        with pytest.raises(IntegrityError):
            open_object(ENC_KEY, bytes(bad), aad, "tampered")
    for other in (b"seawall index", b"seawall lock", b""):  # not replayable as another kind
        with pytest.raises(IntegrityError):
            open_object(ENC_KEY, data, other, "replayed")
    with pytest.raises(IntegrityError):
        open_object(ENC_KEY, data[:-1], aad, "truncated")


# --- (d) a pack -----------------------------------------------------------------------------------

PACK = vector("pack.json")


def _packed(rec: dict[str, Any]) -> PackedBlob:
    return PackedBlob(
        rec["type"], h(rec["id_hex"]), rec["offset"], rec["length"], rec["raw_length"]
    )


def test_pack_decodes() -> None:
    pack = h(PACK["pack_hex"])
    assert len(pack) == PACK["pack_size"]
    assert storage_id(pack).hex() == PACK["pack_id_hex"]
    assert pack_name(h(PACK["pack_id_hex"])) == PACK["name"]
    # The trailer: salt[16] then the sealed header's length, u32 little-endian.
    assert pack[-20:-4] == h(PACK["salt_hex"])
    assert struct.unpack("<I", pack[-4:])[0] == PACK["header_length"]
    assert tail_length(pack[-20:]) == PACK["header_length"] + 20
    salt, blobs = parse_tail(ENC_KEY, pack, len(pack))
    assert salt == h(PACK["salt_hex"])
    assert blobs == [_packed(r) for r in PACK["blobs"]]
    # Only the tail is needed to parse the header.
    tail = pack[-tail_length(pack[-20:]) :]
    assert parse_tail(ENC_KEY, tail, len(pack)) == (salt, blobs)
    sealer = Sealer(ENC_KEY, salt)
    for rec, blob in zip(PACK["blobs"], blobs, strict=True):
        sealed = pack[blob.offset : blob.offset + blob.length]
        assert sealed[:12] == h(rec["nonce_hex"])
        assert (
            sealer.open(sealed, bytes([rec["type"]]) + h(rec["id_hex"]), "blob").hex()
            == rec["payload_hex"]
        )
        plain = open_blob(sealer, blob, sealed, "blob")
        assert plain.hex() == rec["plaintext_hex"]
        assert blob_id(ID_KEY, plain) == blob.id


def test_pack_reads_through_repository() -> None:
    pack = h(PACK["pack_hex"])
    pack_id = h(PACK["pack_id_hex"])
    storage = MemoryStorage()
    storage.put(PACK["name"], pack)
    repo = vector_repo(storage)
    salt, blobs = repo.read_pack_header(pack_id, len(pack))
    assert repo.sync_index_with_packs() == 1  # recovery without an index: from the tail alone
    for rec in PACK["blobs"]:
        assert repo.load_blob(h(rec["id_hex"])).hex() == rec["plaintext_hex"]
    got = {b.id: plain for b, plain in repo.read_pack_blobs(pack_id, salt, blobs)}
    assert {k.hex(): v.hex() for k, v in got.items() if isinstance(v, bytes)} == {
        r["id_hex"]: r["plaintext_hex"] for r in PACK["blobs"]
    }


def test_pack_tree_blob() -> None:
    tree = h(PACK["blobs"][2]["plaintext_hex"])
    nodes = decode_tree(tree)
    by_name = {n.name: n for n in nodes}
    assert [n.name for n in nodes] == sorted(by_name)
    link = by_name["café-link".encode()]
    assert link.type == "symlink" and link.target == b"\xff\xfe-raw-target"
    assert by_name[b"latin1-\xe9.txt"].type == "file" and by_name[b"latin1-\xe9.txt"].content == []
    fox = by_name[b"fox.txt"]
    assert (fox.size, fox.mode, fox.uid, fox.inode) == (900, 0o644, 1000, 11)
    assert fox.content == [h(PACK["blobs"][0]["id_hex"])]
    assert by_name[b"sub"].subtree == h(PACK["blobs"][3]["id_hex"])
    assert decode_tree(h(PACK["blobs"][3]["plaintext_hex"])) == []
    doc = json.loads(tree)
    assert "name_raw" in doc["nodes"][2] and "target_raw" in doc["nodes"][0]
    # Re-encoding gives the same bytes, so equal directories give equal tree ids.
    assert encode_tree(list(reversed(nodes))) == tree


def test_pack_reencodes(scripted_random: Any) -> None:
    plains = [(r["type"], h(r["plaintext_hex"])) for r in PACK["blobs"]]
    # zstandard is pinned (pyproject.toml): its frames are the vector's, byte for byte.
    for (_t, p), r in zip(plains, PACK["blobs"], strict=True):
        assert compress.encode(p).hex() == r["payload_hex"], "zstd compresses differently"
    nonces = [h(r["nonce_hex"]) for r in PACK["blobs"]]
    scripted_random([h(PACK["salt_hex"]), *nonces, h(PACK["header_nonce_hex"])])
    builder = PackBuilder(ENC_KEY)
    for btype, plain in plains:
        builder.add(btype, blob_id(ID_KEY, plain), plain)
    assert builder.blobs == [_packed(r) for r in PACK["blobs"]]
    pack_id, data = builder.finish()
    assert data.hex() == PACK["pack_hex"]
    assert pack_id.hex() == PACK["pack_id_hex"]


def test_pack_every_byte_is_checked() -> None:
    """Flip any byte of the pack: reading its header or a blob (by the index's
    locations) fails, or the pack no longer matches its name."""
    pack = h(PACK["pack_hex"])
    blobs = [_packed(r) for r in PACK["blobs"]]
    salt = h(PACK["salt_hex"])

    def readable(data: bytes) -> bool:
        try:
            parse_tail(ENC_KEY, data, len(data))
            for b in blobs:
                plain = open_blob(
                    Sealer(ENC_KEY, salt), b, data[b.offset : b.offset + b.length], "b"
                )
                if blob_id(ID_KEY, plain) != b.id:
                    return False
        except (IntegrityError, FormatError):
            return False
        return True

    assert readable(pack)
    for pos in range(len(pack)):
        bad = bytearray(pack)
        bad[pos] ^= 0x80
        assert not readable(bytes(bad)), f"flipping byte {pos} went unnoticed"
        assert storage_id(bytes(bad)) != storage_id(pack)


# --- (e) an index object --------------------------------------------------------------------------

INDEX = vector("index.json")


def _entries_array(entries: list[dict[str, Any]]) -> np.ndarray:
    rows = [
        (h(e["id_hex"]), e["pack"], e["offset"], e["length"], e["raw_length"], e["type"])
        for e in entries
    ]
    return np.array(rows, dtype=BLOB_DTYPE)


def test_index_decodes() -> None:
    obj = IndexObject.decode(h(INDEX["plaintext_hex"]))
    assert [s.hex() for s in obj.supersedes] == INDEX["supersedes_hex"]
    assert obj.packs == [(h(p["id_hex"]), p["size"], h(p["salt_hex"])) for p in INDEX["packs"]]
    decoded = [
        {
            "id_hex": bytes(e["id"]).ljust(32, b"\0").hex(),
            "pack": int(e["pack"]),
            "offset": int(e["offset"]),
            "length": int(e["length"]),
            "raw_length": int(e["raw_length"]),
            "type": int(e["type"]),
        }
        for e in obj.entries
    ]
    assert decoded == INDEX["entries"]
    assert INDEX["packs"][0]["id_hex"] == PACK["pack_id_hex"]
    assert INDEX["packs"][0]["salt_hex"] == PACK["salt_hex"]


def test_index_reencodes_and_seals(scripted_random: Any) -> None:
    packs = [(h(p["id_hex"]), p["size"], h(p["salt_hex"])) for p in INDEX["packs"]]
    obj = IndexObject(
        packs, _entries_array(INDEX["entries"]), [h(s) for s in INDEX["supersedes_hex"]]
    )
    assert obj.encode().hex() == INDEX["plaintext_hex"]
    sealed = INDEX["sealed"]
    assert sealed["plaintext_hex"] == INDEX["plaintext_hex"] and sealed["aad"] == "seawall index"
    storage = MemoryStorage()
    storage.put(sealed["name"], h(sealed["sealed_hex"]))
    repo = vector_repo(storage)
    assert repo.load_object("index", h(sealed["storage_id_hex"])).hex() == INDEX["plaintext_hex"]
    if compress.encode(obj.encode()).hex() == sealed["payload_hex"]:
        scripted_random([h(sealed["salt_hex"]), h(sealed["nonce_hex"])])
        assert repo.save_index(obj).hex() == sealed["storage_id_hex"]


def test_index_supersedes_on_load() -> None:
    """An index listed in another's ``supersedes`` is not used (format.md: ordering)."""
    storage = MemoryStorage()
    repo = vector_repo(storage)
    packs = [(h(p["id_hex"]), p["size"], h(p["salt_hex"])) for p in INDEX["packs"]]
    entries = _entries_array(INDEX["entries"])
    stale = IndexObject(packs, entries.copy(), [])
    stale.entries["offset"] += 7  # wrong locations: must never be used
    stale_id = repo.save_index(stale)
    repo.save_index(IndexObject(packs, entries, [stale_id]))
    fresh = vector_repo(storage)
    assert fresh.load_index() == []
    for e in INDEX["entries"]:
        loc = fresh.index.lookup(h(e["id_hex"]))
        assert loc is not None and loc.offset == e["offset"]
        assert loc.pack_id.hex() == INDEX["packs"][e["pack"]]["id_hex"]


def test_master_index_lookup() -> None:
    master = MasterIndex()
    master.add_index(None, IndexObject.decode(h(INDEX["plaintext_hex"])))
    for e in INDEX["entries"]:
        loc = master.lookup(h(e["id_hex"]))
        assert loc is not None
        p = INDEX["packs"][e["pack"]]
        assert (loc.pack_id.hex(), loc.pack_salt.hex()) == (p["id_hex"], p["salt_hex"])
        assert (loc.type, loc.offset, loc.length, loc.raw_length) == (
            e["type"],
            e["offset"],
            e["length"],
            e["raw_length"],
        )


def test_index_rejects_malformed() -> None:
    plain = h(INDEX["plaintext_hex"])
    for bad in (b"SWIX\x02" + plain[5:], plain[:-1], plain + b"\0"):
        with pytest.raises(FormatError):
            IndexObject.decode(bad)


# --- (f) a key file -------------------------------------------------------------------------------

KEY = vector("key_file.json")


def test_key_file_opens() -> None:
    key_file = KEY["key_file"].encode()
    assert storage_id(key_file).hex() == KEY["key_id_hex"]
    master = open_key_file(key_file, KEY["key_id_hex"], KEY["password"], KEY["repository_id"])
    assert master is not None and master.secret.hex() == KEY["master_secret_hex"]
    info, params, salt, data = parse_key_file(key_file, KEY["key_id_hex"])
    kdf = KEY["kdf"]
    assert params == KdfParams(kdf["time_cost"], kdf["memory_cost_kib"], kdf["parallelism"])
    assert salt.hex() == KEY["salt_hex"] and data[:12].hex() == KEY["nonce_hex"]
    assert (info.hostname, info.username) == ("vector-host", "root")
    assert open_key_file(key_file, "k", "wrong password", KEY["repository_id"]) is None
    assert open_key_file(key_file, "k", KEY["password"], "ff" * 32) is None  # bound to its repo


def test_key_file_rederives() -> None:
    kdf = KEY["kdf"]
    salt, nonce = h(KEY["salt_hex"]), h(KEY["nonce_hex"])
    params = KdfParams(kdf["time_cost"], kdf["memory_cost_kib"], kdf["parallelism"])
    kek = params.derive(KEY["password"], salt)
    assert kek.hex() == KEY["key_encryption_key_hex"]
    assert kek == Argon2id(
        salt=salt,
        length=32,
        iterations=kdf["time_cost"],
        lanes=kdf["parallelism"],
        memory_cost=kdf["memory_cost_kib"],
    ).derive(KEY["password"].encode())
    aad = (
        f"seawall key v1|{KEY['repository_id']}|argon2id|{kdf['time_cost']}|"
        f"{kdf['memory_cost_kib']}|{kdf['parallelism']}|"
    ).encode() + salt
    assert aad.hex() == KEY["aad_hex"]
    wrapped = nonce + AESGCM(kek).encrypt(nonce, h(KEY["master_secret_hex"]), aad)
    assert json.loads(KEY["key_file"])["data"] == base64.b64encode(wrapped).decode()


def test_key_file_binds_its_kdf_parameters() -> None:
    """Lowering the cost in the JSON (same derived key aside) fails: the AAD binds it."""
    doc = json.loads(KEY["key_file"])
    for field, value in (("time_cost", 1), ("parallelism", 2), ("memory_cost_kib", 2048)):
        changed = json.loads(KEY["key_file"])
        changed["kdf"][field] = value
        data = json.dumps(changed).encode()
        assert open_key_file(data, "k", KEY["password"], KEY["repository_id"]) is None
    changed = dict(doc, kdf=dict(doc["kdf"], salt=base64.b64encode(b"\x01" * 16).decode()))
    assert (
        open_key_file(json.dumps(changed).encode(), "k", KEY["password"], KEY["repository_id"])
        is None
    )


def test_key_file_layout_matches_writer() -> None:
    made = json.loads(make_key_file(MASTER, "pw", KEY["repository_id"], KdfParams(1, 1024, 1)))
    vec = json.loads(KEY["key_file"])
    assert list(made) == list(vec) and list(made["kdf"]) == list(vec["kdf"])


def test_repository_opens_with_vector_key() -> None:
    storage = MemoryStorage()
    storage.put("config", RepoConfig(id=KEY["repository_id"]).to_bytes())
    storage.put(f"keys/{KEY['key_id_hex']}", KEY["key_file"].encode())
    repo = Repository.open(storage, KEY["password"])
    assert repo.key.secret.hex() == KEY["master_secret_hex"]
    assert repo.key.encryption_key == ENC_KEY


# --- (g) chunk boundaries -------------------------------------------------------------------------

CHUNKS = vector("chunker.json")
U64 = (1 << 64) - 1


def _chunk_buffer() -> bytes:
    buf = blake3.blake3(CHUNKS["buffer_label"].encode()).digest(length=CHUNKS["size"])
    assert blake3.blake3(buf).hexdigest() == CHUNKS["buffer_blake3_hex"]
    return buf


def spec_cut(buf: bytes, doc: dict[str, Any]) -> list[int]:
    """FastCDC exactly as format.md describes it, from the vector's own tables."""
    p = doc["params"]
    min_size, avg_size, max_size, seed = p["min_size"], p["avg_size"], p["max_size"], doc["seed"]
    assert math.floor(math.log2(avg_size) + 0.5) == doc["bits"]
    mask_s, mask_l = int(doc["mask_s_hex"], 16), int(doc["mask_l_hex"], 16)
    gear = [int(g, 16) ^ seed for g in doc["gear_hex"]]
    gear_ls = [((int(g, 16) << 1) ^ (seed << 1)) & U64 for g in doc["gear_hex"]]
    lengths: list[int] = []
    start = 0
    while start < len(buf):
        n = len(buf) - start
        cut = n
        if n > min_size:
            end = min(n, max_size)
            center = min(avg_size, end)
            hsh = 0
            cut = end
            i = min_size // 2 * 2
            while i < end // 2 * 2:
                mask = mask_s if i < center // 2 * 2 else mask_l
                hsh = ((hsh << 2) + gear_ls[buf[start + i]]) & U64
                if hsh & ((mask << 1) & U64) == 0:
                    cut = i
                    break
                hsh = (hsh + gear[buf[start + i + 1]]) & U64
                if hsh & mask == 0:
                    cut = i + 1
                    break
                i += 2
        lengths.append(cut)
        start += cut
    return lengths


def test_chunk_boundaries() -> None:
    buf = _chunk_buffer()
    p = CHUNKS["params"]
    params = ChunkerParams(p["min_size"], p["avg_size"], p["max_size"])
    assert CHUNKS["seed"] == MASTER.chunker_seed
    expected = [(c["offset"], c["length"]) for c in CHUNKS["chunks"]]
    assert sum(length for _o, length in expected) == len(buf)
    chunker = Chunker(params, CHUNKS["seed"])
    got, offset = [], 0
    for chunk in chunker.chunks(buf):
        got.append((offset, len(chunk)))
        assert blob_id(ID_KEY, chunk).hex() == CHUNKS["chunks"][len(got) - 1]["blob_id_hex"]
        offset += len(chunk)
    assert got == expected
    assert [len(c) for c in chunker.stream(io.BytesIO(buf))] == [n for _o, n in expected]
    assert spec_cut(buf, CHUNKS) == [n for _o, n in expected]
    # The seed matters: the unkeyed gear table cuts elsewhere.
    assert [len(c) for c in Chunker(params, 0).chunks(buf)] != [n for _o, n in expected]
    assert params.to_json() == {
        "algorithm": "fastcdc",
        "min_size": p["min_size"],
        "avg_size": p["avg_size"],
        "max_size": p["max_size"],
    }


# --- (h) float planes and deltas ------------------------------------------------------------------

FLOATS = vector("floats.json")


@pytest.mark.parametrize("case", FLOATS["cases"], ids=lambda c: c["name"])
def test_float_payload_decodes(case: dict[str, Any]) -> None:
    payload, plain = h(case["payload_hex"]), h(case["plaintext_hex"])
    assert payload[0] == case["flag"]
    base = h(case["base_hex"]) if case["flag"] == compress.DELTA else None
    assert bytes(compress.decode(payload, len(plain), base)) == plain
    if base is None:
        assert compress.delta_base(payload) is None
        return
    assert compress.delta_base(payload) == h(case["base_id_hex"]) == blob_id(ID_KEY, base)
    with pytest.raises(ValueError, match="base"):
        compress.decode(payload, len(plain))
    with pytest.raises(ValueError, match="base"):
        compress.decode(payload, len(plain), base[:-2])


@pytest.mark.parametrize("case", FLOATS["cases"], ids=lambda c: c["name"])
def test_float_payload_reencodes(case: dict[str, Any]) -> None:
    plain, width, rotate = h(case["plaintext_hex"]), case["width"], case["rotate"]
    if case["flag"] == compress.PLANES:
        payload = compress.planes_payload(plain, width, rotate)
    else:
        base, base_id = h(case["base_hex"]), h(case["base_id_hex"])
        payload = compress.delta_payload(plain, base, base_id, width, case["op"], rotate)
    # zstandard is pinned (pyproject.toml): its frames are the vector's, byte for byte.
    assert payload.hex() == case["payload_hex"]


# --- the spec names what the vectors and code use -------------------------------------------------


def test_format_md_states_the_constants() -> None:
    text = FORMAT_MD.read_text()
    for context in SUBKEYS["contexts"].values():
        assert context in text
    for name in (
        "subkeys.json",
        "ids.json",
        "sealed_objects.json",
        "pack.json",
        "index.json",
        "key_file.json",
        "chunker.json",
        "floats.json",
    ):
        assert f"vectors/{name}" in text
    for constant in (
        "seawall pack header",
        "seawall index",
        "seawall snapshot",
        "seawall lock",
        "seawall key v1|",
        "SWIX",
        f'"version": {FORMAT_VERSION}',
    ):
        assert constant in text, constant


# --- a second reader, from the spec alone ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Loc:
    pack: str
    salt: bytes
    type: int
    offset: int
    length: int
    raw_length: int


class SpecReader:
    """A read-only client of docs/format.md, using no seawall module."""

    MAX_CHAIN = 16  # deltas on the way to a blob's data (section 6.2)

    def __init__(self, root: Path, password: str) -> None:
        self.root = root
        config = json.loads((root / "config").read_bytes())
        if config["format"] != "seawall-repository" or config["version"] not in (1, 2):
            raise ValueError("not a seawall repository of format version 1 or 2")
        self.version: int = config["version"]
        self.repo_id: str = config["id"]
        secret = self._unlock(password)
        derive = blake3.blake3
        self.enc_key = derive(
            secret, derive_key_context="seawall 2026-11-24 encryption key"
        ).digest()
        self.id_key = derive(secret, derive_key_context="seawall 2026-11-24 blob id key").digest()
        self.index, self.bases = self._load_index()

    # objects

    def _names(self, folder: str) -> list[str]:
        base = self.root / folder
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file())

    def _read_named(self, name: str) -> bytes:
        data = (self.root / name).read_bytes()
        if blake3.blake3(data).hexdigest() != name.rsplit("/", 1)[1]:
            raise ValueError(f"{name} does not match its name")
        return data

    @staticmethod
    def _unzstd(frame: bytes, size: int) -> bytes:
        """One zstd frame of at most ``size`` bytes, nothing after it."""
        if zstandard.frame_content_size(frame) > size:  # before zstd allocates it
            raise ValueError("zstd frame declares too much")
        out: bytes = zstandard.ZstdDecompressor().decompress(
            frame, max_output_size=size, allow_extra_data=False
        )
        return out

    def _payload(self, payload: bytes, raw_length: int | None = None, chain: int = 0) -> bytes:
        """Section 6. Blobs give their raw_length; only they may be planes or deltas."""
        flag = payload[0]
        if flag == 0:
            return payload[1:]
        if flag == 1 and raw_length is not None:
            return self._unzstd(payload[1:], raw_length)
        if flag == 1:  # a standalone object: no size to check against
            out: bytes = zstandard.ZstdDecompressor().decompressobj().decompress(payload[1:])
            return out
        if flag not in (2, 3) or raw_length is None or self.version < 2:
            raise ValueError(f"payload flag {flag} is not allowed here")
        if flag == 2:
            return self.planes(payload, raw_length)
        if chain >= self.MAX_CHAIN:
            raise ValueError("a delta chain longer than 16")
        return self.delta(payload, raw_length, self.blob(payload[1:33].hex(), chain + 1))

    @classmethod
    def planes(cls, payload: bytes, raw_length: int) -> bytes:
        """Section 6.1: flag 0x02."""
        data: bytes = cls._words(payload, 1, raw_length).tobytes()
        return data

    @classmethod
    def delta(cls, payload: bytes, raw_length: int, base: bytes) -> bytes:
        """Section 6.2: flag 0x03, base id, op, then the planes of the residual."""
        op = payload[33]
        r = cls._words(payload, 34, raw_length)
        if op not in (1, 2) or len(base) != raw_length:
            raise ValueError("unknown delta op, or a base of another length")
        b = np.frombuffer(base, r.dtype)
        x = b ^ r if op == 1 else b + ((r >> 1) ^ (0 - (r & 1)))  # SUB: unzigzag, mod 2^(8 width)
        data: bytes = x.tobytes()
        return data

    @classmethod
    def _words(cls, payload: bytes, pos: int, raw_length: int) -> np.ndarray:
        """Section 6.1: width, rotate and the planes at ``payload[pos:]``, to the words."""
        width, rotate = payload[pos], payload[pos + 1]
        if width not in (1, 2, 4, 8) or rotate >= 8 * width or raw_length % width:
            raise ValueError("bad width or rotation")
        n, pos = raw_length // width, pos + 2
        planes = []
        for _ in range(width):
            mode, length = struct.unpack_from("<BI", payload, pos)
            stored, pos = payload[pos + 5 : pos + 5 + length], pos + 5 + length
            if len(stored) != length or mode not in (0, 1):
                raise ValueError("plane truncated, or of an unknown mode")
            plane = stored if mode == 0 else cls._unzstd(stored, n)
            if len(plane) != n:
                raise ValueError("plane of the wrong length")
            planes.append(np.frombuffer(plane, np.uint8))
        if pos != len(payload):
            raise ValueError("bytes after the last plane")
        # Byte i of word j is byte j of plane i; then rotate each word right.
        words = np.stack(planes, axis=1).view(f"<u{width}").reshape(n)
        if rotate:
            words = (words >> rotate) | (words << (8 * width - rotate))
        return words

    def _object_key(self, salt: bytes) -> AESGCM:
        return AESGCM(blake3.blake3(salt, key=self.enc_key).digest())

    def open_sealed(self, name: str, aad: bytes) -> bytes:
        data = self._read_named(name)
        salt, nonce, ct = data[:16], data[16:28], data[28:]
        return self._payload(self._object_key(salt).decrypt(nonce, ct, aad))

    # keys

    def _unlock(self, password: str) -> bytes:
        for name in self._names("keys"):
            doc = json.loads(self._read_named(name))
            kdf = doc["kdf"]
            assert kdf["algorithm"] == "argon2id"
            salt = base64.b64decode(kdf["salt"])
            kek = Argon2id(
                salt=salt,
                length=32,
                iterations=kdf["time_cost"],
                lanes=kdf["parallelism"],
                memory_cost=kdf["memory_cost_kib"],
            ).derive(password.encode())
            aad = (
                f"seawall key v1|{self.repo_id}|argon2id|{kdf['time_cost']}|"
                f"{kdf['memory_cost_kib']}|{kdf['parallelism']}|"
            ).encode() + salt
            data = base64.b64decode(doc["data"])
            try:
                return AESGCM(kek).decrypt(data[:12], data[12:], aad)
            except InvalidTag:
                continue
        raise ValueError("no key opens with that password")

    # index

    def parse_index(self, plain: bytes) -> tuple[list[str], dict[str, Loc], dict[str, str]]:
        """Supersedes, blob locations, and (version 2) delta id -> base id."""
        version = plain[4]
        if plain[:4] != b"SWIX" or plain[5:8] != b"\0\0\0" or not 1 <= version <= self.version:
            raise ValueError("bad index magic or version")
        pos = 8
        (n_sup,) = struct.unpack_from("<I", plain, pos)
        pos += 4
        supersedes = [plain[pos + 32 * i : pos + 32 * i + 32].hex() for i in range(n_sup)]
        pos += 32 * n_sup
        (n_packs,) = struct.unpack_from("<I", plain, pos)
        pos += 4
        packs = []
        for _ in range(n_packs):
            pid, _size, salt = struct.unpack_from("<32sQ16s", plain, pos)
            packs.append((pid.hex(), salt))
            pos += 56
        (n_blobs,) = struct.unpack_from("<Q", plain, pos)
        pos += 8
        end = pos + 49 * n_blobs
        entries = {}
        for bid, pack, offset, length, raw, btype in struct.iter_unpack(
            "<32sIIIIB", plain[pos:end]
        ):
            entries[bid.hex()] = Loc(packs[pack][0], packs[pack][1], btype, offset, length, raw)
        n_bases, table_at = 0, end
        if version == 2:  # n_bases u64, then the table of (delta id, base id)
            n_bases, table_at = struct.unpack_from("<Q", plain, end)[0], end + 8
        if len(plain) != table_at + 64 * n_bases:
            raise ValueError("index object of the wrong length")
        table = plain[table_at:]
        bases = {
            table[i : i + 32].hex(): table[i + 32 : i + 64].hex() for i in range(0, len(table), 64)
        }
        return supersedes, entries, bases

    def _load_index(self) -> tuple[dict[str, Loc], dict[str, str]]:
        objects = {
            name.split("/")[1]: self.parse_index(self.open_sealed(name, b"seawall index"))
            for name in self._names("index")
        }
        superseded = {old for sup, _e, _b in objects.values() for old in sup}
        index: dict[str, Loc] = {}
        bases: dict[str, str] = {}
        for index_id, (_sup, entries, obj_bases) in objects.items():
            if index_id not in superseded:
                for bid, loc in entries.items():
                    index.setdefault(bid, loc)
                bases.update(obj_bases)
        return index, bases

    def _open_blob(self, sealed: bytes, salt: bytes, btype: int, bid: str) -> bytes:
        """A blob's payload (AAD: its type and id), its flag checked against its type."""
        aad = bytes([btype]) + bytes.fromhex(bid)
        payload = self._object_key(salt).decrypt(sealed[:12], sealed[12:], aad)
        if (btype == 2) != (payload[0] == 3) or btype not in (0, 1, 2 if self.version > 1 else 1):
            raise ValueError(f"blob {bid}: type {btype} with payload flag {payload[0]}")
        return payload

    def index_from_pack_tails(self) -> tuple[dict[str, Loc], dict[str, str]]:
        """Recovery without the index (section 18): every pack's header, from its tail,
        and each delta blob's base, from its payload."""
        index: dict[str, Loc] = {}
        bases: dict[str, str] = {}
        for name in self._names("data"):
            pack = self._read_named(name)
            salt = pack[-20:-4]
            (sealed_len,) = struct.unpack("<I", pack[-4:])
            sealed = pack[-20 - sealed_len : -20]
            header = self._object_key(salt).decrypt(
                sealed[:12], sealed[12:], b"seawall pack header"
            )
            for btype, bid, offset, length, raw in struct.iter_unpack("<B32sIII", header):
                index[bid.hex()] = Loc(name.rsplit("/", 1)[1], salt, btype, offset, length, raw)
                if btype == 2:
                    payload = self._open_blob(pack[offset : offset + length], salt, 2, bid.hex())
                    bases[bid.hex()] = payload[1:33].hex()
        return index, bases

    # blobs, trees, snapshots

    def blob(self, bid: str, chain: int = 0) -> bytes:
        """A blob's plaintext; ``chain``: how many deltas led here."""
        loc = self.index[bid]
        with open(self.root / "data" / loc.pack[:2] / loc.pack, "rb") as f:
            f.seek(loc.offset)
            sealed = f.read(loc.length)
        payload = self._open_blob(sealed, loc.salt, loc.type, bid)
        if loc.type == 2 and self.bases.get(bid) != payload[1:33].hex():
            raise ValueError(f"blob {bid}: the index and the payload name different bases")
        plain = self._payload(payload, loc.raw_length, chain)
        if len(plain) != loc.raw_length or blake3.blake3(plain, key=self.id_key).hexdigest() != bid:
            raise ValueError(f"blob {bid} does not match its id")
        return plain

    def snapshots(self) -> list[dict[str, Any]]:
        snaps = []
        for name in self._names("snapshots"):
            doc = json.loads(self.open_sealed(name, b"seawall snapshot"))
            version, fields = doc["version"], set(doc)
            if version not in (1, 2, 3) or (version == 1 and fields & {"residency", "original"}):
                raise ValueError(f"{name}: unknown version, or fields its version lacks")
            if version < 3 and "asset" in fields:
                raise ValueError(f"{name}: an asset needs snapshot version 3")
            snaps.append(dict(doc, id=name.split("/")[1]))
        return sorted(snaps, key=lambda s: (s["time"], s["id"]))

    @staticmethod
    def _raw(node: dict[str, Any], key: str) -> bytes:
        if key + "_raw" in node:
            return base64.b64decode(node[key + "_raw"])
        value: str = node[key]
        return value.encode("utf-8")

    def walk(self, tree: str, prefix: bytes = b"") -> Iterator[tuple[bytes, dict[str, Any]]]:
        for node in json.loads(self.blob(tree))["nodes"]:
            name = self._raw(node, "name")
            assert name not in (b"", b".", b"..") and b"/" not in name
            path = prefix + b"/" + name
            yield path, node
            if node["type"] == "dir":
                yield from self.walk(node["subtree"], path)

    def contents(self, snapshot: dict[str, Any]) -> dict[bytes, tuple[str, bytes, dict[str, Any]]]:
        """path -> (type, file bytes or symlink target, node)."""
        out: dict[bytes, tuple[str, bytes, dict[str, Any]]] = {}
        for path, node in self.walk(snapshot["tree"]):
            if node["type"] == "file":
                data = b"".join(self.blob(bid) for bid in node["content"])
                assert len(data) == node["size"]
                out[path] = ("file", data, node)
            elif node["type"] == "symlink":
                out[path] = ("symlink", self._raw(node, "target"), node)
            else:
                out[path] = ("dir", b"", node)
        return out


MANIFESTS: dict[str, dict[str, Any]] = {
    v: json.loads((path / "manifest.json").read_text()) for v, path in FROZEN.items()
}
each_frozen = pytest.mark.parametrize("frozen", sorted(FROZEN))


def _expected(snap: dict[str, Any]) -> dict[bytes, dict[str, Any]]:
    return {os.fsencode(e["path"]): e for e in snap["entries"]}


def _source(frozen: str, snap: dict[str, Any]) -> str:
    """Where a snapshot's recorded entries are: the source tree, or "" for a tree
    rooted at its entries (an asset's). frozen-v1 records one source for all."""
    source: str = snap.get("source", MANIFESTS[frozen]["source"])
    return source


def _reader(frozen: str) -> SpecReader:
    return SpecReader(FROZEN[frozen] / "repo", MANIFESTS[frozen]["password"])


@each_frozen
def test_spec_reader_reads_frozen_repository(frozen: str) -> None:
    reader = _reader(frozen)
    snaps = reader.snapshots()
    recorded_snaps = MANIFESTS[frozen]["snapshots"]
    assert [s["id"] for s in snaps] == [s["id"] for s in recorded_snaps]
    for snap, recorded in zip(snaps, recorded_snaps, strict=True):
        assert snap["tags"] == recorded["tags"] and snap["paths"] == recorded["paths"]
        assert snap["version"] == recorded.get("version", 1)
        assert snap.get("asset") == recorded.get("asset") and snap.get("residency") == recorded.get(
            "residency"
        )
        contents = reader.contents(snap)
        src = os.fsencode(_source(frozen, recorded))
        under = {p: c for p, c in contents.items() if p.startswith(src + b"/")}
        expected = _expected(recorded)
        assert set(under) == set(expected)
        for path, (kind, value, node) in under.items():
            e = expected[path]
            assert kind == e["type"], path
            assert f"{node['mode']:o}" == e["mode"] or kind == "symlink", path
            if kind == "file":
                assert hashlib.sha256(value).hexdigest() == e["sha256"], path
                assert node["mtime_ns"] == e["mtime_ns"]
            elif kind == "symlink":
                assert value == os.fsencode(e["target"]), path


@each_frozen
def test_spec_reader_rebuilds_index_from_pack_tails(frozen: str) -> None:
    reader = _reader(frozen)
    index, bases = reader.index_from_pack_tails()
    assert index == reader.index and bases == reader.bases
    assert len(bases) == MANIFESTS[frozen].get("delta_blobs", 0)


def test_spec_reader_decodes_every_version_2_payload() -> None:
    """frozen-v2 holds what version 2 adds (planes, deltas of deltas), and the spec
    reader decodes every blob of it, whichever way it was stored."""
    reader = _reader("v2")
    found: dict[str, int] = {}
    for bid, loc in reader.index.items():
        path = reader.root / "data" / loc.pack[:2] / loc.pack
        sealed = path.read_bytes()[loc.offset : loc.offset + loc.length]
        flag = reader._open_blob(sealed, loc.salt, loc.type, bid)[0]
        found[f"{loc.type},{flag}"] = found.get(f"{loc.type},{flag}", 0) + 1
        assert len(reader.blob(bid)) == loc.raw_length
    assert found == MANIFESTS["v2"]["payloads"] and {"0,2", "2,3"} <= set(found)

    def depth(bid: str) -> int:
        return 1 + depth(reader.bases[bid]) if bid in reader.bases else 0

    assert max(map(depth, reader.bases)) == MANIFESTS["v2"]["delta_chain_max"] >= 2


def test_spec_reader_refuses_delta_chains_longer_than_16(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """format.md 6.2: a chain of 16 deltas reads; the 17th is refused."""
    from seawall.repository import repo as repo_module
    from seawall.repository.pack import DATA
    from seawall.repository.repo import DeltaBase
    from tests.conftest import FAST_KDF

    # A writer that ignores the bounds (seawall writes 2 deep at most, and never a
    # chain it would refuse to read).
    monkeypatch.setattr(repo_module, "MAX_DELTA_DEPTH", 32)
    monkeypatch.setattr(repo_module, "MAX_READ_CHAIN", 32)
    repo = Repository.init(LocalStorage(tmp_path / "repo"), "pw", kdf=FAST_KDF)
    rng = np.random.default_rng(5)
    step = (rng.standard_normal(1024) * 0.05).astype(np.float32)
    datas, ids = [step.tobytes()], []
    writer = repo.writer()
    ids.append(writer.add(DATA, datas[0], width=4))
    for _ in range(17):
        step = (step + rng.standard_normal(1024).astype(np.float32) * 0.0005).astype(np.float32)
        datas.append(step.tobytes())
        ids.append(writer.add(DATA, datas[-1], width=4, base=DeltaBase(ids[-1], datas[-2])))
    writer.flush()
    writer.close()
    assert len(repo.index.bases) == 17  # every step stored as a delta of the one before
    reader = SpecReader(tmp_path / "repo", "pw")
    assert reader.blob(ids[16].hex()) == datas[16]
    with pytest.raises(ValueError, match="longer than 16"):
        reader.blob(ids[17].hex())


@pytest.mark.parametrize("case", FLOATS["cases"], ids=lambda c: c["name"])
def test_spec_reader_decodes_float_vectors(case: dict[str, Any]) -> None:
    """The spec reader's planes and deltas against docs/vectors/floats.json, and the
    malformed payloads format.md 6.1 and 6.2 tell readers to reject."""
    payload, plain = h(case["payload_hex"]), h(case["plaintext_hex"])
    n = len(plain)
    base = h(case["base_hex"]) if case["flag"] == compress.DELTA else None

    def decode(p: bytes, size: int) -> bytes:
        return SpecReader.planes(p, size) if base is None else SpecReader.delta(p, size, base)

    assert decode(payload, n) == plain
    head = 1
    if base is not None:
        head = 34
        assert payload[1:33] == h(case["base_id_hex"])
        for bad_base in (base[:-2], base + b"\0\0"):
            with pytest.raises(ValueError):
                SpecReader.delta(payload, n, bad_base)
        with pytest.raises(ValueError):
            SpecReader.delta(payload[:33] + b"\x07" + payload[34:], n, base)  # unknown op
    width = payload[head]
    bad = [
        payload + b"\0",  # bytes after the last plane
        payload[:-1],  # a plane running past the end
        payload[:head] + b"\x03" + payload[head + 1 :],  # width 3
        payload[: head + 1] + bytes([8 * width]) + payload[head + 2 :],  # rotate too far
        payload[: head + 2] + b"\x02" + payload[head + 3 :],  # plane mode 2
    ]
    for p in bad:
        with pytest.raises((ValueError, struct.error, zstandard.ZstdError)):
            decode(p, n)
    for size in (n + width, n - width, n + 1):  # the planes must give exactly raw_length
        with pytest.raises((ValueError, zstandard.ZstdError)):
            decode(payload, size)


@each_frozen
def test_spec_reader_rejects_wrong_password(frozen: str) -> None:
    with pytest.raises(ValueError, match="no key"):
        SpecReader(FROZEN[frozen] / "repo", "not the password")


# --- every later seawall reads the frozen repositories --------------------------------------------


@pytest.fixture
def frozen_copy(tmp_path: Path, frozen: str) -> Path:
    """A copy: taking locks writes into the repository, and the original is frozen."""
    dest = tmp_path / f"frozen-{frozen}"
    shutil.copytree(FROZEN[frozen] / "repo", dest, symlinks=True)
    return dest


def _restored(target: Path, source: str) -> dict[bytes, Path]:
    root = os.fsencode(target)
    out: dict[bytes, Path] = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(target / source.lstrip("/"))):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            out[full[len(root) :]] = Path(os.fsdecode(full))
    return out


def _assert_restored(target: Path, frozen: str, recorded: dict[str, Any]) -> None:
    expected = _expected(recorded)
    restored = _restored(target, _source(frozen, recorded))
    assert set(restored) == set(expected)
    for path, local in restored.items():
        e = expected[path]
        st = os.lstat(local)
        if e["type"] == "symlink":
            assert stat.S_ISLNK(st.st_mode) and os.readlink(local) == os.fsdecode(
                os.fsencode(e["target"])
            ), path
        elif e["type"] == "dir":
            assert stat.S_ISDIR(st.st_mode) and f"{stat.S_IMODE(st.st_mode):o}" == e["mode"], path
        else:
            assert stat.S_ISREG(st.st_mode), path
            assert hashlib.sha256(local.read_bytes()).hexdigest() == e["sha256"], path
            assert f"{stat.S_IMODE(st.st_mode):o}" == e["mode"], path
            assert st.st_mtime_ns == e["mtime_ns"], path


@each_frozen
def test_frozen_still_reads(frozen: str, frozen_copy: Path, tmp_path: Path) -> None:
    manifest = MANIFESTS[frozen]
    repo = Repository.open(LocalStorage(frozen_copy), manifest["password"])
    assert repo.config.version == manifest["format_version"] == int(frozen[1:])
    snaps = repo.list_snapshots()
    assert [s.id.hex() for s in snaps] == [s["id"] for s in manifest["snapshots"]]
    assert [s.tags for s in snaps] == [s["tags"] for s in manifest["snapshots"]]
    assert [s.asset or None for s in snaps] == [s.get("asset") for s in manifest["snapshots"]]
    for snap, recorded in zip(snaps, manifest["snapshots"], strict=True):
        target = tmp_path / f"restore-{snap.short_id}"
        restore(repo, snap, target)
        _assert_restored(target, frozen, recorded)
    result = check(repo, read_data=True)
    assert result.ok, result.errors
    assert not result.warnings
    assert result.snapshots == len(snaps)
    assert result.packs == len(list((frozen_copy / "data").rglob("*/*")))


@each_frozen
def test_frozen_matches_spec_reader(frozen: str, frozen_copy: Path, tmp_path: Path) -> None:
    """seawall's restore and the spec-only reader give the same bytes."""
    repo = Repository.open(LocalStorage(frozen_copy), MANIFESTS[frozen]["password"])
    reader = _reader(frozen)
    for snap, recorded in zip(repo.list_snapshots(), MANIFESTS[frozen]["snapshots"], strict=True):
        out = tmp_path / f"out-{snap.short_id}"
        restore(repo, snap, out)
        contents = reader.contents(next(s for s in reader.snapshots() if s["id"] == snap.id.hex()))
        restored = _restored(out, _source(frozen, recorded))
        assert restored
        for path, local in restored.items():
            kind, value, _node = contents[path]
            if kind == "file":
                assert local.read_bytes() == value
            elif kind == "symlink":
                assert os.fsencode(os.readlink(local)) == value


@each_frozen
def test_frozen_restores_without_its_index(frozen: str, frozen_copy: Path, tmp_path: Path) -> None:
    """Recovery without the index: delete every index object, rebuild from pack tails
    (with the bases of the delta blobs, from their payloads)."""
    manifest = MANIFESTS[frozen]
    for obj in (frozen_copy / "index").iterdir():
        obj.unlink()
    repo = Repository.open(LocalStorage(frozen_copy), manifest["password"])
    repo.load_index()
    assert repo.sync_index_with_packs() == len(list((frozen_copy / "data").rglob("*/*")))
    assert len(repo.index.bases) == manifest.get("delta_blobs", 0)
    for snap, recorded in zip(repo.list_snapshots(), manifest["snapshots"], strict=True):
        restore(repo, snap, tmp_path / snap.short_id)
        _assert_restored(tmp_path / snap.short_id, frozen, recorded)
    assert check(repo, read_data=True).ok


@each_frozen
def test_frozen_readme_records_the_manifest(frozen: str) -> None:
    readme = (FROZEN[frozen] / "README.md").read_text()
    manifest = MANIFESTS[frozen]
    assert manifest["password"] in readme
    for snap in manifest["snapshots"]:
        assert snap["id"] in readme
        for e in snap["entries"]:
            if e["type"] == "file":
                assert e["sha256"] in readme


@each_frozen
def test_frozen_objects_match_their_names(frozen: str) -> None:
    """Nobody edited the frozen repository: every object still hashes to its name."""
    root = FROZEN[frozen] / "repo"
    for folder in ("keys", "data", "index", "snapshots"):
        for path in (root / folder).rglob("*"):
            if path.is_file():
                assert blake3.blake3(path.read_bytes()).hexdigest() == path.name, path
    version = RepoConfig.from_bytes((root / "config").read_bytes()).version
    assert version == MANIFESTS[frozen]["format_version"]


def test_node_json_roundtrip_preserves_raw_names() -> None:
    node = Node(name=b"\xff\x00x", type="symlink", target=b"\xfe/\x80")
    doc = node.to_json()
    assert set(doc) >= {"name_raw", "target_raw"} and "name" not in doc
    assert Node.from_json(doc) == node


# --- robustness the spec requires of readers ------------------------------------------------------


def test_unreadable_lock_counts_as_stale() -> None:
    """format.md 13: a lock that cannot be read is stale, so junk cannot lock users out."""
    from seawall.repository.lock import Lock, list_locks, remove_locks

    repo = vector_repo()
    junk = b"not a sealed lock"
    repo.storage.put(f"locks/{storage_id(junk).hex()}", junk)
    sealed_junk = seal_object(ENC_KEY, compress.encode(b"[1, 2]"), b"seawall lock")
    repo.storage.put(f"locks/{storage_id(sealed_junk).hex()}", sealed_junk)
    assert all(info.is_stale() for info in list_locks(repo))
    with Lock(repo, exclusive=True):
        pass
    assert len(remove_locks(repo)) == 2
    assert list(repo.storage.list("locks/")) == []


def test_unreadable_or_unknown_key_files_are_skipped() -> None:
    """format.md 4.2: a key file that does not parse, or of an unknown version or KDF,
    is skipped; it does not stop the other keys from opening."""
    storage = MemoryStorage()
    storage.put("config", RepoConfig(id=KEY["repository_id"]).to_bytes())
    newer = dict(json.loads(KEY["key_file"]), version=2)
    scrypt = json.loads(KEY["key_file"])
    scrypt["kdf"]["algorithm"] = "scrypt"
    for data in (b"{}", b"not json", json.dumps(newer).encode(), json.dumps(scrypt).encode()):
        storage.put(f"keys/{storage_id(data).hex()}", data)
    storage.put(f"keys/{KEY['key_id_hex']}", KEY["key_file"].encode())
    repo = Repository.open(storage, KEY["password"])
    assert repo.key.secret.hex() == KEY["master_secret_hex"]
    assert repo.key_id == KEY["key_id_hex"]


def test_snapshot_of_unknown_version_is_rejected() -> None:
    plain = json.loads(h(SEALED["objects"][0]["plaintext_hex"]))
    with pytest.raises(FormatError, match="version"):
        Snapshot.from_bytes(json.dumps(dict(plain, version=4)).encode(), b"\1" * 32)


def test_names_that_are_not_ids_are_ignored() -> None:
    """format.md 2: names under index/, snapshots/, locks/ that are not 64 hex digits."""
    storage = MemoryStorage()
    for name in ("index/ab", "index/README", "snapshots/00", "locks/zz"):
        storage.put(name, b"stray")
    repo = vector_repo(storage)
    assert repo.load_index() == []
    assert repo.list_snapshots() == []
    assert repo.list_ids("index") == []


def test_index_records_in_any_order() -> None:
    """format.md 9: writers sort records by id; readers must not rely on it."""
    obj = IndexObject.decode(h(INDEX["plaintext_hex"]))
    ids = [bytes(e["id"]).ljust(32, b"\0") for e in obj.entries]
    assert ids == sorted(ids)
    shuffled = IndexObject(obj.packs, obj.entries[::-1].copy(), obj.supersedes)
    plain = h(INDEX["plaintext_hex"])
    head = len(plain) - 49 * len(ids)
    unsorted = plain[:head] + shuffled.entries.tobytes()  # as an older writer stored them
    master = MasterIndex()
    master.add_index(None, IndexObject.decode(unsorted))
    for e in INDEX["entries"]:
        loc = master.lookup(h(e["id_hex"]))
        assert loc is not None and loc.offset == e["offset"]
    assert shuffled.encode() == plain  # the writer sorts
