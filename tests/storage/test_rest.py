"""RestStorage against a real ``seawall repo-server`` process: auth, append-only, TLS,
ranges, listings, and errors translated at the edge (the conformance suite covers
the protocol itself)."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from seawall.errors import ObjectExists, ObjectNotFound, StorageError, StorageFull, UsageError
from seawall.storage import RetryingStorage, open_storage
from seawall.storage.rest import RestStorage
from tests.rest_server import TOKEN, RestServer, self_signed_cert

# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def append_only_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestServer]:
    server = RestServer(tmp_path_factory.mktemp("append-only") / "root", append_only=True)
    yield server
    server.stop()


@pytest.fixture
def ao(append_only_server: RestServer) -> Iterator[RestStorage]:
    """An empty append-only store (the same token as any backup client)."""
    store = append_only_server.reset()
    yield store
    store.close()


@pytest.fixture
def rw(rest_server: RestServer) -> Iterator[RestStorage]:
    store = rest_server.reset()
    yield store
    store.close()


def raw(server: RestServer, method: str, path: str, **headers: str) -> http.client.HTTPResponse:
    """One request with the stdlib client, which sends the path exactly as given."""
    host, port = server.url.removeprefix("http://").rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request(method, path, headers={"Authorization": f"Bearer {TOKEN}", **headers})
    resp = conn.getresponse()
    resp.read()  # keeps the body on the response object (.peek() no longer needed)
    conn.close()
    return resp


def files_on_disk(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# --- auth -------------------------------------------------------------------------------------


def test_wrong_token_is_refused_and_the_client_says_what_to_do(
    rw: RestStorage, rest_server: RestServer
) -> None:
    rw.put("config", b"secret-free")
    for token, why in [("wrong-token-0123456789", "refused the token"), (None, "without a token")]:
        store = rest_server.storage(token=token)
        calls = (
            lambda s=store: s.get("config"),
            lambda s=store: list(s.list()),
            store.capabilities,
        )
        for call in calls:
            with pytest.raises(StorageError) as info:
                call()
            assert not isinstance(info.value, ObjectNotFound)
            assert not info.value.transient  # retrying cannot help
            message = str(info.value)
            assert why in message and "401" in message and "SEAWALL_REST_TOKEN" in message
            assert "wrong-token" not in message and TOKEN not in message
        store.close()
    # The server's own answer, seen raw: 401 with a Bearer challenge, for every route.
    for path in ["/o/config", "/list", "/capabilities", "/nothing-here"]:
        resp = httpx.get(rest_server.url.rstrip("/") + path)
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"].startswith("Bearer")
        resp = httpx.get(
            rest_server.url.rstrip("/") + path, headers={"Authorization": f"Bearer {TOKEN}x"}
        )
        assert resp.status_code == 401
    # A prefix of the token, or the token under another scheme, is no token.
    for header in [f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, "Bearer "]:
        assert raw(rest_server, "GET", "/o/config", Authorization=header).status == 401
    assert raw(rest_server, "GET", "/o/config").status == 200


def test_tokens_never_reach_the_log(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    second = "second-client-token-xyz-0987654321"
    token_file.write_text(f"# backup clients\n{TOKEN}\n\n{second}\n")
    server = RestServer(
        tmp_path / "root", token=None, args=["--token-file", str(token_file), "--access-log"]
    )
    server.token = TOKEN
    clients = [server.storage(), server.storage(token=second)]
    stranger = server.storage(token="not-" + TOKEN)
    try:
        for i, client in enumerate(clients):  # every listed token works
            client.put(f"data/aa/{i}", b"1")
        with pytest.raises(StorageError):
            stranger.get("data/aa/0")
    finally:
        for client in [*clients, stranger]:
            client.close()
        server.stop()
    log = "".join(server.log)
    assert "serving" in log
    assert "PUT /o/data/aa/0" in log and " 401" in log  # requests are logged, tokens not
    assert TOKEN not in log and second not in log


# --- append-only ------------------------------------------------------------------------------


def test_append_only_refuses_delete_and_overwrite(
    ao: RestStorage, append_only_server: RestServer
) -> None:
    assert ao.capabilities().append_only
    objects = {
        "config": b"{}",
        "keys/k1": b"key",
        "data/ab/ab01": os.urandom(3000),
        "index/i1": b"index",
        "snapshots/s1": b"snapshot",
    }
    for name, data in objects.items():
        ao.put(name, data)
    before = files_on_disk(append_only_server.root)
    for name in objects:
        with pytest.raises(StorageError, match="the server is append-only: it refuses to delete"):
            ao.delete(name)
        with pytest.raises(StorageError, match="append-only: it refuses to overwrite"):
            ao.put(name, b"garbage")
        with pytest.raises(ObjectExists):
            ao.put(name, b"garbage", if_absent=True)
        ao.put(name, objects[name])  # the same bytes again: an idempotent retry succeeds
    # A missing object is refused too: the answer is the policy, not the state.
    with pytest.raises(StorageError, match="append-only"):
        ao.delete("data/ab/missing")
    assert files_on_disk(append_only_server.root) == before
    # Raw: 403 with the header the client keys its message on.
    resp = raw(append_only_server, "DELETE", "/o/config")
    assert (resp.status, resp.getheader("x-seawall-append-only")) == (403, "1")


def test_append_only_lets_clients_release_their_locks(ao: RestStorage) -> None:
    ao.put("locks/mine", b"lock")
    ao.put("locks/mine", b"refreshed")  # under locks/ the store is an ordinary one
    assert ao.get("locks/mine") == b"refreshed"
    ao.delete("locks/mine")
    with pytest.raises(ObjectNotFound):
        ao.delete("locks/mine")
    assert list(ao.list("locks/")) == []


def test_append_only_concurrent_identical_retries_all_succeed(ao: RestStorage) -> None:
    payload = os.urandom(200_000)
    errors: list[BaseException] = []

    def put() -> None:
        try:
            ao.put("data/cc/same", payload)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=put) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert ao.get("data/cc/same") == payload


def test_read_write_server_allows_delete_and_overwrite(rw: RestStorage) -> None:
    assert not rw.capabilities().append_only
    rw.put("data/ab/x", b"one")
    rw.put("data/ab/x", b"two")
    assert rw.get("data/ab/x") == b"two"
    rw.delete("data/ab/x")
    assert list(rw.list()) == []


# --- the wire: ranges, streaming, listings, names ---------------------------------------------


def test_large_objects_stream_and_ranges_cross_chunk_boundaries(rw: RestStorage) -> None:
    from seawall.interfaces.server.app import STREAM_CHUNK

    payload = os.urandom(3 * STREAM_CHUNK + 12345)
    rw.put("data/ff/big", payload)
    assert rw.get("data/ff/big") == payload
    for offset, length in [
        (STREAM_CHUNK - 10, 20),
        (1, 2 * STREAM_CHUNK + 7),
        (len(payload) - 5, None),
        (len(payload) - 5, 100),
        (len(payload), None),
        (len(payload) + 10, 5),
    ]:
        end = None if length is None else offset + length
        assert rw.get("data/ff/big", offset, length) == payload[offset:end]
    assert rw.stat("data/ff/big").size == len(payload)


def test_range_header_forms(rw: RestStorage, rest_server: RestServer) -> None:
    rw.put("obj", bytes(range(100)))
    cases = {
        "bytes=10-19": (206, "bytes 10-19/100", bytes(range(10, 20))),
        "bytes=90-": (206, "bytes 90-99/100", bytes(range(90, 100))),
        "bytes=-5": (206, "bytes 95-99/100", bytes(range(95, 100))),
        "bytes=95-500": (206, "bytes 95-99/100", bytes(range(95, 100))),
        "bytes=100-": (416, "bytes */100", None),
        "bytes=5-2": (200, None, bytes(range(100))),  # invalid: ignored, as RFC 9110 says
        "bytes=0-1,5-6": (200, None, bytes(range(100))),  # several ranges: not supported
        "items=0-1": (200, None, bytes(range(100))),
    }
    for header, (status, content_range, body) in cases.items():
        resp = httpx.get(
            rest_server.url + "o/obj", headers={"Authorization": f"Bearer {TOKEN}", "Range": header}
        )
        assert resp.status_code == status, header
        assert resp.headers.get("content-range") == content_range, header
        if body is not None:
            assert resp.content == body, header


def test_listing_larger_than_one_batch(rw: RestStorage, rest_server: RestServer) -> None:
    # Written straight into the served directory (the layout LocalStorage uses), to be quick.
    expected = {}
    for i in range(2600):
        name = f"data/{i % 7:02x}/{i:064x}"
        path = rest_server.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (i % 50))
        expected[name] = i % 50
    assert {i.name: i.size for i in rw.list()} == expected
    assert {i.name for i in rw.list("data/03/")} == {
        n for n in expected if n.startswith("data/03/")
    }


def test_traversal_is_refused_and_nothing_outside_the_root_is_served(
    rw: RestStorage, rest_server: RestServer
) -> None:
    secret = rest_server.root.parent / "outside-secret"
    secret.write_bytes(b"do not serve me")
    rw.put("data/aa/inside", b"fine")
    for path in [
        "/o/../outside-secret",
        "/o/data/../../outside-secret",
        "/o/%2e%2e/outside-secret",
    ]:
        for method in ["GET", "HEAD", "PUT", "DELETE"]:
            resp = raw(rest_server, method, path)
            assert resp.status in (400, 404), (method, path, resp.status)
    for prefix in ["../", "/", "%2F", "a/../../", "data//"]:
        resp = raw(rest_server, "GET", f"/list?prefix={prefix}")
        assert resp.status == 400, prefix
    assert secret.read_bytes() == b"do not serve me"
    assert [i.name for i in rw.list()] == ["data/aa/inside"]
    # The client refuses such names itself, as every backend does.
    for prefix in ["../", "/etc/", "a/../../"]:
        with pytest.raises(StorageError):
            rw.list(prefix)


def test_percent_encoded_names_round_trip(rw: RestStorage) -> None:
    names = ["data/ab/with space", "odd/na%me", "unicode/é", "q/what?x=1#frag"]
    for i, name in enumerate(names):
        rw.put(name, bytes([i]) * 10)
    for i, name in enumerate(names):
        assert rw.get(name) == bytes([i]) * 10
    assert {i.name for i in rw.list()} == set(names)


# --- TLS --------------------------------------------------------------------------------------


def test_tls_client_verifies_the_self_signed_certificate(
    rest_tls_server: RestServer, tmp_path: Path
) -> None:
    assert rest_tls_server.url.startswith("https://127.0.0.1:")
    store = rest_tls_server.reset()  # verify= the server's own certificate
    store.put("config", b"over tls")
    assert store.get("config") == b"over tls"
    store.close()
    # Without that certificate the client refuses, permanently and with the way out.
    for verify in [True, str(self_signed_cert(tmp_path / "other")[0])]:
        stranger = RestStorage(rest_tls_server.url, TOKEN, verify=verify)
        with pytest.raises(StorageError) as info:
            stranger.get("config")
        assert not info.value.transient
        assert "could not be verified" in str(info.value)
        assert "SEAWALL_REST_CACERT" in str(info.value)
        stranger.close()
    # Plain HTTP to the TLS port gets nothing.
    plain = RestStorage(rest_tls_server.url.replace("https:", "http:"), TOKEN, timeout=5)
    with pytest.raises(StorageError):
        plain.get("config")
    plain.close()


# --- open_storage and the client's own checks -------------------------------------------------


def test_open_storage_rest_takes_the_token_from_the_environment(
    rw: RestStorage, rest_server: RestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    rw.put("config", b"c")
    monkeypatch.setenv("SEAWALL_REST_TOKEN", TOKEN)
    store = open_storage(f"rest:{rest_server.url}")
    assert isinstance(store, RetryingStorage)
    assert store.location == f"rest:{rest_server.url}"
    assert TOKEN not in store.location
    assert store.get("config") == b"c"
    store.close()
    monkeypatch.delenv("SEAWALL_REST_TOKEN")
    anonymous = open_storage(f"rest:{rest_server.url}")
    with pytest.raises(StorageError, match="without a token"):
        anonymous.get("config")
    anonymous.close()


@pytest.mark.parametrize(
    "url",
    ["ftp://host/", "http://", "not a url", "http://user:hunter2hunter2@127.0.0.1:1/"],
)
def test_bad_urls_are_usage_errors_that_never_echo_credentials(url: str) -> None:
    with pytest.raises(UsageError) as info:
        RestStorage(url)
    assert "hunter2" not in str(info.value)


def test_unreachable_server_is_a_transient_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = RestStorage(f"http://127.0.0.1:{port}/", TOKEN, timeout=5)
    with pytest.raises(StorageError) as info:
        store.stat("config")
    assert info.value.transient
    assert "cannot connect" in str(info.value)
    store.close()


class _Stub(http.server.BaseHTTPRequestHandler):
    """Answers every request with the status and body named by its path (``/o/STATUS``)."""

    def do_GET(self) -> None:
        if self.path.startswith("/list"):
            body = b'{"name": "a", "size": 1}\n'  # and then no end marker: cut short
            status = 200
        elif self.path == "/o/ignores-range":
            body, status = bytes(range(50)), 200
        else:
            status = int(self.path.rsplit("/", 1)[1])
            body = json.dumps({"error": f"stub says {status}"}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[RestStorage]:
    """A stand-in server for answers the real one gives only on failures we cannot cause."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    store = RestStorage(f"http://127.0.0.1:{server.server_address[1]}/", TOKEN)
    yield store
    store.close()
    server.shutdown()
    server.server_close()


def test_error_statuses_are_translated_at_the_edge(stub: RestStorage) -> None:
    for status in (500, 502, 503, 429):
        with pytest.raises(StorageError) as info:
            stub.get(str(status))
        assert info.value.transient, status
        assert f"stub says {status}" in str(info.value)
    with pytest.raises(StorageFull):
        stub.put("507", b"x")
    with pytest.raises(StorageError) as info:
        stub.get("400")
    assert not info.value.transient
    with pytest.raises(StorageError) as info:
        list(stub.list())
    assert info.value.transient and "cut short" in str(info.value)
    # A server that ignores Range still yields the right bytes.
    assert stub.get("ignores-range", 10, 5) == bytes(range(10, 15))
