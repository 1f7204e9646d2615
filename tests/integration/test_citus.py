"""A real Citus cluster at verify-full, every member started through `run`: what the servers themselves report.

Main layout (127.0.0.101-105): coordinator group 0 with a replica, workers in groups 1 and 2
(4 members). For the worker failover a replica for group 1 is started after the coordinator
switchover, in place of the coordinator's replica, so no more than 4 members run at once on
this 2-core machine. Two small clusters of their own run first and are gone before the main
one starts: mutual TLS (coordinator + worker, 127.0.0.111-112) and PGSSLMODE=disable
(a lone coordinator, 127.0.0.115).

On 127.0.0.x every outgoing connection leaves from 127.0.0.1 (the kernel's source address for
127.0.0.0/8), so a worker cannot tell the coordinator by `client_addr`. The coordinator's
connections are told by what Citus itself stamps on them: `application_name` is
`citus_internal gpid=<gpid>` and gpid // 10**10 is the originating node's pg_dist_node nodeid.
"""

from __future__ import annotations

import os
import signal
import sys

import psycopg
import pytest
from cryptography import x509

from tests.support.cluster import LocalCluster, citus_available, wait_for

pytestmark = pytest.mark.skipif(
    not citus_available(),
    reason="Citus extension not installed (citus.so absent): it is in no package registry this project can reach")

DB = "citus"
GPID_NODE_MULTIPLIER = 10 ** 10  # Citus: gpid = nodeid * 10^10 + pid
ROWS = 1000

COORDINATOR_LINKS = """
SELECT a.application_name, host(a.client_addr), s.ssl, s.version, s.client_dn
  FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid
 WHERE a.datname = %s AND a.application_name LIKE 'citus_internal gpid=%%'
"""
SHARE_PER_NODE = """
SELECT cs.nodename, sum(r.result::bigint)::int
  FROM run_command_on_shards('items', $$SELECT count(*) FROM %s$$) r
  JOIN citus_shards cs ON cs.shardid = r.shardid
 GROUP BY 1
"""


# ---- helpers -------------------------------------------------------------------------------
def sql(cluster, member, query, params=None, **overrides):
    return cluster.query(member, query, params, dbname=DB, **overrides)


def execute(cluster, member, statement, params=None) -> None:
    """A statement whose result has no rows (CREATE, INSERT, ...), in the Citus database."""
    with cluster.connect(member, dbname=DB) as conn:
        conn.execute(statement, params)


def coordinator(cluster):
    return cluster.leader(0)


def primaries_in_pg_dist_node(cluster) -> dict:
    rows = sql(cluster, coordinator(cluster),
               "SELECT groupid, nodename, nodeport FROM pg_dist_node WHERE noderole = 'primary' AND isactive")
    return {group: (name, port) for group, name, port in rows}


def pg_dist_node_matches_leaders(cluster, groups=(0, 1, 2)) -> bool:
    """pg_dist_node on the coordinator names exactly each group's current primary, by its connect address."""
    want = {g: (cluster.leader(g).host, cluster.leader(g).pg_port) for g in groups}
    return primaries_in_pg_dist_node(cluster) == want


def coordinator_links_on(cluster, worker, coordinator_nodeid: int) -> list:
    """The worker's sessions that the coordinator opened (by gpid), with their TLS state."""
    rows = cluster.query(worker, COORDINATOR_LINKS, (DB,))
    return [row for row in rows if int(row[0].split("gpid=")[1]) // GPID_NODE_MULTIPLIER == coordinator_nodeid]


def check_workers_see_encrypted_coordinator_links(cluster) -> dict:
    """Hold a coordinator session whose distributed query opened connections to every worker; read them there."""
    coord = coordinator(cluster)
    with cluster.connect(coord, dbname=DB) as conn:
        nodeid = conn.execute("SELECT citus_backend_gpid() / %s", (GPID_NODE_MULTIPLIER,)).fetchone()[0]
        conn.execute("SET citus.force_max_query_parallelization TO on")
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] >= ROWS
        seen = {}
        for group in (1, 2):
            worker = cluster.leader(group)
            links = coordinator_links_on(cluster, worker, nodeid)
            assert links, f"no connection from the coordinator (nodeid {nodeid}) on {worker.name}"
            for app, client_addr, encrypted, version, _dn in links:
                assert client_addr is not None, f"{app} on {worker.name} is not a TCP connection"
                assert encrypted is True, f"{app} on {worker.name} is not encrypted"
                assert version in ("TLSv1.2", "TLSv1.3"), (worker.name, version)
            seen[worker.name] = links
        return seen


