"""Drive the Docker CLI and the compose CLI for the container suite: build, up, exec, down."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPOSE_FILE = os.path.join(REPO, "docker-compose.yml")
CERT_DIR = "/etc/ssl/certs/postgresql"
RUNTIME_DIR = "/run/patroni-citus-k8s"
CONFIG_FILE = f"{RUNTIME_DIR}/patroni.yml"
STAGED_KEY = f"{RUNTIME_DIR}/tls/server.key"
STAGED_CERT = f"{RUNTIME_DIR}/tls/server.crt"
DATA_DIR = "/var/lib/postgresql/data/pgdata"
# The member the suite starts as root, to prove the entrypoint's privilege drop; the
# others start as the image's default user (postgres).
ROOT_MEMBER = "citusdemo-2-0"


def docker_cli() -> str:
    """Return the docker client to use: $PCK_DOCKER, else Debian's, else the one on PATH."""
    if os.environ.get("PCK_DOCKER"):
        return os.environ["PCK_DOCKER"]
    if os.path.exists("/usr/bin/docker"):
        return "/usr/bin/docker"
    return shutil.which("docker") or "docker"


def compose_cli() -> list[str]:
    """Return the compose command: $PCK_COMPOSE, else `docker compose` (v2) when present, else docker-compose."""
    if os.environ.get("PCK_COMPOSE"):
        return os.environ["PCK_COMPOSE"].split()
    docker = docker_cli()
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode == 0:
        return [docker, "compose"]
    return [shutil.which("docker-compose") or "docker-compose"]


