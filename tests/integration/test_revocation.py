"""Revocation on a running verify-full cluster with mutual TLS: the leaked-key story, on real servers.

Citus when citus.so is installed (coordinator with a replica, one worker: 127.0.N.60-62),
else a plain two-member Patroni cluster; the same steps either way. Every member's Secret
carries `ca.crl` from the start (as `certs generate` writes it); revoking is a Secret update.
Each test leaves the cluster healthy for the next. A test client checks the CRL itself
(sslcrl) only where it checks what a server presents.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import ENTRYPOINT, LocalCluster, citus_available, wait_for
from tests.support.load import QueryLoad
from tests.support.pki import NOW
from tests.support.wire import https_certificate

CITUS = citus_available()
DB = "citus" if CITUS else "postgres"
LOAD_SQL = "SELECT count(*) FROM revocation_check" if CITUS else "SELECT 1"
WALSENDER_OF = ("SELECT s.client_serial::text FROM pg_stat_replication r JOIN pg_stat_ssl s ON s.pid = r.pid "
                "WHERE r.application_name = %s")
ENDED = "ended a session with a revoked client certificate"


@pytest.fixture(scope="module")
def cluster():
    layout = {"citus_groups": [0, 0, 1]} if CITUS else {"members": 2}
    c = LocalCluster(mode="verify-full", client_cert_auth=True, scope="revoke", base_ip=60, **layout)
    c.crl_pem = c.ca.crl()  # the empty, signed CRL every Secret carries
    c.revoked = []
    with c:
        c.write_client_ca()
        if CITUS:
            coordinator = c.leader(0)
            wait_for("the worker registered in pg_dist_node", lambda: c.query(
                coordinator, "SELECT count(*) FROM pg_dist_node WHERE groupid = 1 AND isactive", dbname=DB)[0][0] == 1,
                90, 1.0)
            with c.connect(coordinator, dbname=DB) as conn:
                conn.execute("CREATE TABLE revocation_check (v int PRIMARY KEY)")
                conn.execute("SELECT create_distributed_table('revocation_check', 'v')")
                conn.execute("INSERT INTO revocation_check SELECT generate_series(1, 100)")
        yield c


def group_members(cluster):
    """(primary, replica) of the group with two members: the coordinator's, or the plain cluster."""
    primary = cluster.leader(0 if CITUS else None)
    replica = next(m for m in cluster.members if m.group == primary.group and m is not primary)
    return primary, replica


def load_members(cluster, primary):
    """Who keeps serving queries while the replica is cut off: the primary and, with Citus, the worker."""
    return [primary] + [m for m in cluster.members if CITUS and m.group == 1]


def crl_path(cluster) -> str:
    return os.path.join(cluster.workdir, "ca.crl")


def staged_crl(member) -> bytes:
    with open(os.path.join(member.runtime_dir, "tls", "ca.crl"), "rb") as handle:
        return handle.read()


def publish(cluster, *revoked, members=None) -> None:
    """A Secret update carrying a CRL that adds `revoked` (Pairs) to what was revoked before; waits until staged."""
    cluster.revoked += list(revoked)
    cluster.crl_pem = cluster.ca.crl(cluster.revoked)
    with open(crl_path(cluster), "wb") as handle:
        handle.write(cluster.crl_pem)
    for member in members or cluster.members:
        cluster.write_cert_dir(member)
    for member in members or cluster.members:
        wait_for(f"{member.name} staging the new CRL", lambda m=member: staged_crl(m) == cluster.crl_pem, 30, 0.1)


def client_files(cluster, pair, name: str) -> dict:
    paths = {"sslcert": os.path.join(cluster.workdir, f"{name}.crt"),
             "sslkey": os.path.join(cluster.workdir, f"{name}.key")}
    for path, data in ((paths["sslcert"], pair.cert_pem), (paths["sslkey"], pair.key_pem)):
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    return paths


def member_cert(member) -> dict:
    tls = os.path.join(member.runtime_dir, "tls")
    return {"sslcert": os.path.join(tls, "server.crt"), "sslkey": os.path.join(tls, "server.key")}


def dead(conn) -> bool:
    try:
        conn.execute("SELECT 1").fetchone()
        return False
    except psycopg.OperationalError:
        return True


