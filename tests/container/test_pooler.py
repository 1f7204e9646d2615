"""The compose pooler for real: clients reach the coordinator's primary through PgBouncer at verify-full by
the pooler's name, plaintext is refused, and both legs are encrypted.

`citusdemo-pooler` runs the image as `patroni-citus-k8s pooler run`; `pooler-setup` creates the auth role
(docs/container.md, "The pooler"). The pooler's Python (entrypoint/pooler, issue 15) is written beside
this: until the image has the `pooler` command every test here is skipped with that reason, and they
run as soon as it has (nothing else to change).
"""

from __future__ import annotations

import json
import threading

import pytest

from tests.container import harness
from tests.container.harness import CERT_DIR, STAGED_CERT, STAGED_KEY, Cluster, fqdn

pytestmark = pytest.mark.container

POOLER = "citusdemo-pooler"
POOLER_NAME = f"{POOLER}.default.svc.cluster.local"  # as the chart's Service; in the certificate
PORT = 6432
SETUP = "pooler-setup"
APP_USER, APP_PASSWORD = "pooler_suite_app", "suite-app-pw"
WAITING = ("waiting for `patroni-citus-k8s pooler run`: this image has no `pooler` command yet (the pooler's "
           "Python, entrypoint/pooler, issue 15, is written on another branch); the compose services are in place")


@pytest.fixture(scope="session")
def pooler_in_image(docker: str, image: str) -> bool:
    """Whether the image's CLI has `pooler` (argparse refuses an unknown command with exit 2)."""
    proc = harness.run([docker, "run", "--rm", "--network=none", image, "pooler", "--help"], check=False)
    return proc.returncode == 0


@pytest.fixture
def pooled(cluster: Cluster, pooler_in_image: bool) -> Cluster:
    """The cluster once the setup one-shot has finished and the pooler answers; an application role exists."""
    if not pooler_in_image:
        pytest.skip(WAITING)
    harness.wait_for("pooler-setup to exit 0", lambda: _setup_status(cluster) == 0, timeout=330, interval=3)
    primary = _coordinator_primary(cluster)
    cluster.psql(primary, fqdn(primary),
                 f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_USER}') THEN "
                 f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'; END IF; END $$")
    harness.wait_for("a query through the pooler", lambda: _through_pooler(cluster, "SELECT 1").returncode == 0,
                     timeout=120, interval=3)
    return cluster


def _setup_status(cluster: Cluster) -> int | None:
    """The exit code of the pooler-setup container, or None while it runs."""
    ids = harness.run([cluster.docker, "ps", "-aq", "--filter", f"label=com.docker.compose.project={cluster.project}",
                       "--filter", f"label=com.docker.compose.service={SETUP}"]).stdout.split()
    if len(ids) != 1:
        return None
    state = json.loads(harness.run([cluster.docker, "inspect", "-f", "{{json .State}}", ids[0]]).stdout)
    if state["Running"]:
        return None
    if state["ExitCode"] != 0:
        logs = harness.run([cluster.docker, "logs", ids[0]], check=False)
        raise AssertionError(f"pooler-setup exited {state['ExitCode']}:\n{logs.stdout}{logs.stderr}")
    return 0


def _coordinator_primary(cluster: Cluster) -> str:
    rows = cluster.members_state(cluster.members[0])
    (leader,) = [r["Member"] for r in rows if r["Role"] == "Leader" and r.get("Group", 0) == 0]
    return leader


def _through_pooler(cluster: Cluster, sql: str, sslmode: str = "verify-full", host: str = POOLER_NAME,
                    client_cert: bool | None = None, dbname: str = "postgres"):
    """psql from a worker's container to the pooler, as the application role."""
    conninfo = (f"host={host} port={PORT} user={APP_USER} dbname={dbname} sslmode={sslmode} "
                f"sslrootcert={CERT_DIR}/ca.crt connect_timeout=10")
    if cluster.mtls if client_cert is None else client_cert:
        conninfo += f" sslcert={STAGED_CERT} sslkey={STAGED_KEY}"
    return cluster.exec("citusdemo-1-0", "psql", conninfo, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql,
                        env={"PGPASSWORD": APP_PASSWORD}, check=False)


def test_clients_reach_the_coordinator_primary_through_the_pooler_at_verify_full(pooled: Cluster):
    for name in (POOLER, f"{POOLER}.default", f"{POOLER}.default.svc", POOLER_NAME):  # every form, as on Kubernetes
        proc = _through_pooler(pooled, "SELECT pg_is_in_recovery(), current_user", host=name)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == [f"f|{APP_USER}"], proc.stdout  # the primary, as the client's own role
    if pooled.citus:
        proc = _through_pooler(pooled, "SELECT count(*) FROM pg_dist_node WHERE groupid > 0", dbname="citus")
        assert proc.returncode == 0 and int(proc.stdout) >= 2, proc


