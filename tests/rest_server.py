"""``seawall repo-server`` in a subprocess on a free loopback port, for the tests.

The server is the installed command, exactly as a user runs it; it binds port
0 and announces the real URL on stderr, which :class:`RestServer` waits for.
:func:`self_signed_cert` makes a TLS certificate for 127.0.0.1 with
cryptography's x509 builder, so clients can verify the server against it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seawall.storage.rest import RestStorage

SEAWALL = str(Path(sys.executable).with_name("seawall"))
#: The token every test server accepts (unless a test gives its own).
TOKEN = "test-token-0123456789abcdef"


class RestServer:
    """A running ``seawall repo-server ROOT``; ``url`` is where it listens."""

    def __init__(
        self,
        root: Path,
        *,
        append_only: bool = False,
        token: str | None = TOKEN,
        tls: tuple[Path, Path] | None = None,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> None:
        self.root = root
        self.token = token
        self.cacert = tls[0] if tls else None
        command = [SEAWALL, "repo-server", str(root), "--listen", "127.0.0.1:0", *args]
        if append_only:
            command.append("--append-only")
        if tls:
            command += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SEAWALL_")}
        if token:
            full_env["SEAWALL_SERVER_TOKEN"] = token
        full_env.update(env or {})
        self.log: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # one stream: the ready line, warnings, the access log
            env=full_env,
            text=True,
        )
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        self.url = self._wait_ready(timeout)

    def _drain(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.log.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _wait_ready(self, timeout: float) -> str:
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                self.stop()
                raise RuntimeError(
                    f"repo-server did not start in {timeout} s: {self.log}"
                ) from None
            if line is None:
                self.stop()
                raise RuntimeError(f"repo-server exited early: {''.join(self.log)}")
            if " on http" in line:
                return line.rsplit(" on ", 1)[1].strip()

    def storage(self, **kw: Any) -> RestStorage:
        """A client of this server: RestStorage(url, token=the server's, verify=its cert, **kw)."""
        token = kw.pop("token", self.token)
        if self.cacert is not None:
            kw.setdefault("verify", str(self.cacert))
        return RestStorage(self.url, token, **kw)

    def client_env(self, **extra: str) -> dict[str, str]:
        """The environment of a ``seawall`` client of this server (without SEAWALL_* else)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEAWALL_")}
        env["SEAWALL_REPOSITORY"] = f"rest:{self.url}"
        if self.token:
            env["SEAWALL_REST_TOKEN"] = self.token
        if self.cacert is not None:
            env["SEAWALL_REST_CACERT"] = str(self.cacert)
        env.update(extra)
        return env

    def reset(self) -> RestStorage:
        """Empty the served directory (between tests) and return a client of it."""
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        return self.storage()

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._drainer.join(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def self_signed_cert(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate (and its key) valid for ``host``: (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "seawall test server")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
