"""The chart's preStop hand-over (switchoverOnStop), run for real on a 2-member verify-full cluster.

The command is taken from the rendered StatefulSet (helm/citus-cluster, lifecycle.preStop)
and run exactly as the kubelet runs it in a pod: as the container's user (postgres), with
the member's environment and PATRONICTL_CONFIG_FILE as the image sets it. Then the member
is stopped with SIGTERM, as the kubelet does after the hook. While a client writes through
whichever member is primary (libpq, target_session_attrs=read-write), the hook on the
primary must hand leadership to the replica before the primary stops, and every write the
client saw committed must be on the new primary. On a replica the hook returns at once and
changes nothing; with no replica left it returns promptly and the primary stays.
Plain Patroni and, where citus.so is installed, the Citus layout (coordinator group 0).
"""

from __future__ import annotations

import os
import subprocess
import time

import psycopg
import pytest

from tests.support import rolling
from tests.support.cluster import LocalCluster, Member, citus_available, wait_for
from tests.support.load import BackgroundLoop

support = pytest.importorskip("tests.helm.support", reason="the hook is taken from the chart rendered by Helm")
if support.helm is None:
    pytest.skip(support.HELM_MISSING, allow_module_level=True)

SCOPE = "citusdemo"  # the scope rolling.prestop_command renders the chart with


def prestop_command() -> list[str]:
    command = rolling.prestop_command()
    assert command[:2] == ["python3", "-c"] and command[3] == "30", command
    return command


def run_hook(cluster: LocalCluster, member: Member, command: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run the preStop command as the pod would: the container's user and environment."""
    started = time.monotonic()
    proc = rolling.run_prestop(cluster, member, command)
    return proc, time.monotonic() - started


class Writer(BackgroundLoop):
    """Inserts increasing ids through whichever member is primary; remembers the ids whose commit it saw."""

    def __init__(self, cluster: LocalCluster) -> None:
        super().__init__(180)
        hosts = ",".join(m.host for m in cluster.members)
        self.dsn = cluster.dsn(cluster.members[0], host=hosts, target_session_attrs="read-write", connect_timeout=2)
        self.committed: list[int] = []
        self.commit_times: list[float] = []
        self.errors: list[str] = []

    def _loop(self) -> None:
        conn, next_id = None, 1
        while self.running():
            try:
                if conn is None:
                    conn = psycopg.connect(self.dsn, autocommit=True)
                conn.execute("INSERT INTO handover (id) VALUES (%s)", (next_id,))
                self.committed.append(next_id)
                self.commit_times.append(time.monotonic())
            except psycopg.Error as exc:
                self.errors.append(str(exc).splitlines()[0])
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.2)
            next_id += 1
            time.sleep(0.02)
        if conn is not None:
            conn.close()

    def longest_gap(self) -> float:
        return max((b - a for a, b in zip(self.commit_times, self.commit_times[1:])), default=0.0)

    def __enter__(self) -> "Writer":
        super().__enter__()
        wait_for("the first committed writes", lambda: len(self.committed) > 20, 30)
        return self


@pytest.fixture(scope="module", params=["plain", "citus"])
def cluster(request):
    if request.param == "citus" and not citus_available():
        pytest.skip("citus.so is not installed: the Citus layout is not run")
    groups = [0, 0] if request.param == "citus" else None
    with LocalCluster(mode="verify-full", members=2, citus_groups=groups, scope=SCOPE, base_ip=171) as c:
        with c.connect(c.leader()) as conn:
            conn.execute("CREATE TABLE handover (id bigint PRIMARY KEY)")
        yield c


@pytest.fixture(scope="module")
def command() -> list[str]:
    return prestop_command()


def test_on_a_replica_the_hook_returns_at_once_and_changes_nothing(cluster, command):
    leader = cluster.leader()
    replica = next(m for m in cluster.members if m is not leader)
    proc, took = run_hook(cluster, replica, command)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == "", proc.stdout
    assert cluster.leader() is leader
    print(f"\npreStop on the replica {replica.name}: {took:.1f} s, nothing to do")


def test_the_primary_hands_over_before_it_stops_and_no_write_is_lost(cluster, command):
    old = cluster.leader()
    new = next(m for m in cluster.members if m is not old)
    with Writer(cluster) as writer:
        proc, took = run_hook(cluster, old, command)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"handing leadership to {new.name}" in proc.stdout
        assert f"{new.name} leads now" in proc.stdout
        # The hook returned and the old primary is still running: leadership moved first.
        assert old.proc.poll() is None
        assert cluster.member_state(new)["role"] == "primary"
        assert cluster.member_state(old).get("role") != "primary"
        cluster.stop_member(old)  # the kubelet's SIGTERM after the hook
        assert old.proc.poll() is not None
        count = len(writer.committed)
        wait_for("writes on the new primary", lambda: len(writer.committed) > count + 20, 30)
    present = {row[0] for row in cluster.query(new, "SELECT id FROM handover")}
    lost = sorted(set(writer.committed) - present)
    assert lost == [], f"{len(lost)} committed writes missing on {new.name}: {lost[:20]}"
    print(f"\npreStop on the primary {old.name}: handed over to {new.name} in {took:.1f} s; "
          f"{len(writer.committed)} writes committed, 0 lost, {len(writer.errors)} refused during the "
          f"switchover, longest pause between commits {writer.longest_gap():.1f} s\n{proc.stdout.strip()}")


def test_with_no_replica_left_the_primary_stops_as_it_is_promptly(cluster, command):
    leader = cluster.leader()
    assert [m for m in cluster.members if m.proc.poll() is None] == [leader]  # the other one stopped above
    proc, took = run_hook(cluster, leader, command)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no running replica to hand over to" in proc.stdout
    assert took < 15 and cluster.leader() is leader
