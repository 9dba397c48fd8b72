"""A store in an S3 bucket: AWS, or any S3-compatible service (MinIO, Ceph, R2, ...).

Object ``name`` lives under the key ``PREFIX/name`` of the bucket.

Invariants:

- An object is visible whole or not at all: S3 shows a PutObject, or a
  multipart upload once completed, atomically. A multipart upload that fails
  is aborted, so no parts are left to be billed.
- ``put(if_absent=True)`` is an S3 conditional write (``If-None-Match: *``),
  atomic on the server. For stores without conditional writes
  (``conditional_writes=False``) it is a stat then a put, and
  :meth:`capabilities` says it is not atomic.
- Every write goes through :meth:`S3Storage._write`, which adds
  ``put_args(name)`` and the write retention of Object Lock (s3_lock.py) to
  both the single-request and the multipart path.
- botocore and boto3 exceptions never leave this module: :func:`_translate`
  turns them into seawall errors. Throttling, server errors and lost
  connections are ``transient``; messages name the bucket and the key, never
  a credential.

Retries happen twice, on purpose: botocore retries each HTTP request
(``standard`` mode: exponential backoff with jitter, throttling-aware), and
:class:`~seawall.storage.wrappers.RetryingStorage` retries the whole call when
botocore gives up (open_storage wraps every S3 store in one).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    SSLError,
)

from seawall.errors import ObjectExists, ObjectNotFound, StorageError
from seawall.storage.base import Capabilities, ObjectInfo, check_name
from seawall.storage.s3_lock import S3ObjectLock, client_error_code

MiB = 1024 * 1024
#: Objects at least this large are sent as a multipart upload.
DEFAULT_MULTIPART_THRESHOLD = 16 * MiB
#: Size of each part but the last (S3's minimum is 5 MiB).
DEFAULT_PART_SIZE = 8 * MiB
#: HTTP connections kept to the endpoint: the callers' threads plus part uploads.
DEFAULT_MAX_CONNECTIONS = 32

_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
        # A concurrent conditional write to the same key: retrying settles it
        # (the retry meets PreconditionFailed if the other writer won).
        "ConditionalRequestConflict",
    }
)
_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AccountProblem",
    }
)


def _redact_url(url: str | None) -> str:
    """``url`` without any user:password part."""
    if not url:
        return "the default AWS endpoint"
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


_loaders: dict[str | None, Any] = {}
_loaders_lock = threading.Lock()


def _new_session() -> Any:
    """A boto3 session of this store's own (sessions are not thread-safe), sharing
    one loader of botocore's service models: loading them costs ~0.1 s a session,
    while credentials, region and endpoint are still resolved afresh."""
    data_path = os.environ.get("AWS_DATA_PATH")
    with _loaders_lock:
        loader = _loaders.get(data_path)
        if loader is None:
            loader = _loaders[data_path] = botocore.loaders.create_loader(data_path)
    core = botocore.session.Session()
    core.register_component("data_loader", loader)
    return boto3.session.Session(botocore_session=core)


class S3Storage(S3ObjectLock):
    """A Storage on ``bucket`` under ``prefix`` (``""`` for the whole bucket).

    ``endpoint_url`` and ``region`` default to boto3's own settings
    (``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``/
    ``AWS_DEFAULT_REGION``, ``~/.aws/config``); credentials always come from
    boto3's chain. ``client`` replaces the client this store would make (then
    ``endpoint_url``, ``region``, ``attempts``, ``max_connections`` and the
    timeouts are ignored). ``put_args(name)`` gives extra PutObject /
    CreateMultipartUpload parameters for an object, such as Object Lock
    retention.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any = None,
        conditional_writes: bool = True,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_SIZE,
        part_threads: int = 4,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        attempts: int = 3,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        put_args: Callable[[str], Mapping[str, Any]] | None = None,
    ) -> None:
        if not bucket:
            raise StorageError("an S3 location needs a bucket name: s3:BUCKET/PREFIX")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._key_prefix = f"{self.prefix}/" if self.prefix else ""
        self._conditional = conditional_writes
        self._threshold = max(1, multipart_threshold)
        self._part_size = max(1, part_size)
        self._part_threads = max(1, part_threads)
        self._put_args = put_args
        self._owns_client = client is None
        if client is None:
            if endpoint_url is None:
                endpoint_url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(
                    "AWS_ENDPOINT_URL"
                )
            config = Config(
                retries={"mode": "standard", "max_attempts": max(1, attempts)},
                max_pool_connections=max_connections,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                # S3-compatible servers are addressed by path; DNS-style bucket
                # hosts (bucket.minio.local) rarely exist for them.
                s3={"addressing_style": "path" if endpoint_url else "auto"},
            )
            try:
                session = _new_session()
                client = session.client(
                    "s3", endpoint_url=endpoint_url or None, region_name=region, config=config
                )
            except (BotoCoreError, ValueError) as err:
                reason = str(err)
                if endpoint_url:
                    reason = reason.replace(endpoint_url, _redact_url(endpoint_url))
                raise StorageError(
                    f"cannot set up the S3 client for {self.location}: {reason[:300]}; "
                    "check --s3-endpoint / AWS_ENDPOINT_URL and AWS_REGION"
                ) from None
        #: The boto3 S3 client (thread-safe); for callers that need S3 features
        #: beyond the Storage protocol, such as object versions.
        self.client: Any = client
        self._endpoint = _redact_url(getattr(getattr(client, "meta", None), "endpoint_url", None))
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    # --- names -------------------------------------------------------------------------

    @property
    def location(self) -> str:
        return f"s3:{self.bucket}/{self.prefix}" if self.prefix else f"s3:{self.bucket}"

    @property
    def endpoint(self) -> str:
        """The endpoint this store talks to, for messages (no credentials)."""
        return self._endpoint

    def key(self, name: str) -> str:
        """The S3 key of object ``name`` (raises StorageError for an invalid name)."""
        return self._key_prefix + check_name(name)

    # --- the protocol ------------------------------------------------------------------

    def put(self, name: str, data: bytes, *, if_absent: bool = False) -> None:
        key = self.key(name)
        if if_absent and not self._conditional:
            try:
                self.stat(name)
            except ObjectNotFound:
                pass
            else:
                raise ObjectExists(f"object {name} already exists")
        self._write(name, key, data, if_absent=if_absent and self._conditional)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        key = self.key(name)
        if length == 0:
            self.stat(name)  # a missing object must still raise ObjectNotFound
            return b""
        try:
            return self._get_object({"Bucket": self.bucket, "Key": key}, offset, length)
        except Exception as err:
            raise self._translate(err, "read", name) from None

    def stat(self, name: str) -> ObjectInfo:
        key = self.key(name)
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as err:
            raise self._translate(err, "stat", name) from None
        return ObjectInfo(name, int(response["ContentLength"]))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        skip = len(self._key_prefix)
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key_prefix + prefix):
                for item in page.get("Contents", ()):
                    name = item["Key"][skip:]
                    # Keys no seawall store could have written (folder markers
                    # such as "data/", "a//b" made by other tools) are not objects.
                    try:
                        check_name(name)
                    except StorageError:
                        continue
                    yield ObjectInfo(name, int(item["Size"]))
        except StorageError:
            raise
        except Exception as err:
            raise self._translate(err, "list", prefix or "/") from None

    def delete(self, name: str) -> None:
        key = self.key(name)
        # S3 deletes a missing key without complaint; the contract says ObjectNotFound.
        self.stat(name)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as err:
            raise self._translate(err, "delete", name) from None

    def capabilities(self) -> Capabilities:
        return Capabilities(
            conditional_write=self._conditional,
            consistent_list=True,
            object_lock=self.object_lock_enabled(),
        )

    def close(self) -> None:
        with self._executor_lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
        if self._owns_client:
            self.client.close()

    # --- writing -----------------------------------------------------------------------

    def _write(self, name: str, key: str, data: bytes, *, if_absent: bool) -> None:
        """The one place objects are written: a PutObject, or a multipart upload."""
        extra = dict(self._put_args(name)) if self._put_args is not None else {}
        extra.update(self._lock_args(name))  # Object Lock retention (s3_lock.py)
        try:
            if len(data) >= self._threshold and len(data) > self._part_size:
                self._multipart(key, data, extra, if_absent=if_absent)
                self._after_multipart(name, key, extra)
            else:
                body = data if isinstance(data, bytes) else bytes(data)
                args = {"Bucket": self.bucket, "Key": key, "Body": body, **extra}
                if if_absent:
                    args["IfNoneMatch"] = "*"
                self.client.put_object(**args)
        except StorageError:
            raise
        except Exception as err:
            if if_absent and isinstance(err, ClientError):
                code, status = client_error_code(err)
                if code == "PreconditionFailed" or status == 412:
                    raise ObjectExists(f"object {name} already exists") from None
            raise self._translate(err, "write", name) from None

    def _multipart(self, key: str, data: bytes, extra: dict[str, Any], *, if_absent: bool) -> None:
        view = memoryview(data)
        upload = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ChecksumAlgorithm="CRC32", **extra
        )
        upload_id = upload["UploadId"]
        futures: list[Future[dict[str, Any]]] = []
        try:
            offsets = range(0, len(view), self._part_size)

            def send(number: int, start: int) -> dict[str, Any]:
                part = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=bytes(view[start : start + self._part_size]),
                    ChecksumAlgorithm="CRC32",
                )
                done = {"PartNumber": number, "ETag": part["ETag"]}
                if "ChecksumCRC32" in part:
                    done["ChecksumCRC32"] = part["ChecksumCRC32"]
                return done

            pool = self._parts_pool()
            futures.extend(pool.submit(send, i + 1, start) for i, start in enumerate(offsets))
            parts = [f.result() for f in futures]
            args: dict[str, Any] = {
                "Bucket": self.bucket,
                "Key": key,
                "UploadId": upload_id,
                "MultipartUpload": {"Parts": parts},
            }
            if if_absent:
                args["IfNoneMatch"] = "*"
            self.client.complete_multipart_upload(**args)
        except BaseException:
            for future in futures:
                future.cancel()
            wait(futures)  # no part may land after the abort
            # The original error is what matters; should the abort fail too, an
            # AbortIncompleteMultipartUpload lifecycle rule cleans up.
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    def _parts_pool(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self._part_threads, thread_name_prefix="s3-part"
                )
            return self._executor

    # --- errors ------------------------------------------------------------------------

    def _translate(self, err: Exception, action: str, name: str) -> StorageError:
        """A seawall error for a foreign exception raised while ``action``-ing ``name``."""
        where = f"{name} in {self.location}"
        if isinstance(err, StorageError):
            return err
        if isinstance(err, ClientError):
            code, status = client_error_code(err)
            message = str(err.response.get("Error", {}).get("Message", ""))[:200]
            detail = f"{code or status}" + (f": {message}" if message else "")
            if code in _NOT_FOUND_CODES or (status == 404 and code != "NoSuchBucket"):
                return ObjectNotFound(f"object {name} does not exist in {self.location}")
            if code == "NoSuchBucket":
                return StorageError(
                    f"the S3 bucket {self.bucket!r} does not exist at {self._endpoint}; "
                    "create it first (e.g. `aws s3 mb s3://" + self.bucket + "`) or fix --repo"
                )
            if code in _ACCESS_CODES or status == 403:
                return StorageError(
                    f"access denied to {where} ({detail}) when trying to {action} it; check "
                    "the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) "
                    "and that the bucket policy allows s3:GetObject, s3:PutObject, "
                    "s3:DeleteObject and s3:ListBucket on this prefix"
                )
            if code in _TRANSIENT_CODES or status in (429, 500, 502, 503, 504):
                return StorageError(
                    f"S3 at {self._endpoint} failed to {action} {where} ({detail}); "
                    "the store is overloaded or unavailable: run the command again later",
                    transient=True,
                )
            if code == "NotImplemented" or status == 501:
                return StorageError(
                    f"the S3 store at {self._endpoint} cannot {action} {where} ({detail}); "
                    "it lacks a feature seawall needs (conditional writes need a recent "
                    "S3-compatible server)"
                )
            return StorageError(f"S3 refused to {action} {where} ({detail})")
        if isinstance(err, NoCredentialsError | PartialCredentialsError):
            return StorageError(
                f"no usable AWS credentials to {action} {where}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run on a host with an instance role"
            )
        if isinstance(err, SSLError):
            return StorageError(
                f"TLS failed with the S3 endpoint {self._endpoint} ({type(err).__name__}); "
                "check its certificate, or point AWS_CA_BUNDLE at your CA"
            )
        if isinstance(err, ConnectionError | HTTPClientError | IncompleteReadError | OSError):
            what = "cannot reach" if isinstance(err, ConnectionError) else "lost the connection to"
            return StorageError(
                f"{what} the S3 endpoint {self._endpoint} while trying to {action} {where} "
                f"({type(err).__name__}); check --s3-endpoint / AWS_ENDPOINT_URL and the "
                "network, then run the command again",
                transient=True,
            )
        if isinstance(err, BotoCoreError):
            return StorageError(f"S3 client error while trying to {action} {where}: {err}"[:400])
        # urllib3 errors that botocore did not wrap, and anything else foreign.
        transient = type(err).__module__.startswith("urllib3")
        return StorageError(
            f"S3 request to {action} {where} failed: {type(err).__name__}: {err}"[:400],
            transient=transient,
        )
