"""Read what a server presents on the wire: the certificate PostgreSQL and the REST API serve right now."""

from __future__ import annotations

import socket
import ssl
import struct

from cryptography import x509

SSL_REQUEST = struct.pack("!II", 8, 80877103)


def _client_context() -> ssl.SSLContext:
    # Only to read the certificate: trust is judged by the caller, not here.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def postgres_certificate(host: str, port: int = 5432, timeout: float = 5) -> x509.Certificate:
    """The certificate PostgreSQL serves after an SSLRequest; raises ConnectionError when it declines TLS."""
    with socket.create_connection((host, port), timeout=timeout) as raw:
        raw.sendall(SSL_REQUEST)
        answer = raw.recv(1)
        if answer != b"S":
            raise ConnectionError(f"{host}:{port} declined TLS (answered {answer!r})")
        with _client_context().wrap_socket(raw) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def https_certificate(host: str, port: int, timeout: float = 5) -> x509.Certificate:
    """The certificate a TLS server (Patroni's REST API) serves."""
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with _client_context().wrap_socket(raw) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
