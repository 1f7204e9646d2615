"""The pooler on a local cluster: a Service emulated by HAProxy, and PgBouncer started through `pooler run`.

On Kubernetes the coordinator group's Service `<scope>-0` has no selector: Patroni writes
its Endpoints with the primary's address, so the Service IP always reaches the primary.
Here HAProxy plays that Service: it listens on a service IP (127.0.<net>.200:5432) and
passes TCP through (TLS stays end to end, PgBouncer to PostgreSQL) to the one member
whose Patroni REST API answers `GET /primary` with 200, checked over HTTPS (with the
member's client certificate under mutual TLS) every 500 ms; when a member stops being
the primary its sessions are shut, as the Endpoints change cuts kube-proxy's.
The members' certificates carry the service IP (LocalCluster(service_sans=...)), as the
chart's carry the group Service's name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Optional

from tests.support.cluster import ENTRYPOINT, TEST_NET, VENV_BIN, LocalCluster, Member, stop_pid, wait_for
from tests.support.pki import Pair

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
SERVICE_IP = f"127.0.{TEST_NET}.200"
AUTH_PASSWORD = "pooler-auth-pass"
APP_USER, APP_PASSWORD = "app", "app-pass"


def haproxy_available() -> bool:
    return os.access(HAPROXY, os.X_OK)


class PrimaryService:
    """HAProxy on SERVICE_IP:5432 in front of `members`, routing to whichever is Patroni's primary."""

    def __init__(self, cluster: LocalCluster, members: list, ip: str = SERVICE_IP, port: int = 5432) -> None:
        self.cluster, self.members, self.ip, self.port = cluster, members, ip, port
        self.dir = os.path.join(cluster.workdir, "service")
        self.proc: Optional[subprocess.Popen] = None

    def _config(self) -> str:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        ca = self.cluster.write_client_ca()
        tls = ""
        if self.cluster.serves_tls(self.members[0]):
            tls = f" check-ssl verify required ca-file {ca}"
            if self.cluster.client_cert_auth:
                pem = os.path.join(self.dir, "client.pem")  # HAProxy wants certificate and key in one file
                pair = self.members[0].pair
                with open(os.open(pem, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600), "wb") as handle:
                    handle.write(pair.cert_pem + pair.key_pem)
                tls += f" crt {pem}"
        servers = "\n".join(f"    server {m.name} {m.host}:{m.pg_port} check port {m.api_port}{tls}"
                            for m in self.members)
        return f"""global
    maxconn 1000
defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout check 2s
listen primary
    bind {self.ip}:{self.port}
    option httpchk
    http-check send meth GET uri /primary
    http-check expect status 200
    default-server inter 500ms fastinter 250ms fall 2 rise 1 on-marked-down shutdown-sessions
{servers}
"""

    def start(self) -> "PrimaryService":
        text = self._config()
        path = os.path.join(self.dir, "haproxy.cfg")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        with open(os.path.join(self.dir, "haproxy.log"), "ab") as log:
            self.proc = subprocess.Popen([HAPROXY, "-db", "-f", path], stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_for("the primary Service to route", self.routes_to_primary, 30, 0.25)
        return self

    def routes_to_primary(self):
        import psycopg

        with psycopg.connect(self.cluster.dsn(self.members[0], host=self.ip, connect_timeout=2)) as conn:
            return not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]

    def stop(self) -> None:
        stop_pid(self.proc)


class Pooler:
    """`patroni-citus-k8s pooler run` as root, on its own address, with a Secret-like certificate directory."""

    def __init__(self, cluster: LocalCluster, host: str, target: str, port: int = 6432,
                 pair: Optional[Pair] = None, env_extra: Optional[dict] = None) -> None:
        self.cluster, self.host, self.port, self.target = cluster, host, port, target
        # Its directories, Secret mount and log are laid out as a member's (cluster.write_cert_dir and all).
        workdir = os.path.join(cluster.workdir, f"pooler-{host}")
        self.node = Member(name="pooler", host=host, group=None, workdir=workdir,
                           pair=pair if pair is not None else cluster.ca.issue(host, cn="pooler"))
        self.env_extra = env_extra or {}
        self.proc: Optional[subprocess.Popen] = None

    @property
    def pair(self) -> Pair:
        assert self.node.pair is not None
        return self.node.pair

    @property
    def runtime_dir(self) -> str:
        return self.node.runtime_dir

    def env(self) -> dict:
        env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "LANG": "C.UTF-8", "PGSSLMODE": self.cluster.mode,
               "PCK_CERT_DIR": self.node.cert_dir, "PCK_RUNTIME_DIR": self.runtime_dir,
               "PATRONI_SCOPE": self.cluster.scope,
               "PCK_POOLER_LISTEN": f"{self.host}:{self.port}", "PCK_POOLER_SERVICE": f"{self.host}:{self.port}",
               "PCK_POOLER_TARGET": self.target, "PCK_POOLER_AUTH_PASSWORD": AUTH_PASSWORD}
        if self.cluster.client_cert_auth:
            env["PCK_CLIENT_CERT_AUTH"] = "true"
        env.update(self.env_extra)
        return {k: v for k, v in env.items() if v is not None}

    def start(self) -> "Pooler":
        os.makedirs(self.node.workdir, exist_ok=True)
        os.chmod(self.node.workdir, 0o755)
        self.cluster.write_cert_dir(self.node)
        with open(self.node.log_path, "ab") as log:
            self.proc = subprocess.Popen([ENTRYPOINT, "pooler", "run"], env=self.env(), stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        wait_for("the pooler to listen", self.listening, 20, 0.1)
        return self

    def listening(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"pooler exited with {self.proc.returncode}: {self.log()[-2000:]}")
        return subprocess.run([ENTRYPOINT, "pooler", "probe", "readiness"], env=self.env(),
                              capture_output=True).returncode == 0

    def rotate(self, pair: Pair) -> None:
        """A Secret update as the kubelet makes it."""
        self.node.pair = pair
        self.cluster.write_cert_dir(self.node)

    def log(self) -> str:
        return self.node.log()

    def dsn(self, user: str = APP_USER, password: str = APP_PASSWORD, dbname: str = "postgres", **overrides) -> str:
        params = {"host": self.host, "port": self.port, "user": user, "password": password, "dbname": dbname,
                  **overrides}
        return self.cluster.dsn(self.cluster.members[0], **params)

    def stop(self) -> None:
        stop_pid(self.proc)


def pooler_setup(cluster: LocalCluster, conninfo: str, **env) -> subprocess.CompletedProcess:
    """`pooler setup CONNINFO` as a superuser, with the auth password from the environment."""
    run_env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "LANG": "C.UTF-8",
               "PCK_POOLER_AUTH_PASSWORD": AUTH_PASSWORD, **env}
    return subprocess.run([ENTRYPOINT, "pooler", "setup", conninfo], env={k: v for k, v in run_env.items() if v},
                          capture_output=True, text=True, timeout=120)


def wait_serial(host: str, port: int, serial: int, timeout: float) -> float:
    """Seconds until host:port serves the certificate `serial` (PostgreSQL's SSLRequest first)."""
    from tests.support.wire import postgres_certificate

    started = time.monotonic()
    wait_for(f"{host}:{port} to serve serial {serial:x}",
             lambda: postgres_certificate(host, port).serial_number == serial, timeout, 0.05)
    return time.monotonic() - started
