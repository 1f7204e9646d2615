"""Write the configuration, drop root, and exec Patroni with an environment that matches the staged files."""

from __future__ import annotations

import os
import pwd
import shutil
import sys
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from entrypoint.boot import fsops
from entrypoint.boot.dirs import Who
from entrypoint.boot.settings import PATRONI_TLS_FILE_VARS, Settings
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
    return RunUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, groups)


def exec_environment(env: Mapping[str, str], settings: Settings, paths: StagedPaths, user: RunUser) -> dict:
    """The environment Patroni (and PostgreSQL, pg_isready, pg_basebackup under it) inherits.

    libpq reads PGSSL* itself: point them at the staged copies, and unset what the mode
    must not use (a root certificate would turn `require` into `verify-ca`; a client
    certificate would be sent on links that do not ask for one).
    """
    out = {k: v for k, v in env.items() if k not in DROPPED_VARS}
    out["PGSSLMODE"] = settings.mode.name
    _set_or_drop(out, "PGSSLROOTCERT", paths.ca if settings.mode.verifies_ca else None)
    _set_or_drop(out, "PGSSLCERT", paths.client_cert if settings.mtls.enabled else None)
    _set_or_drop(out, "PGSSLKEY", paths.client_key if settings.mtls.enabled else None)
    for var in PATRONI_TLS_FILE_VARS:
        if var in paths.extra:
            out[var] = paths.extra[var]
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


def resolve_command(argv: Sequence[str], env: Mapping[str, str]) -> list:
    """`argv` with its program found on the exec environment's PATH; raises InputError before anything is written."""
    found = shutil.which(argv[0], path=env.get("PATH", os.defpath)) if argv else None
    if not found or os.path.isdir(found):
        raise InputError([Problem("run --", f"{argv[0] if argv else '(nothing)'!r} is not an executable program "
                                            f"on PATH ({env.get('PATH', os.defpath)})",
                                  "give the full path of the program to exec, or install it in the image")])
    return [found] + list(argv[1:])


def exec_command(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Replace this process: the container's PID 1 becomes Patroni (or the given command)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(argv[0], list(argv), dict(env))
