"""A 3-member Patroni cluster at verify-full: replication, refusals, REST API, switchover and failover, all on the wire."""

from __future__ import annotations

import os
import signal
import ssl
import urllib.error
import urllib.request

import psycopg
import pytest

from tests.support.cluster import LocalCluster, TestCA, wait_for

REPLICATION_TLS = """
SELECT r.application_name, s.ssl, s.version
  FROM pg_stat_replication r JOIN pg_stat_ssl s ON s.pid = r.pid
 ORDER BY 1
"""


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(mode="verify-full", members=3, scope="ha", base_ip=41) as c:
        # Faster failure detection for the test; operators tune the same keys this way.
        c.patronictl(c.leader(), "edit-config", "-s", "ttl=12", "-s", "loop_wait=2", "-s", "retry_timeout=4",
                     "--force", "ha")
        yield c


def replicas_over_tls(cluster, primary):
    rows = cluster.query(primary, REPLICATION_TLS)
    return rows if len(rows) == len([m for m in cluster.members if m.proc and m.proc.poll() is None]) - 1 else None


def test_replication_connections_are_encrypted(cluster):
    primary = cluster.leader()
    rows = wait_for("both replicas streaming", lambda: replicas_over_tls(cluster, primary), 60)
    assert len(rows) == 2
    for name, encrypted, version in rows:
        assert encrypted is True, name
        assert version in ("TLSv1.2", "TLSv1.3"), name


def test_server_offers_tls_12_or_newer_only(cluster):
    assert cluster.query(cluster.leader(), "SHOW ssl_min_protocol_version") == [("TLSv1.2",)]


def test_plaintext_tcp_is_refused_on_every_member(cluster):
    for member in cluster.members:
        with pytest.raises(psycopg.OperationalError, match="no encryption"):
            cluster.query(member, "SELECT 1", sslmode="disable")


def test_plaintext_replication_is_refused(cluster):
    """pg_hba's `all` does not cover replication; the separate reject line must."""
    primary = cluster.leader()
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        cluster.query(primary, "IDENTIFY_SYSTEM", sslmode="disable", user="replicator", password="repl-pass",
                      replication="true")
    rows = cluster.query(primary, "IDENTIFY_SYSTEM", user="replicator", password="repl-pass", replication="true")
    assert rows and rows[0][0]


def test_client_with_another_ca_is_refused(cluster, tmp_path):
    other = tmp_path / "other-ca.crt"
    other.write_bytes(TestCA("some other CA").cert_pem)
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        cluster.query(cluster.members[0], "SELECT 1", sslrootcert=str(other))


def test_name_not_in_the_certificate_is_refused(cluster):
    member = cluster.members[0]
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        cluster.query(member, "SELECT 1", host="localhost", hostaddr=member.host)


def test_rest_api_serves_https_with_a_certificate_chained_to_the_ca(cluster):
    member = cluster.members[1]
    status, body = cluster.api_get(member, "patroni")
    assert status == 200 and body["state"] == "running"
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://{member.host}:{member.api_port}/patroni", timeout=5).read()
    strict = ssl.create_default_context()  # system CAs only: our CA is not among them
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"https://{member.host}:{member.api_port}/patroni", timeout=5, context=strict)


def test_patronictl_lists_members_over_tls(cluster):
    out = cluster.patronictl(cluster.members[2], "list").stdout
    for member in cluster.members:
        assert member.name in out
    assert "Leader" in out and out.count("Replica") == 2


def test_switchover_through_the_tls_rest_api(cluster):
    old = cluster.leader()
    candidate = next(m for m in cluster.members if m is not old)
    result = cluster.patronictl(old, "switchover", "--leader", old.name, "--candidate", candidate.name, "--force",
                                check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(f"{candidate.name} to lead", lambda: cluster.leader() is candidate, 60)
    wait_for("replicas streaming after switchover", lambda: replicas_over_tls(cluster, candidate), 90)


def _postmaster_pid(member) -> int:
    with open(os.path.join(member.data_dir, "postmaster.pid"), encoding="ascii") as handle:
        return int(handle.readline())


def test_failover_after_kill_9_and_old_primary_rejoins_over_tls(cluster):
    old = cluster.leader()
    with cluster.connect(old) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS failover_probe (id int)")
        conn.execute("INSERT INTO failover_probe VALUES (1)")
    postmaster = _postmaster_pid(old)
    os.kill(old.proc.pid, signal.SIGKILL)
    os.kill(postmaster, signal.SIGKILL)
    old.proc.wait(10)
    new = wait_for("a replica to take over", lambda: cluster.leader() if cluster.leader() is not old else None, 90)
    assert new is not old
    assert cluster.query(new, "SELECT count(*) FROM failover_probe") == [(1,)]
    cluster.start_member(old)  # the pod restarts: run again, rejoin as a replica
    wait_for("old primary streaming from the new one", lambda: replicas_over_tls(cluster, new), 120)
    names = {row[0]: row for row in cluster.query(new, REPLICATION_TLS)}
    assert names[old.name][1] is True
    state = cluster.member_state(old)
    assert state["role"] == "replica"
    # When the crashed primary had diverged, Patroni rewound it from the new one: over verify-full.
    rewinds = [line for line in old.log().splitlines() if "running pg_rewind from" in line and "host=" in line]
    for line in rewinds:
        assert "sslmode=verify-full" in line and "sslrootcert=" in line
    if rewinds:
        assert "pg_rewind exit code=0" in old.log()
