"""The seed's "Upgrading Existing Cluster to Use SSL", and its "disable SSL to recover", as a StatefulSet rolls them.

One `helm upgrade --set ssl.enabled=true --set ssl.mode=verify-ca` restarts every pod with
the Secret mounted, PGSSLMODE=verify-ca and (the chart's lookup saw a cluster that served
no TLS) PCK_TLS_UPGRADE=true, highest ordinal first, each waited for with the chart's
readiness probe. Without the transition the first restarted replica asks its plaintext
primary for verify-ca replication and never becomes ready, and the rollout stalls. A
write loop through the primary runs throughout; at the end every acknowledged row is
there and every link runs at the new mode (pg_stat_ssl, pg_stat_wal_receiver, Citus's
node_conninfo), checked on the servers themselves.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.support.cluster import LocalCluster, citus_available, wait_for
from tests.support.rolling import WriteLoop, prestop_command, rolling_restart

pytestmark = pytest.mark.integration

REPLICATION_TLS = ("SELECT r.application_name, s.ssl, s.version FROM pg_stat_replication r "
                   "JOIN pg_stat_ssl s ON s.pid = r.pid")


def _to_tls(cluster: LocalCluster, mode: str):
    def change(member) -> None:
        member.pair = cluster.ca.issue(member.host, cn=member.name)
        member.env_extra.update(PGSSLMODE=mode, PCK_TLS_UPGRADE="true")
    return change


def _to_plaintext(cluster: LocalCluster):
    def change(member) -> None:
        cluster.clear_cert_dir(member)  # ssl.enabled=false: no Secret mounted
        member.env_extra.update(PGSSLMODE="prefer")  # the chart's default without ssl
        member.env_extra.pop("PCK_TLS_UPGRADE", None)
    return change


def _receiver_mode(cluster: LocalCluster, member, dbname: str = "postgres") -> str:
    rows = cluster.query(member, "SELECT conninfo FROM pg_stat_wal_receiver", dbname=dbname, sslmode="prefer",
                         sslrootcert=None)
    return psycopg.conninfo.conninfo_to_dict(rows[0][0]).get("sslmode", "prefer") if rows else "-"


def _lost(cluster: LocalCluster, loop: WriteLoop, dbname: str = "postgres", group=None) -> list:
    rows = {v for (v,) in cluster.query(cluster.leader(group), f"SELECT v FROM {loop.table}", dbname=dbname,
                                        sslmode="prefer", sslrootcert=None)}
    return loop.lost(rows)


def test_the_seeds_upgrade_to_verify_ca_completes_with_no_write_lost():
    with LocalCluster(mode="prefer", members=2, scope="rollup", base_ip=180, with_certs=False) as cluster:
        with cluster.connect(cluster.leader(), sslmode="prefer") as conn:
            conn.execute("CREATE TABLE rollcheck (v int PRIMARY KEY)")
        with WriteLoop(cluster, "rollcheck") as loop:
            order = rolling_restart(cluster, _to_tls(cluster, "verify-ca"), prestop=prestop_command())
            cluster.mode = "verify-ca"
            cluster.wait_healthy(120)
        assert order == [m.name for m in sorted(cluster.members, key=lambda m: m.name, reverse=True)]
        assert len(loop.acknowledged) > 50 and _lost(cluster, loop) == []
        leader = cluster.leader()
        replica = next(m for m in cluster.members if m is not leader)
        wait_for("the replica to tighten its replication to verify-ca",
                 lambda: _receiver_mode(cluster, replica) == "verify-ca", 90, 1.0)
        links = cluster.query(leader, REPLICATION_TLS)
        assert links and all(ssl for _, ssl, _ in links), links
        with pytest.raises(psycopg.OperationalError):
            cluster.query(leader, "SELECT 1", sslmode="disable", sslrootcert=None)
        assert "transitional" in replica.log()  # it did start in the transition, and said so


def test_without_the_transition_the_first_replica_never_becomes_ready():
    """The stall the seed's command runs into, reproduced: this is what PCK_TLS_UPGRADE is for."""
    with LocalCluster(mode="prefer", members=2, scope="rollstall", base_ip=189, with_certs=False) as cluster:
        def strict_only(member) -> None:
            member.pair = cluster.ca.issue(member.host, cn=member.name)
            member.env_extra.update(PGSSLMODE="verify-ca")

        with pytest.raises(TimeoutError, match="ready"):
            rolling_restart(cluster, strict_only, ready_timeout=45)
        replica = next(m for m in cluster.members if m.env_extra.get("PGSSLMODE") == "verify-ca")
        assert "server does not support SSL, but SSL was required" in replica.log()


def test_disabling_tls_to_recover_completes_with_no_write_lost():
    with LocalCluster(mode="verify-ca", members=2, scope="rolldown", base_ip=183) as cluster:
        with cluster.connect(cluster.leader()) as conn:
            conn.execute("CREATE TABLE rollcheck (v int PRIMARY KEY)")
        with WriteLoop(cluster, "rollcheck") as loop:
            rolling_restart(cluster, _to_plaintext(cluster), prestop=prestop_command())
            cluster.mode = "prefer"
            cluster.wait_healthy(120)
        assert len(loop.acknowledged) > 50 and _lost(cluster, loop) == []
        ssl = cluster.query(cluster.leader(), "SHOW ssl", sslmode="prefer", sslrootcert=None)
        assert ssl == [("off",)]


@pytest.mark.skipif(not citus_available(), reason="Citus extension not installed (citus.so absent): it is in no "
                                                  "package registry this project can reach")
def test_the_seeds_upgrade_of_a_citus_cluster_keeps_distributed_writes():
    with LocalCluster(mode="prefer", citus_groups=[0, 0, 1], scope="rollcitus", base_ip=186,
                      with_certs=False) as cluster:
        coordinator = cluster.leader(0)
        wait_for("the worker registered in pg_dist_node", lambda: cluster.query(
            coordinator, "SELECT count(*) FROM pg_dist_node WHERE groupid = 1 AND isactive", dbname="citus",
            sslmode="prefer")[0][0] == 1, 90, 1.0)
        with cluster.connect(coordinator, dbname="citus", sslmode="prefer") as conn:
            conn.execute("CREATE TABLE rollcheck (v int PRIMARY KEY)")
            conn.execute("SELECT create_distributed_table('rollcheck', 'v')")
        with WriteLoop(cluster, "rollcheck", dbname="citus", group=0) as loop:
            rolling_restart(cluster, _to_tls(cluster, "verify-ca"), prestop=prestop_command())
            cluster.mode = "verify-ca"
            cluster.wait_healthy(150)
        assert len(loop.acknowledged) > 50 and _lost(cluster, loop, "citus", group=0) == []
        for member in cluster.members:
            wait_for(f"{member.name} to tighten citus.node_conninfo to verify-ca",
                     lambda m=member: "sslmode=verify-ca" in cluster.query(m, "SHOW citus.node_conninfo",
                                                                           dbname="citus")[0][0], 90, 1.0)