def test_a_crl_revoking_nobody_in_use_changes_nothing(cluster):
    primary, replica = group_members(cluster)
    walsender = wait_for("the replica streaming", lambda: cluster.query(primary, WALSENDER_OF, (replica.name,)), 60)
    held = {m.name: cluster.connect(m, dbname=DB) for m in cluster.members}
    pids = {name: conn.info.backend_pid for name, conn in held.items()}
    logs = {m.name: len(m.log()) for m in cluster.members}
    publish(cluster, cluster.ca.issue("unused.example"))  # revokes a certificate no one presents
    for member in cluster.members:
        wait_for(f"{member.name} reloading", lambda m=member: "reloading" in m.log()[logs[m.name]:], 30, 0.2)
    for member in cluster.members:
        conn = held[member.name]
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == pids[member.name]  # the session lives on
        assert cluster.query(member, f"SELECT count(*) >= 0 FROM {'revocation_check' if CITUS else 'pg_class'}",
                             dbname=DB) == [(True,)]
        assert ENDED not in member.log()[logs[member.name]:]
        assert "could not" not in member.log()[logs[member.name]:]
        conn.close()
    assert cluster.query(primary, WALSENDER_OF, (replica.name,)) == walsender  # same certificate, still streaming


def test_a_revoked_replica_is_cut_off_while_the_rest_goes_on(cluster):
    primary, replica = group_members(cluster)
    serial = str(replica.pair.cert.serial_number)
    wait_for("the replica streaming", lambda: cluster.query(primary, WALSENDER_OF, (replica.name,)) == [(serial,)], 60)
    logs = {m.name: len(m.log()) for m in cluster.members}
    with QueryLoad(cluster, members=load_members(cluster, primary), sql=LOAD_SQL, dbname=DB) as load:
        publish(cluster, replica.pair)
        wait_for("the primary to end the replica's replication connection",
                 lambda: cluster.query(primary, WALSENDER_OF, (replica.name,)) == [], 15, 0.1)
        assert ENDED in primary.log()[logs[primary.name]:] and "walsender" in primary.log()[logs[primary.name]:]
        # Its retries are refused: a new connection with its certificate fails on the primary ...
        with pytest.raises(psycopg.OperationalError, match="revoked"):
            cluster.query(primary, "SELECT 1", **member_cert(replica))
        time.sleep(6)  # past wal_retrieve_retry_interval (5 s): the walreceiver tried again, and was refused
        assert cluster.query(primary, WALSENDER_OF, (replica.name,)) == []
        # ... and a client checking the CRL refuses the certificate it serves (with sslcrl as every internal link has).
        as_primary = member_cert(primary)
        assert cluster.query(replica, "SELECT 1", **as_primary) == [(1,)]  # the same call without the CRL: fine
        with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
            cluster.query(replica, "SELECT 1", sslcrl=crl_path(cluster), **as_primary)
    assert load.failures == [] and load.ok > 20, load.failures[:3]
    assert "is revoked" in replica.log()[logs[replica.name]:]  # its own watcher says why peers refuse it


def verify(cluster, member, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ENTRYPOINT, "verify", cluster.dsn(member, dbname=DB), "--expiry-days", "7", *args],
                          capture_output=True, text=True, timeout=180, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})


def samples(text: str, name: str, **labels: str) -> list:
    """The values of metric `name` whose labels include `labels`, from Prometheus text."""
    return [sample.value for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()]


def revoked_findings(report: dict) -> set:
    return {(f["code"], f["member"], f["where"].split()[0]) for f in report["findings"] if "revoked" in f["code"]}


def test_verify_reports_the_revoked_replicas_certificate_on_both_ports(cluster):
    primary, replica = group_members(cluster)
    result = verify(cluster, primary, "--crl", crl_path(cluster), "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert revoked_findings(report) == {("revoked_cert_served", replica.name, "postgres"),
                                        ("revoked_cert_served", replica.name, "restapi")}
    rest = next(f for f in report["findings"] if f["where"].startswith("restapi"))
    assert "Patroni's REST API has no CRL setting" in rest["fix"]
    assert [c["issuer"] for c in report["crls"]] == [cluster.ca.cert.subject.rfc4514_string()]
    assert format(replica.pair.cert.serial_number, "x") in report["crls"][0]["revoked"]
    metrics = verify(cluster, primary, "--crl", crl_path(cluster), "--prometheus").stdout
    assert samples(metrics, "pck_tls_serving_revoked_certificate", member=replica.name, service="restapi") == [1]
    assert samples(metrics, "pck_tls_serving_revoked_certificate", member=primary.name, service="restapi") == [0]
    assert samples(metrics, "pck_tls_crl_next_update_seconds") and all(
        25 * 86400 < v <= 30 * 86400 for v in samples(metrics, "pck_tls_crl_next_update_seconds"))


