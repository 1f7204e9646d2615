"""Generated certificates against a real PostgreSQL 15: verify-full works where it should and fails where it must.

The server is started the way the image starts it, through `patroni-citus-k8s run --`
(input checks, private staged copies under $PCK_RUNTIME_DIR/tls, drop to postgres,
exec), and stopped by its PID whatever happens.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.cluster import ENTRYPOINT, PG_BIN, free_port, standalone_env, stop_pid, wait_for

psycopg = pytest.importorskip("psycopg")
import psycopg.sql  # noqa: E402

pytestmark = pytest.mark.integration

LOOPBACK = "127.0.0.1"
POD = "citusdemo-1-0.citusdemo.default.svc.cluster.local"


def entrypoint(*args, env=None):
    """Argv and environment for the installed `patroni-citus-k8s ARGS`, as the image runs it."""
    return [ENTRYPOINT, *args], {"PATH": "/usr/bin:/bin", **(env or {})}


def generate(out_dir: str, *flags: str) -> None:
    argv, env = entrypoint("certs", "generate", "--out-dir", out_dir, *flags)
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module", params=["ecdsa-p256", "rsa-2048"])
def server(request):
    """A PostgreSQL 15 serving a freshly generated certificate of the given key type."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the server is started through run's privilege drop")
    postgres = pwd.getpwnam("postgres")
    base = tempfile.mkdtemp(prefix="pck-certs-", dir="/tmp")
    proc = None
    try:
        os.chmod(base, 0o755)
        certs = f"{base}/certs"
        generate(certs, "--key-type", request.param, "--client", "postgres")
        other = f"{base}/other"
        generate(other)  # an unrelated CA with the same names
        os.chown(base, postgres.pw_uid, postgres.pw_gid)
        port = free_port()
        env = standalone_env(base, certs, LOOPBACK, port, scope="citusdemo", name="citusdemo-0-0")
        argv, full_env = entrypoint("run", "--", f"{PG_BIN}/initdb", "-D", f"{base}/data", "-U", "postgres",
                                    "--auth=trust", "--no-sync", env=env)
        init = subprocess.run(argv, env=full_env, capture_output=True, text=True)
        assert init.returncode == 0, init.stderr
        with open(f"{base}/data/pg_hba.conf", "w") as hba:
            # certdb also demands a client certificate whose CN is the role (mutual TLS).
            hba.write("local all all trust\n"
                      "hostssl certdb all 127.0.0.1/32 trust clientcert=verify-full\n"
                      "hostssl all all 127.0.0.1/32 trust\n"
                      "hostnossl all all 0.0.0.0/0 reject\n")
        staged = f"{base}/run/tls"
        argv, full_env = entrypoint(
            "run", "--", f"{PG_BIN}/postgres", "-D", f"{base}/data", "-c", f"listen_addresses={LOOPBACK}",
            "-c", f"port={port}", "-c", f"unix_socket_directories={base}/sock", "-c", "ssl=on",
            "-c", f"ssl_cert_file={staged}/server.crt", "-c", f"ssl_key_file={staged}/server.key",
            "-c", f"ssl_ca_file={staged}/ca.crt", "-c", "fsync=off", env=env)
        log = open(f"{base}/postgres.log", "wb")
        proc = subprocess.Popen(argv, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for("postgres to accept connections", lambda: _ready(proc, base, port), timeout=60, interval=0.1)
        with psycopg.connect(host=f"{base}/sock", port=port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE certdb")
        yield {"port": port, "ca": f"{certs}/ca.crt", "other_ca": f"{other}/ca.crt", "certs": certs,
               "key_type": request.param}
    finally:
        stop_pid(proc, signal.SIGINT)  # fast shutdown
        shutil.rmtree(base, ignore_errors=True)


def _ready(proc: subprocess.Popen, base: str, port: int) -> bool:
    if proc.poll() is not None:
        with open(f"{base}/postgres.log") as log:
            pytest.fail(f"postgres exited with {proc.returncode}:\n{log.read()}")
    return subprocess.run([f"{PG_BIN}/pg_isready", "-q", "-h", f"{base}/sock", "-p", str(port)]).returncode == 0


def connect(server: dict, host: str, ca: str = None, **extra):
    """A psycopg verify-full connection reaching 127.0.0.1 but checking the certificate against `host`."""
    params = dict(host=host, hostaddr=LOOPBACK, port=server["port"], user="postgres", dbname="postgres",
                  sslmode="verify-full", sslrootcert=ca or server["ca"], connect_timeout=10)
    params.update(extra)
    return psycopg.connect(**params)


def _ssl_in_use(conn) -> bool:
    return conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]


def test_openssl_verifies_the_chain(server):
    result = subprocess.run(["openssl", "verify", "-CAfile", server["ca"], f"{server['certs']}/server.crt",
                             f"{server['certs']}/client-postgres.crt"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", POD, "citusdemo-0.default.svc",
                                  "citusdemo-workers.default.svc.cluster.local"])
def test_verify_full_connects_by_every_cluster_name(server, host):
    with connect(server, host) as conn:
        assert _ssl_in_use(conn)


def test_verify_full_to_localhost_without_hostaddr(server):
    with psycopg.connect(host="localhost", port=server["port"], user="postgres", dbname="postgres",
                         sslmode="verify-full", sslrootcert=server["ca"]) as conn:
        assert _ssl_in_use(conn)


@pytest.mark.parametrize("host", ["db.example.com", f"a.{POD}", "citusdemo-7.default.svc",
                                  "citusdemo-0.citusdemo-1.default.svc.cluster.local"])
def test_verify_full_refuses_names_outside_the_sans(server, host):
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        connect(server, host)


def test_verify_full_refuses_a_different_ca(server):
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        connect(server, "localhost", ca=server["other_ca"])


def test_client_certificate_passes_clientcert_verify_full(server):
    certs = server["certs"]
    with connect(server, "localhost", dbname="certdb", sslcert=f"{certs}/client-postgres.crt",
                 sslkey=f"{certs}/client-postgres.key") as conn:
        assert _ssl_in_use(conn)
    with pytest.raises(psycopg.OperationalError):
        connect(server, "localhost", dbname="certdb", sslcert="/nonexistent", sslkey="/nonexistent")


def test_psql_verify_full(server):
    def psql(host):
        conninfo = (f"host={host} hostaddr={LOOPBACK} port={server['port']} user=postgres dbname=postgres "
                    f"sslmode=verify-full sslrootcert={server['ca']}")
        return subprocess.run(["psql", "-X", "-At", "-d", conninfo, "-c",
                               "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"],
                              env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}, capture_output=True, text=True)

    ok = psql("localhost")
    assert ok.returncode == 0 and ok.stdout.strip() == "t", ok.stderr
    refused = psql("db.example.com")
    assert refused.returncode == 2 and "does not match host name" in refused.stderr


