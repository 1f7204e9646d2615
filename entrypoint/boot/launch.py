"""Write the configuration, drop root, and exec Patroni with an environment that matches the staged files."""

from __future__ import annotations

import os
import pwd
import shutil
import sys
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

from entrypoint.boot import fsops
from entrypoint.boot.dirs import Who
from entrypoint.boot.settings import PATRONI_TLS_FILES, Settings
from entrypoint.boot.stage import StagedPaths
from entrypoint.errors import InputError, Problem

CONFIG_MODE = 0o600  # it holds passwords
# Secrets the child processes do not need once the key copy is decrypted.
DROPPED_VARS = ("PGSSLKEY_PASSWORD", "PGSSLKEY_PASSWORD_FILE")


@dataclass(frozen=True)
class RunUser:
    name: str
    uid: int
    gid: int
    home: str
    groups: tuple

    def who(self) -> Who:
        """This user for the directory checks, and whether we start as root."""
        return Who(self.uid, self.gid, tuple(self.groups), root=os.geteuid() == 0)


def resolve_run_user(settings: Settings, euid: int) -> RunUser:
    """The user PostgreSQL will run as: PCK_RUN_AS when started as root, else whoever we are.

    Raises InputError when root is asked to drop to a user that does not exist.
    """
    if euid != 0:
        try:
            entry = pwd.getpwuid(euid)
        except KeyError:  # an arbitrary uid (OpenShift-style) has no passwd entry
            return RunUser(str(euid), euid, os.getegid(), os.environ.get("HOME", "/tmp"), tuple(os.getgroups()))
        return RunUser(entry.pw_name, euid, os.getegid(), entry.pw_dir, tuple(os.getgroups()))
    try:
        entry = pwd.getpwnam(settings.paths.run_as)
    except KeyError:
        raise InputError([Problem("PCK_RUN_AS", f"user {settings.paths.run_as!r} does not exist in this image",
                                  "set PCK_RUN_AS to the user PostgreSQL is installed for (usually postgres)")]) \
            from None
    if entry.pw_uid == 0:
        raise InputError([Problem("PCK_RUN_AS",
                                  f"{settings.paths.run_as!r} is root, and PostgreSQL refuses to run as root",
                                  "set PCK_RUN_AS to an unprivileged user such as postgres")])
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    user = RunUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, groups)
    why = cannot_become(user)
    if why:
        raise InputError([Problem("PCK_RUN_AS", f"root cannot take the ids of {user.name} (its {len(groups)} groups, "
                                                f"gid, then uid) for the privilege drop: {why}",
                                  "keep CAP_SETUID and CAP_SETGID in the container's capabilities, or start the "
                                  "container as that user (runAsUser; the chart does)")])
    return user


def exec_environment(env: Mapping[str, str], settings: Settings, paths: StagedPaths, user: RunUser) -> dict:
    """The environment Patroni (and PostgreSQL, pg_isready, pg_basebackup under it) inherits.

    libpq reads PGSSL* itself: point them at the staged copies, and unset what the mode
    must not use (a root certificate would turn `require` into `verify-ca`; a client
    certificate would be sent on links that do not ask for one).
    """
    out = {k: v for k, v in env.items() if k not in DROPPED_VARS}
    out["PGSSLMODE"] = settings.links.name
    _set_or_drop(out, "PGSSLROOTCERT", paths.ca if settings.links.verifies_ca else None)
    _set_or_drop(out, "PGSSLCRL", paths.crl if settings.links.verifies_ca else None)
    _set_or_drop(out, "PGSSLCERT", paths.client_cert if settings.mtls.enabled else None)
    _set_or_drop(out, "PGSSLKEY", paths.client_key if settings.mtls.enabled else None)
    for spec in PATRONI_TLS_FILES:
        if spec.var in paths.extra:
            out[spec.var] = paths.extra[spec.var]
            if spec.password_var:  # the staged key is decrypted: its passphrase stays out of Patroni's environment
                out.pop(spec.password_var, None)
    if os.geteuid() == 0:
        out.update({"HOME": user.home, "USER": user.name, "LOGNAME": user.name})
    return out


