"""S3 Object Lock and versions (storage/s3_lock.py) against a real S3 API server.

What the server enforces is checked through it: a retained version refuses to
be deleted; a plain delete leaves a delete marker; an overwrite a new version.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from seawall.errors import ObjectNotFound, ObjectRetained, UsageError
from seawall.storage import RetryingStorage
from seawall.storage.retention import RetentionPolicy, find_retention, find_versions
from seawall.storage.s3 import S3Storage
from tests.s3_lock import retention, versions
from tests.s3_server import MotoServer


@pytest.fixture
def locked(s3_server: MotoServer, s3_lock_bucket: str) -> Iterator[S3Storage]:
    store = S3Storage(
        s3_lock_bucket,
        "repo",
        endpoint_url=s3_server.endpoint,
        multipart_threshold=5 * 1024 * 1024,
        part_size=5 * 1024 * 1024,
    )
    yield store
    store.close()


def near(when: datetime | None, expected: datetime) -> bool:
    return when is not None and abs((when - expected).total_seconds()) < 120


def test_capabilities_say_whether_the_bucket_has_object_lock(
    locked: S3Storage, s3_server: MotoServer, s3_bucket: str
) -> None:
    assert locked.capabilities().object_lock
    plain = S3Storage(s3_bucket, "repo", endpoint_url=s3_server.endpoint)
    try:
        assert not plain.capabilities().object_lock
        assert plain.capabilities().conditional_write
    finally:
        plain.close()
    # The powers are found through wrappers.
    wrapped = RetryingStorage(locked)
    assert find_retention(wrapped) is locked
    assert find_versions(wrapped) is locked


def test_writes_carry_the_retention_except_exempt_names(
    locked: S3Storage, s3_server: MotoServer, s3_lock_bucket: str
) -> None:
    locked.set_write_retention(RetentionPolicy(30, "compliance", ("locks/",)))
    locked.put("snapshots/aa", b"small")
    locked.put("data/bb/bb", b"x" * (11 * 1024 * 1024))  # a multipart upload
    locked.put("locks/cc", b"lock")
    expected = datetime.now(UTC) + timedelta(days=30)
    head = s3_server.admin.head_object(Bucket=s3_lock_bucket, Key="repo/snapshots/aa")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert near(head["ObjectLockRetainUntilDate"], expected)
    assert near(retention(s3_server, s3_lock_bucket, "repo/data/bb/bb"), expected)
    assert locked.retention("data/bb/bb") == retention(s3_server, s3_lock_bucket, "repo/data/bb/bb")
    assert locked.retention("locks/cc") is None
    # Locks stay deletable; retained objects cannot be destroyed, even by bypassing.
    locked.delete("locks/cc")
    [version] = versions(s3_server, s3_lock_bucket, "repo/snapshots/aa")
    with pytest.raises(ObjectRetained) as refused:
        locked.delete_version("snapshots/aa", version["id"])
    assert near(refused.value.until, expected)
    assert locked.get("snapshots/aa") == b"small"


def test_retention_is_extended_on_the_version_asked(locked: S3Storage) -> None:
    locked.set_write_retention(RetentionPolicy(1))
    locked.put("index/aa", b"v1")
    first = next(v for v in locked.versions("index/") if v.latest)
    locked.put("index/aa", b"v2")
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    locked.extend_retention("index/aa", later, first.version_id)
    assert locked.retention("index/aa", first.version_id) == later
    assert near(locked.retention("index/aa"), datetime.now(UTC) + timedelta(days=1))
    with pytest.raises(ObjectNotFound):
        locked.retention("index/missing")


def test_versions_delete_markers_and_restoring_an_old_version(
    locked: S3Storage, s3_server: MotoServer, s3_lock_bucket: str
) -> None:
    locked.set_write_retention(RetentionPolicy(2))
    locked.put("data/ab/ab", b"intact")
    locked.put("data/ab/cd", b"other")
    s3_server.admin.put_object(Bucket=s3_lock_bucket, Key="repo/data/ab/ab", Body=b"junk")
    s3_server.admin.delete_object(Bucket=s3_lock_bucket, Key="repo/data/ab/ab")
    found = [v for v in locked.versions("data/") if v.name == "data/ab/ab"]
    assert [(v.deleted, v.size) for v in found if not v.deleted] == [(False, 4), (False, 6)]
    [marker] = [v for v in found if v.deleted]
    assert marker.latest
    with pytest.raises(ObjectNotFound):
        locked.get("data/ab/ab")
    intact = [v for v in found if not v.deleted][1]
    assert locked.get_version("data/ab/ab", intact.version_id) == b"intact"
    assert locked.get_version("data/ab/ab", intact.version_id, 2, 3) == b"tac"
    assert locked.get_version("data/ab/ab", intact.version_id, 6, 10) == b""
    with pytest.raises(ObjectNotFound):
        locked.get_version("data/ab/ab", marker.version_id)
    # The junk version holds no retention: it can go; the intact one cannot.
    junk = next(v for v in found if not v.deleted)
    locked.delete_version("data/ab/ab", junk.version_id)
    with pytest.raises(ObjectRetained):
        locked.delete_version("data/ab/ab", intact.version_id)
    locked.restore_version("data/ab/ab", intact.version_id)
    assert locked.get("data/ab/ab") == b"intact"
    assert near(locked.retention("data/ab/ab"), datetime.now(UTC) + timedelta(days=2))


def test_retention_policy_is_validated() -> None:
    with pytest.raises(UsageError, match="at least 1"):
        RetentionPolicy(0)
    with pytest.raises(UsageError, match="governance or compliance"):
        RetentionPolicy(1, "legal")
    policy = RetentionPolicy(3, exempt=("locks/",))
    assert policy.applies("data/aa") and not policy.applies("locks/aa")
    start = datetime(2030, 1, 1, tzinfo=UTC)
    assert policy.until(start) == datetime(2030, 1, 4, tzinfo=UTC)
