"""New connections per second (pgbench -C) without TLS, and verify-full with RSA-2048 and ECDSA P-256 server certificates.

One PostgreSQL 15, started through `patroni-citus-k8s run --` as the image starts it;
the server certificate is switched between rounds with ALTER SYSTEM + reload, and the
variants are interleaved so drift hits them alike. Prints each round, the medians and
the ratios; the target is the default key type reaching 60% of the plaintext rate.

    sudo /opt/patroni-citus-k8s/venv/bin/python bench/handshake/bench.py [--seconds 6] [--rounds 3]

Not run by CI: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from entrypoint.pki.keys import DEFAULT_KEY_TYPE  # noqa: E402
from tests.support.cluster import PG_BIN, free_port, standalone_env, stop_pid, wait_for  # noqa: E402

LOOPBACK = "127.0.0.1"
KEY_TYPES = ("rsa-2048", "ecdsa-p256")
TARGET = 0.60


def entrypoint(*args: str, env: dict) -> list:
    return subprocess.run([sys.executable, "-m", "entrypoint", *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": REPO, **env})


def generate(out_dir: str, key_type: str) -> None:
    result = entrypoint("certs", "generate", "--out-dir", out_dir, "--key-type", key_type, env={})
    if result.returncode:
        sys.exit(f"certs generate failed: {result.stderr}")


def stage_for_postgres(src_dir: str, dest_dir: str, uid: int, gid: int) -> None:
    """Private copies of a server pair the postgres user can read (the second pair `run` does not stage)."""
    os.makedirs(dest_dir, mode=0o700)
    os.chown(dest_dir, uid, gid)
    for name in ("server.crt", "server.key"):
        with open(os.path.join(src_dir, name), "rb") as handle:
            data = handle.read()
        fd = os.open(os.path.join(dest_dir, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.fchown(fd, uid, gid)
        with os.fdopen(fd, "wb") as out:
            out.write(data)


def psql(base: str, port: int, sql: str) -> str:
    result = subprocess.run([f"{PG_BIN}/psql", "-X", "-At", "-h", f"{base}/sock", "-p", str(port), "-U", "postgres",
                             "-d", "postgres", "-c", sql], capture_output=True, text=True, check=True)
    return result.stdout.strip()


def use_server_pair(base: str, port: int, cert: str, key: str) -> None:
    psql(base, port, f"ALTER SYSTEM SET ssl_cert_file = '{cert}'")
    psql(base, port, f"ALTER SYSTEM SET ssl_key_file = '{key}'")
    psql(base, port, "SELECT pg_reload_conf()")


def presented_key_bits(port: int) -> str:
    """What the server now presents, read from the handshake itself (guards against a failed reload)."""
    result = subprocess.run(["openssl", "s_client", "-starttls", "postgres", "-connect", f"{LOOPBACK}:{port}"],
                            input="", capture_output=True, text=True, timeout=30)
    match = re.search(r"Server public key is (\d+) bit", result.stdout)
    return match.group(1) if match else "?"


def reaped_children_cpu(pid: int) -> float:
    """CPU seconds of the postmaster's exited children (the backends), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def pgbench(port: int, seconds: int, clients: int, sslmode: str, ca: str | None, script: str,
            postmaster: int) -> tuple:
    """Return (connections/s, pgbench CPU ms per connection, backend CPU ms per connection)."""
    env = {"PATH": "/usr/bin:/bin", "PGHOST": LOOPBACK, "PGPORT": str(port), "PGUSER": "postgres",
           "PGDATABASE": "postgres", "HOME": "/nonexistent", "PGSSLMODE": sslmode}
    if sslmode.startswith("verify"):
        env["PGSSLROOTCERT"] = ca
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = reaped_children_cpu(postmaster)
    result = subprocess.run(["pgbench", "-n", "-C", "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 1)),
                             "-T", str(seconds), "-f", script], env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = reaped_children_cpu(postmaster) - server_before
    match = re.search(r"tps = ([0-9.]+)", result.stdout)
    if result.returncode or not match:
        sys.exit(f"pgbench failed:\n{result.stdout}\n{result.stderr}")
    tps = float(match.group(1))
    client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    connections = max(tps * seconds, 1)
    return tps, 1000 * client_cpu / connections, 1000 * server_cpu / connections


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=6, help="length of each pgbench run (default 6)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per variant (default 3)")
    parser.add_argument("--clients", type=int, default=4, help="pgbench clients (default 4)")
    parser.add_argument("--with-require", action="store_true",
                        help="also measure sslmode=require (TLS without verification) for each key type")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/handshake: run as root (PostgreSQL is started through run's privilege drop)")

    postgres = pwd.getpwnam("postgres")
    base = tempfile.mkdtemp(prefix="pck-handshake-", dir="/tmp")
    proc = None
    try:
        os.chmod(base, 0o755)
        for key_type in KEY_TYPES:
            generate(f"{base}/{key_type}", key_type)
        os.chown(base, postgres.pw_uid, postgres.pw_gid)
        port = free_port()
        first = f"{base}/{KEY_TYPES[0]}"
        env = standalone_env(base, first, LOOPBACK, port, scope="bench", name="bench-0")
        init = entrypoint("run", "--", f"{PG_BIN}/initdb", "-D", f"{base}/data", "-U", "postgres", "--auth=trust",
                          "--no-sync", env=env)
        if init.returncode:
            sys.exit(f"initdb through run failed:\n{init.stderr}")
        with open(f"{base}/data/pg_hba.conf", "w") as hba:
            hba.write("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        pairs = {KEY_TYPES[0]: (f"{base}/run/tls/server.crt", f"{base}/run/tls/server.key")}
        for key_type in KEY_TYPES[1:]:
            stage_for_postgres(f"{base}/{key_type}", f"{base}/staged-{key_type}", postgres.pw_uid, postgres.pw_gid)
            pairs[key_type] = (f"{base}/staged-{key_type}/server.crt", f"{base}/staged-{key_type}/server.key")
        cert, key = pairs[KEY_TYPES[0]]
        # In postgresql.conf, not on the command line, so ALTER SYSTEM can switch them later.
        with open(f"{base}/data/postgresql.conf", "a") as conf:
            conf.write(f"ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\nfsync = off\n")
        log = open(f"{base}/postgres.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "entrypoint", "run", "--", f"{PG_BIN}/postgres", "-D", f"{base}/data",
             "-c", f"listen_addresses={LOOPBACK}", "-c", f"port={port}", "-c", f"unix_socket_directories={base}/sock"],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": REPO, **env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        wait_for("postgres", lambda: proc.poll() is None and subprocess.run(
            [f"{PG_BIN}/pg_isready", "-q", "-h", f"{base}/sock", "-p", str(port), "-U", "postgres"]).returncode == 0,
            timeout=60, interval=0.2)
        script = f"{base}/select1.sql"
        with open(script, "w") as handle:
            handle.write("SELECT 1;\n")

        # (label, server key type or None for no TLS, client sslmode)
        variants = [("plaintext", None, "disable")] + [(k, k, "verify-full") for k in KEY_TYPES]
        if args.with_require:
            variants += [(f"{k}/require", k, "require") for k in KEY_TYPES]
        results: dict = {label: [] for label, _, _ in variants}  # label -> [(tps, pgbench ms, backend ms)]
        print(f"pgbench -C, {args.clients} clients, {args.seconds}s per run, {args.rounds} rounds, "
              f"{os.cpu_count()} CPUs; TLS runs are sslmode=verify-full to {LOOPBACK} unless labelled /require")
        current = KEY_TYPES[0]
        for round_no in range(1, args.rounds + 1):
            for label, key_type, sslmode in variants:
                if key_type and key_type != current:
                    use_server_pair(base, port, *pairs[key_type])
                    # The postmaster reloads asynchronously: wait until handshakes show the new key.
                    expected = "256" if key_type.startswith("ecdsa") else key_type.split("-")[1]
                    wait_for(f"the server to present its {key_type} certificate",
                             lambda: presented_key_bits(port) == expected, timeout=30, interval=0.2)
                    current = key_type
                ca = f"{base}/{key_type}/ca.crt" if key_type else None
                tps, client_ms, server_ms = pgbench(port, args.seconds, args.clients, sslmode, ca, script, proc.pid)
                results[label].append((tps, client_ms, server_ms))
                print(f"  round {round_no} {label:<18} {tps:9.1f} connections/s   CPU ms/connection: "
                      f"pgbench {client_ms:5.2f}, backend {server_ms:5.2f}")

        def median(label: str, index: int) -> float:
            return statistics.median(run[index] for run in results[label])

        plain_rate, plain_backend = median("plaintext", 0), median("plaintext", 2)
        print("\nmedians            connections/s  ratio    backend CPU ms/conn  backend-bound ratio")
        for label, _, _ in variants:
            rate, backend = median(label, 0), median(label, 2)
            print(f"  {label:<18} {rate:9.1f}  {rate / plain_rate:6.1%}   {backend:10.2f}          "
                  f"{plain_backend / backend:6.1%}")
        print(f"\necdsa-p256 / rsa-2048: {median('ecdsa-p256', 0) / median('rsa-2048', 0):.2f}x connections/s, "
              f"{median('rsa-2048', 2) / median('ecdsa-p256', 2):.2f}x fewer backend CPU ms per connection")
        measured = median(DEFAULT_KEY_TYPE, 0) / plain_rate
        bound = plain_backend / median(DEFAULT_KEY_TYPE, 2)
        print(f"default key type {DEFAULT_KEY_TYPE}, target {TARGET:.0%} of plaintext: measured here "
              f"{measured:.1%} ({'meets' if measured >= TARGET else 'MISSES'}; pgbench shares the CPUs with the "
              f"server), server-bound {bound:.1%} ({'meets' if bound >= TARGET else 'MISSES'}; clients elsewhere)")
        return 0
    except BaseException:
        if os.path.exists(f"{base}/postgres.log"):
            with open(f"{base}/postgres.log", errors="replace") as server_log:
                print("server log (last lines):\n" + "".join(server_log.readlines()[-15:]), file=sys.stderr)
        raise
    finally:
        stop_pid(proc, signal.SIGINT)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
