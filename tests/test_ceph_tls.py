"""The throwaway CA of the local platform (``valeria_platform.tls``): a real TLS handshake that
verifies the chain and the host name, and private keys that only their owner can read."""

from __future__ import annotations

import socket
import ssl
import stat
import threading

import pytest
from valeria_platform.tls import LocalCA, make_server_tls


def _serve_once(tls_chain: str, key: str) -> tuple[int, threading.Thread]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls_chain, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def run() -> None:
        with listener:
            for _ in range(3):
                conn, _ = listener.accept()
                try:
                    with ctx.wrap_socket(conn, server_side=True) as s:
                        s.sendall(b"ok")
                except (ssl.SSLError, OSError):
                    pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return port, t


def _handshake(port: int, ca: str, server_hostname: str) -> bytes:
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as s:
            return s.recv(2)


def test_certificate_verifies_for_its_hosts_only(tmp_path) -> None:
    tls = make_server_tls(tmp_path, "svc", hosts=("127.0.0.1", "localhost"))
    port, thread = _serve_once(str(tls.chain), str(tls.key))
    assert _handshake(port, str(tls.ca_cert), "127.0.0.1") == b"ok"
    assert _handshake(port, str(tls.ca_cert), "localhost") == b"ok"
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(port, str(tls.ca_cert), "rgw.example.org")
    thread.join(10)


def test_another_ca_is_not_trusted(tmp_path) -> None:
    tls = make_server_tls(tmp_path / "a", "svc")
    other = LocalCA.create(tmp_path / "b")
    port, thread = _serve_once(str(tls.chain), str(tls.key))
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(port, str(other.cert), "127.0.0.1")
    for _ in range(2):  # let the server thread finish its accepts
        try:
            _handshake(port, str(tls.ca_cert), "127.0.0.1")
        except OSError:
            pass
    thread.join(10)


def test_private_keys_are_owner_only(tmp_path) -> None:
    tls = make_server_tls(tmp_path, "svc")
    for path in (tls.key, tls.combined, tmp_path / "ca-key.pem"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(tls.ca_cert.stat().st_mode) == 0o644
    assert b"PRIVATE KEY" not in tls.chain.read_bytes() and b"PRIVATE KEY" not in tls.ca_cert.read_bytes()