def test_the_poolers_server_connections_are_encrypted(pooled: Cluster):
    proc = _through_pooler(pooled, "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert proc.returncode == 0, proc.stderr
    ssl, version = proc.stdout.strip().split("|")
    assert ssl == "t" and version.startswith("TLSv1."), proc.stdout
    primary = _coordinator_primary(pooled)
    rows = pooled.psql(primary, fqdn(primary),
                       f"SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
                       f"WHERE a.usename IN ('{APP_USER}', 'pgbouncer') AND a.client_addr IS NOT NULL").stdout.split()
    assert rows and set(rows) == {"t"}, rows


def test_plaintext_to_the_pooler_is_refused(pooled: Cluster):
    proc = _through_pooler(pooled, "SELECT 1", sslmode="disable")
    assert proc.returncode != 0
    assert "SSL" in proc.stderr or "TLS" in proc.stderr, proc.stderr


def test_a_name_outside_the_certificate_is_refused(pooled: Cluster):
    proc = _through_pooler(pooled, "SELECT 1", host=pooled.ip(POOLER))
    assert proc.returncode != 0
    assert "does not match host name" in proc.stderr, proc.stderr


def test_mutual_tls_pooler_wants_a_client_certificate(pooled: Cluster):
    if not pooled.mtls:
        pytest.skip("mutual TLS is off in this cluster (PCK_CLIENT_CERT_AUTH unset)")
    proc = _through_pooler(pooled, "SELECT 1", client_cert=False)
    assert proc.returncode != 0, proc.stdout


def test_the_pooler_never_gets_the_superusers_password(cluster: Cluster, pooler_in_image: bool):
    """Holds whether or not the image has the pooler yet: read from the container's configuration."""
    ids = harness.run([cluster.docker, "ps", "-aq", "--filter", f"label=com.docker.compose.project={cluster.project}",
                       "--filter", f"label=com.docker.compose.service={POOLER}"]).stdout.split()
    assert len(ids) == 1, ids
    env = json.loads(harness.run([cluster.docker, "inspect", "-f", "{{json .Config.Env}}", ids[0]]).stdout)
    assert not [e for e in env if cluster.env["PATRONI_SUPERUSER_PASSWORD"] in e]
    assert "PCK_POOLER_AUTH_PASSWORD=pgbouncer-local-only" in env


def test_stopping_the_pooler_lets_a_running_transaction_commit(pooled: Cluster):
    """compose's `stop_signal: SIGINT` is PgBouncer's safe shutdown: a transaction in flight at `stop` commits.

    (With Docker's default SIGTERM, PgBouncer 1.18 shuts down at once and the transaction is cut; the
    same contrast for the chart's preStop `pooler drain` is measured in tests/integration/test_pooler.py.)
    """
    primary = _coordinator_primary(pooled)
    pooled.psql(primary, fqdn(primary), f"DROP TABLE IF EXISTS pooler_stop_probe; CREATE TABLE pooler_stop_probe "
                                        f"(id int); GRANT ALL ON pooler_stop_probe TO {APP_USER}")
    outcome: list = []
    client = threading.Thread(target=lambda: outcome.append(_through_pooler(
        pooled, "BEGIN; INSERT INTO pooler_stop_probe VALUES (1); SELECT pg_sleep(4); COMMIT;")))
    client.start()
    sleeping = (f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{APP_USER}' "
                f"AND query LIKE '%pg_sleep(4)%' AND pid <> pg_backend_pid()")
    harness.wait_for("the transaction to run", lambda: pooled.psql(primary, fqdn(primary), sleeping).stdout.strip()
                     == "1", timeout=30, interval=0.2)
    try:
        pooled.compose_run("stop", POOLER, timeout=120)
        client.join(60)
        assert outcome and outcome[0].returncode == 0, outcome and outcome[0].stderr
        rows = pooled.psql(primary, fqdn(primary), "SELECT count(*) FROM pooler_stop_probe").stdout.strip()
        assert rows == "1", rows
    finally:
        pooled.compose_run("start", POOLER, timeout=120)
        harness.wait_for("the pooler to answer again", lambda: _through_pooler(pooled, "SELECT 1").returncode == 0,
                         timeout=120, interval=2)
        pooled.psql(primary, fqdn(primary), "DROP TABLE IF EXISTS pooler_stop_probe")
