"""The pooler for real: PgBouncer 1.18, started through `pooler run` as root, in front of a verify-full cluster.

A Citus coordinator with a replica and one worker where citus.so is installed, a 2-member
Patroni cluster otherwise (127.0.<net>.131-133). The coordinator group's primary Service is
HAProxy on 127.0.<net>.200 (tests/support/pooler.py), the pooler listens on
127.0.<net>.210:6432 with its own certificate and targets the Service, as on Kubernetes.
`pooler setup` runs through the Service as the superuser; clients connect as `app`.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import threading
import time

import psycopg
import pytest

from tests.support.cluster import ENTRYPOINT, TEST_NET, VENV_BIN, LocalCluster, citus_available, wait_for
from tests.support.load import BackgroundLoop
from tests.support.pooler import (
    APP_PASSWORD,
    APP_USER,
    AUTH_PASSWORD,
    SERVICE_IP,
    Pooler,
    PrimaryService,
    haproxy_available,
    pooler_setup,
    wait_serial,
)

pytestmark = pytest.mark.skipif(not haproxy_available(), reason="HAProxy not installed (scripts/setup installs it)")

CITUS = citus_available()
DB = "citus" if CITUS else "postgres"
POOLER_IP = f"127.0.{TEST_NET}.210"
ROWS = 100


class ClientLoop(BackgroundLoop):
    """One client on one pooler connection, a query every 50 ms; reconnects (to the same pooler) only if it broke."""

    def __init__(self, dsn: str, max_seconds: float = 150) -> None:
        super().__init__(max_seconds)
        self.dsn = dsn
        self.results: list = []  # (monotonic time, server address or None, error or None)
        self.reconnects = 0

    def _loop(self) -> None:
        conn = None
        while self.running():
            try:
                if conn is None or conn.closed:
                    if conn is not None:
                        self.reconnects += 1
                    # Transaction pooling: no server-side prepared statements (PgBouncer 1.18 does not carry
                    # them from one server connection to the next; docs/pooler.md).
                    conn = psycopg.connect(self.dsn, autocommit=True, prepare_threshold=None)
                addr = conn.execute("SELECT host(inet_server_addr()) FROM (SELECT pg_catalog.pg_is_in_recovery() AS r)"
                                    " s WHERE NOT r").fetchone()
                self.results.append((time.monotonic(), addr[0] if addr else "replica", None))
            except psycopg.Error as exc:
                self.results.append((time.monotonic(), None, str(exc).strip()))
                if conn is not None and conn.broken:
                    conn.close()
                time.sleep(0.1)
            time.sleep(0.05)
        if conn is not None:
            conn.close()

    def ok_on(self, host: str, since: float) -> int:
        return sum(1 for t, addr, _ in self.results if t >= since and addr == host)

    def failures(self) -> list:
        return [err for _, _, err in self.results if err]


def _start_cluster(cluster: LocalCluster) -> None:
    if not CITUS:
        cluster.start()
        cluster.patronictl(cluster.leader(), "edit-config", "-s", "ttl=20", "-s", "loop_wait=2", "-s",
                           "retry_timeout=4", "--force")
        return
    from tests.integration.test_citus import start_citus_cluster

    start_citus_cluster(cluster, cluster.members)
    for group in ("0", "1"):
        cluster.patronictl(cluster.leader(0), "edit-config", "--group", group, "-s", "ttl=20", "-s", "loop_wait=2",
                           "-s", "retry_timeout=4", "--force")


def _prepare_database(cluster: LocalCluster, primary) -> None:
    """The application's role and a table (distributed with Citus), made by the superuser on the primary."""
    with cluster.connect(primary, dbname=DB) as conn:
        conn.execute(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'")
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, payload text)")
        conn.execute(f"GRANT ALL ON items TO {APP_USER}")
        if CITUS:
            # The coordinator reaches the workers as the client's role: its password for them.
            conn.execute("INSERT INTO pg_dist_authinfo VALUES (0, %s, %s)", (APP_USER, f"password={APP_PASSWORD}"))
            conn.execute("SELECT create_distributed_table('items', 'id')")
        conn.execute("INSERT INTO items SELECT i, 'row ' || i FROM generate_series(1, %s::int) i", (ROWS,))