def is_sync_standby(cluster, primary, replica) -> bool:
    status, body = cluster.api_get(primary, "cluster")
    roles = {m["name"]: m["role"] for m in body.get("members", [])} if isinstance(body, dict) else {}
    return roles.get(replica.name) in ("sync_standby", "quorum_standby")


def postmaster_pid(member) -> int:
    with open(os.path.join(member.data_dir, "postmaster.pid"), encoding="ascii") as handle:
        return int(handle.readline())


def ip_sans(member) -> set:
    san = member.pair.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def dump_logs_uncaptured(cluster, tail: int = 80) -> None:
    """Member logs straight to the terminal: a module fixture's teardown output is otherwise not shown."""
    for member in cluster.members:
        lines = member.log().splitlines()[-tail:]
        print(f"\n----- {member.name} ({member.host}) log, last {len(lines)} lines -----", file=sys.__stderr__)
        print("\n".join(lines), file=sys.__stderr__)


def start_citus_cluster(cluster, members, timeout: float = 180) -> None:
    cluster.etcd.start()
    for member in members:
        cluster.start_member(member)
    cluster.wait_healthy(timeout)
    groups = sorted({m.group for m in members})
    wait_for("every group's primary in pg_dist_node", lambda: pg_dist_node_matches_leaders(cluster, groups), 60)


def mapped_ipv6(address: str) -> str:
    """'127.0.0.103' as '::ffff:127.0.0.103': the same IPv4 listener answers (Linux maps it), but for
    libpq's verify-full it is an IPv6 address, which the certificate's IPv4 SAN does not cover."""
    return f"::ffff:{address}"


# ---- mutual TLS: a small cluster of its own, first, so that it never runs beside the main one ----
def test_mutual_tls_coordinator_presents_its_client_certificate_to_workers():
    cluster = LocalCluster(mode="verify-full", citus_groups=[0, 1], client_cert_auth=True, scope="citusmtls",
                           base_ip=111)
    try:
        start_citus_cluster(cluster, cluster.members)
        coord, worker = cluster.members
        execute(cluster, coord, "CREATE TABLE items (id bigint PRIMARY KEY)")
        sql(cluster, coord, "SELECT create_distributed_table('items', 'id')")
        execute(cluster, coord, "INSERT INTO items SELECT generate_series(1, %s::int)", (ROWS,))
        with cluster.connect(coord, dbname=DB) as conn:
            nodeid = conn.execute("SELECT citus_backend_gpid() / %s", (GPID_NODE_MULTIPLIER,)).fetchone()[0]
            assert conn.execute("SELECT count(*) FROM items").fetchone() == (ROWS,)
            links = coordinator_links_on(cluster, worker, nodeid)
        assert links
        for app, _addr, encrypted, version, client_dn in links:
            assert encrypted is True and version in ("TLSv1.2", "TLSv1.3"), app
            assert client_dn == f"/CN={coord.name}", f"{app}: client_dn {client_dn!r}"
        # the other direction too: a worker's own Citus connection to the coordinator presents its certificate
        with cluster.connect(worker, dbname=DB) as conn:
            worker_nodeid = conn.execute("SELECT citus_backend_gpid() / %s", (GPID_NODE_MULTIPLIER,)).fetchone()[0]
            assert conn.execute("SELECT citus_check_connection_to_node(%s, %s)",
                                (coord.host, coord.pg_port)).fetchone() == (True,)
            back = coordinator_links_on(cluster, coord, worker_nodeid)
        assert back
        for app, _addr, encrypted, _version, client_dn in back:
            assert encrypted is True and client_dn == f"/CN={worker.name}", (app, client_dn)
        conninfo = sql(cluster, coord, "SHOW citus.node_conninfo")[0][0]
        tls = os.path.join(coord.runtime_dir, "tls")
        assert conninfo == (f"sslmode=verify-full sslrootcert={tls}/ca.crt "
                            f"sslcert={tls}/server.crt sslkey={tls}/server.key")
        # and a client without a certificate is turned away by the worker
        with pytest.raises(psycopg.OperationalError, match="requires a valid client certificate"):
            sql(cluster, worker, "SELECT 1", sslcert=None, sslkey=None)
    except BaseException:
        dump_logs_uncaptured(cluster)
        raise
    finally:
        cluster.stop()
        cluster.cleanup()