def test_the_revoked_replica_rejoins_with_a_new_certificate(cluster):
    primary, replica = group_members(cluster)
    replica.pair = cluster.ca.issue(replica.host, cn=replica.name)
    log_size = len(replica.log())
    cluster.write_cert_dir(replica)
    serial = str(replica.pair.cert.serial_number)
    wait_for("the replica streaming again with its new certificate",
             lambda: cluster.query(primary, WALSENDER_OF, (replica.name,)) == [(serial,)], 60, 0.5)
    wait_for("its REST API serving the new certificate", lambda: https_certificate(
        replica.host, replica.api_port).serial_number == replica.pair.cert.serial_number, 30, 0.1)
    assert "could not wake Patroni" not in replica.log()[log_size:]  # mutual TLS: the wake-up presented a certificate
    assert cluster.query(replica, "SELECT 1", sslcrl=crl_path(cluster), **member_cert(primary)) == [(1,)]
    result = verify(cluster, primary, "--crl", crl_path(cluster), "--json")
    assert result.returncode == 0, result.stdout  # nothing revoked is served any more: no finding at all
    assert revoked_findings(json.loads(result.stdout)) == set()


def test_verify_reports_a_session_whose_certificate_a_crl_revokes(cluster, tmp_path):
    """A CRL only verify has seen (not yet in the Secrets): the session it revokes is still open, and named."""
    primary, _ = group_members(cluster)
    client = cluster.ca.issue_client("postgres")
    with cluster.connect(primary, **client_files(cluster, client, "held")):
        pending = tmp_path / "pending.crl"
        pending.write_bytes(cluster.ca.crl(cluster.revoked + [client]))
        result = verify(cluster, primary, "--crl", str(pending), "--json")
        assert result.returncode == 1, result.stdout + result.stderr
        found = [f for f in json.loads(result.stdout)["findings"] if f["code"] == "revoked_session"]
        assert [(f["member"], f["where"]) for f in found] == [(primary.name, "client")]
        assert format(client.cert.serial_number, "x") in found[0]["what"]
        metrics = verify(cluster, primary, "--crl", str(pending), "--prometheus").stdout
        assert samples(metrics, "pck_tls_revoked_sessions", member=primary.name, link="client") == [1]
        assert samples(metrics, "pck_tls_revoked_sessions", member=primary.name, link="replication") == [0]


def test_a_revoked_client_certificate_is_refused_and_its_sessions_ended(cluster):
    client = cluster.ca.issue_client("postgres")
    files = client_files(cluster, client, "app")
    sessions = {m.name: cluster.connect(m, dbname=DB, **files) for m in cluster.members}
    for member in cluster.members:
        assert sessions[member.name].execute(
            "SELECT client_serial::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (
            str(client.cert.serial_number),)
    logs = {m.name: len(m.log()) for m in cluster.members}
    publish(cluster, client)
    for member in cluster.members:
        wait_for(f"{member.name} ending the client's session", lambda m=member: dead(sessions[m.name]), 15, 0.1)
        assert f"certificate serial {client.cert.serial_number:x}" in member.log()[logs[member.name]:]
        with pytest.raises(psycopg.OperationalError, match="revoked"):
            cluster.query(member, "SELECT 1", dbname=DB, **files)
        assert cluster.query(member, "SELECT 1", dbname=DB) == [(1,)]  # a member's certificate still gets in


def test_an_expired_crl_swapped_in_is_refused_and_the_current_one_kept(cluster):
    member = cluster.members[-1]
    current, log_size = staged_crl(member), len(member.log())
    good = cluster.crl_pem
    cluster.crl_pem = cluster.ca.crl(cluster.revoked, days=1, now=NOW - dt.timedelta(days=3))
    try:
        cluster.write_cert_dir(member)
        wait_for("the refusal", lambda: "refused new TLS material" in member.log()[log_size:], 30, 0.2)
        assert "expired" in member.log()[log_size:] and "PGSSLCRL" in member.log()[log_size:]
        assert staged_crl(member) == current
        assert cluster.query(member, "SELECT 1", dbname=DB) == [(1,)]  # OpenSSL would refuse this with that CRL
    finally:
        cluster.crl_pem = good
        cluster.write_cert_dir(member)
    time.sleep(2)  # the good CRL is back: the same content as staged, nothing to do
    assert staged_crl(member) == current and cluster.query(member, "SELECT 1", dbname=DB) == [(1,)]
