"""A local TLS listener that records how clients talk to it (tests only).

It answers like a ClickHouse server that refuses every query (HTTP 500 with a ClickHouse error
body), after recording, per connection, whether the first bytes were a TLS handshake, whether the
handshake completed, and the request line and headers it could read (decrypted when TLS).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

x509 = pytest.importorskip("cryptography.x509", reason="cryptography makes the test certificates")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

REFUSAL = b"Code: 516. DB::Exception: the test listener refuses every query. (AUTHENTICATION_FAILED)"


@dataclass
class Seen:
    """What one connection sent."""

    tls_hello: bool
    handshake_ok: bool = False
    head: bytes = b""


@dataclass
class Listener:
    """A running listener on 127.0.0.1 and its CA (``ca_pem``, the file clients may trust)."""

    port: int
    ca_pem: Path
    seen: list[Seen] = field(default_factory=list)

    def heard_plaintext(self) -> bool:
        """True when some connection opened with anything but a TLS ClientHello."""
        return any(not s.tls_hello for s in self.seen)

    def heard(self, needle: bytes) -> bool:
        """True when ``needle`` occurs in any request head read."""
        return any(needle in s.head for s in self.seen)


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for ``localhost``/127.0.0.1 signed by it (PEM files)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tapeflow test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_pem, cert_pem, key_pem = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return ca_pem, cert_pem, key_pem


@contextlib.contextmanager
def tls_listener(folder: Path):
    """Serve on 127.0.0.1:<free port> until the block ends; yields the :class:`Listener`."""
    ca_pem, cert_pem, key_pem = make_certificates(folder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_pem, key_pem)
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.2)
    listener = Listener(port=sock.getsockname()[1], ca_pem=ca_pem)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                _answer(conn, context, listener)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()


def _answer(conn: socket.socket, context: ssl.SSLContext, listener: Listener) -> None:
    try:
        first = conn.recv(5, socket.MSG_PEEK)
    except OSError:
        return
    seen = Seen(tls_hello=first[:1] == b"\x16")  # TLS record type 22: handshake
    listener.seen.append(seen)
    if not seen.tls_hello:
        # a plain-HTTP request to a TLS port: record what it gave away, then hang up
        with contextlib.suppress(OSError):
            seen.head = _read_head(conn)
        return
    try:
        tls = context.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError):
        return  # the client rejected our certificate
    seen.handshake_ok = True
    with contextlib.suppress(OSError), tls:
        seen.head = _read_head(tls)
        # read the body too: closing with unread bytes makes the kernel send a reset, which can
        # destroy the answer below before the client reads it (seen under load in CI)
        _read_body(tls, seen.head)
        tls.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                    b"X-ClickHouse-Exception-Code: 516\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(REFUSAL), REFUSAL))


def _read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _read_body(conn: socket.socket, head: bytes) -> None:
    """Read what is left of the request body (``Content-Length``) after its head."""
    _, _, rest = head.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or 0)
    missing = length - len(rest)
    while missing > 0:
        chunk = conn.recv(min(missing, 65536))
        if not chunk:
            return
        missing -= len(chunk)
