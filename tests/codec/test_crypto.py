"""AES-256-GCM sealing: round trips, and any change to a sealed message is caught."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.codec.crypto import (
    OVERHEAD,
    SALT_SIZE,
    MasterKey,
    Sealer,
    open_object,
    seal_object,
)
from seawall.errors import IntegrityError

KEY = MasterKey(bytes(range(32))).encryption_key
SETTINGS = settings(max_examples=60, deadline=None)

payloads = st.binary(max_size=2048)
aads = st.binary(max_size=64)


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@SETTINGS
@given(plaintext=payloads, aad=aads)
def test_seal_open_round_trip(plaintext: bytes, aad: bytes) -> None:
    sealer = Sealer.fresh(KEY)
    sealed = sealer.seal(plaintext, aad)
    assert len(sealed) == len(plaintext) + OVERHEAD
    assert sealer.open(sealed, aad, "msg") == plaintext
    # Another Sealer with the same salt (a reader) opens it too.
    assert Sealer(KEY, sealer.salt).open(memoryview(sealed), aad, "msg") == plaintext


@SETTINGS
@given(plaintext=payloads, aad=aads, data=st.data())
def test_any_flipped_bit_is_detected(plaintext: bytes, aad: bytes, data: st.DataObject) -> None:
    sealer = Sealer.fresh(KEY)
    sealed = sealer.seal(plaintext, aad)
    bit = data.draw(st.integers(0, len(sealed) * 8 - 1), label="bit")
    with pytest.raises(IntegrityError, match="msg"):
        sealer.open(flip_bit(sealed, bit), aad, "msg")


@SETTINGS
@given(plaintext=payloads, aad=aads, data=st.data())
def test_any_replaced_byte_is_detected(plaintext: bytes, aad: bytes, data: st.DataObject) -> None:
    sealer = Sealer.fresh(KEY)
    sealed = bytearray(sealer.seal(plaintext, aad))
    pos = data.draw(st.integers(0, len(sealed) - 1), label="pos")
    value = data.draw(st.integers(0, 255).filter(lambda v: v != sealed[pos]), label="value")
    sealed[pos] = value
    with pytest.raises(IntegrityError):
        sealer.open(bytes(sealed), aad, "msg")


@SETTINGS
@given(plaintext=payloads, aad=aads, other=aads)
def test_changed_aad_is_detected(plaintext: bytes, aad: bytes, other: bytes) -> None:
    if other == aad:
        other = aad + b"\x00"
    sealer = Sealer.fresh(KEY)
    sealed = sealer.seal(plaintext, aad)
    with pytest.raises(IntegrityError):
        sealer.open(sealed, other, "msg")


@SETTINGS
@given(plaintext=payloads, aad=aads, cut=st.integers(1, 64))
def test_truncated_message_is_detected(plaintext: bytes, aad: bytes, cut: int) -> None:
    sealer = Sealer.fresh(KEY)
    sealed = sealer.seal(plaintext, aad)
    with pytest.raises(IntegrityError):
        sealer.open(sealed[: max(0, len(sealed) - cut)], aad, "msg")


def test_wrong_key_or_salt_is_detected() -> None:
    sealer = Sealer.fresh(KEY)
    sealed = sealer.seal(b"secret", b"aad")
    other_key = MasterKey.generate().encryption_key
    with pytest.raises(IntegrityError):
        Sealer(other_key, sealer.salt).open(sealed, b"aad", "msg")
    with pytest.raises(IntegrityError):
        Sealer(KEY, os.urandom(SALT_SIZE)).open(sealed, b"aad", "msg")
    with pytest.raises(ValueError):
        Sealer(KEY, b"short")


def test_sealing_is_randomized() -> None:
    sealer = Sealer.fresh(KEY)
    assert sealer.seal(b"same", b"") != sealer.seal(b"same", b"")
    assert seal_object(KEY, b"same", b"") != seal_object(KEY, b"same", b"")


@SETTINGS
@given(plaintext=payloads, aad=aads)
def test_object_round_trip(plaintext: bytes, aad: bytes) -> None:
    sealed = seal_object(KEY, plaintext, aad)
    assert len(sealed) == SALT_SIZE + OVERHEAD + len(plaintext)
    assert open_object(KEY, sealed, aad, "obj") == plaintext
    if plaintext:
        assert plaintext not in sealed or len(plaintext) < 4


@SETTINGS
@given(plaintext=payloads, aad=aads, data=st.data())
def test_object_any_flipped_bit_is_detected(
    plaintext: bytes, aad: bytes, data: st.DataObject
) -> None:
    sealed = seal_object(KEY, plaintext, aad)
    bit = data.draw(st.integers(0, len(sealed) * 8 - 1), label="bit")  # salt included
    with pytest.raises(IntegrityError, match="obj"):
        open_object(KEY, flip_bit(sealed, bit), aad, "obj")


@SETTINGS
@given(plaintext=payloads, aad=aads, other=aads, cut=st.integers(1, 80))
def test_object_changed_aad_or_truncation_is_detected(
    plaintext: bytes, aad: bytes, other: bytes, cut: int
) -> None:
    sealed = seal_object(KEY, plaintext, aad)
    if other != aad:
        with pytest.raises(IntegrityError):
            open_object(KEY, sealed, other, "obj")
    with pytest.raises(IntegrityError):
        open_object(KEY, sealed[: max(0, len(sealed) - cut)], aad, "obj")


@settings(max_examples=40, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32))
def test_master_key_repr_never_shows_the_secret(secret: bytes) -> None:
    key = MasterKey(secret)
    for text in (repr(key), str(key), f"{key}", f"{key!r}", repr([key]), repr({"k": key})):
        assert secret.hex() not in text
        assert repr(secret) not in text
        assert "<secret>" in text
    for derived in (key.encryption_key, key.id_key):
        assert derived.hex() not in repr(key)


def test_master_key_derivations_are_distinct_and_stable() -> None:
    key = MasterKey(b"\x07" * 32)
    assert key.encryption_key != key.id_key
    assert key.secret not in (key.encryption_key, key.id_key)
    assert len(key.encryption_key) == len(key.id_key) == 32
    assert MasterKey(b"\x07" * 32).encryption_key == key.encryption_key
    assert MasterKey(b"\x08" * 32).encryption_key != key.encryption_key
    assert 0 <= key.chunker_seed < 2**62
    assert MasterKey.generate().secret != MasterKey.generate().secret
