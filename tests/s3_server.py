"""A real S3 API server on loopback for the tests: moto in server mode, in a subprocess.

seawall talks to it through boto3 exactly as it would to AWS: HTTP, SigV4,
multipart, conditional writes. Credentials are fake, set in the environment.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

#: What the test process (and the seawall processes it starts) sees of AWS:
#: fake credentials, one region, and nothing from the user's ~/.aws.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
#: Unset while the server runs, so no real endpoint or profile is ever used.
CLEARED_AWS_ENV = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class MotoServer:
    """``python -m moto.server`` on 127.0.0.1 and a free port."""

    def __init__(self, log: Path, *, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **FAKE_AWS_ENV, **(extra_env or {})}
        self._log = log.open("wb")
        self._admin: Any = None
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_up(log)

    def _wait_until_up(self, log: Path, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto server exited early:\n{log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not start within {timeout} s:\n{log.read_text()}")

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()

    def client(self, **kw: Any) -> Any:
        """A plain boto3 client for the test's own setup and inspection."""
        import boto3

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", **kw
        )

    @property
    def admin(self) -> Any:
        """One client for the tests' setup and inspection (making a client takes ~0.1 s)."""
        if self._admin is None:
            self._admin = self.client()
        return self._admin

    def new_bucket(self) -> str:
        name = f"seawall-test-{uuid.uuid4().hex[:20]}"
        self.admin.create_bucket(Bucket=name)
        return name

    def remove_bucket(self, bucket: str) -> None:
        """Empty and delete ``bucket``, so the server's memory does not grow test after test."""
        client = self.admin
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", ()):
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        client.delete_bucket(Bucket=bucket)
