"""`patroni-citus-k8s pooler run|render|check|setup|probe|drain`: PgBouncer before the coordinator, TLS legs."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from entrypoint.boot.commands import seconds_type
from entrypoint.errors import EXIT_BAD_INPUT, InputError, Problem, printable

SUBCOMMANDS = ("run", "render", "check", "setup", "probe", "drain")


def register(sub: argparse._SubParsersAction) -> None:
    pooler = sub.add_parser(
        "pooler", help="the TLS connection pooler (PgBouncer) in front of the coordinator primary",
        description="PgBouncer with TLS on both legs at PGSSLMODE, reading the same environment and certificate "
                    "Secret as `run` (see docs/pooler.md).")
    psub = pooler.add_subparsers(dest="pooler_command", metavar="SUBCOMMAND")
    psub.required = True
    run = psub.add_parser("run", help="check inputs, stage certificates, write pgbouncer.ini, drop root, exec "
                                      "PgBouncer (with the certificate watcher)")
    run.set_defaults(func=cmd_run)
    render = psub.add_parser("render", help="print the pgbouncer.ini run would write (the auth file is never shown)")
    render.set_defaults(func=cmd_render)
    check = psub.add_parser("check", help="validate everything run validates and print a report; exit 0 if it would "
                                          "start, 2 if not")
    check.set_defaults(func=cmd_check)
    setup = psub.add_parser("setup", help="create or update the auth role and lookup function on the coordinator "
                                          "primary (as a superuser; idempotent)",
                            description="Connects with CONNINFO or libpq's PG* variables, as verify does.")
    setup.add_argument("conninfo", nargs="?", default="", metavar="CONNINFO",
                       help="libpq connection string or URI to the coordinator primary, as a superuser")
    setup.add_argument("--timeout", type=seconds_type(3600), default=10.0, metavar="SECONDS",
                       help="connect timeout for each database (default 10)")
    setup.set_defaults(func=cmd_setup)
    probe = psub.add_parser("probe", help="pod probes: the local listener answers the SSLRequest as the mode says")
    probe.add_argument("kind", choices=("readiness", "liveness"))
    probe.add_argument("--timeout", type=seconds_type(60), default=5.0, metavar="SECONDS", help="default 5")
    probe.set_defaults(func=cmd_probe)
    drain = psub.add_parser("drain", help="the pod's preStop hook: safe shutdown of PgBouncer (SIGINT), so running "
                                          "transactions finish instead of being cut by the kubelet's SIGTERM")
    drain.add_argument("--delay", type=seconds_type(3600, allow_zero=True), default=5.0, metavar="SECONDS",
                       help="wait this long first, while the pod leaves the Service's endpoints (default 5)")
    drain.add_argument("--timeout", type=seconds_type(3600, allow_zero=True), default=20.0, metavar="SECONDS",
                       help="then wait at most this long for PgBouncer to exit (default 20; keep delay + timeout "
                            "under the pod's terminationGracePeriodSeconds)")
    drain.set_defaults(func=cmd_drain)


def _warn(warnings) -> None:
    for warning in warnings:
        print(f"patroni-citus-k8s pooler: warning: {printable(warning)}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from entrypoint.boot.dirs import make_directories
    from entrypoint.boot.fsops import write_file
    from entrypoint.boot.launch import drop_privileges, exec_command
    from entrypoint.boot.material import files_to_read
    from entrypoint.boot.stage import stage_material
    from entrypoint.boot.watch import spawn_watcher
    from entrypoint.pooler.plan import FILE_MODE, plan

    p = plan(dict(os.environ))  # InputError: exit 2 before anything is written (cli.main)
    _warn(p.material.warnings)
    settings, user = p.settings, p.user
    owner = (user.uid, user.gid) if os.geteuid() == 0 else None
    try:
        make_directories(settings, user.who(), member=False)
        paths = stage_material(settings, p.material, user.uid, user.gid)
        write_file(p.auth_path, p.auth_text.encode(), FILE_MODE, owner)
        write_file(p.ini_path, p.ini.encode(), FILE_MODE, owner)
    except OSError as exc:
        where = str(exc.filename or settings.paths.runtime_dir)
        raise InputError([Problem(where, f"cannot write: {exc.strerror or exc}",
                                  "PCK_RUNTIME_DIR must be writable: mount an emptyDir there, or start as root")],
                         outcome="nothing was started") from None
    if settings.tuning.watch_interval > 0 and files_to_read(settings):
        spawn_watcher(settings, user.uid, user.gid, user.groups, paths, lambda: drop_privileges(user),
                      notify=_reloader(os.getpid()))
    drop_privileges(user)
    print(f"patroni-citus-k8s pooler: PGSSLMODE={settings.mode}, listen {p.pooler.listen}, target "
          f"{p.pooler.target}, config {p.ini_path}, exec {p.command[0]} as {user.name}", file=sys.stderr)
    exec_command(p.command, p.child_env)
    return 1  # not reached


def _reloader(pid: int):
    """SIGHUP to `pid`, PgBouncer after the exec: it reloads its TLS files, keeping every client connection."""
    def reload_pgbouncer() -> None:
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:
            print(f"patroni-citus-k8s watch: could not signal PgBouncer (pid {pid}): {exc.strerror}",
                  file=sys.stderr, flush=True)
    return reload_pgbouncer


def cmd_render(args: argparse.Namespace) -> int:
    from entrypoint.pooler.plan import inputs, render_for

    settings, material, pooler = inputs(dict(os.environ))
    _warn(material.warnings)
    sys.stdout.write(render_for(settings, material, pooler))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from entrypoint.pooler.plan import plan
    from entrypoint.pooler.report import check_report

    try:
        p = plan(dict(os.environ))
    except InputError as err:
        print(err.report())
        return EXIT_BAD_INPUT
    print(check_report(p))
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    from entrypoint.pooler.setup import setup

    return setup(args.conninfo, args.timeout, dict(os.environ))


def cmd_probe(args: argparse.Namespace) -> int:
    from entrypoint.pooler.probe import probe

    return probe(args.kind, args.timeout, dict(os.environ))


def cmd_drain(args: argparse.Namespace) -> int:
    from entrypoint.pooler.drain import drain

    return drain(args.delay, args.timeout, dict(os.environ))
