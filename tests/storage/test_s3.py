"""S3Storage beyond the conformance suite: keys under the prefix, multipart uploads,
error translation, and open_storage's ``s3:`` locations.

Everything runs against a real S3 API server on loopback (tests/s3_server.py),
through boto3, as against AWS.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from seawall.errors import ObjectExists, ObjectNotFound, StorageError, UsageError
from seawall.storage import RetryingStorage, open_storage
from seawall.storage.s3 import MiB, S3Storage
from tests.s3_server import MotoServer, free_port


@pytest.fixture
def store(s3_server: MotoServer, s3_bucket: str) -> Iterator[S3Storage]:
    s = S3Storage(s3_bucket, "backups/repo", endpoint_url=s3_server.endpoint)
    yield s
    s.close()


def keys(server: MotoServer, bucket: str) -> dict[str, int]:
    """Every key in the bucket and its size, as the server sees it."""
    pages = server.admin.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {item["Key"]: item["Size"] for page in pages for item in page.get("Contents", ())}


def pending_uploads(server: MotoServer, bucket: str) -> list[Any]:
    return list(server.admin.list_multipart_uploads(Bucket=bucket).get("Uploads", ()))


# --- names and keys -----------------------------------------------------------------------


def test_objects_live_under_the_prefix(
    store: S3Storage, s3_server: MotoServer, s3_bucket: str
) -> None:
    assert store.location == f"s3:{s3_bucket}/backups/repo"
    store.put("config", b"{}")
    store.put("data/ab/ab01", b"x" * 10)
    assert keys(s3_server, s3_bucket) == {"backups/repo/config": 2, "backups/repo/data/ab/ab01": 10}
    # A neighbour whose prefix merely starts the same, and keys no seawall store writes
    # (a console's folder marker, a doubled slash), are not objects of this store.
    admin = s3_server.admin
    admin.put_object(Bucket=s3_bucket, Key="backups/repo2/config", Body=b"other repo")
    admin.put_object(Bucket=s3_bucket, Key="backups/repo/data/", Body=b"")
    admin.put_object(Bucket=s3_bucket, Key="backups/repo/data//odd", Body=b"?")
    assert sorted(i.name for i in store.list()) == ["config", "data/ab/ab01"]
    assert sorted(i.name for i in store.list("data/")) == ["data/ab/ab01"]


def test_a_store_on_the_whole_bucket(s3_server: MotoServer, s3_bucket: str) -> None:
    store = S3Storage(s3_bucket, endpoint_url=s3_server.endpoint)
    assert store.location == f"s3:{s3_bucket}"
    store.put("keys/k1", b"key")
    assert keys(s3_server, s3_bucket) == {"keys/k1": 3}
    assert store.get("keys/k1", 1) == b"ey"
    store.close()


def test_zero_length_read_of_a_missing_object_is_not_found(store: S3Storage) -> None:
    with pytest.raises(ObjectNotFound):
        store.get("data/00/missing", 0, 0)
    store.put("data/00/there", b"abc")
    assert store.get("data/00/there", 1, 0) == b""


def test_put_args_reach_single_and_multipart_writes(s3_server: MotoServer, s3_bucket: str) -> None:
    """The one write path carries extra parameters (as Object Lock retention will be)."""
    store = S3Storage(
        s3_bucket,
        "p",
        endpoint_url=s3_server.endpoint,
        multipart_threshold=6 * MiB,
        part_size=5 * MiB,
        put_args=lambda name: {"Metadata": {"seawall-name": name}},
    )
    store.put("small", b"s")
    store.put("large", os.urandom(7 * MiB))
    for name in ["small", "large"]:
        head = s3_server.admin.head_object(Bucket=s3_bucket, Key=f"p/{name}")
        assert head["Metadata"] == {"seawall-name": name}
    assert s3_server.admin.head_object(Bucket=s3_bucket, Key="p/large")["ETag"].endswith('-2"')
    store.close()


# --- multipart ----------------------------------------------------------------------------


def test_large_object_goes_up_in_parts(s3_server: MotoServer, s3_bucket: str) -> None:
    store = S3Storage(
        s3_bucket,
        "repo",
        endpoint_url=s3_server.endpoint,
        multipart_threshold=8 * MiB,
        part_size=5 * MiB,
        part_threads=3,
    )
    payload = os.urandom(20 * MiB + 12345)
    store.put("data/ab/pack", payload)
    head = s3_server.admin.head_object(Bucket=s3_bucket, Key="repo/data/ab/pack")
    assert head["ETag"].endswith('-5"'), head["ETag"]  # S3's mark of a 5-part upload
    assert head["ContentLength"] == len(payload)
    assert store.get("data/ab/pack") == payload
    # A range across the boundary of parts 1 and 2, and the tail.
    assert store.get("data/ab/pack", 5 * MiB - 10, 20) == payload[5 * MiB - 10 : 5 * MiB + 10]
    assert store.get("data/ab/pack", len(payload) - 7) == payload[-7:]
    # Conditional writes hold for multipart uploads too.
    with pytest.raises(ObjectExists):
        store.put("data/ab/pack", os.urandom(9 * MiB), if_absent=True)
    assert store.get("data/ab/pack", 0, 1000) == payload[:1000]
    store.put("data/ab/new", payload[: 9 * MiB], if_absent=True)
    assert store.stat("data/ab/new").size == 9 * MiB
    assert pending_uploads(s3_server, s3_bucket) == []
    store.close()


def test_a_failed_multipart_upload_is_aborted_and_leaves_no_object(
    s3_server: MotoServer, s3_bucket: str
) -> None:
    # Parts under S3's 5 MiB minimum: the server refuses to complete the upload.
    store = S3Storage(
        s3_bucket,
        "repo",
        endpoint_url=s3_server.endpoint,
        multipart_threshold=2 * MiB,
        part_size=1 * MiB,
    )
    with pytest.raises(StorageError) as info:
        store.put("data/ab/pack", os.urandom(3 * MiB))
    assert not info.value.transient
    assert not isinstance(info.value, ObjectNotFound | ObjectExists)
    assert "EntityTooSmall" in str(info.value) and "data/ab/pack" in str(info.value)
    assert pending_uploads(s3_server, s3_bucket) == []  # aborted: no parts left behind
    with pytest.raises(ObjectNotFound):
        store.stat("data/ab/pack")
    assert keys(s3_server, s3_bucket) == {}
    store.close()


# --- errors -------------------------------------------------------------------------------


def test_unreachable_endpoint_is_transient_and_says_what_to_check() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    inner = S3Storage("some-bucket", "repo", endpoint_url=endpoint, attempts=2, connect_timeout=2)
    store = RetryingStorage(inner, attempts=2, base_delay=0)
    calls: list[Callable[[], object]] = [
        lambda: store.get("config"),
        lambda: store.put("config", b"x"),
        lambda: list(store.list("data/")),
    ]
    for call in calls:
        with pytest.raises(StorageError) as info:
            call()
        err = info.value
        assert err.transient
        assert not isinstance(err, ObjectNotFound)
        message = str(err)
        assert endpoint in message and "s3:some-bucket/repo" in message
        assert "--s3-endpoint" in message and "AWS_ENDPOINT_URL" in message
    inner.close()


def test_missing_bucket_is_a_clear_permanent_error(s3_server: MotoServer) -> None:
    store = S3Storage("no-such-bucket-here", "repo", endpoint_url=s3_server.endpoint)
    calls: list[Callable[[], object]] = [
        lambda: store.get("config"),
        lambda: store.put("config", b"{}"),
    ]
    for call in calls:
        with pytest.raises(StorageError) as info:
            call()
        assert not isinstance(info.value, ObjectNotFound)
        assert not info.value.transient
        assert "bucket 'no-such-bucket-here' does not exist" in str(info.value)
        assert "create it" in str(info.value)
    store.close()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """An S3 server that checks credentials (moto's IAM auth from the first request)."""
    server = MotoServer(
        tmp_path_factory.mktemp("moto-auth") / "server.log",
        extra_env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"},
    )
    yield server
    server.stop()


def test_wrong_credentials_are_a_clear_permanent_error_without_the_secret(
    s3_server: MotoServer, auth_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "wJalrXUtnFEMI-this-is-the-secret-K7MDENG"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    inner = S3Storage("any-bucket", "repo", endpoint_url=auth_server.endpoint)
    store = RetryingStorage(inner, attempts=5, base_delay=0)
    calls: list[Callable[[], object]] = [
        lambda: store.get("config"),
        lambda: store.put("keys/k", b"k"),
    ]
    for call in calls:
        with pytest.raises(StorageError) as info:
            call()
        err = info.value
        assert not err.transient  # retrying cannot help: not retried
        assert not isinstance(err, ObjectNotFound)
        message = str(err)
        assert "access denied" in message and "InvalidAccessKeyId" in message
        assert "AWS_ACCESS_KEY_ID" in message  # says what to check
        assert secret not in message and "AKIAUNKNOWNKEY" not in message
    inner.close()


# --- open_storage -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "bucket", "prefix"),
    [
        ("s3:my-bucket/backups/prod", "my-bucket", "backups/prod"),
        ("s3:my-bucket/backups/prod/", "my-bucket", "backups/prod"),
        ("s3:my-bucket", "my-bucket", ""),
        ("s3:my-bucket/", "my-bucket", ""),
        ("s3://my-bucket/repo", "my-bucket", "repo"),
    ],
)
def test_open_storage_parses_s3_locations(location: str, bucket: str, prefix: str) -> None:
    store = open_storage(location, s3_endpoint="http://127.0.0.1:9")
    assert isinstance(store, RetryingStorage)
    inner = store.inner
    assert isinstance(inner, S3Storage)
    assert (inner.bucket, inner.prefix) == (bucket, prefix)
    assert store.location == (f"s3:{bucket}/{prefix}" if prefix else f"s3:{bucket}")
    assert inner.endpoint == "http://127.0.0.1:9"
    store.close()


@pytest.mark.parametrize("location", ["s3:", "s3:/", "s3:bucket/a//b", "s3:bucket/a/../b"])
def test_open_storage_rejects_bad_s3_locations(location: str) -> None:
    with pytest.raises(UsageError):
        open_storage(location)


def test_open_storage_endpoint_from_argument_or_environment(
    s3_server: MotoServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_argument = open_storage(f"s3:{s3_bucket}/r", s3_endpoint=s3_server.endpoint)
    by_argument.put("config", b"written via --s3-endpoint")
    by_argument.close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)  # boto3's own setting
    by_env = open_storage(f"s3:{s3_bucket}/r")
    assert by_env.get("config") == b"written via --s3-endpoint"
    by_env.close()
    assert keys(s3_server, s3_bucket) == {"r/config": len(b"written via --s3-endpoint")}


def test_endpoint_credentials_never_show_in_messages(tmp_path: Path) -> None:
    endpoint = f"http://user:hunter2@127.0.0.1:{free_port()}"
    store = S3Storage("b-ucket", "r", endpoint_url=endpoint, attempts=1, connect_timeout=2)
    assert "hunter2" not in store.endpoint and "127.0.0.1" in store.endpoint
    with pytest.raises(StorageError) as info:
        store.stat("config")
    assert "hunter2" not in str(info.value)
    store.close()