def run(cmd: Sequence[str], check: bool = True, timeout: float = 600,
        env: Optional[Mapping[str, str]] = None, input: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run `cmd`, capturing text output. Raises AssertionError with both streams when `check` fails."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env}, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def engine_answers() -> bool:
    """Return whether a Docker engine answers the client."""
    try:
        return run([docker_cli(), "info"], check=False, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def wait_for(what: str, probe: Callable[[], object], timeout: float, interval: float = 2.0) -> object:
    """Call `probe` until it returns something truthy; return it. Raises AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = probe()
            if last:
                return last
        except (AssertionError, subprocess.TimeoutExpired, ValueError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last}")
        time.sleep(interval)


def base_has_citus(docker: str, base_image: str) -> bool:
    """Return whether the base image carries the Citus extension."""
    script = "ls /usr/lib/postgresql/*/lib/citus.so >/dev/null 2>&1"
    return run([docker, "run", "--rm", "--network=none", "--entrypoint", "sh", base_image, "-c", script],
               check=False).returncode == 0


def derive_compose_file(rendered: str, citus: bool, mtls: bool = False) -> dict:
    """Return the suite's variant of the resolved compose file (`compose config` output).

    The changes, all stated in the suite's output: ROOT_MEMBER starts as root; without
    Citus every PATRONI_CITUS_* variable is dropped, so the members form one plain Patroni
    cluster (one leader, three replicas) instead of three Citus groups; with `mtls` every
    member gets PCK_CLIENT_CERT_AUTH=true.
    """
    doc = yaml.safe_load(rendered)
    doc.pop("name", None)  # compose v2 adds the project name; -p gives ours
    services = doc["services"]
    services[ROOT_MEMBER]["user"] = "0:0"
    if mtls:
        for name, service in services.items():
            if name.startswith("citusdemo-"):
                service.setdefault("environment", {})["PCK_CLIENT_CERT_AUTH"] = "true"
    if not citus:
        for service in services.values():
            env = service.get("environment") or {}
            for key in [k for k in env if k.startswith("PATRONI_CITUS_")]:
                del env[key]
    return doc


@dataclass
class Cluster:
    """A compose project started by the suite; every name it made carries `project`."""

    docker: str
    compose: list[str]
    project: str
    compose_file: str
    env: dict
    citus: bool
    mtls: bool = False
    members: list[str] = field(default_factory=list)

    def compose_run(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return run([*self.compose, "-p", self.project, "-f", self.compose_file, *args],
                   check=check, timeout=timeout, env=self.env)

    def container(self, service: str) -> str:
        """Return the id of the running container of `service`."""
        out = run([self.docker, "ps", "-q", "--filter", f"label=com.docker.compose.project={self.project}",
                   "--filter", f"label=com.docker.compose.service={service}"]).stdout.split()
        if len(out) != 1:
            raise AssertionError(f"expected one running container for {service}, found {out}")
        return out[0]

    def exec(self, service: str, *cmd: str, user: str = "postgres", env: Optional[Mapping[str, str]] = None,
             check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run `cmd` inside `service`'s container as `user`."""
        env_args: list[str] = []
        for key, value in (env or {}).items():
            env_args += ["-e", f"{key}={value}"]
        return run([self.docker, "exec", "-u", user, *env_args, self.container(service), *cmd],
                   check=check, timeout=timeout)

    def psql(self, service: str, host: str, sql: str, sslmode: str = "verify-full", dbname: str = "postgres",
             check: bool = True, client_cert: Optional[bool] = None) -> subprocess.CompletedProcess:
        """Run `sql` with psql inside `service`, connecting over TCP to `host` as the superuser.

        With mutual TLS the member's own staged certificate is presented, unless `client_cert` is False.
        """
        conninfo = (f"host={host} port=5432 user=postgres dbname={dbname} sslmode={sslmode} "
                    f"sslrootcert={CERT_DIR}/ca.crt connect_timeout=10")
        if self.mtls if client_cert is None else client_cert:
            conninfo += f" sslcert={STAGED_CERT} sslkey={STAGED_KEY}"
        return self.exec(service, "psql", conninfo, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql,
                         env={"PGPASSWORD": self.env["PATRONI_SUPERUSER_PASSWORD"]}, check=check)

    def patronictl(self, service: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.exec(service, "patronictl", "-c", CONFIG_FILE, *args, check=check)

    def members_state(self, service: str) -> list[dict]:
        """Return `patronictl list` as JSON rows, read inside `service`."""
        return json.loads(self.patronictl(service, "list", "-f", "json").stdout)

    @property
    def certs_dir(self) -> str:
        """The host directory the `certs` service writes (PCK_CERTS_DIR); members mount its `node/`."""
        return self.env["PCK_CERTS_DIR"]

    def refresh_node_certs(self) -> subprocess.CompletedProcess:
        """Run the one-shot `certs` service again, as a user does after renewing: it keeps the
        certificates in the certs directory and copies ca.crt, server.crt and server.key into
        `node/`, the directory every member mounts read-only."""
        return self.compose_run("run", "--rm", "-T", "certs", timeout=300)

    def ip(self, service: str) -> str:
        """Return the container's address on the project network (the host reaches it directly)."""
        out = run([self.docker, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                   self.container(service)]).stdout.split()
        if len(out) != 1:
            raise AssertionError(f"expected one address for {service}, found {out}")
        return out[0]

    def logs(self, service: str) -> str:
        """Return everything the container wrote so far (stdout and stderr)."""
        proc = run([self.docker, "logs", self.container(service)], timeout=120)
        return proc.stdout + proc.stderr

    def identity(self, service: str) -> dict:
        """What changes when a container, Patroni or PostgreSQL restarts: the container id, its start time
        and restart count, PID 1's command and start time (in clock ticks since boot), the postmaster's PID."""
        container = self.container(service)
        started, restarts = run([self.docker, "inspect", "-f", "{{.State.StartedAt}} {{.RestartCount}}",
                                 container]).stdout.split()
        pid1 = self.exec(service, "cat", "/proc/1/stat").stdout
        # Field 22 of /proc/PID/stat is the start time; fields after the command in parentheses.
        pid1_start = pid1.rsplit(")", 1)[1].split()[19]
        cmdline = self.exec(service, "cat", "/proc/1/cmdline").stdout.split("\0")
        postmaster = self.exec(service, "head", "-n", "1", f"{DATA_DIR}/postmaster.pid").stdout.strip()
        return {"container": container, "started": started, "restarts": restarts,
                "pid1_patroni": any(arg.endswith("/patroni") for arg in cmdline),
                "pid1_start": pid1_start, "postmaster": postmaster}

    def leftovers(self) -> list[str]:
        """Return the containers and networks of this project that still exist."""
        label = f"label=com.docker.compose.project={self.project}"
        containers = run([self.docker, "ps", "-aq", "--filter", label]).stdout.split()
        networks = run([self.docker, "network", "ls", "-q", "--filter", label]).stdout.split()
        return containers + networks


def fqdn(member: str) -> str:
    """Return the name a member is reached by, as on Kubernetes (the certificate's wildcard covers it)."""
    return f"{member}.citusdemo.default.svc.cluster.local"
