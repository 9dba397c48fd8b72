"""Key files: the master secret wrapped under a password.

A key file is JSON; its ``data`` field is the 32-byte master secret sealed
with AES-256-GCM under a key derived from the password by Argon2id. The
associated data binds the repository id and the KDF parameters, so a key
file cannot be moved to another repository or have its cost lowered.
Several key files may wrap the same master secret (several passwords);
changing a password writes a new key file and rewrites no data.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from seawall.codec.crypto import NONCE_SIZE, MasterKey
from seawall.codec.ids import storage_id
from seawall.errors import (
    FormatError,
    IntegrityError,
    ObjectNotFound,
    RepositoryNotFound,
    WrongPassword,
)
from seawall.repository.config import CONFIG_NAME, RepoConfig
from seawall.storage import Storage


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost. The default takes about 0.1 s and 64 MiB."""

    time_cost: int = 3
    memory_cost_kib: int = 64 * 1024
    parallelism: int = 2

    def within_bounds(self) -> bool:
        """Whether the cost is one seawall would ever write (at most 4 GiB, 64 passes, 64 lanes)."""
        return (
            1 <= self.time_cost <= 64
            and 8 <= self.memory_cost_kib <= 4 * 1024 * 1024
            and 1 <= self.parallelism <= 64
        )

    def derive(self, password: str, salt: bytes) -> bytes:
        return hash_secret_raw(
            password.encode(),
            salt,
            time_cost=self.time_cost,
            memory_cost=self.memory_cost_kib,
            parallelism=self.parallelism,
            hash_len=32,
            type=Type.ID,
        )


@dataclass(frozen=True)
class KeyInfo:
    id: str
    created: str
    hostname: str
    username: str


def _aad(repo_id: str, params: KdfParams, salt: bytes) -> bytes:
    return (
        f"seawall key v1|{repo_id}|argon2id|{params.time_cost}|"
        f"{params.memory_cost_kib}|{params.parallelism}|"
    ).encode() + salt


def make_key_file(master: MasterKey, password: str, repo_id: str, params: KdfParams) -> bytes:
    salt = os.urandom(16)
    nonce = os.urandom(NONCE_SIZE)
    wrapped = AESGCM(params.derive(password, salt)).encrypt(
        nonce, master.secret, _aad(repo_id, params, salt)
    )
    doc = {
        "version": 1,
        "created": datetime.now(UTC).isoformat(),
        "hostname": socket.gethostname(),
        "username": getpass.getuser(),
        "kdf": {
            "algorithm": "argon2id",
            "time_cost": params.time_cost,
            "memory_cost_kib": params.memory_cost_kib,
            "parallelism": params.parallelism,
            "salt": base64.b64encode(salt).decode(),
        },
        "data": base64.b64encode(nonce + wrapped).decode(),
    }
    return json.dumps(doc, indent=2).encode() + b"\n"


def parse_key_file(data: bytes, key_id: str) -> tuple[KeyInfo, KdfParams, bytes, bytes]:
    try:
        doc = json.loads(data)
        if doc["version"] != 1:
            raise FormatError(f"key {key_id} has version {doc['version']!r}; this seawall reads 1")
        kdf = doc["kdf"]
        if kdf["algorithm"] != "argon2id":
            raise FormatError(f"key {key_id} uses unsupported KDF {kdf['algorithm']!r}")
        params = KdfParams(
            int(kdf["time_cost"]), int(kdf["memory_cost_kib"]), int(kdf["parallelism"])
        )
        if not params.within_bounds():
            # A planted key file must not make every open allocate or spin without end.
            raise FormatError(f"key {key_id} asks for an unreasonable Argon2 cost; it is ignored")
        info = KeyInfo(key_id, str(doc["created"]), str(doc["hostname"]), str(doc["username"]))
        return info, params, base64.b64decode(kdf["salt"]), base64.b64decode(doc["data"])
    except (ValueError, KeyError, TypeError) as err:
        raise FormatError(f"key file {key_id} is malformed: {err}") from None


def open_key_file(data: bytes, key_id: str, password: str, repo_id: str) -> MasterKey | None:
    """The master key if ``password`` opens this key file, else None."""
    _info, params, salt, sealed = parse_key_file(data, key_id)
    try:
        secret = AESGCM(params.derive(password, salt)).decrypt(
            sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], _aad(repo_id, params, salt)
        )
    except InvalidTag:
        return None
    if len(secret) != 32:
        raise IntegrityError(f"key file {key_id} holds a malformed master key")
    return MasterKey(secret)


def unlock(
    storage: Storage, password: str, notes: list[str] | None = None
) -> tuple[RepoConfig, MasterKey, str]:
    """The config, the master key and the id of the key file ``password`` opens.

    Light on imports on purpose (no numpy): the CLI runs it in a thread, so
    the Argon2 work overlaps the import of the rest of seawall.

    When the config or the keys cannot be read or opened and the store keeps
    retained versions (Object Lock), the newest versions that do are used,
    and a warning per object read so is appended to ``notes``.
    """
    try:
        return _unlock(storage, password)
    except (RepositoryNotFound, WrongPassword, FormatError):
        from seawall.repository.versions import unlock_from_versions

        found = unlock_from_versions(storage, password)
        if found is None:
            raise
        config, key, key_id, found_notes = found
        if notes is not None:
            notes.extend(found_notes)
        return config, key, key_id


def _unlock(storage: Storage, password: str) -> tuple[RepoConfig, MasterKey, str]:
    try:
        config = RepoConfig.from_bytes(storage.get(CONFIG_NAME))
    except ObjectNotFound:
        raise RepositoryNotFound(
            f"there is no seawall repository at {storage.location}; "
            "check the location, or create one with `seawall init`"
        ) from None
    key_ids = [info.name.split("/", 1)[1] for info in storage.list("keys/")]
    if not key_ids:
        raise FormatError(f"the repository at {storage.location} has no keys")
    for key_id in key_ids:
        try:
            data = storage.get(f"keys/{key_id}")
        except ObjectNotFound:
            continue
        if storage_id(data).hex() != key_id:
            continue  # a damaged key file cannot open anything
        try:
            key = open_key_file(data, key_id, password, config.id)
        except FormatError:
            continue  # malformed, or of a kind this version does not know: try the others
        if key is not None:
            return config, key, key_id
    raise WrongPassword(
        f"no key of the repository at {storage.location} opens with that password; "
        "check SEAWALL_PASSWORD / --password-file"
    )
