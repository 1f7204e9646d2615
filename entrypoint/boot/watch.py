"""Certificate rotation without restarts: watch the mounted directory, re-check, restage, and tell Patroni.

How it lives next to Patroni: `run` forks this watcher just before it execs Patroni,
so Patroni keeps the PID (PID 1 in a container, receiving the kubelet's signals) and
the watcher is its child. The kernel sends the watcher SIGTERM when Patroni exits
(PR_SET_PDEATHSIG). On a change the watcher runs the same checks as start-up; good
material is restaged atomically and Patroni gets SIGHUP, on which it reloads
PostgreSQL (which re-reads ssl_cert_file & co.) and its REST API certificate (it
compares the serial). Bad material is refused and logged, and the old certificate
keeps being served until a good one appears.
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import os
import signal
import sys
import time
from typing import Callable, Optional

from entrypoint.boot.material import check_material, files_to_read, read_files
from entrypoint.boot.settings import Settings
from entrypoint.boot.stage import StagedPaths, plan_paths, stage_material
from entrypoint.errors import InputError

PR_SET_PDEATHSIG = 1
REPEAT_ERROR_SECONDS = 60.0


def fingerprint(files: dict) -> str:
    """A digest of what the files hold now (or why they could not be read)."""
    digest = hashlib.sha256()
    for path in sorted(files):
        data = files[path]
        digest.update(path.encode() + b"\0")
        digest.update(data if isinstance(data, bytes) else repr(data).encode())
        digest.update(b"\0")
    return digest.hexdigest()


class CertWatcher:
    """Polls the certificate sources and applies good changes. `step` is one poll, for tests and the loop."""

    def __init__(self, settings: Settings, uid: int, gid: int, paths: StagedPaths,
                 notify: Callable[[], None], log: Callable[[str], None]) -> None:
        self.settings = settings
        self.uid, self.gid = uid, gid
        self.paths = paths
        self.notify = notify
        self.log = log
        self.sources = files_to_read(settings)
        self.applied = fingerprint(read_files(self.sources))
        self.refused: Optional[str] = None
        self.refused_at = 0.0

    def step(self, settle: float = 0.2) -> str:
        """Look once. Returns 'unchanged', 'applied' or 'refused'."""
        files = read_files(self.sources)
        current = fingerprint(files)
        if current == self.applied:
            self.refused = None
            return "unchanged"
        if current == self.refused and time.monotonic() - self.refused_at < REPEAT_ERROR_SECONDS:
            return "refused"
        # Kubernetes swaps a symlink, an editor may write in place: read again after a
        # moment and only go on when the content has stopped moving.
        time.sleep(settle)
        files = read_files(self.sources)
        if fingerprint(files) != current:
            return "unchanged"
        now = datetime.datetime.now(datetime.timezone.utc)
        try:
            material = check_material(self.settings, files, now)
            if plan_paths(self.settings, material) != self.paths:
                raise RestartNeeded()
        except InputError as err:
            self._refuse(current, err.report().replace("nothing was started", "the running certificate is kept"))
            return "refused"
        except RestartNeeded:
            self._refuse(current, "the set of TLS files changed (a CA or client pair appeared or vanished); "
                                  "the running certificate is kept until the pod restarts")
            return "refused"
        stage_material(self.settings, material, self.uid, self.gid)
        for warning in material.warnings:
            self.log(f"warning: {warning}")
        self.applied, self.refused = current, None
        serial = format(material.server.leaf.serial_number, "x") if material.server else "-"
        self.log(f"new TLS material checked and staged (server certificate serial {serial}); reloading")
        self.notify()
        return "applied"

    def _refuse(self, state: str, message: str) -> None:
        self.refused, self.refused_at = state, time.monotonic()
        self.log(f"refused new TLS material:\n{message}")


class RestartNeeded(Exception):
    pass


def die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGTERM when the parent (Patroni, after exec) exits."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


def spawn_watcher(settings: Settings, uid: int, gid: int, groups: tuple, paths: StagedPaths,
                  drop: Callable[[], None]) -> Optional[int]:
    """Fork the watcher; returns its PID in the parent, never returns in the child.

    `drop` is called in the child when the run user can read every source file, so
    the watcher keeps root only where a root-only Secret mount makes it necessary.
    """
    parent = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

        def log(message: str) -> None:
            print(f"patroni-citus-k8s watch: {message}", file=sys.stderr, flush=True)

        def notify() -> None:
            # Patroni reloads PostgreSQL and its REST certificate on its next HA cycle
            # (up to loop_wait later); the postmaster reloads its SSL files at once.
            os.kill(parent, signal.SIGHUP)
            postmaster = postmaster_pid(settings.paths.data_dir)
            if postmaster:
                os.kill(postmaster, signal.SIGHUP)

        sources = files_to_read(settings)
        if os.geteuid() == 0 and all(readable_by(path, uid, groups) for path in sources):
            drop()
        # After the drop: a change of credentials clears the parent-death signal.
        die_with_parent(parent)
        watcher = CertWatcher(settings, uid, gid, paths, notify, log)
        interval = settings.tuning.watch_interval
        log(f"watching {', '.join(sources) or 'nothing'} every {interval:g}s "
            f"as {'root (the Secret mount is readable by root only)' if os.geteuid() == 0 else f'uid {os.geteuid()}'}")
        while os.getppid() == parent:
            watcher.step()
            time.sleep(interval)
    except BaseException:  # noqa: BLE001 - a watcher crash must never take Patroni down with it
        import traceback
        traceback.print_exc()
        code = 1
    os._exit(code)


def postmaster_pid(data_dir: str) -> Optional[int]:
    """The running postmaster's PID from postmaster.pid, or None."""
    try:
        with open(os.path.join(data_dir, "postmaster.pid"), encoding="ascii") as handle:
            pid = int(handle.readline())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def readable_by(path: str, uid: int, groups: tuple) -> bool:
    """Whether `uid` with `groups` could read `path` (following symlinks), judged from its mode bits."""
    try:
        st = os.stat(path)
    except OSError:
        return True  # nothing to read yet; a later file keeps its mount's permissions
    if st.st_uid == uid:
        return bool(st.st_mode & 0o400)
    if st.st_gid in groups:
        return bool(st.st_mode & 0o040)
    return bool(st.st_mode & 0o004)
