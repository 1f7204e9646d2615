"""The directories a member needs: judged before anything is written, then created; existing ones are never taken over.

`check_directories` only looks (lstat, access); `check` runs it, so "would start" means
the directories are usable too. `make_directories` creates what is missing, owned by the
run user. A directory that already exists and is not the product's is used as it is or
refused with a fix: root never chowns or chmods `/`, `/tmp`, a shared volume or a
directory someone else made. The one exception, written down where it happens: a fresh,
empty, root-owned volume mounted as the data directory's parent is handed to the run
user, as the postgres image does, because Patroni must be able to create (and after a
re-initialisation re-create) the data directory in it.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import List, Optional, Tuple

from entrypoint.boot.settings import Settings
from entrypoint.errors import Problem
from entrypoint.pki import reader

RUNTIME_MODE = 0o700  # staged keys and pgpass live here
SOCKET_MODE = 0o2775
DATA_PARENT_MODE = 0o700
MKDIR_MODE = 0o755  # intermediate directories root creates on the way


@dataclass(frozen=True)
class Who:
    """The user the directories are for, and whether we are root (who can create anything writable)."""

    uid: int
    gid: int
    groups: Tuple[int, ...]
    root: bool


@dataclass(frozen=True)
class Need:
    var: str
    path: str
    mode: int
    fix: str
    writes_into: bool = False  # the entrypoint writes files here itself (boot.fsops), never through a link


def needs(settings: Settings, member: bool = True) -> List[Need]:
    """The directories this member needs, with the variable that names each; a pooler (`member=False`) needs only
    the runtime directory, where it writes everything."""
    p = settings.paths
    config_dir = os.path.dirname(p.config_file)
    out = [Need("PCK_RUNTIME_DIR", p.runtime_dir, RUNTIME_MODE,
                "mount an emptyDir there (medium: Memory), or start as root so the entrypoint creates it", True)]
    if not member:
        return out
    if config_dir != p.runtime_dir:
        out.append(Need("PCK_CONFIG_FILE", config_dir, RUNTIME_MODE,
                        "point PCK_CONFIG_FILE into a directory the container user can write (the runtime dir)", True))
    out.append(Need("PCK_SOCKET_DIR", p.socket_dir, SOCKET_MODE,
                    "mount an emptyDir there, or point PCK_SOCKET_DIR at a directory the run user can write"))
    return out


def writable_by(st: os.stat_result, who: Who) -> bool:
    """Whether `who` could create entries in a directory with this status, judged from its mode bits."""
    if who.uid == 0:
        return True
    if st.st_uid == who.uid:
        return st.st_mode & 0o300 == 0o300
    if st.st_gid in who.groups or st.st_gid == who.gid:
        return st.st_mode & 0o030 == 0o030
    return st.st_mode & 0o003 == 0o003


def _first_existing(path: str) -> Tuple[str, os.stat_result]:
    """The path itself or its nearest existing ancestor, with its lstat."""
    current = path
    while True:
        try:
            return current, os.lstat(current)
        except FileNotFoundError:
            current = os.path.dirname(current)
        except NotADirectoryError:
            current = os.path.dirname(current)


def _dir_problem(need: Need, who: Who) -> Optional[Problem]:
    try:
        found, st = _first_existing(need.path)
    except OSError as exc:  # a symbolic link loop on the way, a name too long, ...
        return Problem(need.var, f"{need.path}: {reader.why(exc)}", need.fix)
    if found == need.path and stat.S_ISLNK(st.st_mode) and need.writes_into:
        return Problem(need.var, f"{need.path} is a symbolic link (to {os.path.realpath(need.path)}); the entrypoint "
                                 "never writes through one, so a link planted there cannot redirect root's writes",
                       f"set {need.var} to the directory itself ({os.path.realpath(need.path)}), or mount it there")
    if found == need.path and stat.S_ISLNK(st.st_mode):
        try:
            st = os.stat(found)  # a link to a directory is used where it points, never replaced
        except OSError:
            return Problem(need.var, f"{need.path} is a dangling symbolic link", need.fix)
    if not stat.S_ISDIR(st.st_mode):
        what = "is not a directory" if found == need.path else f"lies under {found}, which is not a directory"
        return Problem(need.var, f"{need.path} {what}", need.fix)
    run_user = Who(who.uid, who.gid, who.groups, root=False)
    if found == need.path:
        if not writable_by(st, run_user):
            return Problem(need.var, f"{need.path} exists and is not writable by the run user (uid {who.uid}); "
                                     "it is not the product's to chown", need.fix)
        if not os.access(found, os.W_OK | os.X_OK):
            return Problem(need.var, f"{need.path} is not writable (a read-only filesystem?)", need.fix)
        return None
    if not (who.root or writable_by(st, run_user)) or not os.access(found, os.W_OK | os.X_OK):
        return Problem(need.var, f"{need.path} does not exist and cannot be created in {found} "
                                 "(read-only, or not writable by this user)", need.fix)
    return None


def _data_dir_problem(settings: Settings, who: Who) -> Optional[Problem]:
    data_dir = settings.paths.data_dir
    var = "PATRONI_POSTGRESQL_DATA_DIR"
    try:
        st = os.stat(data_dir)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        return Problem(var, f"{data_dir} lies under a file that is not a directory", "give a directory path")
    except OSError as exc:
        return Problem(var, f"{data_dir}: {reader.why(exc)}", "give a directory path without a link loop")
    if st is not None:
        return None if stat.S_ISDIR(st.st_mode) else Problem(var, f"{data_dir} exists and is not a directory",
                                                              "point it at a directory (or a path that does not exist)")
    parent = os.path.dirname(data_dir)
    if who.root and os.path.isdir(parent) and claimable(parent, os.stat(parent)):
        return None  # a fresh volume: make_directories hands it to the run user
    need = Need(var, parent, DATA_PARENT_MODE, "mount a volume the run user can write (fsGroup on Kubernetes), or an "
                                               "empty volume there, or point PATRONI_POSTGRESQL_DATA_DIR into one; "
                                               "Patroni must create (and after a re-initialisation re-create) the "
                                               "data directory in it")
    return _dir_problem(need, who)


def claimable(path: str, st: os.stat_result) -> bool:
    """A fresh volume: a root-owned, empty mount point that is not shared (no sticky or world-write bit)."""
    if path in ("/", "//") or st.st_uid != 0 or st.st_mode & (stat.S_ISVTX | 0o002):
        return False
    try:
        entries = [e for e in os.listdir(path) if e != "lost+found"]
    except OSError:
        return False
    return not entries and os.path.ismount(path)


def check_directories(settings: Settings, who: Who, member: bool = True) -> List[Problem]:
    """Every directory problem, found without writing anything (a pooler's: the runtime directory only)."""
    problems = [p for p in (_dir_problem(need, who) for need in needs(settings, member)) if p]
    if not member:
        return problems
    config = settings.paths.config_file
    if os.path.isdir(config):
        problems.append(Problem("PCK_CONFIG_FILE", f"{config} is a directory", "give the path of a file"))
    data = _data_dir_problem(settings, who)
    return problems + ([data] if data else [])


def make_directories(settings: Settings, who: Who, member: bool = True) -> None:
    """Create what is missing (after check_directories found nothing wrong). Raises OSError."""
    for need in needs(settings, member):
        _make(need.path, need.mode, who)
    if not member:
        return
    data_dir, parent = settings.paths.data_dir, os.path.dirname(settings.paths.data_dir)
    if os.path.exists(data_dir):
        return
    if not os.path.isdir(parent):
        _make(parent, DATA_PARENT_MODE, who)
    elif who.root and claimable(parent, os.stat(parent)):
        os.chown(parent, who.uid, who.gid)  # the one claim: a fresh empty volume for the data (see above)
        os.chmod(parent, DATA_PARENT_MODE)


def _make(path: str, mode: int, who: Who) -> None:
    """mkdir -p, the last directory owned by the run user; existing directories are left exactly as they are."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        _make_plain(parent)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not os.path.isdir(path):
            raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", path) from None
        return
    if who.root:
        os.chown(path, who.uid, who.gid)
    os.chmod(path, mode)


def _make_plain(path: str) -> None:
    if os.path.isdir(path):
        return
    _make_plain(os.path.dirname(path))
    try:
        os.mkdir(path, MKDIR_MODE)
    except FileExistsError:
        pass
