"""PostgreSQL's wire protocol, the little the product speaks itself: the SSLRequest that opens TLS on port 5432.

Shared by the audit (which certificate a member serves) and the boot pipeline (whether a
peer serves TLS yet, during a rolling change of PGSSLMODE). No libpq, no psycopg: a
socket, eight bytes and one answer byte.
"""

from __future__ import annotations

import socket
import struct
from typing import Optional

# PostgreSQL's SSLRequest: length 8, then the magic code 1234.5679 (80877103).
SSL_REQUEST = struct.pack("!II", 8, 80877103)


class NotPostgres(OSError):
    """The port answered the SSLRequest with something a PostgreSQL server never sends."""


def ssl_request(host: str, port: int, timeout: float) -> Optional[socket.socket]:
    """Connect and send the SSLRequest. Returns the socket, ready for a TLS handshake, when the server
    answers 'S'; None when it answers 'N' (it serves no TLS). Raises OSError (NotPostgres for a stranger)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.sendall(SSL_REQUEST)
        answer = sock.recv(1)
    except OSError:
        sock.close()
        raise
    if answer == b"S":
        return sock
    sock.close()
    if answer == b"N":
        return None
    raise NotPostgres(f"{host}:{port} answered {answer!r} to the SSLRequest, not S or N")
