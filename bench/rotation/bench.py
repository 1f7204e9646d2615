"""Rotation benchmark: seconds from a Secret update to the new certificate being served, and failed queries meanwhile.

Starts a 2-member verify-full cluster (real etcd, Patroni, PostgreSQL 15, through
`patroni-citus-k8s run`), keeps a client opening new connections, rotates each member's
certificate the way the kubelet updates a Secret (..data symlink swap) several times,
and prints, side by side, the time until PostgreSQL (5432) and the REST API serve the
new serial, against the 5-second target and Spilo's 5-minute poll. Run as root:
    /opt/patroni-citus-k8s/venv/bin/python bench/rotation/bench.py [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from tests.support.cluster import LocalCluster  # noqa: E402
from tests.support.load import QueryLoad  # noqa: E402
from tests.support.wire import https_certificate, postgres_certificate  # noqa: E402

TARGET_SECONDS = 5.0
SPILO_POLL_SECONDS = 300.0


def time_until(predicate, limit: float = 60.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < limit:
        try:
            if predicate():
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.05)
    return float("inf")


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    pg_times, api_times = [], []
    with LocalCluster(mode="verify-full", members=2, scope="benchrot", base_ip=201) as cluster:
        cluster.write_client_ca()
        with QueryLoad(cluster, max_seconds=rounds * 30 + 30) as load:
            for _ in range(rounds):
                for member in cluster.members:
                    member.pair = cluster.ca.issue(member.host, cn=member.name)
                    serial = member.pair.cert.serial_number
                    start = time.monotonic()
                    cluster.write_cert_dir(member)
                    pg = time_until(lambda m=member: postgres_certificate(m.host).serial_number == serial)
                    api = time_until(lambda m=member: https_certificate(m.host, m.api_port).serial_number == serial)
                    pg_times.append(pg)
                    api_times.append(time.monotonic() - start if api != float("inf") else api)
        ok, failed = load.ok, len(load.failures)
    print(f"rotations: {len(pg_times)} ({rounds} rounds x 2 members), queries ok: {ok}, failed: {failed}")
    for label, values in (("PostgreSQL 5432", pg_times), ("REST API 8008 ", api_times)):
        median, worst = statistics.median(values), max(values)
        print(f"{label}: median {median:.2f} s, max {worst:.2f} s, "
              f"target {TARGET_SECONDS:.0f} s (max/target {worst / TARGET_SECONDS:.2f}), "
              f"vs Spilo's 5-minute poll: {SPILO_POLL_SECONDS / max(median, 1e-3):.0f}x faster")
    for label, values in (("PostgreSQL", pg_times), ("REST API", api_times)):
        met = max(values) < TARGET_SECONDS and failed == 0
        print(f"target for {label} (< {TARGET_SECONDS:.0f} s, 0 failed queries): {'met' if met else 'NOT met'}")
    print("(the REST API takes its new certificate on Patroni's next HA cycle, at most loop_wait = 10 s later;"
          " the old certificate stays valid meanwhile)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
