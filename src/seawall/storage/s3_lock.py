"""S3 Object Lock and object versions: the optional powers of an S3 store.

:class:`S3ObjectLock` is a part of :class:`~seawall.storage.s3.S3Storage`
(it is one of its bases), kept apart because it is a second idea: what a
bucket with Object Lock promises, beyond the Storage protocol. It implements
:class:`~seawall.storage.retention.RetentionStorage` and
:class:`~seawall.storage.retention.VersionedStorage`.

Invariants:

- With a write retention set, every PutObject and CreateMultipartUpload of a
  name the policy applies to carries ``ObjectLockMode`` and
  ``ObjectLockRetainUntilDate`` (through ``S3Storage._write``); a completed
  multipart upload has its retention set again with PutObjectRetention, for
  S3-compatible stores that ignore the headers on multipart uploads.
- A retention date is only ever extended: callers compare first, and S3
  refuses to shorten one in compliance mode anyway.
- Retention is read with HeadObject (what AWS, MinIO and moto all answer),
  not GetObjectRetention.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from seawall.errors import ObjectNotFound, ObjectRetained, StorageError
from seawall.storage.base import check_name
from seawall.storage.retention import ObjectVersion, RetentionPolicy

#: Codes an S3 store answers GetObjectLockConfiguration with when the bucket has no lock.
_NO_LOCK_CODES = frozenset(
    {"ObjectLockConfigurationNotFoundError", "NotImplemented", "InvalidRequest", "AccessDenied"}
)
#: Reading a version that does not exist, or is a delete marker.
_NO_VERSION_CODES = frozenset({"NoSuchVersion", "MethodNotAllowed", "InvalidArgument", "405"})


def client_error_code(err: ClientError) -> tuple[str, int]:
    """The S3 error code and HTTP status of a botocore ClientError."""
    error = err.response.get("Error", {})
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return str(error.get("Code", "")), int(status or 0)


class S3ObjectLock:
    """Object Lock and versions for S3Storage (see the module docstring)."""

    def _get_object(self, args: dict[str, Any], offset: int, length: int | None) -> bytes:
        """GetObject, ranged when asked; b"" for a range at or past the end.

        Other ClientErrors propagate for the caller to translate.
        """
        if length is not None:
            args["Range"] = f"bytes={offset}-{offset + length - 1}"
        elif offset:
            args["Range"] = f"bytes={offset}-"
        try:
            response = self.client.get_object(**args)
        except ClientError as err:
            code, status = client_error_code(err)
            if "Range" in args and (code == "InvalidRange" or status == 416):
                return b""  # the object exists, and the range starts at or past its end
            raise
        body = response["Body"]
        try:
            # read() checks the length against Content-Length (IncompleteReadError).
            data: bytes = body.read()
        finally:
            body.close()
        return data

    # Provided by S3Storage.
    bucket: str
    client: Any
    _key_prefix: str

    _write_retention: RetentionPolicy | None = None
    _object_lock: bool | None = None

    def key(self, name: str) -> str:
        raise NotImplementedError

    def _translate(self, err: Exception, action: str, name: str) -> StorageError:
        raise NotImplementedError

    # --- what the bucket promises ----------------------------------------------------------

    def object_lock_enabled(self) -> bool:
        """Whether the bucket has Object Lock enabled (asked once, then remembered).

        A store that does not know the request, or a client not allowed to
        ask, counts as no lock; a store that cannot be reached raises.
        """
        if self._object_lock is None:
            try:
                answer = self.client.get_object_lock_configuration(Bucket=self.bucket)
            except ClientError as err:
                code, status = client_error_code(err)
                if code not in _NO_LOCK_CODES and status not in (403, 404, 501):
                    raise self._translate(
                        err, "read the Object Lock configuration of", "/"
                    ) from None
                self._object_lock = False
            except Exception as err:
                raise self._translate(err, "read the Object Lock configuration of", "/") from None
            else:
                config = answer.get("ObjectLockConfiguration", {})
                self._object_lock = config.get("ObjectLockEnabled") == "Enabled"
        return self._object_lock

    # --- retention --------------------------------------------------------------------------

    def set_write_retention(self, policy: RetentionPolicy | None) -> None:
        self._write_retention = policy

    def _lock_args(self, name: str) -> dict[str, Any]:
        """The PutObject parameters that give object ``name`` its retention, if any."""
        policy = self._write_retention
        if policy is None or not policy.applies(name):
            return {}
        return {"ObjectLockMode": policy.mode.upper(), "ObjectLockRetainUntilDate": policy.until()}

    def _after_multipart(self, name: str, key: str, extra: dict[str, Any]) -> None:
        """Set again the retention a multipart upload asked for (some stores drop it)."""
        if "ObjectLockRetainUntilDate" not in extra:
            return
        try:
            self.client.put_object_retention(
                Bucket=self.bucket,
                Key=key,
                Retention={
                    "Mode": extra["ObjectLockMode"],
                    "RetainUntilDate": extra["ObjectLockRetainUntilDate"],
                },
            )
        except Exception as err:
            raise self._translate(err, "set the retention of", name) from None

    def retention(self, name: str, version_id: str | None = None) -> datetime | None:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(name)}
        if version_id is not None:
            args["VersionId"] = version_id
        try:
            head = self.client.head_object(**args)
        except ClientError as err:
            if client_error_code(err)[0] in _NO_VERSION_CODES or client_error_code(err)[1] == 405:
                raise ObjectNotFound(f"object {name} has no version {version_id}") from None
            raise self._translate(err, "read the retention of", name) from None
        except Exception as err:
            raise self._translate(err, "read the retention of", name) from None
        until = head.get("ObjectLockRetainUntilDate")
        return until if isinstance(until, datetime) else None

    def extend_retention(self, name: str, until: datetime, version_id: str | None = None) -> None:
        mode = self._write_retention.mode if self._write_retention else "governance"
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.key(name),
            "Retention": {"Mode": mode.upper(), "RetainUntilDate": until},
        }
        if version_id is not None:
            args["VersionId"] = version_id
        try:
            self.client.put_object_retention(**args)
        except Exception as err:
            raise self._translate(err, "extend the retention of", name) from None

    # --- versions ---------------------------------------------------------------------------

    def versions(self, prefix: str = "") -> Iterator[ObjectVersion]:
        paginator = self.client.get_paginator("list_object_versions")
        skip = len(self._key_prefix)
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key_prefix + prefix):
                entries = [(v, False) for v in page.get("Versions", ())]
                entries += [(m, True) for m in page.get("DeleteMarkers", ())]
                for item, marker in entries:
                    name = item["Key"][skip:]
                    try:
                        check_name(name)
                    except StorageError:
                        continue  # not an object a seawall store could have written
                    yield ObjectVersion(
                        name,
                        str(item["VersionId"]),
                        int(item.get("Size", 0)),
                        bool(item.get("IsLatest")),
                        marker,
                    )
        except StorageError:
            raise
        except Exception as err:
            raise self._translate(err, "list the versions of", prefix or "/") from None

    def get_version(
        self, name: str, version_id: str, offset: int = 0, length: int | None = None
    ) -> bytes:
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.key(name),
            "VersionId": version_id,
        }
        if length == 0:
            self.retention(name, version_id)  # raises ObjectNotFound for a missing version
            return b""
        try:
            return self._get_object(args, offset, length)
        except ClientError as err:
            code, status = client_error_code(err)
            if code in _NO_VERSION_CODES or status == 405:
                raise ObjectNotFound(f"object {name} has no version {version_id}") from None
            raise self._translate(err, "read", f"{name} (version {version_id})") from None
        except Exception as err:
            raise self._translate(err, "read", f"{name} (version {version_id})") from None

    def restore_version(self, name: str, version_id: str) -> None:
        key = self.key(name)
        try:
            copied = self.client.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": key, "VersionId": version_id},
            )
        except Exception as err:
            raise self._translate(err, "restore an older version of", name) from None
        # The retention goes on in a second request: CopyObject with lock headers
        # needs a checksum header that boto3 does not send for a copy.
        extra = self._lock_args(name)
        if extra:
            new_version = copied.get("VersionId")
            self.extend_retention(name, extra["ObjectLockRetainUntilDate"], new_version)

    def delete_version(self, name: str, version_id: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(name), VersionId=version_id)
        except ClientError as err:
            code, status = client_error_code(err)
            if code == "AccessDenied" or status == 403:
                # Object Lock answers AccessDenied too: tell the two apart.
                try:
                    until = self.retention(name, version_id)
                except StorageError:
                    until = None
                if until is not None and until > datetime.now(UTC):
                    raise ObjectRetained(
                        f"{name} (version {version_id}) is under retention until "
                        f"{until.isoformat()} and cannot be deleted before",
                        until=until,
                    ) from None
            raise self._translate(err, "delete a version of", name) from None
        except Exception as err:
            raise self._translate(err, "delete a version of", name) from None
