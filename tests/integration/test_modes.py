"""Each PGSSLMODE on a real primary + replica: is replication encrypted, is plaintext TCP let in, as DESIGN's table says."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.cluster import LocalCluster, wait_for

# mode -> (replication encrypted, plaintext TCP accepted)
EXPECTED = {
    "disable": (False, True),
    "allow": (False, True),  # libpq's allow tries plaintext first, and pg_hba lets it in
    "prefer": (True, True),
    "require": (True, False),
    "verify-ca": (True, False),
}

REPLICATION_TLS = "SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s ON s.pid = r.pid"


@pytest.fixture(scope="module", params=list(EXPECTED), ids=list(EXPECTED))
def pair(request):
    mode = request.param
    base = 51 + list(EXPECTED).index(mode) * 2
    with LocalCluster(mode=mode, members=2, scope=f"m{base}", base_ip=base) as cluster:
        yield mode, cluster


def test_replication_encryption_follows_the_mode(pair):
    mode, cluster = pair
    primary = cluster.leader()
    rows = wait_for("the replica streaming", lambda: cluster.query(primary, REPLICATION_TLS), 60)
    assert rows == [(EXPECTED[mode][0],)]


def test_plaintext_tcp_follows_the_mode(pair):
    mode, cluster = pair
    member = cluster.members[1]
    if EXPECTED[mode][1]:
        assert cluster.query(member, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                             sslmode="disable") == [(False,)]
    else:
        with pytest.raises(psycopg.OperationalError, match="no encryption"):
            cluster.query(member, "SELECT 1", sslmode="disable")


def test_server_ssl_setting_follows_the_mode(pair):
    mode, cluster = pair
    assert cluster.query(cluster.leader(), "SHOW ssl", sslmode="prefer" if mode == "disable" else None) == \
        [("off" if mode == "disable" else "on",)]
