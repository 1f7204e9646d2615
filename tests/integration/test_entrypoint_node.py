"""One real node started through `patroni-citus-k8s run` as root: what the entrypoint promises, seen on the server."""

from __future__ import annotations

import os
import stat

import psycopg
import pytest

from tests.support.cluster import LocalCluster


@pytest.fixture(scope="module")
def require_node():
    with LocalCluster(mode="require", members=1, scope="req") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def prefer_node():
    with LocalCluster(mode="prefer", members=1, scope="pref", base_ip=21) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def verify_full_node():
    with LocalCluster(mode="verify-full", members=1, scope="vfull", base_ip=31) as cluster:
        yield cluster


def test_require_node_is_leader_with_ssl_on(require_node):
    member = require_node.members[0]
    assert require_node.member_state(member)["role"] in ("primary", "master")
    assert require_node.query(member, "SHOW ssl") == [("on",)]


def test_require_refuses_plaintext_tcp(require_node):
    member = require_node.members[0]
    with pytest.raises(psycopg.OperationalError, match="no encryption|SSL off|pg_hba.conf rejects"):
        require_node.query(member, "SELECT 1", sslmode="disable")


def test_prefer_accepts_plaintext_tcp(prefer_node):
    member = prefer_node.members[0]
    rows = prefer_node.query(member, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", sslmode="disable")
    assert rows == [(False,)]
    rows = prefer_node.query(member, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", sslmode="require")
    assert rows == [(True,)]


def test_verify_full_connection_is_encrypted_on_the_wire(verify_full_node):
    member = verify_full_node.members[0]
    rows = verify_full_node.query(
        member, "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert rows[0][0] is True
    assert rows[0][1] in ("TLSv1.2", "TLSv1.3")


def test_local_connections_work_although_the_certificate_lacks_localhost(verify_full_node):
    """The test certificate covers only the member's IP: Patroni's own connection goes through the socket."""
    member = verify_full_node.members[0]
    assert "localhost" not in str(member.pair.cert.extensions)
    # Patroni reached the primary state and answers health checks, which needs its local connection.
    status, _ = verify_full_node.api_get(member, "health")
    assert status == 200


def test_key_copy_is_private_and_owned_by_postgres(verify_full_node):
    import pwd
    member = verify_full_node.members[0]
    postgres = pwd.getpwnam("postgres")
    key = os.stat(os.path.join(member.runtime_dir, "tls", "server.key"))
    assert stat.S_IMODE(key.st_mode) == 0o600
    assert (key.st_uid, key.st_gid) == (postgres.pw_uid, postgres.pw_gid)
    config = os.stat(member.config_file)
    assert stat.S_IMODE(config.st_mode) == 0o600 and config.st_uid == postgres.pw_uid
    mounted = os.stat(os.path.join(member.cert_dir, "server.key"))
    assert mounted.st_uid == 0 and stat.S_IMODE(mounted.st_mode) == 0o600


def test_patroni_runs_as_postgres_not_root(verify_full_node):
    import pwd
    member = verify_full_node.members[0]
    with open(f"/proc/{member.proc.pid}/status", encoding="ascii") as handle:
        uids = next(line for line in handle if line.startswith("Uid:")).split()[1:]
    assert set(map(int, uids)) == {pwd.getpwnam("postgres").pw_uid}
    with open(f"/proc/{member.proc.pid}/cmdline", "rb") as handle:
        assert b"patroni" in handle.read()


def test_secret_values_do_not_reach_the_log(verify_full_node):
    from tests.support.cluster import SUPERUSER_PASSWORD, REPLICATION_PASSWORD
    log = verify_full_node.members[0].log()
    assert SUPERUSER_PASSWORD not in log and REPLICATION_PASSWORD not in log
