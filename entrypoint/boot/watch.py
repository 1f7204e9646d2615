"""Certificate rotation without restarts: watch the mounted files, re-check, restage as one set, and tell Patroni.

How it lives next to Patroni: `run` forks this watcher just before it execs Patroni, so
Patroni keeps the PID (PID 1 in a container, receiving the kubelet's signals) and the
watcher is its child. The watcher holds a pidfd of its parent and sleeps in poll() on
it, so it exits within a poll of Patroni's death whether it dropped root or not (a
parent-death signal does not reach a root child of a parent that became postgres).

A look costs one stat per source file; only when the stats change are the files read
(through the one safe reader) and, once they have stopped changing, checked exactly as
at start-up. Good material is published as a new generation and swapped in with one
rename, then the postmaster and Patroni get SIGHUP. Bad material is refused and logged;
the running set stays. No exception in one look can end the loop: it is logged on one
line and the next look goes on, so rotation never stops silently.
"""

from __future__ import annotations

import ctypes
import dataclasses
import datetime
import hashlib
import os
import select
import signal
import sys
import time
from typing import Callable, Optional, Tuple

from entrypoint.boot import nudge
from entrypoint.boot.material import check_material, files_to_read, read_files
from entrypoint.boot.settings import Settings
from entrypoint.boot.stage import StagedPaths, plan_paths, stage_material
from entrypoint.boot.transition import Tightener
from entrypoint.errors import InputError, printable
from entrypoint.pki import reader

PR_SET_PDEATHSIG = 1
TRANSITION_LOOK_SECONDS = 1.0  # how often a watcher that only waits to tighten links wakes
REPEAT_ERROR_SECONDS = 60.0
SETTLE_SECONDS = 0.2


def stat_signature(paths) -> Tuple:
    """What the file system says about each source now (followed links), cheap enough for every look."""
    out: list = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode))
        except OSError as exc:
            out.append((path, exc.errno))
    return tuple(out)


def fingerprint(files: dict) -> str:
    """A digest of what the files hold now (or why they could not be read)."""
    digest = hashlib.sha256()
    for path in sorted(files):
        data = files[path]
        digest.update(path.encode() + b"\0")
        digest.update(data if isinstance(data, bytes) else f"{type(data).__name__}:{data.errno}".encode())
        digest.update(b"\0")
    return digest.hexdigest()


class CertWatcher:
    """Polls the certificate sources and applies good changes. `step` is one look, for tests and the loop."""

    def __init__(self, settings: Settings, uid: int, gid: int, paths: StagedPaths,
                 notify: Callable[[], None], log: Callable[[str], None],
                 after_reload: Optional[Callable[..., None]] = None) -> None:
        self.settings = settings
        self.after_reload = after_reload  # (settings, paths, material, log) once a new set is staged and signalled
        self.uid, self.gid = uid, gid
        self.paths = paths
        self.notify = notify
        self.log = log
        self.sources = files_to_read(settings)
        self.seen = stat_signature(self.sources)
        self.applied = fingerprint(read_files(self.sources))
        self.refused: Optional[str] = None
        self.refused_at = 0.0
        self.error: Optional[str] = None  # the last error logged, so a lasting one is not logged every look
        self.error_at = 0.0

    def step(self, settle: float = SETTLE_SECONDS) -> str:
        """Look once. Returns 'unchanged', 'applied', 'refused' or 'error'; never raises an Exception."""
        try:
            self._crl_added()
            return self._step(settle)
        except Exception as exc:  # noqa: BLE001 - one bad look must not end rotation for good
            return self._error(f"error in this look, retrying: {type(exc).__name__}: {printable(exc)}")

    def _crl_added(self) -> None:
        """A ca.crl that appears in a Secret which had none at start needs ssl_crl_file, so a restart: say so once."""
        later = self.settings.tls.crl_later
        if later and self.settings.mode.uses_tls and os.path.lexists(later):
            self.log(f"{printable(later)} appeared after the start: revocation checking begins when this member "
                     "restarts (certs generate writes a CRL from the start, so that revoking is a Secret update only)")
            self.settings = dataclasses.replace(self.settings, tls=dataclasses.replace(self.settings.tls,
                                                                                      crl_later=None))

    def _error(self, message: str) -> str:
        """Look again next time; log `message` when it is new, and once a minute while it lasts."""
        self.seen = ()
        now = time.monotonic()
        if message != self.error or now - self.error_at >= REPEAT_ERROR_SECONDS:
            self.log(message)
            self.error, self.error_at = message, now
        return "error"

    def _step(self, settle: float) -> str:
        signature = stat_signature(self.sources)
        if signature == self.seen and self.refused is None:
            return "unchanged"
        files = read_files(self.sources)
        current = fingerprint(files)
        if current == self.applied:
            self.seen, self.refused = signature, None
            return "unchanged"
        if current == self.refused and time.monotonic() - self.refused_at < REPEAT_ERROR_SECONDS:
            return "refused"
        # Kubernetes swaps a symlink, an editor may write in place: read again after a
        # moment and only go on when the content has stopped moving.
        time.sleep(settle)
        files = read_files(self.sources)
        if fingerprint(files) != current:
            return "unchanged"
        return self._apply(files, current, signature)

    def _apply(self, files: dict, current: str, signature: Tuple) -> str:
        now = datetime.datetime.now(datetime.timezone.utc)
        try:
            material = check_material(self.settings, files, now, running=True)
        except InputError as err:
            return self._refuse(current, err.report().replace("nothing was started", "the running certificate is kept"))
        if plan_paths(self.settings, material) != self.paths:
            return self._refuse(current, "the set of TLS files changed (a CA or client pair appeared or vanished); "
                                         "the running certificate is kept until the pod restarts")
        try:
            stage_material(self.settings, material, self.uid, self.gid)  # one rename: old set or new, never half
        except OSError as exc:  # a full or read-only runtime dir: the old set is still whole, try again later
            return self._error(f"could not stage the new TLS material in {printable(self.settings.paths.runtime_dir)}"
                               f": {printable(reader.why(exc))}; the running certificate is kept, retrying")
        self.error = None
        for warning in material.warnings:
            self.log(f"warning: {printable(warning)}")
        self.applied, self.refused, self.seen = current, None, signature
        serial = format(material.server.leaf.serial_number, "x") if material.server else "-"
        self.log(f"new TLS material checked and staged (server certificate serial {serial}); reloading")
        self.notify()
        if self.after_reload is not None:
            self.after_reload(self.settings, self.paths, material, self.log)
        return "applied"

    def _refuse(self, state: str, message: str) -> str:
        self.refused, self.refused_at = state, time.monotonic()
        self.log("refused new TLS material:\n" + "\n".join(printable(line) for line in message.split("\n")))
        return "refused"


