"""Citus through the TLS pooler: pgbench direct to the coordinator and through PgBouncer, disable vs verify-full.

Two clusters at once, each a coordinator + 2 workers started through `run` (one at
PGSSLMODE=disable, one at verify-full), each with a distributed table of 32 shards and a
PgBouncer started through `pooler run` (transaction pooling) in front of its coordinator.
Every case runs on both clusters back to back, round after round, so drift hits them
alike: (a) a router query by key, (b) a multi-shard count(*), each on persistent
connections and with -C (a new connection per transaction), direct and through the
pooler; and pgbench's select-only script with -C (-C -S, new connections per second).
Prints each figure, the ratios of the issue's targets, and the CPU each transaction cost
the servers (every postgres process of the cluster), PgBouncer and pgbench, which is
what limits a target a 2-core machine misses.

    sudo PCK_PREFIX=/opt/patroni-citus-k8s /opt/patroni-citus-k8s/venv/bin/python bench/citus/bench.py [--seconds 8]

Not run by CI: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from tests.support.cluster import TEST_NET, LocalCluster, citus_available, wait_for  # noqa: E402
from tests.support.pooler import AUTH_PASSWORD, Pooler, pooler_setup  # noqa: E402

MODES = ("disable", "verify-full")
USER, PASSWORD = "bench", "bench-pass"
ROWS = 10000
SHARDS = 32
SCRIPTS = {
    "router": f"\\set k random(1, {ROWS})\nSELECT v FROM kv WHERE k = :k;\n",
    "count": "SELECT count(*) FROM kv;\n",
}
TARGETS = (
    ("multi-shard -C through the pooler ÷ direct, verify-full", ("pooler", "count", "-C", "verify-full"),
     ("direct", "count", "-C", "verify-full"), 5.0),
    ("new connections/s (-C -S): pooler verify-full ÷ direct disable", ("pooler", "select-only", "-C", "verify-full"),
     ("direct", "select-only", "-C", "disable"), 1.0),
    ("persistent router, direct: verify-full ÷ disable", ("direct", "router", "persistent", "verify-full"),
     ("direct", "router", "persistent", "disable"), 0.80),
)


def start(mode: str, base_ip: int) -> tuple:
    cluster = LocalCluster(mode=mode, citus_groups=[0, 1, 2], scope=f"bench{mode.replace('-', '')}", base_ip=base_ip)
    try:
        return cluster, _start(cluster, base_ip)
    except BaseException:
        cluster.dump_logs(tail=15)
        cluster.stop()
        cluster.cleanup()
        raise


def _start(cluster: LocalCluster, base_ip: int) -> Pooler:
    cluster.etcd.start()
    for member in cluster.members:
        cluster.start_member(member)
    cluster.wait_healthy(180)
    coord = cluster.leader(0)
    wait_for("both workers in pg_dist_node", lambda: cluster.query(
        coord, "SELECT count(*) FROM pg_dist_node WHERE noderole = 'primary' AND isactive", dbname="citus")[0][0] == 3,
        60)
    with cluster.connect(coord, dbname="citus") as conn:
        conn.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
        conn.execute("INSERT INTO pg_dist_authinfo VALUES (0, %s, %s)", (USER, f"password={PASSWORD}"))
        conn.execute("CREATE TABLE kv (k int PRIMARY KEY, v text)")
        conn.execute(f"SET citus.shard_count = {SHARDS}")
        conn.execute("SELECT create_distributed_table('kv', 'k')")
        conn.execute("INSERT INTO kv SELECT i, md5(i::text) FROM generate_series(1, %s) i", (ROWS,))
        conn.execute(f"GRANT SELECT ON kv TO {USER}")
    # pgbench's own tables for -S (local to the coordinator: the cost of a connection, not of Citus)
    subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-I", "dtgp"], env=pg_env(cluster, coord.host, 5432, "postgres"),
                   check=True, capture_output=True)
    with cluster.connect(coord, dbname="citus") as conn:
        conn.execute(f"GRANT SELECT ON pgbench_accounts, pgbench_branches, pgbench_tellers TO {USER}")
    result = pooler_setup(cluster, cluster.dsn(coord, dbname="citus"))
    if result.returncode:
        sys.exit(f"pooler setup failed: {result.stdout}{result.stderr}")
    return Pooler(cluster, f"127.0.{TEST_NET}.{base_ip + 9}", f"{coord.host}:5432").start()


def pg_env(cluster: LocalCluster, host: str, port: int, user: str) -> dict:
    from tests.support.cluster import SUPERUSER_PASSWORD

    env = {"PATH": "/usr/bin:/bin", "PGHOST": host, "PGPORT": str(port), "PGUSER": user, "PGDATABASE": "citus",
           "PGPASSWORD": SUPERUSER_PASSWORD if user == "postgres" else PASSWORD, "HOME": "/nonexistent",
           "PGSSLMODE": cluster.mode}
    if cluster.mode.startswith("verify"):
        env["PGSSLROOTCERT"] = cluster.write_client_ca()
    return env


def cluster_cpu(cluster: LocalCluster, pooler: Pooler) -> tuple:
    """(CPU seconds of every postgres process of the cluster, live and exited; of PgBouncer)."""
    tick = os.sysconf("SC_CLK_TCK")
    servers = 0.0
    for member in cluster.members:
        try:
            with open(os.path.join(member.data_dir, "postmaster.pid")) as handle:
                pid = int(handle.readline())
        except (OSError, ValueError):
            continue
        servers += _proc_cpu(pid, children=True) / tick
        for child in _children(pid):
            servers += _proc_cpu(child, children=False) / tick
    return servers, _proc_cpu(pooler.proc.pid, children=False) / tick if pooler.proc else 0.0


def _proc_cpu(pid: int, children: bool) -> int:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)


def _children(pid: int) -> list:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


def worker_sessions(cluster: LocalCluster) -> int:
    """Sessions the workers have had in the Citus database (pg_stat_database.sessions), less verify's own look."""
    total = 0
    for member in cluster.members:
        if member.group:
            total += cluster.query(member, "SELECT sessions FROM pg_stat_database WHERE datname = 'citus'",
                                   dbname="citus")[0][0] - 1  # this very query's session counts already
    return total


