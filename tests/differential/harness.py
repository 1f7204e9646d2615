"""Three verdicts for one certificate set: `patroni-citus-k8s check`, `openssl verify`, and a real PostgreSQL 15
with Debian's libpq 15 (psql) connecting at verify-full.

One PostgreSQL serves every set: its certificate files are swapped and the postmaster gets SIGHUP. PostgreSQL
15 reloads the SSL files in its SIGHUP handler and, when they do not load (e.g. "ee key too small"), logs "SSL
configuration was not reloaded" and keeps the old ones. So after each swap the harness waits until either
the new certificate is the one served on the wire or that line is in the log; an SSLRequest answered after
the signal proves the handler has run, so a set whose certificate loads but cannot be shown to our probe
(no TLS 1.3 signature scheme for its key) is still told apart from one that did not load.

The client is Debian's psql 15, not psycopg: psycopg's binary wheel brings its own libpq 18 and OpenSSL,
whose defaults (security level among them) are not what a Debian 12 pod has.
Everything started is stopped by PID; every subprocess has a timeout.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from cryptography import x509

from tests.differential.corpus import CertSet, leaf, pem, root
from tests.support.cluster import free_port, stop_pid

REPO = Path(__file__).resolve().parents[2]
PG_BIN = "/usr/lib/postgresql/15/bin"
PSQL = f"{PG_BIN}/psql"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
LOOPBACK = "127.0.0.1"
TIMEOUT = 30  # seconds, for every subprocess
NOT_RELOADED = "SSL configuration was not reloaded"


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    detail: str

    def __str__(self) -> str:
        return f"{'accept' if self.accepted else 'refuse'} ({self.detail})"


def _write(path: Path, data: bytes, owner: Optional[pwd.struct_passwd] = None) -> None:
    """Write atomically (aside, then rename), mode 0600, owned by `owner` or the caller."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    if owner is not None:
        os.chown(tmp, owner.pw_uid, owner.pw_gid)
    os.replace(tmp, path)