@pytest.fixture(scope="module")
def stack(request):
    groups = [0, 0, 1] if CITUS else None
    cluster = LocalCluster(mode="verify-full", members=2, citus_groups=groups, scope="pool", base_ip=131,
                           service_sans=(SERVICE_IP,))
    service = pooler = None
    failed = request.session.testsfailed
    try:
        _start_cluster(cluster)
        coordinators = [m for m in cluster.members if m.group in (None, 0)]
        service = PrimaryService(cluster, coordinators).start()
        setup = pooler_setup(cluster, cluster.dsn(coordinators[0], host=SERVICE_IP, dbname=DB))
        assert setup.returncode == 0, setup.stdout + setup.stderr
        assert AUTH_PASSWORD not in setup.stdout + setup.stderr
        _prepare_database(cluster, cluster.leader(0 if CITUS else None))
        pooler = Pooler(cluster, POOLER_IP, f"{SERVICE_IP}:5432").start()
        yield cluster, service, pooler, coordinators
    finally:
        if request.session.testsfailed > failed:
            cluster.dump_logs()
            if pooler is not None:
                print(pooler.log()[-4000:])
        for part in (pooler, service):
            if part is not None:
                part.stop()
        cluster.stop()
        cluster.cleanup()


def admin(pooler: Pooler, command: bytes) -> list:
    """A SHOW command on PgBouncer's admin console, as the auth_user (a stats_user), over verify-full TLS."""
    with psycopg.connect(pooler.dsn(user="pgbouncer", password=AUTH_PASSWORD, dbname="pgbouncer"),
                         autocommit=True) as conn:
        result = conn.pgconn.exec_(command)  # the console speaks the simple query protocol only
        names = [result.fname(i).decode() for i in range(result.nfields)]
        return [{n: (result.get_value(r, i) or b"").decode() for i, n in enumerate(names)}
                for r in range(result.ntuples)]


# ---- bad input: no cluster needed ------------------------------------------------------------
def _bad_env(tmp: str, **changes) -> dict:
    cluster_ca = __import__("tests.support.pki", fromlist=["TestCA"]).TestCA("bad-input CA")
    certs = os.path.join(tmp, "certs")
    cluster_ca.write_dir(certs, cluster_ca.issue(POOLER_IP, cn="pooler"))
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "LANG": "C.UTF-8", "PGSSLMODE": "verify-full", "PCK_CERT_DIR": certs,
           "PCK_RUNTIME_DIR": os.path.join(tmp, "run"), "PCK_POOLER_LISTEN": f"{POOLER_IP}:6439",
           "PCK_POOLER_SERVICE": f"{POOLER_IP}:6439", "PCK_POOLER_TARGET": f"{SERVICE_IP}:5432",
           "PCK_POOLER_AUTH_PASSWORD": AUTH_PASSWORD}
    env.update(changes)
    return {k: v for k, v in env.items() if v is not None}


def _fifo(tmp: str) -> str:
    path = os.path.join(tmp, "password.fifo")
    os.mkfifo(path)
    return path


