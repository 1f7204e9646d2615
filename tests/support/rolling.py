"""A rolling update as a StatefulSet performs it, on a LocalCluster: member by member, highest ordinal first.

Each restarted member is waited for with the chart's own readiness probe command
(`patroni-citus-k8s probe readiness`, run as postgres like the kubelet's exec probe), so a
member that never becomes ready stalls the rollout here exactly as it would stall the
StatefulSet controller. Groups roll side by side (each StatefulSet rolls on its own), one
ordinal per round. A write loop through the current primary counts every acknowledged
row, so "no write lost" is a count, not a belief.
"""

from __future__ import annotations

import subprocess
import time
from typing import Callable, Dict, List, Optional

import psycopg

from tests.support.cluster import ENTRYPOINT, RUNUSER, LocalCluster, Member, wait_for
from tests.support.load import BackgroundLoop


def probe_ready(member: Member) -> bool:
    """What the chart's readinessProbe runs, as the pod's user (postgres)."""
    env = {"PATH": "/usr/bin:/bin", "PCK_RUNTIME_DIR": member.runtime_dir}
    result = subprocess.run([RUNUSER, "-u", "postgres", "--", ENTRYPOINT, "probe", "readiness", "--timeout", "3"],
                            env=env, capture_output=True, text=True, timeout=30)
    return result.returncode == 0


def ordinal(member: Member) -> int:
    return int(member.name.rsplit("-", 1)[1])


def rounds(cluster: LocalCluster) -> List[List[Member]]:
    """Members per round: in round r every group restarts its r-th highest ordinal, as StatefulSets roll."""
    groups: Dict[Optional[int], List[Member]] = {}
    for member in cluster.members:
        groups.setdefault(member.group, []).append(member)
    ordered = [sorted(ms, key=ordinal, reverse=True) for ms in groups.values()]
    return [[ms[r] for ms in ordered if r < len(ms)] for r in range(max(len(ms) for ms in ordered))]


def prestop_command() -> List[str]:
    """The chart's preStop hook (switchoverOnStop, on by default), taken from the StatefulSet Helm renders."""
    from tests.helm import support

    rendered = support.render(support.Case("prestop", "citusdemo", "default", sets="ssl.enabled=true"))
    command = support.container(rendered.get("StatefulSet", "citusdemo-0"))["lifecycle"]["preStop"]["exec"]["command"]
    return list(command)


def run_prestop(cluster: LocalCluster, member: Member, command: List[str]) -> subprocess.CompletedProcess:
    """Run the preStop command as the kubelet does in the pod: the container's user and environment."""
    env = {**cluster.member_env(member), "PATRONICTL_CONFIG_FILE": member.config_file}
    return subprocess.run([RUNUSER, "-u", "postgres", "--", *command], env=env, capture_output=True, text=True,
                          timeout=90)


def rolling_restart(cluster: LocalCluster, change: Callable[[Member], None], ready_timeout: float = 150,
                    prestop: Optional[List[str]] = None) -> List[str]:
    """Restart every member with `change` applied, StatefulSet order; returns the order. Raises TimeoutError on a stall.

    With `prestop`, each member first runs the chart's preStop hook, as the kubelet does before its SIGTERM.
    """
    order = []
    for batch in rounds(cluster):
        for member in batch:
            if prestop is not None:
                run_prestop(cluster, member, prestop)
            cluster.stop_member(member)
            change(member)
            cluster.start_member(member)
            order.append(member.name)
        for member in batch:
            wait_for(f"{member.name} ready (the chart's readiness probe) after its restart",
                     lambda m=member: m.proc.poll() is None and probe_ready(m), ready_timeout, 1.0)
    return order


class WriteLoop(BackgroundLoop):
    """Inserts numbered rows through whichever member is primary now; `acknowledged` are the commits that returned."""

    def __init__(self, cluster: LocalCluster, table: str, dbname: str = "postgres", group: Optional[int] = None,
                 sslmode: str = "prefer", max_seconds: float = 900) -> None:
        super().__init__(max_seconds)
        self.cluster, self.table, self.dbname, self.group = cluster, table, dbname, group
        self.sslmode = sslmode
        self.acknowledged: List[int] = []
        self.errors: List[str] = []

    def _loop(self) -> None:
        value = 0
        while self.running():
            try:
                primary = self.cluster.leader(self.group)
                with psycopg.connect(self._dsn(primary), autocommit=True) as conn:
                    while not self.stopping():
                        value += 1
                        conn.execute(f"INSERT INTO {self.table} (v) VALUES (%s)", (value,))
                        self.acknowledged.append(value)
                        time.sleep(0.02)
            except (psycopg.Error, LookupError, OSError) as exc:
                self.errors.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                time.sleep(0.5)

    def _dsn(self, member: Member) -> str:
        return self.cluster.dsn(member, dbname=self.dbname, sslmode=self.sslmode, sslrootcert=None, sslcert=None,
                                sslkey=None)

    def lost(self, rows: set) -> List[int]:
        """Acknowledged values that are not in `rows` (what the primary holds at the end)."""
        return [v for v in self.acknowledged if v not in rows]
