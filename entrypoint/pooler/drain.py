"""`pooler drain`: the pod's preStop hook, a safe shutdown of PgBouncer instead of the kubelet's immediate one.

PgBouncer 1.18 (Debian 12) treats SIGTERM, what the kubelet sends, as an immediate
shutdown: every client is cut, a transaction in flight included. SIGINT is its safe
shutdown (PAUSE, then SHUTDOWN): no new transaction starts, those running finish and
commit, and PgBouncer exits once every server connection is back. Kubernetes cannot send
SIGINT itself, so the preStop hook does: it waits `delay` seconds first (the pod leaves the
Service's endpoints meanwhile, so new clients go to the other poolers), sends SIGINT and
waits up to `timeout` seconds for PgBouncer to exit. The kubelet's SIGTERM comes after.

The PgBouncer is found by its command line, `pgbouncer <runtime dir>/pgbouncer.ini` as
`pooler run` execs it, so nothing is written for this and no stale PID file can point at
another process; it is signalled through a pidfd, so a PID reused meanwhile is never hit.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from typing import List, Mapping, Optional

from entrypoint.pooler.probe import ini_path


def _cmdline(pid: int) -> List[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:  # procfs: a small, bounded read
            raw = handle.read(64 * 1024)
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def is_pgbouncer_for(pid: int, ini: str) -> bool:
    argv = _cmdline(pid)
    return len(argv) >= 2 and os.path.basename(argv[0]) == "pgbouncer" and argv[-1] == ini


def find_pgbouncer(ini: str) -> List[int]:
    """PIDs of the PgBouncers running with `ini` (normally one; PID 1 in the pod)."""
    return sorted(int(name) for name in os.listdir("/proc") if name.isdigit() and is_pgbouncer_for(int(name), ini))


def _open(pid: int, ini: str) -> Optional[int]:
    """A pidfd for `pid`, once it is known to still be that PgBouncer; None when it is gone."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if not is_pgbouncer_for(pid, ini):  # checked after the pidfd pins the process
        os.close(fd)
        return None
    return fd


def _wait(fd: int, timeout: float) -> bool:
    """Whether the process behind `fd` exited within `timeout` seconds."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0.0, timeout) * 1000))


def drain(delay: float, timeout: float, env: Mapping[str, str]) -> int:
    """Exit 0 when PgBouncer is gone (or was not running), 1 when it outlived `timeout` or could not be signalled."""
    ini = ini_path(env)
    pids = find_pgbouncer(ini)
    if not pids:
        print(f"pooler drain: no PgBouncer runs with {ini}; nothing to drain", file=sys.stderr)
        return 0
    if delay > 0:
        print(f"pooler drain: waiting {delay:g} s for the pod to leave the Service's endpoints", file=sys.stderr,
              flush=True)
        time.sleep(delay)
    status = 0
    for pid in pids:
        status = max(status, _drain_one(pid, ini, timeout))
    return status


def _drain_one(pid: int, ini: str, timeout: float) -> int:
    fd = _open(pid, ini)
    if fd is None:
        print(f"pooler drain: PgBouncer (pid {pid}) exited already", file=sys.stderr)
        return 0
    try:
        try:
            signal.pidfd_send_signal(fd, signal.SIGINT)
        except ProcessLookupError:
            return 0
        except OSError as exc:
            print(f"pooler drain: cannot signal PgBouncer (pid {pid}): {exc.strerror}; run the hook as the user "
                  f"PgBouncer runs as, or as root", file=sys.stderr)
            return 1
        started = time.monotonic()
        print(f"pooler drain: SIGINT sent to PgBouncer (pid {pid}): running transactions finish, then it exits",
              file=sys.stderr, flush=True)
        if _wait(fd, timeout):
            print(f"pooler drain: PgBouncer exited after {time.monotonic() - started:.1f} s", file=sys.stderr)
            return 0
        print(f"pooler drain: PgBouncer still runs after {timeout:g} s (a transaction is still open); the kubelet's "
              f"SIGTERM ends it", file=sys.stderr)
        return 1
    finally:
        os.close(fd)
