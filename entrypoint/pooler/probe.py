"""`pooler probe readiness|liveness`: ask the local PgBouncer listener, as the rendered pgbouncer.ini says it listens.

Liveness: the listener answers PostgreSQL's SSLRequest at all ('S' or 'N'), so a hung or
dead PgBouncer is restarted. Readiness: it answers the way the client leg's mode demands,
'S' and a completed TLS handshake (its certificate loaded) when TLS is on, 'N' when it is
off. Readiness does not ask the coordinator: during a failover the Service has no primary
for a few seconds, and PgBouncer holds its clients meanwhile (query_wait_timeout); a probe
that failed then would take every pooler out of its Service and turn that wait into
refused connections.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import sys
from typing import Mapping, Optional, Tuple

from entrypoint import layout
from entrypoint.boot.environ import Env
from entrypoint.errors import Collector
from entrypoint.pki import reader

SSL_REQUEST = struct.pack("!II", 8, 80877103)


def ini_path(env: Mapping[str, str]) -> str:
    """Where `pooler run` wrote pgbouncer.ini: PCK_RUNTIME_DIR read (and normalised) as run reads it.

    Raises InputError for a value run refuses, instead of falling back to the default directory
    (another pooler's, perhaps).
    """
    bad = Collector()
    runtime = Env(env, bad).path("PCK_RUNTIME_DIR", layout.RUNTIME_DIR)
    bad.raise_if_any()
    return os.path.join(runtime, layout.POOLER_INI_NAME)


def ini_settings(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(" = ")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _target(ini: dict) -> Tuple[str, int]:
    host = ini.get("listen_addr", "127.0.0.1").split(",")[0].strip()
    host = {"": "127.0.0.1", "*": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return host, int(ini.get("listen_port", "6432"))


def answer(host: str, port: int, timeout: float, handshake: bool) -> str:
    """'S' (TLS, handshake done when asked), 'N' (plaintext only) or what else came back. Raises OSError."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(SSL_REQUEST)
        reply = sock.recv(1)
        if reply == b"S" and handshake:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # whether the certificate is right is verify's job, not a probe's
            with ctx.wrap_socket(sock, server_hostname=None):
                pass
        return reply.decode("latin-1") or "nothing"


def probe(kind: str, timeout: float, env: Mapping[str, str]) -> int:
    """Exit 0 when the listener answers as `kind` needs, 1 otherwise (a line on stderr says why)."""
    path = ini_path(env)
    try:
        ini = ini_settings(reader.read_file(path, reader.CONFIG).decode("utf-8", "replace"))
        host, port = _target(ini)
    except (OSError, ValueError) as exc:
        why = reader.why(exc) if isinstance(exc, OSError) else "holds no listen_port run writes"
        print(f"pooler probe: cannot read {path}: {why} (has pooler run started?)", file=sys.stderr)
        return 1
    tls = ini.get("client_tls_sslmode", "disable") != "disable"
    expected: Optional[str] = ("S" if tls else "N") if kind == "readiness" else None
    try:
        got = answer(host, port, timeout, handshake=tls and kind == "readiness")
    except (OSError, ssl.SSLError) as exc:
        print(f"pooler probe: {host}:{port}: {exc}", file=sys.stderr)
        return 1
    if got not in ("S", "N") or (expected is not None and got != expected):
        print(f"pooler probe: {host}:{port} answered {got!r} to the SSLRequest, expected "
              f"{expected or 'S or N'}", file=sys.stderr)
        return 1
    return 0
