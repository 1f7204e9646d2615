"""Real local clusters: etcd plus Patroni members, each started through `patroni-citus-k8s run` as the image would.

Every member gets its own 127.0.0.x address, data/runtime/socket directories, and a
read-only root-owned certificate directory; the entrypoint stages copies and drops to
the postgres user. Everything started is stopped by PID, also when a test fails.

Also a command: `python -m tests.support.cluster up|down` (see scripts/cluster).
"""

from __future__ import annotations

import json
import os
import shutil
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Optional

from tests.support.pki import Pair, TestCA

PREFIX = os.environ.get("PCK_PREFIX", "/opt/patroni-citus-k8s")
VENV_BIN = os.path.join(PREFIX, "venv", "bin")
ENTRYPOINT = os.path.join(VENV_BIN, "patroni-citus-k8s")
PATRONICTL = os.path.join(VENV_BIN, "patronictl")
ETCD = shutil.which("etcd") or "/usr/bin/etcd"
PG_BIN = "/usr/lib/postgresql/15/bin"
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"
CITUS_SO = "/usr/lib/postgresql/15/lib/citus.so"
STATE_FILE = "/run/patroni-citus-k8s-local/cluster.json"
SUPERUSER_PASSWORD = "su-pass:#'\"ü"
# Members live on 127.0.<TEST_NET>.x: two suites running side by side (say, in two
# worktrees) pick different nets so their members never share an address and port.
TEST_NET = int(os.environ.get("PCK_TEST_NET", "0"))
REPLICATION_PASSWORD = "repl-pass"
RESTAPI_PASSWORD = "rest-pass"


def citus_available() -> bool:
    return os.path.exists(CITUS_SO)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for(what: str, predicate, timeout: float, interval: float = 0.5):
    """Poll `predicate` until it returns a truthy value; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}"
                       + (f" (last error: {last_error})" if last_error else ""))


class Etcd:
    """One etcd member on loopback, its data in a temporary directory.

    With `ca`, clients must use HTTPS and present a certificate from that CA (mutual
    TLS); the client pair for the members is then in `tls_dir`, readable by root only,
    as a Secret mounted without fsGroup would be.
    """

    def __init__(self, workdir: str, ca: Optional[TestCA] = None) -> None:
        self.dir = os.path.join(workdir, "etcd")
        self.client_port = free_port()
        self.peer_port = free_port()
        self.ca = ca
        self.tls_dir = os.path.join(workdir, "etcd-tls")
        self.url = f"{'https' if ca else 'http'}://127.0.0.1:{self.client_port}"
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = os.path.join(workdir, "etcd.log")

    def _write_tls(self) -> list:
        os.makedirs(self.tls_dir, mode=0o700, exist_ok=True)
        server, client = self.ca.issue("127.0.0.1", cn="etcd"), self.ca.issue(cn="patroni")
        self.ca.write_dir(self.tls_dir, server)  # ca.crt, server.crt, server.key
        self.ca.write_dir(self.tls_dir, client, names=("ca.crt", "client.crt", "client.key"))
        t = self.tls_dir
        return ["--cert-file", f"{t}/server.crt", "--key-file", f"{t}/server.key",
                "--client-cert-auth", "--trusted-ca-file", f"{t}/ca.crt"]

    def client_env(self) -> dict:
        """Patroni's own etcd3 variables for this etcd."""
        env = {"PATRONI_ETCD3_HOSTS": f"127.0.0.1:{self.client_port}"}
        if self.ca:
            env.update({"PATRONI_ETCD3_PROTOCOL": "https", "PATRONI_ETCD3_CACERT": f"{self.tls_dir}/ca.crt",
                        "PATRONI_ETCD3_CERT": f"{self.tls_dir}/client.crt",
                        "PATRONI_ETCD3_KEY": f"{self.tls_dir}/client.key"})
        return env

    def _healthy(self) -> bool:
        context = None
        if self.ca:
            context = ssl.create_default_context(cafile=f"{self.tls_dir}/ca.crt")
            context.load_cert_chain(f"{self.tls_dir}/client.crt", f"{self.tls_dir}/client.key")
        with urllib.request.urlopen(f"{self.url}/health", timeout=2, context=context) as resp:
            return resp.status == 200

    def start(self) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        tls_args = self._write_tls() if self.ca else []
        peer = f"http://127.0.0.1:{self.peer_port}"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [ETCD, "--name", "e0", "--data-dir", self.dir,
                 "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", f"e0={peer}", "--initial-cluster-state", "new", *tls_args],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for("etcd health", self._healthy, 30)

    def stop(self) -> None:
        stop_pid(self.proc)


