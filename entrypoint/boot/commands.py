"""The entrypoint's own commands (run, render, check, probe): the pipeline stages called in order."""

from __future__ import annotations

import argparse
import datetime
import glob
import math
import os
import sys
from dataclasses import dataclass
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

from entrypoint import layout
from entrypoint.boot.dirs import check_directories, make_directories
from entrypoint.boot.launch import (
    RunUser,
    drop_privileges,
    exec_command,
    exec_environment,
    patroni_command,
    postgres_program_problems,
    resolve_command,
    resolve_run_user,
    write_config,
)
from entrypoint.boot.material import TlsMaterial, check_material, files_to_read, read_files
from entrypoint.boot.probe import cmd_probe
from entrypoint.boot.render import RenderBug, build_config, render_for, render_yaml
from entrypoint.boot.settings import HostFacts, Settings, parse_settings
from entrypoint.boot.stage import plan_paths, stage_material
from entrypoint.boot.watch import spawn_watcher
from entrypoint.errors import EXIT_BAD_INPUT, InputError, Problem, printable
from entrypoint.pki import reader
from entrypoint.pki.names import name_covered, san_names


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run",
                         help="check inputs, stage certificates, write Patroni's config, drop root, exec Patroni",
                         description="The image's default command. Arguments after -- are exec'd instead of Patroni "
                                     "(after the same checks, staging and privilege drop).")
    run.add_argument("argv", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...] to exec instead of Patroni")
    run.set_defaults(func=cmd_run)

    render = sub.add_parser("render", help="print the Patroni YAML that run would write (passwords redacted)")
    render.add_argument("--show-secrets", action="store_true", help="print passwords instead of <redacted>")
    render.set_defaults(func=cmd_render)

    check = sub.add_parser("check",
                           help="validate everything run validates and print a report; exit 0 if it would start")
    check.set_defaults(func=cmd_check)

    probe = sub.add_parser("probe", help="ask the local Patroni REST API for readiness or liveness (for pod probes)")
    probe.add_argument("kind", choices=("readiness", "liveness"))
    probe.add_argument("--timeout", type=seconds_type(60), default=5.0,
                       help="seconds to wait for the answer, more than 0 and at most 60 (default 5)")
    probe.set_defaults(func=cmd_probe)


def seconds_type(maximum: float, allow_zero: bool = False) -> Callable[[str], float]:
    """An argparse type: a number of seconds up to `maximum`, above 0 (or from 0 with `allow_zero`)."""
    def seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (0 <= value if allow_zero else 0 < value) or not value <= maximum:  # NaN fails too
            lowest = "from 0" if allow_zero else "above 0"
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds {lowest} and at most {maximum:g}")
        return value
    return seconds


def _read_text(path: str, kind: reader.Kind) -> Tuple[Optional[str], Optional[str]]:
    """(text, None), or (None, why it could not be read) through the one safe reader."""
    try:
        return reader.read_file(path, kind).decode("utf-8"), None
    except OSError as exc:
        return None, reader.why(exc)
    except UnicodeDecodeError:
        return None, "holds bytes that are not valid UTF-8"


def gather_facts(env: Mapping[str, str]) -> HostFacts:
    """Look up, once, the few host facts parsing needs."""
    cert_dir = env.get("PCK_CERT_DIR") or layout.CERT_DIR
    try:
        entries = frozenset(os.listdir(cert_dir))
    except OSError:
        entries = frozenset()
    bins = sorted(glob.glob(layout.PG_BIN_GLOB), key=_major)
    content, error = None, None
    if env.get("PGSSLKEY_PASSWORD_FILE") and (env.get("PGSSLMODE") or "").strip() != "disable":
        content, error = _read_text(env["PGSSLKEY_PASSWORD_FILE"], reader.SECRET_TEXT)
    namespace, _ = _read_text(layout.SERVICE_ACCOUNT_NAMESPACE, reader.SMALL_TEXT)
    return HostFacts(cert_dir_entries=entries, service_account_namespace=(namespace or "").strip() or None,
                     pg_bin_dir=os.path.dirname(bins[-1]) if bins else None,
                     key_password_file_content=content, key_password_file_error=error)


def _major(path: str) -> float:
    try:
        return float(path.split("/")[4])
    except (IndexError, ValueError):
        return 0.0


@dataclass(frozen=True)
class Plan:
    """Everything `run` will do, decided before its first write."""

    settings: Settings
    material: TlsMaterial
    user: RunUser
    command: list
    child_env: dict
    text: str  # the configuration, rendered and parsed back


def inputs(env: Mapping[str, str]) -> Tuple[Settings, TlsMaterial]:
    """Parse and check the environment and the TLS files. Raises InputError."""
    settings = parse_settings(env, gather_facts(env))
    now = datetime.datetime.now(datetime.timezone.utc)
    return settings, check_material(settings, read_files(files_to_read(settings)), now)


