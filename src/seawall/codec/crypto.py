"""Keys and authenticated encryption (AES-256-GCM).

Invariants:
- All subkeys derive from one 32-byte master secret with BLAKE3's key
  derivation mode and fixed context strings, so a key file only ever wraps
  that one secret.
- Each sealed object (a pack, an index, a snapshot, a lock) starts with a
  random 16-byte salt; its AES key is ``BLAKE3-keyed(encryption_key, salt)``.
  Nonces (96-bit, random) therefore repeat under one AES key only within one
  object, which keeps GCM far below its random-nonce limits however large the
  repository grows.
- Associated data binds every ciphertext to what it is (object kind, blob id),
  so a valid ciphertext cannot be replayed as something else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from seawall.errors import IntegrityError

SALT_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16
#: Bytes a sealed message adds to its plaintext.
OVERHEAD = NONCE_SIZE + TAG_SIZE

_CONTEXT_ENCRYPTION = "seawall 2026-11-24 encryption key"
_CONTEXT_ID = "seawall 2026-11-24 blob id key"
_CONTEXT_CHUNKER = "seawall 2026-11-24 chunker seed"


def _derive(context: str, secret: bytes) -> bytes:
    return blake3.blake3(secret, derive_key_context=context).digest()


@dataclass(frozen=True, repr=False)
class MasterKey:
    """The repository's secret. ``repr`` never shows key material."""

    secret: bytes

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(32))

    @property
    def encryption_key(self) -> bytes:
        return _derive(_CONTEXT_ENCRYPTION, self.secret)

    @property
    def id_key(self) -> bytes:
        return _derive(_CONTEXT_ID, self.secret)

    @property
    def chunker_seed(self) -> int:
        # pyfastcdc shifts the seed left by one bit inside a uint64: keep 62 bits.
        return int.from_bytes(_derive(_CONTEXT_CHUNKER, self.secret)[:8], "little") & (2**62 - 1)

    def __repr__(self) -> str:
        return "MasterKey(<secret>)"


class Sealer:
    """AES-256-GCM for the messages of one object (one salt)."""

    def __init__(self, encryption_key: bytes, salt: bytes) -> None:
        if len(salt) != SALT_SIZE:
            raise ValueError("salt must be 16 bytes")
        self.salt = salt
        self._aead = AESGCM(blake3.blake3(salt, key=encryption_key).digest())

    @classmethod
    def fresh(cls, encryption_key: bytes) -> Sealer:
        return cls(encryption_key, os.urandom(SALT_SIZE))

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """Return ``nonce || ciphertext || tag``."""
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes | memoryview, aad: bytes, what: str) -> bytes:
        if len(sealed) < OVERHEAD:
            raise IntegrityError(f"{what} is truncated")
        view = memoryview(sealed)
        try:
            return self._aead.decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], aad)
        except InvalidTag:
            raise _tampered(what) from None

    def open_into(
        self, sealed: bytes | memoryview, aad: bytes, what: str, scratch: bytearray
    ) -> memoryview:
        """Like :meth:`open`, decrypting into ``scratch`` (no allocation); the
        returned view is valid until ``scratch`` is reused."""
        if len(sealed) < OVERHEAD:
            raise IntegrityError(f"{what} is truncated")
        view = memoryview(sealed)
        out = memoryview(scratch)[: len(sealed) - OVERHEAD]
        try:
            self._aead.decrypt_into(view[:NONCE_SIZE], view[NONCE_SIZE:], aad, out)
        except InvalidTag:
            raise _tampered(what) from None
        return out


def _tampered(what: str) -> IntegrityError:
    return IntegrityError(f"{what} failed authentication: it was corrupted or tampered with")


def seal_object(encryption_key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """A standalone sealed object: ``salt || nonce || ciphertext || tag``."""
    sealer = Sealer.fresh(encryption_key)
    return sealer.salt + sealer.seal(plaintext, aad)


def open_object(encryption_key: bytes, data: bytes, aad: bytes, what: str) -> bytes:
    if len(data) < SALT_SIZE + OVERHEAD:
        raise IntegrityError(f"{what} is truncated")
    return Sealer(encryption_key, data[:SALT_SIZE]).open(memoryview(data)[SALT_SIZE:], aad, what)