@dataclass
class Member:
    """A Patroni member: its address, directories and the process `run` became."""

    name: str
    host: str
    group: Optional[int]
    workdir: str
    pair: Optional[Pair] = None
    env_extra: dict = field(default_factory=dict)
    proc: Optional[subprocess.Popen] = None
    pg_port: int = 5432
    api_port: int = 8008

    @property
    def cert_dir(self) -> str:
        return os.path.join(self.workdir, "certs")

    @property
    def runtime_dir(self) -> str:
        return os.path.join(self.workdir, "run")

    @property
    def socket_dir(self) -> str:
        return os.path.join(self.workdir, "socket")

    @property
    def data_dir(self) -> str:
        return os.path.join(self.workdir, "data", "pgdata")

    @property
    def log_path(self) -> str:
        return os.path.join(self.workdir, "member.log")

    @property
    def config_file(self) -> str:
        return os.path.join(self.runtime_dir, "patroni.yml")

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""


class LocalCluster:
    """etcd plus members on 127.0.0.x; `mode` is PGSSLMODE for every member."""

    def __init__(self, mode: str = "verify-full", members: int = 3, citus_groups: Optional[list] = None,
                 client_cert_auth: bool = False, scope: str = "demo", base_ip: int = 11,
                 workdir: Optional[str] = None, with_certs: Optional[bool] = None, etcd_tls: bool = False,
                 service_sans: tuple = ()) -> None:
        self.mode = mode
        self.scope = scope
        self.client_cert_auth = client_cert_auth
        self.workdir = workdir or tempfile.mkdtemp(prefix="pck-cluster-", dir="/tmp")
        os.chmod(self.workdir, 0o755)  # postgres must traverse it to its runtime and data dirs
        self.ca = TestCA(f"{scope} test CA")
        self.crl_pem: Optional[bytes] = None  # when set, every Secret carries it as ca.crl
        self.etcd = Etcd(self.workdir, TestCA(f"{scope} etcd CA") if etcd_tls else None)
        with_certs = mode != "disable" if with_certs is None else with_certs
        groups = citus_groups if citus_groups is not None else [None] * members
        self.members: list = []
        for i, group in enumerate(groups):
            host = f"127.0.{TEST_NET}.{base_ip + i}"
            # Pod names as the chart's StatefulSets give them: <scope>-<group>-<ordinal in the group>.
            name = f"{scope}-{group}-{groups[:i].count(group)}" if group is not None else f"{scope}-{i}"
            member = Member(name=name, host=host, group=group, workdir=os.path.join(self.workdir, name))
            if with_certs:
                # A primary Service in front of the coordinator group (tests/support/pooler.py) reaches its
                # members by the service's address too, so their certificates cover it, as the chart's do.
                sans = service_sans if group in (None, 0) else ()
                member.pair = self.ca.issue(host, *sans, cn=name)
            self.members.append(member)

    # ---- lifecycle -------------------------------------------------------
    def start(self, timeout: float = 120) -> "LocalCluster":
        self.etcd.start()
        for member in self.members:
            self.start_member(member)
        self.wait_healthy(timeout)
        return self

    def member_env(self, member: Member) -> dict:
        env = {
            "PATH": f"{VENV_BIN}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PGSSLMODE": self.mode,
            "PCK_CERT_DIR": member.cert_dir,
            "PCK_RUNTIME_DIR": member.runtime_dir,
            "PCK_SOCKET_DIR": member.socket_dir,
            "PATRONI_SCOPE": self.scope,
            "PATRONI_NAME": member.name,
            **self.etcd.client_env(),
            "PATRONI_POSTGRESQL_LISTEN": f"{member.host}:{member.pg_port}",
            "PATRONI_POSTGRESQL_CONNECT_ADDRESS": f"{member.host}:{member.pg_port}",
            "PATRONI_RESTAPI_LISTEN": f"{member.host}:{member.api_port}",
            "PATRONI_RESTAPI_CONNECT_ADDRESS": f"{member.host}:{member.api_port}",
            "PATRONI_POSTGRESQL_DATA_DIR": member.data_dir,
            "PATRONI_SUPERUSER_PASSWORD": SUPERUSER_PASSWORD,
            "PATRONI_REPLICATION_PASSWORD": REPLICATION_PASSWORD,
            "PATRONI_RESTAPI_USERNAME": "patroni",
            "PATRONI_RESTAPI_PASSWORD": RESTAPI_PASSWORD,
            "PATRONI_LOG_LEVEL": "INFO",
        }
        if self.client_cert_auth:
            env["PCK_CLIENT_CERT_AUTH"] = "true"
        if member.group is not None:
            env["PATRONI_CITUS_GROUP"] = str(member.group)
            env["PATRONI_CITUS_DATABASE"] = "citus"
        env.update(member.env_extra)
        return env

    def write_cert_dir(self, member: Member, ca_pem: Optional[bytes] = None) -> None:
        """Lay out the member's certificates the way the kubelet mounts a Secret, root-owned, files 0600.

        Each version goes into a fresh `..<timestamp>` directory; `..data` is a symlink
        swapped atomically with rename(2), and `server.crt` & co. point through it. Calling
        it again is a Secret update as Kubernetes performs it.
        """
        os.makedirs(member.cert_dir, exist_ok=True)
        os.chmod(member.cert_dir, 0o755)
        if member.pair is None:
            return
        version = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
        self.ca.write_dir(os.path.join(member.cert_dir, version), member.pair, ca_pem=ca_pem, crl_pem=self.crl_pem)
        old = os.path.realpath(os.path.join(member.cert_dir, "..data"))
        tmp_link = os.path.join(member.cert_dir, "..data_tmp")
        os.symlink(version, tmp_link)
        os.rename(tmp_link, os.path.join(member.cert_dir, "..data"))
        for name in ("ca.crt", "server.crt", "server.key") + (("ca.crl",) if self.crl_pem is not None else ()):
            link = os.path.join(member.cert_dir, name)
            if not os.path.islink(link):
                os.symlink(os.path.join("..data", name), link)
        if os.path.basename(old).startswith("..") and old != os.path.join(member.cert_dir, version):
            shutil.rmtree(old, ignore_errors=True)

    def clear_cert_dir(self, member: Member) -> None:
        """The Secret is no longer mounted (ssl.enabled=false): an empty directory, as an absent mount reads."""
        member.pair = None
        shutil.rmtree(member.cert_dir, ignore_errors=True)

    def start_member(self, member: Member) -> None:
        os.makedirs(member.workdir, exist_ok=True)
        os.chmod(member.workdir, 0o755)
        self.write_cert_dir(member)
        with open(member.log_path, "ab") as log:
            member.proc = subprocess.Popen([ENTRYPOINT, "run"], env=self.member_env(member), stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)

    def stop_member(self, member: Member, sig: int = signal.SIGTERM) -> None:
        stop_pid(member.proc, sig)

    def stop(self) -> None:
        for member in self.members:
            self.stop_member(member)
        self.etcd.stop()

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        try:
            return self.start()
        except BaseException:
            self.dump_logs()
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            self.dump_logs()
        self.stop()
        self.cleanup()

    def dump_logs(self, tail: int = 60) -> None:
        for member in self.members:
            lines = member.log().splitlines()[-tail:]
            print(f"----- {member.name} ({member.host}) log, last {len(lines)} lines -----", file=sys.stderr)
            print("\n".join(lines), file=sys.stderr)

    # ---- REST API --------------------------------------------------------
    def serves_tls(self, member: Member) -> bool:
        """Whether the member's REST API is HTTPS: it has a certificate and its own mode is not disable."""
        return member.pair is not None and member.env_extra.get("PGSSLMODE", self.mode) != "disable"

    def api_context(self, member: Optional[Member] = None) -> Optional[ssl.SSLContext]:
        if not self.serves_tls(member or self.members[0]):
            return None
        client_ca = os.path.join(self.workdir, "ca.crt")  # what clients trust now (a bundle during CA rotation)
        ctx = ssl.create_default_context(cafile=client_ca) if os.path.exists(client_ca) else \
            ssl.create_default_context(cadata=self.ca.cert_pem.decode())
        if self.client_cert_auth:
            member = self.members[0]
            ctx.load_cert_chain(os.path.join(member.runtime_dir, "tls", "server.crt"),
                                os.path.join(member.runtime_dir, "tls", "server.key"))
        return ctx

    def api_url(self, member: Member, path: str) -> str:
        scheme = "https" if self.api_context(member) else "http"
        return f"{scheme}://{member.host}:{member.api_port}/{path.lstrip('/')}"

    def api_get(self, member: Member, path: str, timeout: float = 5):
        """GET a REST API path; returns (status, parsed JSON or text)."""
        req = urllib.request.Request(self.api_url(member, path))
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.api_context(member)) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, body = err.code, err.read()
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode(errors="replace")

    def member_state(self, member: Member) -> dict:
        status, body = self.api_get(member, "patroni")
        return body if isinstance(body, dict) else {}

    def leader(self, group: Optional[int] = None) -> Member:
        candidates = [m for m in self.members if m.group == group] if group is not None else self.members
        for member in candidates:
            if member.proc is not None and member.proc.poll() is None:
                try:
                    if self.member_state(member).get("role") in ("primary", "master"):
                        return member
                except OSError:
                    continue
        raise LookupError("no running primary")

    def wait_healthy(self, timeout: float = 120) -> None:
        """Wait until every running member is up: one primary per group, replicas streaming."""
        def healthy() -> bool:
            for member in self.members:
                if member.proc is None:
                    continue
                if member.proc.poll() is not None:
                    raise RuntimeError(f"{member.name} exited with status {member.proc.returncode}")
                state = self.member_state(member)
                if state.get("state") not in ("running", "streaming"):
                    return False
                if state.get("role") not in ("primary", "master") and state.get("replication_state") != "streaming":
                    return False
            groups = {m.group for m in self.members if m.proc is not None}
            return all(self.leader(g) if g is not None else True for g in groups) and bool(self.leader())
        wait_for("every member running and streaming", healthy, timeout, 1.0)

    # ---- SQL ---------------------------------------------------------------
    def dsn(self, member: Member, **overrides) -> str:
        params = {"host": member.host, "port": str(member.pg_port), "user": "postgres",
                  "password": SUPERUSER_PASSWORD, "dbname": "postgres", "connect_timeout": "5"}
        if self.mode in ("verify-ca", "verify-full"):
            params.update({"sslmode": self.mode, "sslrootcert": os.path.join(self.workdir, "ca.crt")})
        elif self.mode != "disable":
            params["sslmode"] = "require" if self.mode == "require" else self.mode
        if self.client_cert_auth:
            params.update({"sslcert": os.path.join(member.runtime_dir, "tls", "server.crt"),
                           "sslkey": os.path.join(member.runtime_dir, "tls", "server.key")})
        for key, value in overrides.items():
            if value is None:
                params.pop(key, None)  # None means "leave it to libpq's default"
            else:
                params[key] = str(value)
        return " ".join(f"{k}={_quote(v)}" for k, v in params.items())

    def write_client_ca(self, pem: Optional[bytes] = None) -> str:
        """The CA file test clients trust: the cluster CA unless given (e.g. a bundle); kept once written."""
        path = os.path.join(self.workdir, "ca.crt")
        if pem is not None or not os.path.exists(path):
            with open(path, "wb") as handle:
                handle.write(pem if pem is not None else self.ca.cert_pem)
        return path

    def connect(self, member: Member, **overrides):
        import psycopg
        self.write_client_ca()
        return psycopg.connect(self.dsn(member, **overrides), autocommit=True)

    def query(self, member: Member, sql: str, params=None, **overrides) -> list:
        with self.connect(member, **overrides) as conn:
            return conn.execute(sql, params).fetchall()

    def patronictl(self, member: Member, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """patronictl as the postgres user, with the member's rendered config (TLS client settings included)."""
        env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "LANG": "C.UTF-8", **self.etcd.client_env(),
               "PATRONI_RESTAPI_USERNAME": "patroni", "PATRONI_RESTAPI_PASSWORD": RESTAPI_PASSWORD}
        return subprocess.run([RUNUSER, "-u", "postgres", "--", PATRONICTL, "-c", member.config_file, *args],
                              env=env, capture_output=True, text=True, check=check, timeout=120)


