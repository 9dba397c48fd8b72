"""S3 Object Lock for the tests: buckets with it, and an attacker with the backup's credentials.

The moto server enforces what matters here: a version under retention cannot
be deleted (compliance mode: not even with BypassGovernanceRetention), while a
plain delete adds a delete marker and a put adds a version on top. It does not
check IAM, and lets a retention date be shortened: the tests use that to play
the passage of time, the way only an administrator could.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from tests.s3_server import MotoServer


def new_lock_bucket(server: MotoServer) -> str:
    name = f"seawall-lock-{uuid.uuid4().hex[:20]}"
    server.admin.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def remove_lock_bucket(server: MotoServer, bucket: str) -> None:
    """Delete every version (shortening retention first, as only moto allows) and the bucket."""
    client = server.admin
    past = datetime.now(UTC) - timedelta(days=1)
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for item in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]:
            key, version = item["Key"], item["VersionId"]
            if "Size" in item:
                client.put_object_retention(
                    Bucket=bucket,
                    Key=key,
                    VersionId=version,
                    Retention={"Mode": "GOVERNANCE", "RetainUntilDate": past},
                )
            client.delete_object(Bucket=bucket, Key=key, VersionId=version)
    client.delete_bucket(Bucket=bucket)


def set_retention(server: MotoServer, bucket: str, key: str, until: datetime) -> None:
    """Set the retention of every version of ``key`` to ``until`` (earlier dates too:
    the test's way to make time pass)."""
    for version in versions(server, bucket, key):
        if not version["deleted"]:
            server.admin.put_object_retention(
                Bucket=bucket,
                Key=key,
                VersionId=version["id"],
                Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until},
            )


def retention(server: MotoServer, bucket: str, key: str) -> datetime | None:
    head = server.admin.head_object(Bucket=bucket, Key=key)
    until: datetime | None = head.get("ObjectLockRetainUntilDate")
    return until


def versions(server: MotoServer, bucket: str, key: str) -> list[dict[str, Any]]:
    """Every version and delete marker of exactly ``key``, newest first per kind."""
    page = server.admin.list_object_versions(Bucket=bucket, Prefix=key)
    out = [
        {"id": v["VersionId"], "latest": v["IsLatest"], "deleted": False, "size": v["Size"]}
        for v in page.get("Versions", ())
        if v["Key"] == key
    ]
    out += [
        {"id": m["VersionId"], "latest": m["IsLatest"], "deleted": True, "size": 0}
        for m in page.get("DeleteMarkers", ())
        if m["Key"] == key
    ]
    return out


class Attacker:
    """Ransomware on the production host: the backup client's own credentials
    (the same access key), its own boto3 client, and every S3 call it allows."""

    def __init__(self, server: MotoServer, bucket: str, prefix: str) -> None:
        self.client = server.client()
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/"

    def names(self, under: str) -> list[str]:
        """Current objects under ``under`` (as a listing shows them)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + under
        )
        skip = len(self.prefix)
        return sorted(item["Key"][skip:] for page in pages for item in page.get("Contents", ()))

    def delete(self, name: str) -> None:
        """A plain delete: S3 adds a delete marker on top."""
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + name)

    def overwrite(
        self, name: str, data: bytes = b"encrypted by ransomware\n", **extra: Any
    ) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + name, Body=data, **extra)

    def destroy(self, name: str) -> list[str]:
        """Try to delete every version of ``name`` for good, bypassing governance
        retention too; return the error code of each refusal."""
        refused = []
        for version in versions_of(self.client, self.bucket, self.prefix + name):
            try:
                self.client.delete_object(
                    Bucket=self.bucket,
                    Key=self.prefix + name,
                    VersionId=version,
                    BypassGovernanceRetention=True,
                )
            except ClientError as err:
                refused.append(str(err.response["Error"]["Code"]))
        return refused

    def close(self) -> None:
        self.client.close()


def versions_of(client: Any, bucket: str, key: str) -> list[str]:
    page = client.list_object_versions(Bucket=bucket, Prefix=key)
    return [v["VersionId"] for v in page.get("Versions", ()) if v["Key"] == key]