def _set_or_drop(env: dict, name: str, value: Optional[str]) -> None:
    if value:
        env[name] = value
    else:
        env.pop(name, None)


def write_config(settings: Settings, text: str, user: RunUser) -> None:
    """Atomically write the rendered YAML, mode 0600 from the first byte, owned by the run user."""
    owner = (user.uid, user.gid) if os.geteuid() == 0 else None
    fsops.write_file(settings.paths.config_file, text.encode(), CONFIG_MODE, owner)


def drop_privileges(user: RunUser) -> None:
    """Become the run user for good (groups, gid, then uid) when running as root."""
    if os.geteuid() != 0:
        return
    os.setgroups(list(user.groups))
    os.setgid(user.gid)
    os.setuid(user.uid)
    os.chdir(user.home if os.path.isdir(user.home) else "/")


def patroni_command(config_file: str) -> list:
    """Patroni next to this interpreter (the venv or image) first, then on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "patroni")
    binary = beside if os.access(beside, os.X_OK) else (shutil.which("patroni") or "patroni")
    return [binary, config_file]


def resolve_command(argv: Sequence[str], env: Mapping[str, str], user: Optional[RunUser] = None) -> list:
    """`argv` with its program found on the exec environment's PATH; raises InputError before anything is written.

    Root finds the program, but the run user execs it after the drop: with `user`, the
    program and every directory on the way to it must let that user through.
    """
    found = shutil.which(argv[0], path=env.get("PATH", os.defpath)) if argv else None
    if not found or not os.path.isfile(found):
        raise InputError([Problem("run --", f"{argv[0] if argv else '(nothing)'!r} is not an executable program "
                                            f"on PATH ({env.get('PATH', os.defpath)})",
                                  "give the full path of the program to exec, or install it in the image")])
    why = _not_executable_by(found, user) if user is not None and os.geteuid() == 0 else None
    if why:
        raise InputError([Problem("run --", f"{found} cannot be executed by {user.name if user else ''}, the user it "
                                            f"runs as after the privilege drop: {why}",
                                  "make it (and the directories on the way) executable by that user, or install "
                                  "it where that user can reach it")])
    return [found] + list(argv[1:])


# What Patroni runs from PostgreSQL's bin directory: bootstrap, start and stop (pg_isready
# waits for the port), a replica's base backup, the control-data reads behind failover, and
# pg_rewind (the rendered configuration sets use_pg_rewind).
POSTGRES_PROGRAMS = ("postgres", "pg_ctl", "initdb", "pg_controldata", "pg_basebackup", "pg_isready", "pg_rewind")


def postgres_program_problems(settings: Settings, env: Mapping[str, str], user: RunUser) -> list:
    """Problems with the PostgreSQL programs Patroni will run, found before anything is written."""
    bin_dir = settings.paths.bin_dir
    search = env.get("PATH", os.defpath)
    missing, blocked = [], []
    for program in POSTGRES_PROGRAMS:
        path = os.path.join(bin_dir, program) if bin_dir else shutil.which(program, path=search)
        if not path or not os.path.isfile(path):
            missing.append(program)
            continue
        why = _no_execute(path) or (_not_executable_by(path, user) if os.geteuid() == 0 else None)
        if why:
            blocked.append(f"{program} ({why})")
    where = "PATRONI_POSTGRESQL_BIN_DIR"
    place = bin_dir or f"PATH ({search})"
    problems = []
    if missing:
        problems.append(Problem(where, f"{', '.join(missing)} not found as executable files in {place}",
                                "set PATRONI_POSTGRESQL_BIN_DIR to the directory holding PostgreSQL's programs, "
                                "e.g. /usr/lib/postgresql/15/bin, or install PostgreSQL in the image"))
    if blocked:
        problems.append(Problem(where, f"in {place}, {user.name} (the user Patroni runs as after the privilege drop) "
                                       f"cannot run {'; '.join(blocked)}",
                                "make the programs and the directories on the way executable by that user"))
    return problems


def _no_execute(path: str) -> Optional[str]:
    """Why nobody may execute `path` (no execute bit, a noexec mount), or None."""
    if os.access(path, os.X_OK):
        return None
    if os.statvfs(path).f_flag & os.ST_NOEXEC:
        return "its file system is mounted noexec"
    return f"it has no execute permission (mode {os.stat(path).st_mode & 0o7777:04o})"


def _permits(st: os.stat_result, user: RunUser, bits: int) -> bool:
    """Whether the mode bits give `user` all of `bits` (4 read, 1 execute/search)."""
    if st.st_uid == user.uid:
        granted = st.st_mode >> 6
    elif st.st_gid == user.gid or st.st_gid in user.groups:
        granted = st.st_mode >> 3
    else:
        granted = st.st_mode
    return granted & bits == bits


IDS_REFUSED = 64  # a child's exit code from here up: it could not take the user's ids (64 + errno)


def _as_user(user: RunUser, probe: Callable[[], bool]) -> Optional[int]:
    """`probe` run in a forked child that took `user`'s ids, so this process keeps root.

    Its exit code: 0 yes, 1 no, IDS_REFUSED + errno when the ids could not be taken; None
    when no answer could be had (no fork possible, or SIGCHLD ignored so the child was reaped).
    """
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:  # the child: never returns, whatever happens
        code = 2
        try:
            try:
                os.setgroups(list(user.groups))
                os.setgid(user.gid)
                os.setuid(user.uid)
            except OSError as exc:
                code = IDS_REFUSED + min(exc.errno or 0, 127)
            else:
                code = 0 if probe() else 1
        finally:
            os._exit(code)
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status)


def cannot_become(user: RunUser) -> Optional[str]:
    """Why root could not take `user`'s ids at the privilege drop (no CAP_SETUID, too many groups), or None."""
    code = _as_user(user, lambda: True)
    if code is None or code < IDS_REFUSED:
        return None
    return os.strerror(code - IDS_REFUSED)


