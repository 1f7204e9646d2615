"""verify --pooler: what a PgBouncer in front of the coordinator serves and holds, leg by leg.

A pooler is reported as a Member with role "pooler": the certificate it serves to clients
(SSLRequest, then TLS, judged like a member's port by the name given in --pooler), whether
it takes a plaintext client, and its two legs from its own admin console, as the auth_user
(a stats_user): SHOW CLIENTS (link pooler_client) and SHOW SERVERS (pooler_server), each
session's `tls` column; SHOW CONFIG gives the sslmode of the server leg.
"""

from __future__ import annotations

import os
from typing import List, Optional, Tuple

from entrypoint.audit.model import Connection, Member, ServedCert
from entrypoint.audit.options import VerifyOptions, parse_listen
from entrypoint.audit.probes import ClientCert, ProbeError, pooler_accepts_plaintext, postgres_handshake
from entrypoint.audit.redact import Redactor

ADMIN_DB = "pgbouncer"
DEFAULT_AUTH_USER = "pgbouncer"
TLS_KEYS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "sslcrl", "sslcrldir")


def pooler_members(options: VerifyOptions) -> List[Member]:
    out = []
    for spec in options.poolers:
        host, port = parse_listen(spec) or ("", 0)
        out.append(Member(name=f"pooler {spec}", host=host, port=port, role="pooler"))
    return out


def auth(redactor: Redactor) -> Tuple[str, Optional[str], Optional[str]]:
    """(user, password, why there is none) for the admin console, from the pooler's own variables."""
    from entrypoint.pki import reader

    user = os.environ.get("PCK_POOLER_AUTH_USER") or DEFAULT_AUTH_USER
    password = os.environ.get("PCK_POOLER_AUTH_PASSWORD") or None
    path = os.environ.get("PCK_POOLER_AUTH_PASSWORD_FILE")
    if password is None and path:
        try:
            password = reader.read_file(path, reader.SECRET_TEXT).decode("utf-8").rstrip("\r\n") or None
        except (OSError, UnicodeDecodeError) as exc:
            why = reader.why(exc) if isinstance(exc, OSError) else "not UTF-8"
            return user, None, f"PCK_POOLER_AUTH_PASSWORD_FILE {path}: {why}"
    redactor.secret(password)
    if password is None:
        return user, None, "no PCK_POOLER_AUTH_PASSWORD or PCK_POOLER_AUTH_PASSWORD_FILE given"
    return user, password, None


def _tls(column: str) -> Tuple[bool, Optional[str], Optional[str]]:
    """PgBouncer's `tls` column, e.g. TLSv1.3/TLS_AES_256_GCM_SHA384/ECDH=prime256v1; empty for plaintext."""
    if not column:
        return False, None, None
    parts = column.split("/")
    return True, parts[0], parts[1] if len(parts) > 1 else None


def _rows(conn, command: bytes) -> List[dict]:
    """A SHOW command on the admin console, which speaks the simple query protocol only."""
    from psycopg import pq

    result = conn.pgconn.exec_(command)
    if result.status != pq.ExecStatus.TUPLES_OK:
        raise RuntimeError((result.error_message or b"").decode(errors="replace").strip() or "no rows")
    names = [(result.fname(i) or b"").decode() for i in range(result.nfields)]
    return [{n: (result.get_value(r, i) or b"").decode(errors="replace") for i, n in enumerate(names)}
            for r in range(result.ntuples)]


def _query(member: Member, effective: dict, user: str, password: str, timeout: float) -> None:
    import psycopg

    params = {k: v for k, v in effective.items() if k in TLS_KEYS}
    params.update(host=member.host, port=str(member.port), dbname=ADMIN_DB, user=user, password=password)
    params.setdefault("connect_timeout", str(max(2, round(timeout))))
    with psycopg.connect(psycopg.conninfo.make_conninfo("", **params), autocommit=True) as conn:
        for row in _rows(conn, b"SHOW CLIENTS"):
            if row.get("database") == ADMIN_DB:
                continue  # admin console sessions (verify's own among them), not application traffic
            encrypted, protocol, cipher = _tls(row.get("tls", ""))
            member.connections.append(Connection("pooler_client", f"{row.get('user')}@{row.get('addr')}", encrypted,
                                                 protocol, cipher))
        for row in _rows(conn, b"SHOW SERVERS"):
            encrypted, protocol, cipher = _tls(row.get("tls", ""))
            member.connections.append(Connection("pooler_server", f"{row.get('user')}@{row.get('addr')}", encrypted,
                                                 protocol, cipher))
        config = {row.get("key"): row.get("value") for row in _rows(conn, b"SHOW CONFIG")}
    member.link_modes["pooler_server"] = config.get("server_tls_sslmode") or None
    member.ssl = "on" if config.get("client_tls_sslmode", "disable") != "disable" else "off"


def observe_pooler(member: Member, effective: dict, ca_file: Optional[str], cas: list, client: Optional[ClientCert],
                   timeout: float, redactor: Redactor, credentials: Tuple[str, Optional[str], Optional[str]]) -> None:
    """Fill `member` (a pooler): its served certificate, plaintext acceptance, and both legs' sessions."""
    from entrypoint.audit.observe import _one_line, _served

    user, password, why = credentials
    if password is None:
        member.sql_error = why
    else:
        try:
            _query(member, effective, user, password, timeout)
        except Exception as exc:  # noqa: BLE001 - psycopg.Error or a refused SHOW: reported, never a crash
            member.sql_error = redactor.scrub(_one_line(exc))
    served = ServedCert("pooler", member.port, member.host)
    member.served.append(_served(served, lambda s: postgres_handshake(s.host, s.port, ca_file, client, timeout), cas))
    try:
        member.plaintext_accepted = pooler_accepts_plaintext(member.host, member.port, timeout)
    except ProbeError:
        pass  # the certificate probe above already says the port is unreachable
