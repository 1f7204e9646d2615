"""The entrypoint's own commands (run, render, check, probe): the pipeline stages called in order."""

from __future__ import annotations

import argparse
import datetime
import glob
import os
import sys
from typing import Mapping

from entrypoint import layout
from entrypoint.boot.launch import (
    drop_privileges,
    exec_command,
    exec_environment,
    patroni_command,
    prepare_directories,
    resolve_run_user,
    write_config,
)
from entrypoint.boot.material import TlsMaterial, check_material, files_to_read, read_files
from entrypoint.boot.probe import cmd_probe
from entrypoint.boot.render import RenderBug, build_config, render_for, render_yaml
from entrypoint.boot.settings import HostFacts, Settings, parse_settings
from entrypoint.boot.stage import plan_paths, stage_material
from entrypoint.boot.watch import spawn_watcher
from entrypoint.errors import EXIT_BAD_INPUT, InputError
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
    probe.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer (default 5)")
    probe.set_defaults(func=cmd_probe)


def gather_facts(env: Mapping[str, str]) -> HostFacts:
    """Look up, once, the few host facts parsing needs."""
    cert_dir = env.get("PCK_CERT_DIR") or layout.CERT_DIR
    try:
        entries = frozenset(os.listdir(cert_dir))
    except OSError:
        entries = frozenset()
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_major)
    password_file = env.get("PGSSLKEY_PASSWORD_FILE")
    content = None
    if password_file:
        try:
            with open(password_file, encoding="utf-8") as handle:
                content = handle.read()
        except OSError:
            content = None
    namespace = None
    try:
        with open(layout.SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as handle:
            namespace = handle.read().strip() or None
    except OSError:
        pass
    return HostFacts(cert_dir_entries=entries, service_account_namespace=namespace,
                     pg_bin_dir=os.path.dirname(bins[-1]) if bins else None,
                     key_password_file_content=content)


def _major(path: str) -> float:
    try:
        return float(path.split("/")[4])
    except (IndexError, ValueError):
        return 0.0


def validate(env: Mapping[str, str]) -> tuple:
    """Parse and check every input. Returns (settings, material); raises InputError."""
    settings = parse_settings(env, gather_facts(env))
    now = datetime.datetime.now(datetime.timezone.utc)
    material = check_material(settings, read_files(files_to_read(settings)), now)
    return settings, material


def _warn(material: TlsMaterial) -> None:
    for warning in material.warnings:
        print(f"patroni-citus-k8s: warning: {warning}", file=sys.stderr)


def _fail(err: InputError) -> int:
    print(err.report(), file=sys.stderr)
    return EXIT_BAD_INPUT


def cmd_run(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    try:
        settings, material = validate(env)
        user = resolve_run_user(settings, os.geteuid())
    except InputError as err:
        return _fail(err)
    _warn(material)
    try:
        paths = stage_material(settings, material, user.uid, user.gid)
        text = render_yaml(build_config(settings, paths), settings)
        write_config(settings, text, user)
        prepare_directories(settings, user)
    except OSError as exc:
        print(f"patroni-citus-k8s: cannot write {exc.filename}: {exc.strerror}\n"
              f"    fix: PCK_RUNTIME_DIR ({settings.paths.runtime_dir}) and PCK_CONFIG_FILE must be writable "
              "directories "
              "for the container user: mount an emptyDir there, or start the container as root", file=sys.stderr)
        return EXIT_BAD_INPUT
    command = argv or patroni_command(settings.paths.config_file)
    child_env = exec_environment(env, settings, paths, user)
    if settings.tuning.watch_interval > 0 and files_to_read(settings):
        spawn_watcher(settings, user.uid, user.gid, user.groups, paths, lambda: drop_privileges(user))
    drop_privileges(user)
    print(f"patroni-citus-k8s: PGSSLMODE={settings.mode}, ssl="
          f"{'on' if settings.server_ssl and paths.server_cert else 'off'}, config {settings.paths.config_file}, "
          f"exec {command[0]} as {user.name}", file=sys.stderr)
    exec_command(command, child_env)
    return 1  # not reached


def cmd_render(args: argparse.Namespace) -> int:
    try:
        settings, material = validate(dict(os.environ))
    except InputError as err:
        return _fail(err)
    _warn(material)
    sys.stdout.write(render_for(settings, plan_paths(settings, material), args.show_secrets))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    try:
        settings, material = validate(env)
        resolve_run_user(settings, os.geteuid())
        render_for(settings, plan_paths(settings, material), show_secrets=False)
    except InputError as err:
        print(err.report())
        return EXIT_BAD_INPUT
    except RenderBug as err:
        print(f"patroni-citus-k8s: bug: {err}", file=sys.stderr)
        return 1
    print(check_report(settings, material))
    return 0


def check_report(settings: Settings, material: TlsMaterial) -> str:
    """A readable summary of what run would do, for people and CI logs."""
    lines = [
        f"PGSSLMODE            {settings.mode}",
        f"server ssl           {'on' if settings.server_ssl and material.server else 'off'}"
        f" (min {settings.tuning.tls_min_version})",
        f"pg_hba TCP           "
        f"{'hostssl only; plaintext rejected' if settings.mode.requires_tls else 'host (plaintext allowed)'}",
        f"mutual TLS           {'on' if settings.mtls.enabled else 'off'}",
        f"connect address      {settings.addresses.connect}"
        f"{' (derived from the pod name)' if settings.addresses.connect_derived else ''}",
        f"REST API             {'https' if material.server and settings.server_ssl else 'http'}://{settings.addresses.restapi_connect}",
        f"config file          {settings.paths.config_file}",
    ]
    if material.server is not None:
        leaf = material.server.leaf
        dns, ips = san_names(leaf)
        days = (leaf.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)).days
        lines += [
            f"certificate          {settings.tls.cert_file}",
            f"  subject            {leaf.subject.rfc4514_string()}",
            f"  SANs               {', '.join(dns + ips) or 'none'}",
            f"  expires            {leaf.not_valid_after_utc:%Y-%m-%d} ({days} days left)",
            f"  covers {settings.addresses.connect.host}: "
            f"{'yes' if name_covered(leaf, settings.addresses.connect.host) else 'no'}",
        ]
    if material.cas:
        lines.append(f"CA bundle            {settings.tls.ca_file} ({len(material.cas)} certificate(s))")
    lines += [f"warning: {w}" for w in material.warnings]
    lines.append("result               would start")
    return "\n".join(lines)
