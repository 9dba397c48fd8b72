"""Identifiers.

- A blob id is the keyed BLAKE3 hash of the blob's plaintext under the
  repository's id key: equal content gives equal ids (deduplication), but
  without the key an id reveals nothing about the content.
- A storage id (the name of a pack, index or snapshot object) is the plain
  BLAKE3 hash of the object's stored (encrypted) bytes, so anyone can check
  an object against its name without a key.
"""

from __future__ import annotations

import blake3

ID_SIZE = 32


def blob_id(id_key: bytes, data: bytes | memoryview) -> bytes:
    return blake3.blake3(data, key=id_key).digest()


def storage_id(data: bytes | memoryview) -> bytes:
    return blake3.blake3(data).digest()


def parse_hex_id(text: str) -> bytes:
    raw = bytes.fromhex(text)
    if len(raw) != ID_SIZE:
        raise ValueError(f"an id is {ID_SIZE * 2} hex digits, got {len(text)}")
    return raw