BAD_INPUTS = {
    "no auth password": (lambda tmp: {"PCK_POOLER_AUTH_PASSWORD": None}, "PCK_POOLER_AUTH_PASSWORD"),
    "password file is a FIFO": (lambda tmp: {"PCK_POOLER_AUTH_PASSWORD": None,
                                             "PCK_POOLER_AUTH_PASSWORD_FILE": _fifo(tmp)}, "FIFO"),
    "certificate does not cover the Service": (lambda tmp: {"PCK_POOLER_SERVICE": "pooler.example.org:6432"},
                                               "does not cover 'pooler.example.org'"),
    "no Service name at verify-full": (lambda tmp: {"PCK_POOLER_SERVICE": None}, "PCK_POOLER_SERVICE"),
    "unknown pool mode": (lambda tmp: {"PCK_POOLER_POOL_MODE": "sessions"}, "PCK_POOLER_POOL_MODE"),
    "no target": (lambda tmp: {"PCK_POOLER_TARGET": None}, "PCK_POOLER_TARGET"),
    "typo in a variable": (lambda tmp: {"PCK_POOLER_POOLMODE": "session"}, "did you mean PCK_POOLER_POOL_MODE"),
    "certificate missing": (lambda tmp: {"PGSSLCERT": os.path.join(tmp, "nothing.crt")}, "No such file"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_every_bad_input_exits_2_and_starts_nothing(tmp_path, case):
    make, expected = BAD_INPUTS[case]
    tmp = str(tmp_path)
    os.chmod(tmp, 0o755)
    env = _bad_env(tmp, **make(tmp))
    result = subprocess.run([ENTRYPOINT, "pooler", "run"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr and "nothing was started" in result.stderr
    assert AUTH_PASSWORD not in result.stdout + result.stderr
    assert not os.path.exists(os.path.join(tmp, "run")), "something was written"
    check = subprocess.run([ENTRYPOINT, "pooler", "check"], env=env, capture_output=True, text=True, timeout=30)
    assert check.returncode == 2 and expected in check.stdout
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert os.path.join(tmp, "run") not in ps, "a PgBouncer was started"


# ---- mutual TLS: a one-member cluster of its own, gone before the main stack starts ------------------
def test_mutual_tls_clients_need_a_certificate_and_the_pooler_presents_its_own():
    cluster = LocalCluster(mode="verify-full", members=1, client_cert_auth=True, scope="poolmtls", base_ip=135,
                           service_sans=(SERVICE_IP,))
    service = pooler = None
    try:
        cluster.start()
        service = PrimaryService(cluster, cluster.members).start()
        setup = pooler_setup(cluster, cluster.dsn(cluster.members[0], host=SERVICE_IP))
        assert setup.returncode == 0, setup.stdout + setup.stderr
        with cluster.connect(cluster.members[0]) as conn:
            conn.execute(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'")
        pooler = Pooler(cluster, POOLER_IP, f"{SERVICE_IP}:5432").start()
        assert "client_tls_sslmode = verify-ca" in open(os.path.join(pooler.runtime_dir, "pgbouncer.ini")).read()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pooler.dsn(sslcert=None, sslkey=None)).close()
        with psycopg.connect(pooler.dsn(), autocommit=True) as conn:  # the member's pair as a client certificate
            assert conn.execute("SELECT current_user").fetchone() == (APP_USER,)
            dns = cluster.query(cluster.members[0], "SELECT s.client_dn FROM pg_stat_activity a JOIN pg_stat_ssl s "
                                                    "USING (pid) WHERE a.usename = %s", (APP_USER,))
        assert dns and all(dn == "/CN=pooler" for (dn,) in dns), dns
    finally:
        for part in (pooler, service):
            if part is not None:
                part.stop()
        cluster.stop()
        cluster.cleanup()


# ---- the running stack -------------------------------------------------------------------------
def test_clients_connect_through_the_pooler_at_verify_full(stack):
    cluster, _service, pooler, _ = stack
    primary = cluster.leader(0 if CITUS else None)
    with psycopg.connect(pooler.dsn(dbname=DB), autocommit=True) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT current_user, host(inet_server_addr())").fetchone() == (APP_USER, primary.host)
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (ROWS,)
    # the pooler's certificate is checked by name: reached by another name, verify-full refuses it
    with pytest.raises(psycopg.OperationalError, match="does not match"):
        psycopg.connect(pooler.dsn(dbname=DB, host=f"::ffff:{POOLER_IP}")).close()
    ini = open(os.path.join(pooler.runtime_dir, "pgbouncer.ini"), encoding="utf-8").read()
    auth = os.stat(os.path.join(pooler.runtime_dir, "pgbouncer-auth.txt"))
    assert AUTH_PASSWORD not in ini and AUTH_PASSWORD not in pooler.log()
    assert stat.S_IMODE(auth.st_mode) == 0o600 and auth.st_uid != 0


def test_plaintext_and_superusers_are_refused_by_the_pooler(stack):
    _cluster, _service, pooler, _ = stack
    with pytest.raises(psycopg.OperationalError, match="SSL required"):
        psycopg.connect(pooler.dsn(dbname=DB, sslmode="disable", sslrootcert=None)).close()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pooler.dsn(user="postgres", password=cluster_password(), dbname=DB)).close()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed|SASL"):
        psycopg.connect(pooler.dsn(password="wrong", dbname=DB)).close()


def cluster_password() -> str:
    from tests.support.cluster import SUPERUSER_PASSWORD

    return SUPERUSER_PASSWORD


def test_both_legs_are_tls_as_pgbouncer_and_postgresql_report_them(stack):
    cluster, _service, pooler, _ = stack
    primary = cluster.leader(0 if CITUS else None)
    with psycopg.connect(pooler.dsn(dbname=DB), autocommit=True) as conn:
        conn.execute("SELECT 1")
        clients = [c for c in admin(pooler, b"SHOW CLIENTS") if c["user"] == APP_USER]
        servers = [s for s in admin(pooler, b"SHOW SERVERS") if s["user"] in (APP_USER, "pgbouncer")]
    assert clients and all(c["tls"].startswith("TLSv1.") for c in clients), clients
    assert servers and all(s["tls"].startswith("TLSv1.") for s in servers), servers
    assert {s["addr"] for s in servers} == {SERVICE_IP}
    rows = cluster.query(primary, "SELECT a.usename, s.ssl, s.version FROM pg_stat_activity a JOIN pg_stat_ssl s "
                                  "USING (pid) WHERE a.usename IN (%s, 'pgbouncer') AND a.client_addr IS NOT NULL",
                         (APP_USER,))
    assert {r[0] for r in rows} >= {APP_USER}
    assert all(ssl and version in ("TLSv1.2", "TLSv1.3") for _u, ssl, version in rows), rows


def test_setup_is_idempotent_and_refuses_replicas_and_non_superusers(stack):
    cluster, _service, pooler, coordinators = stack
    primary = cluster.leader(0 if CITUS else None)
    replica = next(m for m in coordinators if m is not primary)
    again = pooler_setup(cluster, cluster.dsn(primary, host=SERVICE_IP, dbname=DB))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{DB}: schema pgbouncer" in again.stdout and "template1: schema pgbouncer" in again.stdout
    on_replica = pooler_setup(cluster, cluster.dsn(replica, dbname=DB))
    assert on_replica.returncode == 2 and "is a replica" in on_replica.stderr
    as_app = pooler_setup(cluster, cluster.dsn(primary, user=APP_USER, password=APP_PASSWORD, dbname=DB))
    assert as_app.returncode == 2 and "is not a superuser" in as_app.stderr
    as_super = pooler_setup(cluster, cluster.dsn(primary, dbname=DB), PCK_POOLER_AUTH_USER="postgres")
    assert as_super.returncode == 2 and "superuser or replication role" in as_super.stderr
    with psycopg.connect(pooler.dsn(dbname=DB), autocommit=True) as conn:  # still logs in after the re-run
        assert conn.execute("SELECT 1").fetchone() == (1,)
    if CITUS:  # nothing was propagated: the worker has neither the lookup nor the auth role
        worker = cluster.leader(1)
        assert cluster.query(worker, "SELECT count(*) FROM pg_proc WHERE proname = 'user_lookup'", dbname=DB) == [(0,)]
        assert cluster.query(worker, "SELECT count(*) FROM pg_roles WHERE rolname = 'pgbouncer'", dbname=DB) == [(0,)]


def test_verify_covers_the_pooler(stack):
    cluster, _service, pooler, coordinators = stack
    primary = cluster.leader(0 if CITUS else None)
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "LANG": "C.UTF-8", "PCK_POOLER_AUTH_PASSWORD": AUTH_PASSWORD}
    with psycopg.connect(pooler.dsn(dbname=DB), autocommit=True) as conn:
        conn.execute("SELECT 1")
        result = subprocess.run([ENTRYPOINT, "verify", cluster.dsn(primary, dbname=DB), "--pooler",
                                 f"{POOLER_IP}:{pooler.port}", "--json"], env=env, capture_output=True, text=True,
                                timeout=120)
    assert AUTH_PASSWORD not in result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["findings"] == [], report["findings"]
    entry = next(m for m in report["members"] if m["role"] == "pooler")
    served = entry["served"][0]
    assert served["tls"] and served["name_covered"] and served["chains_to_ca"]
    assert served["serial"] == format(pooler.pair.cert.serial_number, "x")
    assert entry["plaintext_accepted"] is False
    counts = entry["connection_counts"]
    assert counts["pooler_client"]["encrypted"] >= 1 and counts["pooler_client"]["plaintext"] == 0
    assert counts["pooler_server"]["encrypted"] >= 1 and counts["pooler_server"]["plaintext"] == 0
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    table = subprocess.run([ENTRYPOINT, "verify", cluster.dsn(primary, dbname=DB), "--pooler",
                            f"{POOLER_IP}:{pooler.port}"], env=env, capture_output=True, text=True, timeout=120)
    print(table.stdout)
    assert f"pooler {POOLER_IP}:{pooler.port}" in table.stdout and table.returncode == 0


def test_rotation_is_served_within_2_seconds_with_no_failed_query(stack):
    cluster, _service, pooler, _ = stack
    new = cluster.ca.issue(POOLER_IP, cn="pooler")
    with ClientLoop(pooler.dsn(dbname=DB)) as loop:
        time.sleep(1)
        pooler.rotate(new)
        took = wait_serial(POOLER_IP, pooler.port, new.cert.serial_number, 5)
        # and the new certificate is the one verify-full clients get, on new connections
        with psycopg.connect(pooler.dsn(dbname=DB), autocommit=True) as conn:
            conn.execute("SELECT 1")
        time.sleep(1)
    print(f"pooler served the rotated certificate {took:.2f} s after the Secret update")
    assert took <= 2.0
    assert loop.failures() == [] and loop.reconnects == 0
    assert len(loop.results) > 20
    assert "new TLS material checked and staged" in pooler.log()


def test_a_rotated_certificate_that_does_not_cover_the_service_is_refused(stack):
    """The watcher re-checks with the pooler's settings: its Service name, not a member's address."""
    from tests.support.wire import postgres_certificate

    cluster, _service, pooler, _ = stack
    before, good = pooler.pair, cluster.ca.issue(POOLER_IP, cn="pooler")
    log_size = len(pooler.log())
    pooler.rotate(cluster.ca.issue("127.0.5.250", cn="elsewhere"))
    wait_for("the refusal", lambda: "refused new TLS material" in pooler.log()[log_size:], 15, 0.1)
    assert f"does not cover '{POOLER_IP}'" in pooler.log()[log_size:] and "PCK_POOLER_SERVICE" in pooler.log()
    assert postgres_certificate(POOLER_IP, pooler.port).serial_number == before.cert.serial_number
    pooler.rotate(good)
    wait_serial(POOLER_IP, pooler.port, good.cert.serial_number, 5)


def _wait_resumed(loop: ClientLoop, host: str, since: float) -> None:
    wait_for(f"the client loop to run on {host} again", lambda: loop.ok_on(host, since) >= 10, 60, 0.2)


def _transaction_across(dsn: str, key: int, seconds: float, outcome: list) -> None:
    """One transaction through the pooler: a write, `seconds` of work, then COMMIT; its fate lands in `outcome`."""
    try:
        with psycopg.connect(dsn) as conn:
            conn.execute("INSERT INTO items VALUES (%s, 'in flight at shutdown')", (key,))
            conn.execute("SELECT pg_sleep(%s)", (seconds,))
            conn.commit()
        outcome.append("committed")
    except psycopg.Error as exc:
        outcome.append(f"failed: {exc}")


@pytest.mark.parametrize("how", ["drain", "sigterm"])
def test_drain_lets_a_running_transaction_commit_where_sigterm_cuts_it(stack, how):
    """The chart's preStop (`pooler drain`) against what the kubelet does without it (SIGTERM to PgBouncer)."""
    cluster, _service, _pooler, _ = stack
    primary = cluster.leader(0 if CITUS else None)
    key = ROWS + (1000 if how == "drain" else 2000)
    second = Pooler(cluster, f"127.0.{TEST_NET}.211", f"{SERVICE_IP}:5432").start()
    try:
        outcome: list = []
        client = threading.Thread(target=_transaction_across, args=(second.dsn(dbname=DB), key, 3, outcome))
        client.start()
        wait_for("the transaction to be running", lambda: cluster.query(
            primary, "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND query LIKE 'SELECT pg_sleep%%'",
            (APP_USER,), dbname=DB) == [(1,)], 10, 0.05)
        if how == "drain":
            result = subprocess.run([ENTRYPOINT, "pooler", "drain", "--delay", "0", "--timeout", "20"],
                                    env=second.env(), capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stdout + result.stderr
            assert "SIGINT sent" in result.stderr and "exited after" in result.stderr
        else:
            os.kill(second.proc.pid, signal.SIGTERM)  # `pooler run` exec'd PgBouncer: the same PID
        client.join(30)
        assert second.proc.wait(10) is not None
        rows = cluster.query(primary, "SELECT count(*) FROM items WHERE id = %s", (key,), dbname=DB)
        if how == "drain":
            assert outcome == ["committed"] and rows == [(1,)], outcome
        else:
            assert outcome and outcome[0].startswith("failed") and rows == [(0,)], outcome
    finally:
        second.stop()
        with cluster.connect(primary, dbname=DB) as conn:
            conn.execute("DELETE FROM items WHERE id = %s", (key,))  # the failover test counts the rows


def test_switchover_the_client_loop_resumes_by_itself(stack):
    cluster, _service, pooler, coordinators = stack
    group = 0 if CITUS else None
    old = cluster.leader(group)
    candidate = next(m for m in coordinators if m is not old)
    with ClientLoop(pooler.dsn(dbname=DB)) as loop:
        time.sleep(1)
        started = time.monotonic()
        args = ["switchover", "--leader", old.name, "--candidate", candidate.name, "--force"]
        result = cluster.patronictl(old, *(args[:1] + (["--group", "0"] if CITUS else []) + args[1:]), check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        wait_for(f"{candidate.name} to lead", lambda: cluster.leader(group) is candidate, 90)
        _wait_resumed(loop, candidate.host, started)
    print(f"switchover: {len(loop.failures())} failed queries, {loop.reconnects} client reconnects")
    assert loop.ok_on(old.host, 0) > 0


def test_kill_9_failover_the_client_loop_resumes_by_itself(stack):
    cluster, _service, pooler, coordinators = stack
    group = 0 if CITUS else None
    old = cluster.leader(group)
    survivor = next(m for m in coordinators if m is not old)
    if CITUS:
        from tests.integration.test_citus import is_sync_standby

        wait_for(f"{survivor.name} to be a synchronous standby", lambda: is_sync_standby(cluster, old, survivor), 60)
    from tests.integration.test_citus import postmaster_pid

    with ClientLoop(pooler.dsn(dbname=DB)) as loop:
        time.sleep(1)
        started = time.monotonic()
        postmaster = postmaster_pid(old)
        os.kill(old.proc.pid, signal.SIGKILL)
        os.kill(postmaster, signal.SIGKILL)
        old.proc.wait(10)
        wait_for(f"{survivor.name} to take over", lambda: cluster.leader(group) is survivor, 120)
        _wait_resumed(loop, survivor.host, started)
        with psycopg.connect(pooler.dsn(dbname=DB), autocommit=True) as conn:
            conn.execute("INSERT INTO items VALUES (%s, 'after failover')", (ROWS + 1,))
            assert conn.execute("SELECT count(*) FROM items").fetchone() == (ROWS + 1,)
    print(f"failover: {len(loop.failures())} failed queries, {loop.reconnects} client reconnects, "
          f"resumed {loop.results[-1][0] - started:.1f} s after the kill")
    old.proc = None  # killed on purpose
