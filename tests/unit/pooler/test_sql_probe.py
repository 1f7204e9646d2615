"""The setup SQL (quoting, what it grants, who the lookup returns) and the pod probe against a fake listener."""

from __future__ import annotations

import socket
import threading

import pytest

from entrypoint.pooler import sql
from entrypoint.pooler.probe import _target, ini_settings, probe


def test_role_statements_quote_and_carry_the_verifier_not_the_password():
    statements = sql.role_statements('we"ird', "SCRAM-SHA-256$4096:abc'd")
    assert '"we""ird"' in statements[1] and "'SCRAM-SHA-256$4096:abc''d'" in statements[1]
    assert "NOSUPERUSER" in statements[1] and "NOREPLICATION" in statements[1]
    assert "rolname = 'we\"ird'" in statements[0]


def test_the_lookup_excludes_superusers_replication_and_expired_roles_and_is_granted_to_the_role_only():
    assert "NOT rolsuper AND NOT rolreplication" in sql.LOOKUP and "rolvaliduntil" in sql.LOOKUP
    assert "SECURITY DEFINER SET search_path = pg_catalog, pg_temp" in sql.LOOKUP
    assert "RETURNS TABLE" in sql.LOOKUP  # no row for an unknown user: a failed login, not a config error
    statements = sql.database_statements("pgbouncer")
    assert "REVOKE ALL ON FUNCTION pgbouncer.user_lookup(text) FROM PUBLIC" in statements
    assert statements[-1] == 'GRANT EXECUTE ON FUNCTION pgbouncer.user_lookup(text) TO "pgbouncer"'


def test_ini_listen_address_for_the_probe():
    ini = ini_settings("listen_addr = 0.0.0.0\nlisten_port = 6432\nclient_tls_sslmode = require\n")
    assert _target(ini) == ("127.0.0.1", 6432) and ini["client_tls_sslmode"] == "require"
    assert _target(ini_settings("listen_addr = 10.1.2.3\nlisten_port = 7000\n")) == ("10.1.2.3", 7000)


def _listener(answer: bytes):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def serve():
        for _ in range(4):
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(8)
                conn.sendall(answer)
    threading.Thread(target=serve, daemon=True).start()
    return server


@pytest.mark.parametrize("answer, tls, kind, status", [
    (b"N", "disable", "readiness", 0), (b"N", "require", "readiness", 1), (b"N", "require", "liveness", 0),
    (b"E", "disable", "liveness", 1),
])
def test_probe_judges_the_answer_to_the_sslrequest(tmp_path, answer, tls, kind, status):
    server = _listener(answer)
    try:
        (tmp_path / "pgbouncer.ini").write_text(f"listen_addr = 127.0.0.1\nlisten_port = {server.getsockname()[1]}\n"
                                                f"client_tls_sslmode = {tls}\n")
        assert probe(kind, 2, {"PCK_RUNTIME_DIR": str(tmp_path)}) == status
    finally:
        server.close()


def test_probe_without_a_rendered_ini_fails(tmp_path):
    assert probe("liveness", 1, {"PCK_RUNTIME_DIR": str(tmp_path)}) == 1
