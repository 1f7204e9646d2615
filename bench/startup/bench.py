"""Startup cost of `patroni-citus-k8s run` beside the imports it cannot avoid.

Times, interleaved in one run, the whole `run` at PGSSLMODE=verify-full (parse, check the
certificates, stage the copies, render, write, drop root, exec) until the exec'd stub
`patroni` has exited, and `python -c 'import yaml, jinja2, cryptography.x509'` with the
same interpreter. Prints both medians and their ratio (target under 1.3), and whether
`run` imported psycopg or Patroni (it must not: psycopg alone costs more than the job).

    sudo /opt/patroni-citus-k8s/venv/bin/python bench/startup/bench.py [--runs 15]

As root, `run` drops to PCK_RUN_AS (postgres) as in the image; as another user it runs
as that user. Everything lives in a temporary directory under /tmp. Not run by CI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from entrypoint.certs.issue import issue_ca, issue_server_cert, new_private_key, utc_now  # noqa: E402
from entrypoint.pki.load import cert_pem, key_pem  # noqa: E402

TARGET = 1.3
BASELINE = "import yaml, jinja2, cryptography.x509"
FORBIDDEN = ("psycopg", "psycopg2", "patroni")
NODE = "bench-0-0.bench.default.svc.cluster.local"


def make_world(root: str) -> dict:
    """A cert dir as a Secret mount, a stub patroni first on PATH; returns the environment for `run`."""
    now = utc_now()
    ca_key, key = new_private_key("ecdsa-p256"), new_private_key("ecdsa-p256")
    ca = issue_ca(ca_key, "bench CA", 3650, now)
    cert = issue_server_cert(ca, ca_key, key, ["*.bench.default.svc.cluster.local", "localhost"],
                                     NODE, 365, now)
    certs = os.path.join(root, "certs")
    os.makedirs(certs)
    for name, data in (("ca.crt", cert_pem(ca)), ("server.crt", cert_pem(cert)), ("server.key", key_pem(key))):
        fd = os.open(os.path.join(certs, name), os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    bin_dir = os.path.join(root, "bin")
    os.makedirs(bin_dir)
    stub = os.path.join(bin_dir, "patroni")
    with open(stub, "w") as handle:
        handle.write("#!/bin/sh\nexit 0\n")
    os.chmod(stub, 0o755)
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "PYTHONPATH": REPO,
        "PGSSLMODE": "verify-full",
        "PCK_CERT_DIR": certs,
        "PCK_RUNTIME_DIR": os.path.join(root, "run"),
        "PCK_SOCKET_DIR": os.path.join(root, "sock"),
        "PATRONI_POSTGRESQL_DATA_DIR": os.path.join(root, "data", "pgdata"),
        "PATRONI_SCOPE": "bench",
        "PATRONI_NAME": "bench-0-0",
        "PATRONI_POSTGRESQL_CONNECT_ADDRESS": f"{NODE}:5432",
        "PATRONI_SUPERUSER_PASSWORD": "bench-superuser",
        "PATRONI_REPLICATION_PASSWORD": "bench-replication",
        "PATRONI_CITUS_GROUP": "0",
        "PATRONI_CITUS_DATABASE": "citus",
    }


def run_argv(env: dict) -> list:
    # The stub is named after `--`: with the venv's interpreter, `run` prefers the real
    # Patroni installed beside it over PATH, and timing Patroni's start is not the point.
    return [sys.executable, "-m", "entrypoint", "run", "--", os.path.join(env["PATH"].split(":")[0], "patroni")]


def leftovers(tag: bytes) -> list:
    """PIDs of processes whose environment carries this bench's tag (the watcher `run` forks)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    if tag in handle.read():
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def linger(tag: bytes, limit: float = 5.0) -> float:
    """Seconds until every leftover process is gone, so one run's watcher does not load the next timing."""
    start = time.perf_counter()
    while leftovers(tag) and time.perf_counter() - start < limit:
        time.sleep(0.005)
    return time.perf_counter() - start


def timed(argv: list, env: dict) -> float:
    """Seconds until the process (after exec: the stub) exits.

    Waits for that PID only, not for pipes: the certificate watcher `run` forks keeps
    the inherited stdout/stderr open for as long as it lives.
    """
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, cwd="/", stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    code = process.wait()
    elapsed = time.perf_counter() - start
    if code != 0:
        again = subprocess.run(argv, env=env, cwd="/", capture_output=True, text=True, timeout=60)
        sys.exit(f"bench: {' '.join(argv)} failed ({code}):\n{again.stderr}")
    return elapsed


def imported_modules(argv: list, env: dict) -> dict:
    """{top-level module: cumulative import microseconds} for one run, from -X importtime."""
    result = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env={**env, "PCK_CERT_WATCH_INTERVAL": "0"},
                            cwd="/", capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        sys.exit(f"bench: importtime run failed:\n{result.stderr}")
    tops: dict = {}
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line[len("import time:"):].split("|"))
        if cumulative.isdigit() and not name.startswith(" ") and name == name.lstrip():
            top = name.split(".")[0]
            tops[top] = max(tops.get(top, 0), int(cumulative))
    return tops


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each command (default 15)")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="pck-bench-startup-")
    os.chmod(root, 0o755)  # the postgres user reaches the stub and the runtime dir after the drop
    try:
        env = make_world(root)
        tag = f"PCK_BENCH_TAG={os.path.basename(root)}".encode()
        env["PCK_BENCH_TAG"] = os.path.basename(root)
        run = run_argv(env)
        baseline = [sys.executable, "-c", BASELINE]
        for _ in range(2):  # warm the page cache and __pycache__ for both
            timed(baseline, env)
            timed(run, env)
            linger(tag)
        base_times, run_times, lingers = [], [], []
        for _ in range(args.runs):
            base_times.append(timed(baseline, env))
            run_times.append(timed(run, env))
            lingers.append(linger(tag))
        modules = imported_modules(run, env)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    base, job = statistics.median(base_times), statistics.median(run_times)
    ratio = job / base
    who = "root, dropping to postgres" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    print(f"startup bench: {args.runs} interleaved runs each, {sys.executable}, {who}, "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"  baseline  python -c '{BASELINE}'   median {base * 1000:6.1f} ms "
          f"(min {min(base_times) * 1000:.1f}, max {max(base_times) * 1000:.1f})")
    print(f"  run       run -- stub-patroni, PGSSLMODE=verify-full, Citus coordinator   median {job * 1000:6.1f} ms "
          f"(min {min(run_times) * 1000:.1f}, max {max(run_times) * 1000:.1f})")
    print(f"  watcher   outlived the exec'd stub by median {statistics.median(lingers) * 1000:.0f} ms "
          f"(max {max(lingers) * 1000:.0f}); waited out before the next timing")
    print(f"  ratio     {ratio:.2f} (target < {TARGET}): {'OK' if ratio < TARGET else 'OVER TARGET'}; "
          f"fastest runs {min(run_times) / min(base_times):.2f}, load average {os.getloadavg()[0]:.1f}")
    found = [name for name in FORBIDDEN if name in modules]
    print(f"  imports   run imports psycopg: {'YES' if 'psycopg' in found or 'psycopg2' in found else 'no'}, "
          f"patroni: {'YES' if 'patroni' in found else 'no'}")
    heaviest = sorted(modules.items(), key=lambda item: -item[1])[:6]
    print("  heaviest  " + ", ".join(f"{name} {us / 1000:.1f} ms" for name, us in heaviest))
    return 0 if ratio < TARGET and not found else 1


if __name__ == "__main__":
    sys.exit(main())