def test_inspect_agrees_with_libpq(server):
    argv, env = entrypoint("certs", "inspect", f"{server['certs']}/server.crt", "--ca", server["ca"],
                           "--host", "localhost", "--host", POD, "--json")
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    argv, env = entrypoint("certs", "inspect", f"{server['certs']}/server.crt", "--ca", server["other_ca"],
                           "--host", "db.example.com")
    refused = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert refused.returncode == 2
    assert "does not chain" in refused.stderr and "does not cover host 'db.example.com'" in refused.stderr


def _revoke(certs: str, *flags: str) -> subprocess.CompletedProcess:
    argv, env = entrypoint("certs", "revoke", "--out-dir", certs, *flags)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def test_a_revoked_server_certificate_is_refused_by_libpq_and_a_fresh_crl_changes_nothing(server, tmp_path):
    """certs generate's empty CRL lets verify-full through; after certs revoke the same client refuses."""
    certs = tmp_path / "certs"
    shutil.copytree(server["certs"], certs)
    with connect(server, "localhost", sslcrl=str(certs / "ca.crl")) as conn:
        assert _ssl_in_use(conn)  # no false positive from the empty, signed CRL
    revoked = _revoke(str(certs), "--cert", str(certs / "server.crt"), "--reason", "keyCompromise")
    assert revoked.returncode == 0, revoked.stderr
    check = subprocess.run(["openssl", "crl", "-verify", "-noout", "-CAfile", str(certs / "ca.crt"),
                            "-in", str(certs / "ca.crl")], capture_output=True, text=True)
    assert check.returncode == 0 and "verify OK" in check.stdout + check.stderr
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):  # libpq gives no detail
        connect(server, "localhost", sslcrl=str(certs / "ca.crl"))


def test_a_revoked_client_certificate_is_refused_by_postgresql(server, tmp_path):
    # pytest's tmp_path lies under a 0700 directory: PostgreSQL (as postgres) could not read the CRL there.
    certs = Path(tempfile.mkdtemp(prefix="pck-crl-", dir="/tmp")) / "certs"
    os.chmod(certs.parent, 0o755)
    shutil.copytree(server["certs"], certs)
    client = dict(dbname="certdb", sslcert=str(certs / "client-postgres.crt"), sslkey=str(certs / "client-postgres.key"))
    os.chmod(certs / "client-postgres.key", 0o600)
    assert _revoke(str(certs), "--cert", str(certs / "client-postgres.crt")).returncode == 0
    with psycopg.connect(host=LOOPBACK, port=server["port"], user="postgres", dbname="postgres", sslmode="require",
                         sslcert=client["sslcert"], sslkey=client["sslkey"], autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("ALTER SYSTEM SET ssl_crl_file = {}").format(str(certs / "ca.crl")))
        admin.execute("SELECT pg_reload_conf()")
    try:
        time.sleep(1)
        with pytest.raises(psycopg.OperationalError, match="certificate revoked|SSL error"):
            connect(server, "localhost", **client)
        with connect(server, "localhost") as conn:  # without the revoked certificate the server still answers
            assert _ssl_in_use(conn)
    finally:
        with psycopg.connect(host=LOOPBACK, port=server["port"], user="postgres", dbname="postgres",
                             sslmode="require", autocommit=True) as admin:
            admin.execute("ALTER SYSTEM RESET ssl_crl_file")
            admin.execute("SELECT pg_reload_conf()")
        shutil.rmtree(certs.parent, ignore_errors=True)
