"""Pack files: many encrypted blobs in one storage object.

Layout (all integers little-endian)::

    blob_0 ... blob_n-1            each nonce[12] || ciphertext || tag[16]
    header                         nonce[12] || ciphertext || tag[16]
    salt[16]                       per-pack salt: the pack's AES key is derived from it
    header_length u32              length of the sealed header

The header plaintext is ``n`` records of 45 bytes: type u8, blob id [32],
offset u32 (from the start of the pack), length u32 (sealed length),
raw_length u32 (length of the blob's plaintext). Blob i's associated data is
``type || id``; the header's is ``b"seawall pack header"``. A pack is named by
the BLAKE3 hash of its bytes. The header lets the index be rebuilt from the
packs alone, with one read of each pack's tail; the index also records each
pack's salt, so reading one blob is one ranged read.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from seawall.codec import compress
from seawall.codec.crypto import OVERHEAD, Sealer
from seawall.codec.ids import storage_id
from seawall.errors import FormatError

DATA = 0
TREE = 1
#: data stored as a delta against another data blob, its base (format version 2)
DELTA = 2
BLOB_TYPES = {DATA: "data", TREE: "tree", DELTA: "delta"}

HEADER_AAD = b"seawall pack header"
_RECORD = struct.Struct("<B32sIII")
_TRAILER = struct.Struct("<16sI")
TRAILER_SIZE = _TRAILER.size
#: The most a pack header may claim to be, to bound reads of garbage.
MAX_HEADER = 64 * 1024 * 1024


@dataclass(frozen=True)
class PackedBlob:
    type: int
    id: bytes
    offset: int
    length: int
    raw_length: int
    #: a DELTA blob's base id, when known (not in the pack header: in the payload)
    base: bytes = b""


def blob_aad(blob_type: int, blob_id: bytes) -> bytes:
    return bytes([blob_type]) + blob_id


def pack_name(pack_id: bytes) -> str:
    h = pack_id.hex()
    return f"data/{h[:2]}/{h}"


class PackBuilder:
    """Accumulates sealed blobs; ``finish`` returns the pack's id and bytes.

    Not thread-safe: each writer thread owns its builders.
    """

    def __init__(self, encryption_key: bytes) -> None:
        self.sealer = Sealer.fresh(encryption_key)
        self._buf = bytearray()
        self.blobs: list[PackedBlob] = []

    @property
    def size(self) -> int:
        return len(self._buf)

    def add(
        self,
        blob_type: int,
        blob_id: bytes,
        data: bytes | memoryview,
        payload: bytes | None = None,
    ) -> PackedBlob:
        """Seal ``data`` (or its ``payload``, already encoded) into the pack."""
        if payload is None:
            payload = compress.encode(data)
        sealed = self.sealer.seal(payload, blob_aad(blob_type, blob_id))
        base = compress.delta_base(payload) or b""
        if (blob_type == DELTA) != bool(base):
            raise FormatError("a delta payload must be stored as a delta blob, and only it")
        blob = PackedBlob(blob_type, blob_id, len(self._buf), len(sealed), len(data), base)
        self._buf += sealed
        self.blobs.append(blob)
        return blob

    @property
    def salt(self) -> bytes:
        return self.sealer.salt

    def finish(self) -> tuple[bytes, bytes]:
        header = b"".join(
            _RECORD.pack(b.type, b.id, b.offset, b.length, b.raw_length) for b in self.blobs
        )
        sealed = self.sealer.seal(header, HEADER_AAD)
        self._buf += sealed + _TRAILER.pack(self.sealer.salt, len(sealed))
        data = bytes(self._buf)
        self._buf = bytearray()
        return storage_id(data), data


def open_payload(
    sealer: Sealer,
    blob: PackedBlob,
    sealed: bytes | memoryview,
    what: str,
    scratch: bytearray | None = None,
) -> bytes | memoryview:
    """Decrypt one blob's payload (raises IntegrityError if it was tampered with).

    With ``scratch`` (at least the payload's size), it decrypts into it and
    returns a view of it, valid until ``scratch`` is reused.
    """
    aad = blob_aad(blob.type, blob.id)
    if scratch is not None and len(sealed) - OVERHEAD <= len(scratch):
        return sealer.open_into(sealed, aad, what, scratch)
    return sealer.open(sealed, aad, what)


def open_blob(
    sealer: Sealer,
    blob: PackedBlob,
    sealed: bytes | memoryview,
    what: str,
    scratch: bytearray | None = None,
    load_base: Callable[[bytes], bytes] | None = None,
) -> bytes | memoryview:
    """Decrypt and decode one blob (raises IntegrityError if it was tampered with).

    A DELTA blob's base is read with ``load_base(base_id)``. With ``scratch``,
    the result may be a view of it, valid until ``scratch`` is reused.
    """
    payload = open_payload(sealer, blob, sealed, what, scratch)
    try:
        base_id = compress.delta_base(payload)
    except ValueError as err:
        raise FormatError(f"{what}: {err}") from None
    if (blob.type == DELTA) != (base_id is not None):
        raise FormatError(f"{what}: its payload does not match its type {blob.type}")
    base = None
    if base_id is not None:
        if load_base is None:
            raise FormatError(f"{what} is a delta, and its base cannot be read here")
        base = load_base(base_id)
    try:
        data = compress.decode(payload, blob.raw_length, base)
    except Exception as err:  # zstd raises its own error types
        raise FormatError(f"{what} does not decompress: {err}") from None
    if len(data) != blob.raw_length:
        raise FormatError(f"{what} has {len(data)} bytes, the index says {blob.raw_length}")
    return data


def parse_tail(
    encryption_key: bytes, tail: bytes, pack_size: int
) -> tuple[bytes, list[PackedBlob]]:
    """The salt and the blobs listed in a pack's header. ``tail`` is the end of
    the pack and must hold the whole header (see :func:`tail_length`)."""
    if len(tail) < TRAILER_SIZE:
        raise FormatError("pack is too short to hold a header")
    salt, sealed_len = _TRAILER.unpack(tail[-TRAILER_SIZE:])
    end = len(tail) - TRAILER_SIZE
    sealed = tail[end - sealed_len : end]
    if sealed_len > end or sealed_len + TRAILER_SIZE > pack_size:
        raise FormatError("pack header length is out of range")
    plain = Sealer(encryption_key, salt).open(sealed, HEADER_AAD, "pack header")
    if len(plain) % _RECORD.size:
        raise FormatError("pack header has a partial record")
    data_end = pack_size - sealed_len - TRAILER_SIZE
    blobs = []
    for rec in _RECORD.iter_unpack(plain):
        blob = PackedBlob(*rec)
        if blob.offset + blob.length > data_end or blob.length < OVERHEAD:
            raise FormatError("pack header lists a blob outside the pack")
        blobs.append(blob)
    return salt, blobs


def tail_length(trailer: bytes) -> int:
    """How many bytes at the end of a pack hold its header, from its last 20."""
    _salt, value = _TRAILER.unpack(trailer[-TRAILER_SIZE:])
    if value > MAX_HEADER:
        raise FormatError("pack header length is out of range")
    return int(value) + TRAILER_SIZE