def assert_citus_left_ssl_alone(cluster, member) -> None:
    """Citus's citus_setup_ssl() (run by CREATE EXTENSION when ssl is off and node_conninfo says
    sslmode=require, its compiled-in default) would ALTER SYSTEM SET ssl/ssl_ciphers and write a
    self-signed server.crt/server.key into the data directory: none of that happened."""
    auto_conf = sql(cluster, member, "SELECT pg_read_file('postgresql.auto.conf')")[0][0]
    settings = [line.split("=")[0].strip() for line in auto_conf.splitlines()
                if line.strip() and not line.startswith("#")]
    assert not [s for s in settings if s.startswith("ssl") or s.startswith("citus.")], auto_conf
    sources = sql(cluster, member, "SELECT name, sourcefile FROM pg_file_settings "
                                   "WHERE name IN ('ssl', 'ssl_ciphers', 'citus.node_conninfo')")
    assert {name for name, _ in sources} >= {"ssl", "citus.node_conninfo"}
    for name, sourcefile in sources:
        assert os.path.basename(sourcefile) == "postgresql.conf", (member.name, name, sourcefile)
    data_files = {row[0] for row in sql(cluster, member, "SELECT pg_ls_dir('.')")}
    assert not data_files & {"server.crt", "server.key"}, member.name
    assert "turning it on during creation of the extension" not in member.log()


def test_disable_mode_citus_does_not_turn_ssl_on_behind_our_back():
    """Where ssl is off, the explicit node_conninfo (sslmode=disable) keeps Citus's auto-SSL from firing."""
    cluster = LocalCluster(mode="disable", citus_groups=[0], scope="citusplain", base_ip=115)
    try:
        start_citus_cluster(cluster, cluster.members)
        member = cluster.members[0]
        assert sql(cluster, member, "SELECT extversion FROM pg_extension WHERE extname = 'citus'")
        assert sql(cluster, member, "SHOW ssl") == [("off",)]
        assert sql(cluster, member, "SHOW citus.node_conninfo") == [("sslmode=disable",)]
        assert_citus_left_ssl_alone(cluster, member)
    except BaseException:
        dump_logs_uncaptured(cluster)
        raise
    finally:
        cluster.stop()
        cluster.cleanup()


# ---- the main layout -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(request):
    c = LocalCluster(mode="verify-full", citus_groups=[0, 0, 1, 2, 1], scope="citus", base_ip=101)
    spare = c.members[4]  # group 1's replica: started only for the worker failover
    failed = request.session.testsfailed
    try:
        start_citus_cluster(c, c.members[:4])
        # Faster failure detection for the tests; operators tune the same keys this way, per group.
        for group in ("0", "1"):
            c.patronictl(c.leader(0), "edit-config", "--group", group, "-s", "ttl=20", "-s", "loop_wait=2",
                         "-s", "retry_timeout=4", "--force")
        c.spare = spare
        yield c
    except BaseException:
        dump_logs_uncaptured(c)
        raise
    finally:
        if request.session.testsfailed > failed:
            dump_logs_uncaptured(c)
        c.stop()
        c.cleanup()