def pgbench(cluster: LocalCluster, pooler: Pooler, via: str, script: str, connect: str, seconds: int,
            clients: int, workdir: str) -> dict:
    coord = cluster.leader(0)
    host, port = (coord.host, 5432) if via == "direct" else (pooler.host, pooler.port)
    args = ["pgbench", "-n", "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(seconds)]
    if script == "select-only":
        args += ["-S"]
    else:
        path = os.path.join(workdir, f"{script}.sql")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(SCRIPTS[script])
        args += ["-f", path]
    if connect == "-C":
        args.append("-C")
    sessions_before = worker_sessions(cluster)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    servers_before, pooler_before = cluster_cpu(cluster, pooler)
    result = subprocess.run(args, env=pg_env(cluster, host, port, USER), capture_output=True, text=True)
    servers_after, pooler_after = cluster_cpu(cluster, pooler)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sessions = worker_sessions(cluster) - sessions_before
    match = re.search(r"tps = ([0-9.]+)", result.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", result.stdout)
    if result.returncode or not match:
        sys.exit(f"pgbench {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    tps = float(match.group(1))
    txns = max(tps * seconds, 1)
    client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"tps": tps, "failed": int(failed.group(1)) if failed else 0,
            "server_ms": 1000 * (servers_after - servers_before) / txns,
            "pooler_ms": 1000 * (pooler_after - pooler_before) / txns if via == "pooler" else 0.0,
            "client_ms": 1000 * client_cpu / txns, "worker_sessions": sessions / txns}


CASES = [(via, script, connect) for script in ("router", "count") for connect in ("persistent", "-C")
         for via in ("direct", "pooler")] + [(via, "select-only", "-C") for via in ("direct", "pooler")]


def report(results: dict) -> None:
    print("\nmedians (tps; CPU ms per transaction: servers / PgBouncer / pgbench; new worker sessions per "
          "transaction)")
    print(f"{'case':<32} {'disable':>34} {'verify-full':>34} {'vf/dis':>7}")
    for via, script, connect in CASES:
        cells = []
        for mode in MODES:
            runs = results[(via, script, connect, mode)]
            tps = statistics.median(r["tps"] for r in runs)
            cpu = "/".join(f"{statistics.median(r[k] for r in runs):.2f}" for k in ("server_ms", "pooler_ms",
                                                                                   "client_ms"))
            sessions = statistics.median(r["worker_sessions"] for r in runs)
            cells.append(f"{tps:8.1f} ({cpu}; {sessions:.2f})")
        ratio = _median(results, (via, script, connect, "verify-full")) / _median(results,
                                                                                  (via, script, connect, "disable"))
        print(f"{via + ' ' + script + ' ' + connect:<32} {cells[0]:>34} {cells[1]:>34} {ratio:7.2f}")
    print("\ntargets")
    for name, top, bottom, target in TARGETS:
        ratio = _median(results, top) / _median(results, bottom)
        print(f"  {name}: {ratio:.2f} (target >= {target:g}) {'met' if ratio >= target else 'NOT met'}")
    failed = sum(r["failed"] for runs in results.values() for r in runs)
    print(f"\nfailed transactions in all runs: {failed}")


def _median(results: dict, key: tuple) -> float:
    return statistics.median(r["tps"] for r in results[key])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="length of each pgbench run (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every case on both clusters (default 2)")
    parser.add_argument("--clients", type=int, default=4, help="pgbench clients (default 4)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/citus: run as root (members start through run's privilege drop)")
    if not citus_available():
        sys.exit("bench/citus: Citus extension not installed (citus.so absent)")
    stacks: dict = {}
    workdir = tempfile.mkdtemp(prefix="pck-citus-bench-", dir="/tmp")
    try:
        for mode, base_ip in zip(MODES, (151, 171)):
            stacks[mode] = start(mode, base_ip)
            print(f"{mode}: coordinator {stacks[mode][0].leader(0).host}, pooler {stacks[mode][1].host}:6432 "
                  f"(AUTH {'*' * len(AUTH_PASSWORD)})", flush=True)
        results: dict = {}
        for round_no in range(args.rounds):
            for via, script, connect in CASES:
                for mode in MODES:
                    cluster, pooler = stacks[mode]
                    r = pgbench(cluster, pooler, via, script, connect, args.seconds, args.clients, workdir)
                    results.setdefault((via, script, connect, mode), []).append(r)
                    print(f"round {round_no + 1} {mode:<11} {via:<6} {script:<11} {connect:<10} {r['tps']:9.1f} tps "
                          f"servers {r['server_ms']:.2f} ms, pgbouncer {r['pooler_ms']:.2f} ms, pgbench "
                          f"{r['client_ms']:.2f} ms per transaction; {r['worker_sessions']:.2f} new worker sessions "
                          f"per transaction", flush=True)
        report(results)
    finally:
        for cluster, pooler in stacks.values():
            pooler.stop()
            cluster.stop()
            cluster.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
