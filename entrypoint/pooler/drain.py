"""`pooler drain`: the pod's preStop hook, a safe shutdown of PgBouncer instead of the kubelet's immediate one.

PgBouncer 1.18 (Debian 12) treats SIGTERM, what the kubelet sends, as an immediate
shutdown: every client is cut, a transaction in flight included. SIGINT is its safe
shutdown (PAUSE, then SHUTDOWN): no new transaction starts, those running finish and
commit, and PgBouncer exits once every server connection is back. Kubernetes cannot send
SIGINT itself, so the preStop hook does: it waits `delay` seconds first (the pod leaves the
Service's endpoints meanwhile, so new clients go to the other poolers), sends SIGINT and
waits up to `timeout` seconds for PgBouncer to exit. The kubelet's SIGTERM comes after.

The PgBouncer is found as `pooler run` execs it: the pgbouncer program, running as the
run user, with `<runtime dir>/pgbouncer.ini` as its argument. Nothing is written for this
and no stale PID file can point at another process. It is signalled through a pidfd, so a
PID reused meanwhile is never hit; where pidfds are refused (an old kernel, a seccomp
profile without pidfd_open) the process's start time stands in for it.
"""

from __future__ import annotations

import errno
import os
import pwd
import select
import signal
import sys
import time
from dataclasses import dataclass
from typing import List, Mapping, Optional

from entrypoint import layout
from entrypoint.pooler.probe import ini_path

POLL_SECONDS = 0.1  # how often a process without a pidfd is looked at


def _proc(pid: int, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as handle:  # procfs: small, bounded reads
            return handle.read(64 * 1024)
    except OSError:
        return b""


def _real_uid(pid: int) -> Optional[int]:
    for line in _proc(pid, "status").decode("ascii", "replace").splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    return None


def _start_time(pid: int) -> Optional[str]:
    """Field 22 of /proc/PID/stat: with the PID, it names one process for the life of the system.

    None when the process is gone, or is a zombie (it exited; its parent has not reaped it yet).
    """
    stat = _proc(pid, "stat").decode("ascii", "replace")
    fields = stat[stat.rfind(")") + 2:].split()  # after the command name, which may hold spaces and parentheses
    return fields[19] if len(fields) > 19 and fields[0] not in ("Z", "X") else None


def is_pgbouncer_for(pid: int, ini: str, uid: int) -> bool:
    """Whether `pid` is the pgbouncer program, run by `uid`, with `ini` as its last argument."""
    argv = [part.decode("utf-8", "replace") for part in _proc(pid, "cmdline").split(b"\0") if part]
    if len(argv) < 2 or argv[-1] != ini or _real_uid(pid) != uid:
        return False
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "pgbouncer"
    except OSError:
        return False


def run_uid(env: Mapping[str, str]) -> Optional[int]:
    """The uid PgBouncer runs as: PCK_RUN_AS when started as root (as `pooler run` drops to it), else ours."""
    if os.geteuid() != 0:
        return os.geteuid()
    try:
        return pwd.getpwnam(env.get("PCK_RUN_AS") or layout.RUN_AS).pw_uid
    except KeyError:
        return None


def find_pgbouncer(ini: str, uid: int) -> List[int]:
    """PIDs of the PgBouncers running with `ini` as `uid` (normally one; PID 1 in the pod)."""
    return sorted(int(name) for name in os.listdir("/proc")
                  if name.isdigit() and is_pgbouncer_for(int(name), ini, uid))


@dataclass
class Target:
    pid: int
    fd: Optional[int]  # a pidfd, or None where pidfds are refused
    start: Optional[str]  # the start time, standing in for the pidfd

    def alive(self) -> bool:
        if self.fd is not None:
            return not select.select([self.fd], [], [], 0)[0]
        return self.start is not None and _start_time(self.pid) == self.start

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


def _pin(pid: int, ini: str, uid: int) -> Optional[Target]:
    """The process, held so that a reused PID is never signalled; None when it is gone or no longer PgBouncer."""
    fd: Optional[int] = None
    try:
        fd = os.pidfd_open(pid)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return None
    target = Target(pid, fd, _start_time(pid))
    if not is_pgbouncer_for(pid, ini, uid):  # checked after the pin
        target.close()
        return None
    return target


def _signal(target: Target) -> Optional[str]:
    """SIGINT to `target`; why it could not be sent, or None."""
    try:
        if target.fd is not None:
            signal.pidfd_send_signal(target.fd, signal.SIGINT)
        elif target.alive():
            os.kill(target.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _wait(targets: List[Target], deadline: float) -> List[Target]:
    """The targets still running at `deadline` (one deadline for all of them)."""
    running = list(targets)
    while running:
        running = [t for t in running if t.alive()]
        left = deadline - time.monotonic()
        if not running or left <= 0:
            break
        with_fd = [t.fd for t in running if t.fd is not None]
        if len(with_fd) == len(running):
            select.select(with_fd, [], [], left)
        else:
            time.sleep(min(POLL_SECONDS, left))
    return running


def drain(delay: float, timeout: float, env: Mapping[str, str]) -> int:
    """Exit 0 when PgBouncer is gone (or was not running), 1 when it outlived `timeout` or could not be signalled."""
    ini = ini_path(env)
    uid = run_uid(env)
    pids = find_pgbouncer(ini, uid) if uid is not None else []
    if uid is None or not pids:
        print(f"pooler drain: no PgBouncer runs with {ini}; nothing to drain", file=sys.stderr)
        return 0
    if delay > 0:
        print(f"pooler drain: waiting {delay:g} s for the pod to leave the Service's endpoints", file=sys.stderr,
              flush=True)
        time.sleep(delay)
    targets = [t for t in (_pin(pid, ini, uid) for pid in pids) if t is not None]
    try:
        return _shut_down(targets, timeout)
    finally:
        for target in targets:
            target.close()


def _shut_down(targets: List[Target], timeout: float) -> int:
    status, signalled = 0, []
    for target in targets:
        why = _signal(target)
        if why:
            print(f"pooler drain: cannot signal PgBouncer (pid {target.pid}): {why}; run the hook as the user "
                  f"PgBouncer runs as, or as root", file=sys.stderr)
            status = 1
        else:
            signalled.append(target)
            print(f"pooler drain: SIGINT sent to PgBouncer (pid {target.pid}): running transactions finish, then "
                  f"it exits", file=sys.stderr, flush=True)
    started = time.monotonic()
    left = _wait(signalled, started + timeout)
    for target in signalled:
        if target in left:
            print(f"pooler drain: PgBouncer (pid {target.pid}) still runs after {timeout:g} s (a transaction is "
                  f"still open, or the timeout is too short); the kubelet's SIGTERM ends it", file=sys.stderr)
            status = 1
        else:
            print(f"pooler drain: PgBouncer (pid {target.pid}) exited after {time.monotonic() - started:.1f} s",
                  file=sys.stderr)
    return status