def test_pg_dist_node_lists_every_groups_primary_by_a_name_its_certificate_covers(cluster):
    nodes = primaries_in_pg_dist_node(cluster)
    assert sorted(nodes) == [0, 1, 2]
    for group, (name, port) in nodes.items():
        primary = cluster.leader(group)
        assert (name, port) == (primary.host, primary.pg_port)
        assert name in ip_sans(primary), f"{name} not among {primary.name}'s IP SANs"
        # and a verify-full client reaching it by that very name is accepted
        assert cluster.query(primary, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                             host=name) == [(True,)]


def test_distributed_table_is_created_filled_and_queried_from_the_coordinator(cluster):
    coord = coordinator(cluster)
    execute(cluster, coord, "CREATE TABLE items (id bigint PRIMARY KEY, payload text)")
    sql(cluster, coord, "SELECT create_distributed_table('items', 'id')")
    execute(cluster, coord, "INSERT INTO items SELECT i, 'row ' || i FROM generate_series(1, %s::int) i", (ROWS,))
    assert sql(cluster, coord, "SELECT count(*), sum(id) FROM items") == [(ROWS, ROWS * (ROWS + 1) // 2)]
    placements = sql(cluster, coord, "SELECT DISTINCT nodename FROM citus_shards WHERE table_name = 'items'::regclass")
    assert {row[0] for row in placements} == {cluster.leader(1).host, cluster.leader(2).host}
    # each worker holds a real share of the rows, counted shard by shard where they live
    per_node = dict(sql(cluster, coord, SHARE_PER_NODE))
    assert set(per_node) == {cluster.leader(1).host, cluster.leader(2).host}
    assert all(count > 0 for count in per_node.values()) and sum(per_node.values()) == ROWS


def test_workers_see_the_coordinators_connections_encrypted(cluster):
    seen = check_workers_see_encrypted_coordinator_links(cluster)
    assert len(seen) == 2


def test_every_node_reaches_every_node_and_a_shard_moves_between_workers(cluster):
    """Not only coordinator to worker: worker to worker and worker to coordinator at verify-full, and the
    logical-replication subscription a shard move sets up between two workers."""
    coord = coordinator(cluster)
    nodes = {cluster.leader(g).host for g in (0, 1, 2)}
    health = sql(cluster, coord, "SELECT from_nodename, to_nodename, result FROM citus_check_cluster_node_health()")
    assert {(a, b) for a, b, _ in health} == {(a, b) for a in nodes for b in nodes}
    assert all(ok for _, _, ok in health), health
    w1, w2 = cluster.leader(1).host, cluster.leader(2).host
    shard = sql(cluster, coord, "SELECT shardid FROM citus_shards WHERE table_name = 'items'::regclass "
                                "AND nodename = %s ORDER BY shardid LIMIT 1", (w1,))[0][0]
    move = "SELECT citus_move_shard_placement(%s, %s, 5432, %s, 5432, %s)"
    sql(cluster, coord, move, (shard, w1, w2, "force_logical"))
    assert sql(cluster, coord, "SELECT nodename FROM citus_shards WHERE shardid = %s", (shard,)) == [(w2,)]
    assert sql(cluster, coord, "SELECT count(*) FROM items") == [(ROWS,)]
    sql(cluster, coord, move, (shard, w2, w1, "block_writes"))
    assert sql(cluster, coord, "SELECT nodename FROM citus_shards WHERE shardid = %s", (shard,)) == [(w1,)]


def test_coordinator_verifies_the_workers_name_not_only_encrypts(cluster):
    """Same worker, same certificate, reached by a name its SANs do not list: Citus's own connection fails."""
    coord, worker = coordinator(cluster), cluster.leader(1)
    notices = []
    with cluster.connect(coord, dbname=DB) as conn:
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        check = "SELECT citus_check_connection_to_node(%s, %s)"
        assert conn.execute(check, (worker.host, worker.pg_port)).fetchone() == (True,)
        assert conn.execute(check, (mapped_ipv6(worker.host), worker.pg_port)).fetchone() == (False,)
    assert any("does not match host name" in n for n in notices), notices


def test_node_conninfo_is_what_the_mode_says_and_citus_left_ssl_alone(cluster):
    for member in cluster.members[:4]:
        tls = os.path.join(member.runtime_dir, "tls")
        assert sql(cluster, member, "SHOW citus.node_conninfo") == [(f"sslmode=verify-full sslrootcert={tls}/ca.crt",)]
        assert sql(cluster, member, "SHOW ssl") == [("on",)]
        assert sql(cluster, member, "SHOW ssl_cert_file") == [(f"{tls}/server.crt",)]
        assert_citus_left_ssl_alone(cluster, member)


def test_distributed_queries_work_after_a_coordinator_switchover(cluster):
    old = coordinator(cluster)
    candidate = next(m for m in cluster.members if m.group == 0 and m is not old)
    result = cluster.patronictl(old, "switchover", "--group", "0", "--leader", old.name,
                                "--candidate", candidate.name, "--force", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(f"{candidate.name} to lead group 0", lambda: cluster.leader(0) is candidate, 90)
    wait_for("pg_dist_node to name the new coordinator", lambda: pg_dist_node_matches_leaders(cluster), 60)
    execute(cluster, candidate,
            "INSERT INTO items SELECT i, 'after switchover' FROM generate_series(%s::int, %s::int) i",
            (ROWS + 1, ROWS + 100))
    assert sql(cluster, candidate, "SELECT count(*) FROM items") == [(ROWS + 100,)]
    execute(cluster, candidate, "DELETE FROM items WHERE id > %s", (ROWS,))
    check_workers_see_encrypted_coordinator_links(cluster)


def test_distributed_queries_work_after_a_worker_failover(cluster):
    # Swap the coordinator's replica for a replica of group 1: still 4 members on 2 cores.
    coord_replica = next(m for m in cluster.members if m.group == 0 and m is not coordinator(cluster))
    cluster.stop_member(coord_replica)
    coord_replica.proc = None  # stopped on purpose: not part of the health checks any more
    spare = cluster.spare
    cluster.start_member(spare)
    cluster.wait_healthy(120)
    old = cluster.leader(1)
    assert old is not spare
    # Patroni turns on quorum synchronous replication for Citus: only a replica that the
    # primary has recorded as a quorum/sync standby may take over.
    wait_for(f"{spare.name} to be a synchronous standby", lambda: is_sync_standby(cluster, old, spare), 60)
    postmaster = postmaster_pid(old)
    os.kill(old.proc.pid, signal.SIGKILL)
    os.kill(postmaster, signal.SIGKILL)
    old.proc.wait(10)
    wait_for(f"{spare.name} to take over group 1", lambda: cluster.leader(1) is spare, 90)
    wait_for("pg_dist_node to name group 1's new primary", lambda: pg_dist_node_matches_leaders(cluster), 60)
    assert primaries_in_pg_dist_node(cluster)[1] == (spare.host, spare.pg_port)
    coord = coordinator(cluster)
    assert sql(cluster, coord, "SELECT count(*), sum(id) FROM items") == [(ROWS, ROWS * (ROWS + 1) // 2)]
    execute(cluster, coord, "INSERT INTO items SELECT i, 'after failover' FROM generate_series(%s::int, %s::int) i",
            (ROWS + 1, ROWS + 100))
    assert sql(cluster, coord, "SELECT count(*) FROM items") == [(ROWS + 100,)]
    seen = check_workers_see_encrypted_coordinator_links(cluster)
    assert spare.name in seen
