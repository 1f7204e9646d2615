"""Fetch the certificate a member serves on PostgreSQL's port (SSLRequest, then TLS) and the REST port, and describe it.

The handshakes are the only I/O here; `describe_certificate` is pure over the bytes.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import struct
from dataclasses import dataclass
from typing import Optional, Sequence

from entrypoint import pgwire
from entrypoint.audit.model import ServedCert

# The user named in the plaintext startup probe: it need not exist, pg_hba judges before that.
PROBE_USER = "patroni_citus_k8s_verify_probe"


class ProbeError(Exception):
    """The port could not be reached or did not speak the expected protocol; the message says which."""


@dataclass(frozen=True)
class Handshake:
    """What one port answered.

    `tls` is False when the port answered in plaintext (PostgreSQL said 'N' to the
    SSLRequest, or the REST API answered plain HTTP). `verified` is whether OpenSSL
    accepted the chain against the CA file (None when no CA file was given).
    """

    tls: bool
    der: Optional[bytes] = None
    protocol: Optional[str] = None
    cipher: Optional[str] = None
    verified: Optional[bool] = None
    verify_error: Optional[str] = None


@dataclass(frozen=True)
class ClientCert:
    """The certificate and key this command presents when a server asks for one (mutual TLS)."""

    cert_file: str
    key_file: str


def postgres_handshake(host: str, port: int, ca_file: Optional[str], client: Optional[ClientCert],
                       timeout: float) -> Handshake:
    """Send PostgreSQL's SSLRequest, then shake hands; returns the Handshake, raises ProbeError."""
    def opener() -> Optional[socket.socket]:
        try:
            return pgwire.ssl_request(host, port, timeout)
        except pgwire.NotPostgres as exc:
            raise ProbeError(f"{host}:{port}: not a PostgreSQL server ({exc})") from exc
        except OSError as exc:
            raise ProbeError(f"{host}:{port}: no answer to the SSLRequest ({_reason(exc)})") from exc

    return _handshake(opener, host, port, ca_file, client)


def https_handshake(host: str, port: int, ca_file: Optional[str], client: Optional[ClientCert],
                    timeout: float) -> Handshake:
    """Shake hands with an HTTPS server; a plain HTTP answer gives tls=False. Raises ProbeError."""
    try:
        return _handshake(lambda: _connect(host, port, timeout), host, port, ca_file, client)
    except ProbeError as tls_error:
        if _speaks_plain_http(host, port, timeout):
            return Handshake(tls=False)
        raise tls_error


def accepts_plaintext(host: str, port: int, timeout: float) -> Optional[bool]:
    """Whether PostgreSQL lets a plaintext TCP connection reach authentication; raises ProbeError.

    Sends a StartupMessage without SSL for a user that needs no existence (`PROBE_USER`)
    and reads the first answer: an authentication request means pg_hba let plaintext
    through; an error with SQLSTATE 28000 means pg_hba rejected it (the `hostnossl ...
    reject` lines). No password is ever sent. None when the answer says neither.
    """
    kind, fields = _plaintext_startup(host, port, timeout, "postgres")
    if kind == b"R":
        return True
    if kind == b"E":
        return False if fields.get(b"C") == b"28000" else None
    return None


def pooler_accepts_plaintext(host: str, port: int, timeout: float) -> Optional[bool]:
    """Whether PgBouncer takes a plaintext client; raises ProbeError.

    PgBouncer judges TLS before it looks at the user: with client_tls_sslmode require and
    up it answers a plaintext StartupMessage with FATAL "SSL required" (SQLSTATE 08P01);
    any other answer (an authentication request, "no such user") got past that gate.
    """
    kind, fields = _plaintext_startup(host, port, timeout, "pgbouncer")
    if kind == b"R":
        return True
    if kind == b"E":
        return fields.get(b"M") != b"SSL required"
    return None