def plan(env: Mapping[str, str], argv: Sequence[str]) -> Plan:
    """Everything `check` checks and `run` needs: inputs, run user, directories, the command, the YAML.

    Raises InputError listing every problem; writes nothing.
    """
    settings, material = inputs(env)
    user = resolve_run_user(settings, os.geteuid())
    paths = plan_paths(settings, material)
    child_env = exec_environment(env, settings, paths, user)
    problems = check_directories(settings, user.who())
    try:
        command = resolve_command(list(argv) or patroni_command(settings.paths.config_file), child_env, user)
    except InputError as err:
        problems += list(err.problems)
        command = []
    if not argv:  # Patroni will run PostgreSQL's programs; another command brings its own
        problems += postgres_program_problems(settings, child_env, user)
    if problems:
        raise InputError(problems)
    text = render_yaml(build_config(settings, paths), settings)
    return Plan(settings, material, user, command, child_env, text)


def _warn(material: TlsMaterial) -> None:
    for warning in material.warnings:
        print(f"patroni-citus-k8s: warning: {printable(warning)}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    p = plan(dict(os.environ), argv)  # InputError: exit 2 before anything is written (cli.main)
    _warn(p.material)
    settings, user = p.settings, p.user
    try:
        make_directories(settings, user.who())
        paths = stage_material(settings, p.material, user.uid, user.gid)
        write_config(settings, p.text, user)
    except OSError as exc:
        raise InputError([Problem(str(exc.filename or settings.paths.runtime_dir),
                                  f"cannot write: {exc.strerror or exc}",
                                  "PCK_RUNTIME_DIR, PCK_CONFIG_FILE and PCK_SOCKET_DIR must be writable: mount an "
                                  "emptyDir there, or start the container as root")],
                         outcome="nothing was started") from None
    if settings.transitional:
        print(f"patroni-citus-k8s: warning: transitional (PCK_TLS_UPGRADE): this member's client links start at "
              f"sslmode=prefer and tighten to {settings.mode} as soon as every peer serves TLS", file=sys.stderr)
    if settings.tuning.watch_interval > 0 and files_to_read(settings) or settings.transitional:
        spawn_watcher(settings, user.uid, user.gid, user.groups, paths, lambda: drop_privileges(user))
    drop_privileges(user)
    print(f"patroni-citus-k8s: PGSSLMODE={settings.mode}, ssl="
          f"{'on' if settings.server_ssl and paths.server_cert else 'off'}, config {settings.paths.config_file}, "
          f"exec {p.command[0]} as {user.name}", file=sys.stderr)
    exec_command(p.command, p.child_env)
    return 1  # not reached


def cmd_render(args: argparse.Namespace) -> int:
    settings, material = inputs(dict(os.environ))
    _warn(material)
    sys.stdout.write(render_for(settings, plan_paths(settings, material), args.show_secrets))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    try:
        p = plan(dict(os.environ), [])
    except InputError as err:
        print(err.report())
        return EXIT_BAD_INPUT
    except RenderBug as err:
        print(f"patroni-citus-k8s: bug: {err}", file=sys.stderr)
        return 1
    print(check_report(p.settings, p.material))
    return 0


def check_report(settings: Settings, material: TlsMaterial) -> str:
    """A readable summary of what run would do, for people and CI logs.

    Each line is escaped on its own before they are joined: a certificate field holding a
    newline stays inside its line instead of forging the next one.
    """
    lines = [
        f"PGSSLMODE            {settings.mode}",
        f"server ssl           {'on' if settings.server_ssl and material.server else 'off'}"
        f" (min {settings.tuning.tls_min_version})",
        f"pg_hba TCP           "
        f"{'hostssl only; plaintext rejected' if settings.mode.requires_tls else 'host (plaintext allowed)'}",
        f"mutual TLS           {'on' if settings.mtls.enabled else 'off'}",
        f"connect address      {settings.addresses.connect}"
        f"{' (derived from the pod name)' if settings.addresses.connect_derived else ''}",
        f"REST API             {'https' if material.server and settings.server_ssl else 'http'}"
        f"://{settings.addresses.restapi_connect}",
        f"config file          {settings.paths.config_file}",
        f"PostgreSQL programs  {settings.paths.bin_dir or 'from PATH'}",
    ]
    lines += material_lines(settings, material, settings.addresses.connect.host)
    if material.crls:
        lines.append(f"CRL                  {settings.tls.crl_file} ({len(material.crls)} CRL(s))")
    lines += [f"warning: {w}" for w in material.warnings]
    lines.append("result               would start")
    return "\n".join(printable(line) for line in lines)


def material_lines(settings: Settings, material: TlsMaterial, name: Optional[str]) -> List[str]:
    """check's lines for the certificate (subject, SANs, expiry, whether it covers `name`) and the CA bundle."""
    lines: List[str] = []
    if material.server is not None:
        leaf = material.server.leaf
        dns, ips = san_names(leaf)
        days = (leaf.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)).days
        lines += [
            f"certificate          {settings.tls.cert_file}",
            f"  subject            {leaf.subject.rfc4514_string()}",
            f"  SANs               {', '.join(dns + ips) or 'none'}",
            f"  expires            {leaf.not_valid_after_utc:%Y-%m-%d} ({days} days left)",
        ]
        if name is not None:
            lines.append(f"  covers {name}: {'yes' if name_covered(leaf, name) else 'no'}")
    if material.cas:
        lines.append(f"CA bundle            {settings.tls.ca_file} ({len(material.cas)} certificate(s))")
    return lines
