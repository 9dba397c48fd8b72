"""FastCDC chunking: exact cover, size bounds, resync after an insert, keyed boundaries."""

from __future__ import annotations

import io
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.codec.chunker import Chunker, ChunkerParams
from seawall.codec.crypto import MasterKey

TINY = ChunkerParams(min_size=256, avg_size=1024, max_size=4096)
SMALL = ChunkerParams(min_size=4 * 1024, avg_size=16 * 1024, max_size=64 * 1024)
SEED = MasterKey(b"\x01" * 32).chunker_seed


def random_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def cut(chunker: Chunker, data: bytes) -> list[bytes]:
    return [bytes(c) for c in chunker.chunks(data)]


# Random data, low-entropy data (which only max_size can cut) and mixtures.
buffers = st.one_of(
    st.binary(max_size=3000),
    st.builds(random_bytes, st.integers(0, 2**32), st.integers(0, 60_000)),
    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=8), st.integers(1, 8000)),
    st.builds(
        lambda s, n, z: random_bytes(s, n) + bytes(z) + random_bytes(s + 1, n),
        st.integers(0, 2**32),
        st.integers(0, 10_000),
        st.integers(0, 20_000),
    ),
)


def check_sizes(chunks: list[bytes], params: ChunkerParams) -> None:
    for c in chunks[:-1]:
        assert params.min_size <= len(c) <= params.max_size
    if chunks:
        assert 0 < len(chunks[-1]) <= params.max_size


@settings(max_examples=60, deadline=None)
@given(data=buffers, seed=st.integers(0, 2**62 - 1))
def test_chunks_cover_input_within_bounds(data: bytes, seed: int) -> None:
    chunks = cut(Chunker(TINY, seed), data)
    assert b"".join(chunks) == data
    check_sizes(chunks, TINY)
    assert (not chunks) == (not data)


@settings(max_examples=30, deadline=None)
@given(data=buffers, seed=st.integers(0, 2**62 - 1))
def test_stream_gives_the_same_chunks(data: bytes, seed: int) -> None:
    chunker = Chunker(TINY, seed)
    assert [bytes(c) for c in chunker.stream(io.BytesIO(data))] == cut(chunker, data)


def test_stream_matches_chunks_on_a_large_buffer() -> None:
    data = random_bytes(7, 3 * 1024 * 1024) + bytes(300_000) + random_bytes(8, 500_000)
    chunker = Chunker(SMALL, SEED)
    streamed = [bytes(c) for c in chunker.stream(io.BytesIO(data))]
    assert streamed == cut(chunker, data)
    assert b"".join(streamed) == data
    check_sizes(streamed, SMALL)


def test_low_entropy_data_is_cut_at_max_size() -> None:
    chunks = cut(Chunker(SMALL, SEED), bytes(300_000))
    assert [len(c) for c in chunks[:-1]] == [SMALL.max_size] * (len(chunks) - 1)
    assert b"".join(chunks) == bytes(300_000)


def common_suffix(a: list[bytes], b: list[bytes]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    where=st.integers(0, 20_000),
    inserted=st.binary(min_size=1, max_size=500),
)
def test_boundaries_resync_after_an_insert(seed: int, where: int, inserted: bytes) -> None:
    data = random_bytes(seed, 1024 * 1024)
    chunker = Chunker(SMALL, SEED)
    before = cut(chunker, data)
    after = cut(chunker, data[:where] + inserted + data[where:])
    assert len(before) > 30
    # Only the chunks around the insertion change; every later one is shared.
    assert common_suffix(before, after) >= len(before) - 4
    assert len(set(before) & set(after)) >= len(before) - 4


def test_different_seeds_give_different_boundaries() -> None:
    data = random_bytes(3, 1024 * 1024)
    key_a, key_b = MasterKey(b"\x01" * 32), MasterKey(b"\x02" * 32)
    assert key_a.chunker_seed != key_b.chunker_seed
    a = cut(Chunker(SMALL, key_a.chunker_seed), data)
    b = cut(Chunker(SMALL, key_b.chunker_seed), data)
    assert b"".join(a) == b"".join(b) == data

    def boundaries(chunks: list[bytes]) -> set[int]:
        out, pos = set(), 0
        for c in chunks[:-1]:
            pos += len(c)
            out.add(pos)
        return out

    ba, bb = boundaries(a), boundaries(b)
    # Boundaries under another key are (nearly) unrelated.
    assert len(ba & bb) < len(ba) // 4
    # And the same key is deterministic.
    assert cut(Chunker(SMALL, key_a.chunker_seed), data) == a


def test_params_json_round_trip() -> None:
    assert ChunkerParams.from_json(dict(SMALL.to_json())) == SMALL
    import pytest

    with pytest.raises(ValueError):
        ChunkerParams.from_json({"algorithm": "rabin", "min_size": 1, "avg_size": 2, "max_size": 3})
