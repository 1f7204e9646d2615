"""Mutual TLS between members (PCK_CLIENT_CERT_AUTH=true) on real servers: certificates demanded on every link."""

from __future__ import annotations

import os
import ssl
import urllib.error
import urllib.request

import psycopg
import pytest

from tests.support.cluster import LocalCluster, wait_for

REPLICATION_TLS = """SELECT s.ssl, s.client_dn FROM pg_stat_replication r JOIN pg_stat_ssl s ON s.pid = r.pid"""


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(mode="verify-full", members=2, scope="mtls", base_ip=71, client_cert_auth=True) as c:
        yield c


def test_replication_presents_a_client_certificate(cluster):
    primary = cluster.leader()
    rows = wait_for("the replica streaming", lambda: cluster.query(primary, REPLICATION_TLS), 60)
    replica = next(m for m in cluster.members if m is not primary)
    assert rows == [(True, f"/CN={replica.name}")]  # PostgreSQL prints the DN OpenSSL-style


def test_client_without_certificate_is_refused(cluster):
    member = cluster.members[0]
    with pytest.raises(psycopg.OperationalError, match="certificate"):
        cluster.query(member, "SELECT 1", sslcert="/nonexistent.crt", sslkey="/nonexistent.key")


def test_rest_api_refuses_a_client_without_certificate(cluster):
    member = cluster.members[0]
    ctx = ssl.create_default_context(cadata=cluster.ca.cert_pem.decode())
    with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
        urllib.request.urlopen(f"https://{member.host}:{member.api_port}/patroni", timeout=5, context=ctx).read()
    status, body = cluster.api_get(member, "patroni")  # with the member's certificate
    assert status == 200 and body["state"] == "running"


def test_patronictl_works_with_the_ctl_certificate(cluster):
    out = cluster.patronictl(cluster.members[1], "list").stdout
    assert all(m.name in out for m in cluster.members)


def test_runtime_copies_hold_the_client_pair(cluster):
    tls = os.path.join(cluster.members[0].runtime_dir, "tls")
    assert {"server.crt", "server.key", "ca.crt"} <= set(os.listdir(tls))


def test_probe_answers_through_the_mutual_tls_rest_api(cluster):
    """The pod probe, run as postgres, reaches the local REST API with the ctl client certificate."""
    import subprocess
    from tests.support.cluster import ENTRYPOINT, RUNUSER
    member = cluster.members[0]
    env = {"PATH": "/usr/bin:/bin", "PCK_RUNTIME_DIR": member.runtime_dir}
    for kind in ("liveness", "readiness"):
        result = subprocess.run([RUNUSER, "-u", "postgres", "--", ENTRYPOINT, "probe", kind], env=env,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
    stopped = dict(env, PCK_RUNTIME_DIR="/nonexistent")
    result = subprocess.run([RUNUSER, "-u", "postgres", "--", ENTRYPOINT, "probe", "readiness"], env=stopped,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "cannot read" in result.stderr