def _plaintext_startup(host: str, port: int, timeout: float, database: str) -> tuple:
    """(first message type, fields of an ErrorResponse) for a StartupMessage without SSL; raises ProbeError."""
    params = b"".join(k.encode() + b"\0" + v.encode() + b"\0"
                      for k, v in (("user", PROBE_USER), ("database", database),
                                   ("application_name", "patroni-citus-k8s verify")))
    body = struct.pack("!I", 196608) + params + b"\0"  # protocol 3.0
    sock = _connect(host, port, timeout)
    try:
        sock.sendall(struct.pack("!I", len(body) + 4) + body)
        kind = sock.recv(1)
        reply = b""
        if kind == b"E":
            length = struct.unpack("!I", _recv_exactly(sock, 4))[0]
            reply = _recv_exactly(sock, min(length - 4, 8192))
    except OSError as exc:
        raise ProbeError(f"{host}:{port}: no answer to a plaintext startup ({_reason(exc)})") from exc
    finally:
        sock.close()
    return kind, {f[:1]: f[1:] for f in reply.split(b"\0") if f}


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def _handshake(opener, host: str, port: int, ca_file: Optional[str], client: Optional[ClientCert]) -> Handshake:
    verified: Optional[bool] = None
    verify_error: Optional[str] = None
    if ca_file:
        # First with the CA, so OpenSSL judges the chain with any intermediates the server sends.
        sock = opener()
        if sock is None:
            return Handshake(tls=False)
        try:
            with _context(ca_file, client).wrap_socket(sock, server_hostname=host) as tls:
                return _describe_handshake(tls, verified=True)
        except ssl.SSLCertVerificationError as exc:
            verified, verify_error = False, exc.verify_message or str(exc)
        except (ssl.SSLError, OSError) as exc:
            raise ProbeError(f"{host}:{port}: TLS handshake failed ({_reason(exc)})") from exc
        finally:
            sock.close()
    sock = opener()
    if sock is None:
        return Handshake(tls=False)
    try:
        with _context(None, client).wrap_socket(sock, server_hostname=host) as tls:
            shake = _describe_handshake(tls, verified=verified)
    except (ssl.SSLError, OSError) as exc:
        raise ProbeError(f"{host}:{port}: TLS handshake failed ({_reason(exc)})") from exc
    finally:
        sock.close()
    return Handshake(tls=True, der=shake.der, protocol=shake.protocol, cipher=shake.cipher,
                     verified=verified, verify_error=verify_error)


def _context(ca_file: Optional[str], client: Optional[ClientCert]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # names are judged by name_covered, with libpq's rules
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if client is not None:
        ctx.load_cert_chain(client.cert_file, client.key_file)
    return ctx


def _describe_handshake(tls: ssl.SSLSocket, verified: Optional[bool]) -> Handshake:
    cipher = tls.cipher()
    return Handshake(tls=True, der=tls.getpeercert(binary_form=True), protocol=tls.version(),
                     cipher=cipher[0] if cipher else None, verified=verified)


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise ProbeError(f"{host}:{port}: cannot connect ({_reason(exc)})") from exc


def _speaks_plain_http(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(f"GET /liveness HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            return sock.recv(5) == b"HTTP/"
    except OSError:
        return False


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason
    if isinstance(exc, socket.timeout):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__


def describe_certificate(served: ServedCert, shake: Handshake, cas: Sequence) -> ServedCert:
    """Fill `served` from a handshake: names, dates, whether `served.host` is covered, the chain to `cas`.

    Returns `served`. The chain counts as good when OpenSSL verified it, or (when
    OpenSSL refused it, e.g. for an expired leaf) when libpq's chain rules accept the leaf
    against `cas` (pki.verify leaves the leaf's own dates to the expiry findings).
    """
    from cryptography import x509

    from entrypoint.pki.names import name_covered, san_names
    from entrypoint.pki.verify import chain_problem

    served.tls = shake.tls
    served.protocol, served.cipher = shake.protocol, shake.cipher
    if not shake.tls or shake.der is None:
        return served
    cert = x509.load_der_x509_certificate(shake.der)
    served.sha256, served.serial = hashlib.sha256(shake.der).hexdigest(), format(cert.serial_number, "x")
    dns, ips = san_names(cert)
    served.subject = cert.subject.rfc4514_string()
    served.issuer = cert.issuer.rfc4514_string()
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        served.issuer_id = aki.key_identifier.hex() if aki.key_identifier else served.issuer
    except x509.ExtensionNotFound:
        served.issuer_id = served.issuer
    served.dns_names, served.ip_addresses = list(dns), list(ips)
    served.not_after = cert.not_valid_after_utc
    served.name_covered = name_covered(cert, served.host)
    if cas:
        served.chains_to_ca = bool(shake.verified) or chain_problem([cert], list(cas), "server") is None
    return served