class ParentWatch:
    """Waits `timeout` seconds or until the parent exits, whichever comes first."""

    def __init__(self, parent: int) -> None:
        self.parent = parent
        self.poller: Optional[select.poll] = None
        try:
            fd = os.pidfd_open(parent)
        except (OSError, AttributeError):  # pre-5.3 kernels: fall back to getppid() each look
            return
        self.poller = select.poll()
        self.poller.register(fd, select.POLLIN)

    def alive(self) -> bool:
        return os.getppid() == self.parent

    def wait(self, timeout: float) -> bool:
        """Returns False once the parent is gone."""
        if self.poller is not None:
            if self.poller.poll(max(0, int(timeout * 1000))):
                return False
        else:
            time.sleep(timeout)
        return self.alive()


def die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGTERM when the parent exits, as a second line behind ParentWatch."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


def spawn_watcher(settings: Settings, uid: int, gid: int, groups: tuple, paths: StagedPaths,
                  drop: Callable[[], None], notify: Optional[Callable[[], None]] = None) -> Optional[int]:
    """Fork the watcher; returns its PID in the parent, never returns in the child.

    `drop` is called in the child when the run user can read every source file, so
    the watcher keeps root only where a root-only Secret mount makes it necessary.
    `notify` (called in the child after a good restage) replaces the default, SIGHUP to
    Patroni and the postmaster: a pooler SIGHUPs PgBouncer, the process it execs.
    """
    parent = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        _watch(settings, uid, gid, groups, paths, drop, parent, notify)
    except BaseException as exc:  # noqa: BLE001 - whatever happens here must never take Patroni down with it
        _log(f"stopped: {type(exc).__name__}: {printable(exc)}")
        code = 1
    os._exit(code)


def _log(message: str) -> None:
    print(f"patroni-citus-k8s watch: {message}", file=sys.stderr, flush=True)


def _watch(settings: Settings, uid: int, gid: int, groups: tuple, paths: StagedPaths,
           drop: Callable[[], None], parent: int, notify_hook: Optional[Callable[[], None]] = None) -> None:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # Patroni's own reloads are not meant for us

    def notify() -> None:
        # Patroni reloads PostgreSQL and its REST certificate on its next HA cycle
        # (up to loop_wait later); the postmaster reloads its SSL files at once.
        for target in (parent, postmaster_pid(settings.paths.data_dir, uid)):
            if target:
                _signal(target)

    sources = files_to_read(settings)
    if os.geteuid() == 0 and all(readable_by(path, uid, groups) for path in sources):
        drop()
    # After the drop: a change of credentials clears the parent-death signal.
    die_with_parent(parent)
    parent_watch = ParentWatch(parent)
    interval = settings.tuning.watch_interval
    # A member's watcher also wakes Patroni and ends revoked sessions; a pooler's (notify_hook) only signals.
    after = None if notify_hook is not None else nudge.after_reload
    watcher = (CertWatcher(settings, uid, gid, paths, notify_hook or notify, _log, after)
               if interval > 0 and sources else None)
    tightener = Tightener(settings, paths, uid, gid, lambda: _signal(parent), _log)
    who = "root (the Secret mount is readable by root only)" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    if watcher is not None:
        _log(f"watching {', '.join(printable(s) for s in sources)} every {interval:g}s as {who}")
    while parent_watch.alive():
        if watcher is not None:
            watcher.step()
        tightener.step()
        if watcher is None and tightener.done:
            break  # nothing left to do: the transition is over and no file is watched
        if not parent_watch.wait(interval if watcher is not None else TRANSITION_LOOK_SECONDS):
            break


def _signal(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        _log(f"could not signal pid {pid}: {exc.strerror}")


def postmaster_pid(data_dir: str, uid: int) -> Optional[int]:
    """The running postmaster's PID from postmaster.pid, or None.

    The run user writes that file, so what it names is trusted only when it is a process of
    the run user: a watcher that stayed root must not SIGHUP whatever PID the file says.
    """
    try:
        pid = int(reader.read_file(os.path.join(data_dir, "postmaster.pid"), reader.SMALL_TEXT).split(b"\n")[0])
        if pid <= 1 or os.stat(f"/proc/{pid}").st_uid != uid:
            return None
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