def _kernel_lets_run(path: str, user: RunUser, script: bool) -> Optional[bool]:
    """The kernel's own answer (ACLs, noexec mounts and security modules included): access(2) as `user`."""
    code = _as_user(user, lambda: os.access(path, os.X_OK) and (not script or os.access(path, os.R_OK)))
    return None if code not in (0, 1) else code == 0


def _not_executable_by(path: str, user: RunUser) -> Optional[str]:
    """Why `user` could not exec `path`, or None: the kernel decides, the mode bits explain."""
    real = os.path.realpath(path)
    script = _is_script(real)
    verdict = _kernel_lets_run(path, user, script)
    if verdict:
        return None
    explained = _mode_bits_explain(path, real, user, script)
    if verdict is None or explained:  # no answer from the kernel: the mode bits judge alone
        return explained
    return (f"the kernel refuses it {path}{f' (a link to {real})' if real != os.path.abspath(path) else ''}, "
            f"though the mode bits allow it: an ACL on it or a directory on the way, or a security module")


def _mode_bits_explain(path: str, real: str, user: RunUser, script: bool) -> Optional[str]:
    """Which directory or mode bit stops `user` from running `path`, or None when the bits allow it."""
    for start in dict.fromkeys((os.path.abspath(path), real)):  # a symlink's own directories must let it through too
        directory = os.path.dirname(start)
        while True:
            if not _permits(os.stat(directory), user, 1):
                return f"it cannot enter {directory}"
            if directory == "/":
                break
            directory = os.path.dirname(directory)
    st = os.stat(real)
    if not _permits(st, user, 1):
        return f"{real} has no execute permission for it (mode {st.st_mode & 0o7777:04o})"
    if script and not _permits(st, user, 4):
        return f"{real} is a script and it cannot read it (mode {st.st_mode & 0o7777:04o})"
    return None


def _is_script(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return os.read(fd, 2) == b"#!"
    finally:
        os.close(fd)


def exec_command(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Replace this process: the container's PID 1 becomes Patroni (or the given command). Raises InputError."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(argv[0], list(argv), dict(env))
    except OSError as exc:
        raise InputError([Problem("run --", f"cannot exec {argv[0]}: {exc.strerror or exc}",
                                  "give a program the run user can execute (a binary or a script with #!)")],
                         outcome="it was not started") from None