def write_set(directory: Path, s: CertSet) -> Dict[str, Path]:
    """ca.crt, server.crt, server.key (+ leaf.pem and untrusted.pem for openssl) in `directory`, root-owned."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / name for name in ("ca.crt", "server.crt", "server.key", "leaf.pem", "untrusted.pem")}
    for name, data in (("ca.crt", s.ca_pem), ("server.crt", s.cert_pem), ("server.key", s.key_pem),
                       ("leaf.pem", pem(s.chain[0])), ("untrusted.pem", b"".join(pem(c) for c in s.chain[1:]))):
        _write(paths[name], data)
    return paths


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def entrypoint_check(s: CertSet, paths: Dict[str, Path], workdir: Path) -> Verdict:
    """`patroni-citus-k8s check` from this checkout at verify-full: exit 0 accepts, 2 refuses."""
    env = {
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1",
        "PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(paths["ca.crt"]),
        "PGSSLCERT": str(paths["server.crt"]), "PGSSLKEY": str(paths["server.key"]),
        "PATRONI_SCOPE": "corpus", "PATRONI_NAME": "corpus-0",
        "PATRONI_SUPERUSER_PASSWORD": "unused-here", "PATRONI_REPLICATION_PASSWORD": "unused-here",
        "PATRONI_POSTGRESQL_CONNECT_ADDRESS": host_port(s.host, 5432),
        "PATRONI_RESTAPI_CONNECT_ADDRESS": host_port(s.host, 8008),
        "PCK_RUNTIME_DIR": str(workdir / "run"), "PCK_SOCKET_DIR": str(workdir / "sock"),
    }
    if s.mutual:
        env["PCK_CLIENT_CERT_AUTH"] = "true"
    result = subprocess.run([sys.executable, "-m", "entrypoint", "check"], env=env, cwd=workdir,
                            capture_output=True, text=True, timeout=TIMEOUT)
    if result.returncode not in (0, 2):
        raise RuntimeError(f"check exited {result.returncode}: {result.stderr}")
    problems = [line.strip()[2:] for line in result.stdout.splitlines() if line.strip().startswith("- ")]
    return Verdict(result.returncode == 0, " | ".join(problems) or "would start")


def openssl_verify(s: CertSet, paths: Dict[str, Path]) -> Verdict:
    """The chain alone, as `openssl verify` judges it at security level 2 (what TLS on Debian 12 applies)."""
    outcomes = []
    for purpose in ("sslserver",) + (("sslclient",) if s.mutual else ()):
        argv = [OPENSSL, "verify", "-auth_level", "2", "-purpose", purpose, "-CAfile", str(paths["ca.crt"])]
        if len(s.chain) > 1:
            argv += ["-untrusted", str(paths["untrusted.pem"])]
        result = subprocess.run(argv + [str(paths["leaf.pem"])], capture_output=True, text=True, timeout=TIMEOUT)
        text = (result.stdout + result.stderr).replace(str(paths["leaf.pem"]), "leaf")
        errors = [line for line in text.splitlines() if "error" in line]
        outcomes.append((result.returncode == 0, f"{purpose}: " + (errors[0] if errors else "OK")))
    return Verdict(all(ok for ok, _ in outcomes), "; ".join(d for _, d in outcomes))


class Postgres:
    """One PostgreSQL 15 on 127.0.0.1 (a free port), running as postgres, whose SSL files the harness swaps."""

    def __init__(self) -> None:
        self.user = pwd.getpwnam("postgres")
        self.base = Path(tempfile.mkdtemp(prefix="pck-differential-", dir="/tmp"))
        self.tls = self.base / "tls"
        self.port = free_port(LOOPBACK)
        self.proc: Optional[subprocess.Popen] = None
        self.log = self.base / "postgres.log"
        baseline_ca = root("Differential baseline CA")
        first = leaf(baseline_ca)
        self.baseline = CertSet("baseline", (baseline_ca.cert,), (first.cert,), first.key, True, "served between sets")

    def _as_postgres(self, argv: list, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(argv, user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[],
                              env=self._env(), capture_output=True, text=True, timeout=TIMEOUT, **kw)

    def _env(self) -> dict:
        return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(self.base)}

    def start(self) -> None:
        for d in (self.base, self.tls, self.base / "sock"):
            d.mkdir(exist_ok=True)
            os.chown(d, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.base, 0o755)
        init = self._as_postgres([f"{PG_BIN}/initdb", "-D", str(self.base / "data"), "-U", "postgres",
                                  "--auth=trust", "--no-sync", "--locale=C", "-E", "UTF8"])
        assert init.returncode == 0, init.stdout + init.stderr
        (self.base / "data" / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl mtls all 127.0.0.1/32 trust clientcert=verify-ca\n"
            "hostssl all all 127.0.0.1/32 trust\n")
        self._swap(self.baseline)
        t = self.tls
        # In the file, not on the command line, so a reload re-reads the same values without complaint.
        with open(self.base / "data" / "postgresql.conf", "a") as conf:
            conf.write(f"listen_addresses = '{LOOPBACK}'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.base / 'sock'}'\nssl = on\n"
                       f"ssl_cert_file = '{t / 'server.crt'}'\nssl_key_file = '{t / 'server.key'}'\n"
                       f"ssl_ca_file = '{t / 'ca.crt'}'\nfsync = off\nshared_buffers = 16MB\nmax_connections = 20\n")
        argv = [f"{PG_BIN}/postgres", "-D", str(self.base / "data")]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[],
                                         env=self._env(), stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + TIMEOUT
        while self._as_postgres([f"{PG_BIN}/pg_isready", "-q", "-h", str(self.base / "sock"),
                                 "-p", str(self.port)]).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start:\n{self.log.read_text(errors='replace')}")
            time.sleep(0.1)
        made = self._as_postgres([PSQL, "-X", "-q", "-h", str(self.base / "sock"), "-p", str(self.port),
                                  "-U", "postgres", "-d", "postgres", "-c", "CREATE DATABASE mtls"])
        assert made.returncode == 0, made.stderr

    def stop(self) -> None:
        stop_pid(self.proc, signal.SIGINT)  # fast shutdown
        shutil.rmtree(self.base, ignore_errors=True)

    def _swap(self, s: CertSet) -> None:
        # The CA file is what PostgreSQL checks client certificates against: the set's own CA for mutual sets.
        ca = s.ca_pem if s.mutual else self.baseline.ca_pem
        for name, data in (("server.crt", s.cert_pem), ("server.key", s.key_pem), ("ca.crt", ca)):
            _write(self.tls / name, data, self.user)

    def serve(self, s: CertSet) -> Verdict:
        """Swap in `s` and reload: accept when PostgreSQL serves it, refuse when it keeps the old files."""
        if self.served() == s.chain[0]:
            self.serve(self.baseline)
        offset = self.log.stat().st_size
        self._swap(s)
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            handled = self._ping()  # an SSLRequest answered after the signal: the handler has run
            new_log = self._log_since(offset)
            if NOT_RELOADED in new_log:
                why = [line.split("LOG:", 1)[-1].strip() for line in new_log.splitlines()
                       if "could not load" in line or "could not read" in line or "key" in line]
                return Verdict(False, "not loaded: " + (why[0] if why else NOT_RELOADED))
            served = self.served()
            if served == s.chain[0]:
                return Verdict(True, "served")
            if handled and served is None:
                return Verdict(True, "loaded (its key has no signature scheme our probe offers)")
            time.sleep(0.02)
        raise TimeoutError(f"no verdict from postgres for {s.name}:\n{self._log_since(offset)}")

    def _log_since(self, offset: int) -> str:
        with open(self.log, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")

    def _ping(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=5) as raw:
                raw.sendall(struct.pack("!II", 8, 80877103))
                return raw.recv(1) == b"S"
        except OSError:
            return False

    def served(self) -> Optional[x509.Certificate]:
        """The certificate on the wire now (any key, any signature: trust is not judged here); None if unseen."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=5) as raw:
                raw.sendall(struct.pack("!II", 8, 80877103))
                if raw.recv(1) != b"S":
                    return None
                with ctx.wrap_socket(raw) as tls:
                    der = tls.getpeercert(binary_form=True)
        except (OSError, ssl.SSLError):
            return None
        return x509.load_der_x509_certificate(der) if der else None

    def connect(self, s: CertSet, paths: Dict[str, Path]) -> Verdict:
        """psql (libpq 15) at verify-full, checking the set's host name while reaching 127.0.0.1."""
        params = {"host": s.host, "hostaddr": LOOPBACK, "port": str(self.port), "user": "postgres",
                  "dbname": "mtls" if s.mutual else "postgres", "sslmode": "verify-full",
                  "sslrootcert": str(paths["ca.crt"]), "connect_timeout": "10",
                  "sslcert": str(paths["server.crt"]) if s.mutual else "/nonexistent/client.crt",
                  "sslkey": str(paths["server.key"]) if s.mutual else "/nonexistent/client.key"}
        conninfo = " ".join(f"{k}='{_quote(v)}'" for k, v in params.items())
        query = "SELECT ssl, coalesce(client_serial::text, '-') FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        result = subprocess.run([PSQL, "-X", "-At", "-F", " ", "-d", conninfo, "-c", query],
                                env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"},
                                capture_output=True, text=True, timeout=TIMEOUT)
        if result.returncode != 0:
            return Verdict(False, result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed")
        ssl_on, serial = result.stdout.split()
        if ssl_on != "t" or (s.mutual and serial != str(s.chain[0].serial_number)):
            raise AssertionError(f"{s.name}: connected but ssl={ssl_on}, client serial {serial}")
        return Verdict(True, "connected" + (" with the client certificate" if s.mutual else ""))

    def verdict(self, s: CertSet, paths: Dict[str, Path]) -> Verdict:
        """PostgreSQL's and libpq's verdict together: the server must load the set, then libpq must connect."""
        loaded = self.serve(s)
        return self.connect(s, paths) if loaded.accepted else loaded


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")

