"""Cluster benchmark: what TLS costs a real Patroni cluster, PGSSLMODE=disable beside verify-full, in one run.

For each mode, alternating so machine noise hits both alike, start a 3-member plain
Patroni cluster (real etcd, Patroni, PostgreSQL 15, every member through
`patroni-citus-k8s run`; the first member, then the two replicas once it leads), time
until every member is healthy and streaming, then kill -9 the primary
(Patroni and postmaster) and time until a replica is the new primary. Prints medians
and the verify-full/disable ratios. Target: TLS costs under 10% on both.
    /opt/patroni-citus-k8s/venv/bin/python bench/cluster/bench.py [ROUNDS]
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from tests.support.cluster import LocalCluster, wait_for  # noqa: E402

MODES = ("disable", "verify-full")
TARGET = 1.10


def one_round(mode: str, base_ip: int) -> tuple:
    cluster = LocalCluster(mode=mode, members=3, scope=f"bench{base_ip}", base_ip=base_ip)
    try:
        cluster.etcd.start()
        start = time.monotonic()
        # The first member bootstraps, then the others clone it: started all at once, a
        # replica that looks before the leader exists sleeps a whole loop_wait, which
        # swamps anything TLS does (seen: 5 s or 14 s at random in both modes).
        first, rest = cluster.members[0], cluster.members[1:]
        cluster.start_member(first)
        wait_for("the first member to lead", lambda: cluster.leader() is first, 120, 0.1)
        for member in rest:
            cluster.start_member(member)
        cluster.wait_healthy(240)
        healthy = time.monotonic() - start
        # The same HA timing for both modes; operators tune these keys the same way.
        cluster.patronictl(cluster.leader(), "edit-config", "-s", "ttl=12", "-s", "loop_wait=2",
                           "-s", "retry_timeout=4", "--force", cluster.scope)
        time.sleep(3)
        old = cluster.leader()
        with open(os.path.join(old.data_dir, "postmaster.pid"), encoding="ascii") as handle:
            postmaster = int(handle.readline())
        start = time.monotonic()
        os.kill(old.proc.pid, signal.SIGKILL)
        os.kill(postmaster, signal.SIGKILL)
        wait_for("a new primary", lambda: cluster.leader() is not old, 120, 0.1)
        failover = time.monotonic() - start
        return healthy, failover
    finally:
        cluster.stop()
        cluster.cleanup()


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    results = {mode: {"healthy": [], "failover": []} for mode in MODES}
    for r in range(rounds):
        for i, mode in enumerate(MODES if r % 2 == 0 else reversed(MODES)):
            healthy, failover = one_round(mode, 211 + 4 * i)
            results[mode]["healthy"].append(healthy)
            results[mode]["failover"].append(failover)
            print(f"round {r + 1} {mode:<12} healthy {healthy:6.2f} s  failover {failover:6.2f} s", flush=True)
    print()
    for metric in ("healthy", "failover"):
        plain = statistics.median(results["disable"][metric])
        tls = statistics.median(results["verify-full"][metric])
        ratio = tls / plain
        print(f"{'time to all-healthy' if metric == 'healthy' else 'failover time':<20} "
              f"disable {plain:6.2f} s   verify-full {tls:6.2f} s   ratio {ratio:.2f} "
              f"({'within' if ratio < TARGET else 'OVER'} the {TARGET:.2f} target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