def standalone_env(base: str, certs: str, host: str, port: int, scope: str, name: str) -> dict:
    """What `run -- COMMAND` needs for one verify-full PostgreSQL on host:port without Patroni
    (a certificate test or benchmark): certificates in `certs`, everything else under `base`."""
    return {
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": f"{certs}/ca.crt", "PGSSLCERT": f"{certs}/server.crt", "PGSSLKEY": f"{certs}/server.key",
        "PCK_RUNTIME_DIR": f"{base}/run", "PCK_SOCKET_DIR": f"{base}/sock",
        "PATRONI_SCOPE": scope, "PATRONI_NAME": name,
        "PATRONI_POSTGRESQL_LISTEN": f"{host}:{port}", "PATRONI_POSTGRESQL_DATA_DIR": f"{base}/data",
        "PATRONI_RESTAPI_LISTEN": f"{host}:{free_port()}",
        "PATRONI_SUPERUSER_PASSWORD": "unused-here", "PATRONI_REPLICATION_PASSWORD": "unused-here",
    }


def _quote(value: str) -> str:
    if value and all(c.isalnum() or c in "/._-:" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def stop_pid(proc: Optional[subprocess.Popen], sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Stop one process we started (and its session, where postmaster children live), by PID."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


# ---- the README's first command -------------------------------------------------
def _up() -> int:
    citus = citus_available()
    groups = [0, 0, 1, 2] if citus else None
    cluster = LocalCluster(mode="verify-full", members=3, citus_groups=groups, scope="citusdemo")
    print(f"starting {'Citus' if citus else 'Patroni (citus.so not installed)'} cluster in {cluster.workdir} ...")
    try:
        cluster.start(timeout=180)
    except BaseException:
        cluster.dump_logs()
        cluster.stop()
        raise
    ca = cluster.write_client_ca()
    leader = cluster.leader(0 if citus else None)
    os.makedirs(os.path.dirname(STATE_FILE), exist_ok=True)
    with open(STATE_FILE, "w", encoding="utf-8") as handle:
        json.dump({"up": os.getpid(), "workdir": cluster.workdir,
                   "pids": [m.proc.pid for m in cluster.members] + [cluster.etcd.proc.pid]}, handle)
    print("cluster is up (PGSSLMODE=verify-full on every link):")
    for member in cluster.members:
        print(f"  {member.name:<16} {member.host}:5432  REST https://{member.host}:8008  log {member.log_path}")
    dsn = f"host={leader.host} user=postgres dbname={'citus' if citus else 'postgres'} sslmode=verify-full sslrootcert={ca}"
    password = shlex.quote(SUPERUSER_PASSWORD)
    print("\nconnect:")
    print(f"  PGPASSWORD={password} psql '{dsn}'")
    print(f"  PGPASSWORD={password} {ENTRYPOINT} verify '{dsn}'")
    print(f"  {RUNUSER} -u postgres -- env PATRONI_ETCD3_HOSTS=127.0.0.1:{cluster.etcd.client_port} "
          f"{PATRONICTL} -c {leader.config_file} list")
    print("\nCtrl-C or `scripts/cluster down` stops it.")
    try:
        while all(m.proc.poll() is None for m in cluster.members):
            time.sleep(1)
        print("a member exited; stopping", file=sys.stderr)
        cluster.dump_logs()
    except KeyboardInterrupt:
        print("\nstopping ...")
    finally:
        cluster.stop()
        cluster.cleanup()
        _forget_state()
    return 0


def _forget_state() -> None:
    try:
        os.unlink(STATE_FILE)
    except FileNotFoundError:
        pass


def _down() -> int:
    try:
        with open(STATE_FILE, encoding="utf-8") as handle:
            state = json.load(handle)
    except FileNotFoundError:
        print("no local cluster is running")
        return 0
    # Ask the `up` process to stop its cluster as on Ctrl-C; by PID only if it is gone or stuck.
    try:
        os.kill(state["up"], signal.SIGINT)
        wait_for("the cluster to stop", lambda: not os.path.exists(f"/proc/{state['up']}"), 90)
    except (ProcessLookupError, TimeoutError):
        pass
    for pid in state["pids"]:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    for pid in state["pids"]:
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            time.sleep(0.2)
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    shutil.rmtree(state["workdir"], ignore_errors=True)
    _forget_state()
    print("stopped")
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "up"
    sys.exit({"up": _up, "down": _down}.get(command, lambda: print("usage: cluster up|down") or 2)())
