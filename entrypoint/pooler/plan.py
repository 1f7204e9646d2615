"""Everything `pooler run` will do, decided before its first write: a member's checks (through boot) and the pooler's.

The TLS inputs go through the very functions a member's `run` uses (boot.settings,
boot.material, boot.stage, boot.dirs, boot.launch), so a certificate set a member refuses
the pooler refuses too, with the same message. What only the pooler reads (PCK_POOLER_*)
is parsed beside them, and every problem of both is reported at once.
"""

from __future__ import annotations

import datetime
import os
import shutil
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

from entrypoint import layout
from entrypoint.boot.commands import gather_facts
from entrypoint.boot.dirs import check_directories
from entrypoint.boot.launch import RunUser, exec_environment, resolve_command, resolve_run_user
from entrypoint.boot.material import TlsMaterial, check_material, files_to_read, read_files
from entrypoint.boot.settings import Settings, parse_settings
from entrypoint.boot.stage import StagedPaths, plan_paths
from entrypoint.errors import Collector, InputError, Problem
from entrypoint.pki import reader
from entrypoint.pooler.render import auth_file_text, pgbouncer_sections, render_ini
from entrypoint.pooler.settings import PoolerSettings, parse_pooler

COMMAND = "patroni-citus-k8s pooler"
AUTH_NAME = "pgbouncer-auth.txt"  # the auth_user's password: 0600, never logged, never rendered
FILE_MODE = 0o600
# Debian installs PgBouncer in /usr/sbin, which a non-root PATH often lacks.
PGBOUNCER_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
# Secrets the pooler's inputs hold that PgBouncer never needs in its environment.
DROPPED_VARS = ("PCK_POOLER_AUTH_PASSWORD", "PCK_POOLER_AUTH_PASSWORD_FILE", "PGPASSWORD", "PGSSLKEY_PASSWORD",
                "PGSSLKEY_PASSWORD_FILE", "PATRONI_SUPERUSER_PASSWORD", "PATRONI_REPLICATION_PASSWORD",
                "PATRONI_REWIND_PASSWORD", "PATRONI_RESTAPI_PASSWORD")
# A pooler runs no Patroni: what boot's parser requires of a member but a pooler has no use for.
MEMBER_ONLY_DEFAULTS = {"PATRONI_SCOPE": "pooler", "PATRONI_NAME": "pooler",
                        "PATRONI_POSTGRESQL_CONNECT_ADDRESS": "localhost:5432"}


@dataclass(frozen=True)
class PoolerPlan:
    settings: Settings
    material: TlsMaterial
    pooler: PoolerSettings
    paths: StagedPaths
    user: RunUser
    command: list
    child_env: dict
    ini_path: str
    auth_path: str
    ini: str  # holds no secret

    @property
    def auth_text(self) -> str:
        return auth_file_text(self.pooler)


def _password_file(env: Mapping[str, str]) -> Tuple[Optional[str], Optional[str]]:
    """(content, None) or (None, why) for PCK_POOLER_AUTH_PASSWORD_FILE, read through the one safe reader."""
    path = env.get("PCK_POOLER_AUTH_PASSWORD_FILE")
    if not path:
        return None, None
    try:
        return reader.read_file(path, reader.SECRET_TEXT).decode("utf-8"), None
    except OSError as exc:
        return None, reader.why(exc)
    except UnicodeDecodeError:
        return None, "holds bytes that are not valid UTF-8"


def member_view(env: Mapping[str, str]) -> dict:
    """The environment as boot's parser reads it for a pooler: member-only names filled with placeholders."""
    view = dict(env)
    for name, value in MEMBER_ONLY_DEFAULTS.items():
        view[name] = view.get(name) or value
    return view


def inputs(env: Mapping[str, str]) -> Tuple[Settings, TlsMaterial, PoolerSettings]:
    """Parse and check everything: the member's TLS inputs and the pooler's own. Raises one InputError for all."""
    bad = Collector()
    content, error = _password_file(env)
    pooler = parse_pooler(env, bad, content, error)
    served = (("PCK_POOLER_SERVICE", pooler.service),)  # None: not given, a problem of its own at verify-full
    try:
        settings = parse_settings(member_view(env), gather_facts(env), require_passwords=False, served_names=served)
    except InputError as err:
        raise InputError(list(err.problems) + bad.problems) from None
    if settings.mode.verifies_host and pooler.service is None and not bad.has("PCK_POOLER_SERVICE"):
        bad.add("PCK_POOLER_SERVICE", f"not set, and PGSSLMODE={settings.mode} has clients check the pooler's "
                                      "certificate against the name they reach it by",
                "set it to host:port of the pooler's Service (on Kubernetes it defaults to "
                "<PATRONI_SCOPE>-pooler.<namespace>.svc.<domain>:6432)")
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        material = check_material(settings, read_files(files_to_read(settings)), now)
    except InputError as err:
        raise InputError(list(err.problems) + bad.problems) from None
    bad.raise_if_any()
    return settings, material, pooler


def _pgbouncer(child_env: Mapping[str, str], user: RunUser) -> Tuple[list, list]:
    """(argv head, problems): PgBouncer found on PATH or in the sbin directories, executable by the run user."""
    path = child_env.get("PATH", os.defpath)
    found = shutil.which("pgbouncer", path=path) or shutil.which("pgbouncer", path=os.pathsep.join(PGBOUNCER_DIRS))
    try:
        return resolve_command([found or "pgbouncer"], child_env, user), []
    except InputError as err:
        return [], [Problem("pgbouncer", p.what, "install PgBouncer (Debian: apt-get install pgbouncer) where the run "
                                                 "user can execute it") for p in err.problems]


def plan(env: Mapping[str, str]) -> PoolerPlan:
    """Everything `check` checks and `run` needs; raises InputError listing every problem, writes nothing."""
    settings, material, pooler = inputs(env)
    user = resolve_run_user(settings, os.geteuid())
    paths = plan_paths(settings, material)
    child_env = {k: v for k, v in exec_environment(env, settings, paths, user).items() if k not in DROPPED_VARS}
    problems = check_directories(settings, user.who(), member=False)
    ini_path = os.path.join(settings.paths.runtime_dir, layout.POOLER_INI_NAME)
    auth_path = os.path.join(settings.paths.runtime_dir, AUTH_NAME)
    for path in (ini_path, auth_path):
        if os.path.isdir(path):
            problems.append(Problem("PCK_RUNTIME_DIR", f"{path} is a directory", "remove it, or use another "
                                                                                 "runtime directory"))
    head, missing = _pgbouncer(child_env, user)
    problems += missing
    if problems:
        raise InputError(problems)
    ini = render_ini(pgbouncer_sections(settings, paths, pooler, auth_path))
    return PoolerPlan(settings, material, pooler, paths, user, head + [ini_path], child_env, ini_path, auth_path, ini)


def render_for(settings: Settings, material: TlsMaterial, pooler: PoolerSettings) -> str:
    """The pgbouncer.ini `run` would write, and what its auth file holds with the password redacted."""
    paths = plan_paths(settings, material)
    auth_path = os.path.join(settings.paths.runtime_dir, AUTH_NAME)
    ini = render_ini(pgbouncer_sections(settings, paths, pooler, auth_path))
    return ini + f"\n; {auth_path} (mode 0600) holds one line: \"{pooler.auth_user}\" \"<redacted>\"\n"
