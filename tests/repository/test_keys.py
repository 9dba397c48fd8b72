"""Key files: the master secret wrapped under a password with Argon2id."""

from __future__ import annotations

import base64
import json

import pytest

from seawall.codec.crypto import MasterKey
from seawall.codec.ids import storage_id
from seawall.errors import FormatError
from seawall.repository.keys import KdfParams, make_key_file, open_key_file, parse_key_file
from seawall.repository.repo import Repository
from seawall.storage import MemoryStorage
from tests.conftest import FAST_KDF, PASSWORD

MASTER = MasterKey(bytes(range(100, 132)))
REPO_ID = "ab" * 32


@pytest.fixture(scope="module")
def key_file() -> bytes:
    return make_key_file(MASTER, "hunter2", REPO_ID, FAST_KDF)


def edit(data: bytes, change: dict[str, object], kdf: dict[str, object] | None = None) -> bytes:
    doc = json.loads(data)
    doc.update(change)
    doc["kdf"].update(kdf or {})
    return json.dumps(doc).encode()


def test_right_password_opens(key_file: bytes) -> None:
    key = open_key_file(key_file, "k", "hunter2", REPO_ID)
    assert key is not None
    assert key.secret == MASTER.secret


@pytest.mark.parametrize("password", ["hunter3", "", "Hunter2", "hunter2 "])
def test_wrong_password_gives_none(key_file: bytes, password: str) -> None:
    assert open_key_file(key_file, "k", password, REPO_ID) is None


def test_key_is_bound_to_its_repository(key_file: bytes) -> None:
    assert open_key_file(key_file, "k", "hunter2", "cd" * 32) is None


@pytest.mark.parametrize(
    "kdf",
    [
        {"time_cost": FAST_KDF.time_cost + 1},  # any change to the cost...
        {"memory_cost_kib": FAST_KDF.memory_cost_kib * 2},
        {"parallelism": 2},
        {"salt": base64.b64encode(b"\x00" * 16).decode()},
    ],
)
def test_tampered_kdf_params_fail(key_file: bytes, kdf: dict[str, object]) -> None:
    assert open_key_file(edit(key_file, {}, kdf), "k", "hunter2", REPO_ID) is None


def test_lowered_cost_fails() -> None:
    """An attacker who lowers the KDF cost to speed up guessing breaks the key."""
    strong = KdfParams(time_cost=3, memory_cost_kib=2048, parallelism=1)
    data = make_key_file(MASTER, "hunter2", REPO_ID, strong)
    assert open_key_file(data, "k", "hunter2", REPO_ID) is not None
    weakened = edit(data, {}, {"time_cost": 1, "memory_cost_kib": 1024})
    assert open_key_file(weakened, "k", "hunter2", REPO_ID) is None


def test_tampered_wrapped_key_fails(key_file: bytes) -> None:
    doc = json.loads(key_file)
    raw = bytearray(base64.b64decode(doc["data"]))
    raw[-1] ^= 1
    doc["data"] = base64.b64encode(bytes(raw)).decode()
    assert open_key_file(json.dumps(doc).encode(), "k", "hunter2", REPO_ID) is None


def test_key_file_holds_no_secret(key_file: bytes) -> None:
    text = key_file.decode()
    for secret in (MASTER.secret, MASTER.encryption_key, MASTER.id_key):
        assert secret.hex() not in text
        assert base64.b64encode(secret).decode() not in text
    info, params, salt, _sealed = parse_key_file(key_file, "kid")
    assert info.id == "kid"
    assert params == FAST_KDF
    assert len(salt) == 16


def test_each_key_file_is_salted(key_file: bytes) -> None:
    again = make_key_file(MASTER, "hunter2", REPO_ID, FAST_KDF)
    assert json.loads(again)["kdf"]["salt"] != json.loads(key_file)["kdf"]["salt"]
    assert json.loads(again)["data"] != json.loads(key_file)["data"]


@pytest.mark.parametrize(
    "bad",
    [
        b"not json",
        b"{}",
        b'{"version": 1, "kdf": {"algorithm": "scrypt"}}',
        b"[1, 2]",
    ],
)
def test_malformed_key_file_is_a_format_error(bad: bytes) -> None:
    with pytest.raises(FormatError):
        open_key_file(bad, "k", "hunter2", REPO_ID)


def test_unknown_kdf_is_a_format_error(key_file: bytes) -> None:
    with pytest.raises(FormatError, match="KDF"):
        open_key_file(edit(key_file, {}, {"algorithm": "pbkdf2"}), "k", "hunter2", REPO_ID)


def test_a_planted_key_file_with_an_absurd_kdf_cost_is_ignored() -> None:
    """An attacker with write access cannot make every open allocate terabytes."""
    storage = MemoryStorage()
    repo = Repository.init(storage, PASSWORD, kdf=FAST_KDF)
    doc = json.loads(storage.get(f"keys/{repo.key_id}"))
    doc["kdf"]["memory_cost_kib"] = 2**40
    planted = json.dumps(doc).encode()
    storage.put(f"keys/{storage_id(planted).hex()}", planted)
    assert Repository.open(storage, PASSWORD).key_id == repo.key_id
