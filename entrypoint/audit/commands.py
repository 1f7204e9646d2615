"""The `verify` command: flags in, a report on stdout, exit 0 (clean), 1 (findings) or 2 (cannot run)."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, TextIO

from entrypoint import layout, sslmode
from entrypoint.audit.options import (
    DEFAULT_EXPIRY_DAYS,
    DEFAULT_INTERVAL,
    DEFAULT_TIMEOUT,
    EXAMPLE_LISTEN,
    VerifyOptions,
)
from entrypoint.errors import EXIT_BAD_INPUT, InputError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `verify` to `sub`."""
    parser = sub.add_parser(
        "verify", help="audit a running cluster's TLS: every member, port and link; exit 1 on findings",
        description="Connect to any member (CONNINFO, or libpq's PG* environment variables), discover every "
                    "member through Patroni's REST API (and pg_dist_node for Citus), and report the certificate "
                    "each serves on PostgreSQL's port and the REST port, and how many client, replication and "
                    "Citus connections each serves encrypted and in plaintext. Exit status: 0 no findings, "
                    "1 findings, 2 cannot run.")
    parser.add_argument("conninfo", nargs="?", default="", metavar="CONNINFO",
                        help="libpq connection string or URI to any member (default: PGHOST, PGSSLMODE & co.)")
    parser.add_argument("--mode", choices=sslmode.NAMES,
                        help="the sslmode the cluster must satisfy (default: the sslmode of this connection, "
                             "which inside a pod is the cluster's PGSSLMODE)")
    parser.add_argument("--ca", metavar="FILE",
                        help="CA certificate(s) the members' certificates must chain to (default: the "
                             "connection's sslrootcert)")
    parser.add_argument("--api-port", type=int, default=layout.RESTAPI_PORT, metavar="PORT",
                        help=f"Patroni REST API port asked for the member list (default {layout.RESTAPI_PORT})")
    parser.add_argument("--api-host", metavar="HOST",
                        help="host of the REST API asked for the member list (default: the connection's host)")
    parser.add_argument("--expiry-days", type=int, default=DEFAULT_EXPIRY_DAYS, metavar="DAYS",
                        help=f"report certificates expiring within DAYS (default {DEFAULT_EXPIRY_DAYS})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"for each connection and handshake (default {DEFAULT_TIMEOUT:g})")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    output.add_argument("--prometheus", action="store_true",
                        help="print Prometheus text exposition (for node_exporter's textfile collector)")
    output.add_argument("--serve", metavar="HOST:PORT",
                        help="keep running: observe the cluster every --interval and serve the metrics on "
                             f"http://HOST:PORT/metrics (and /healthz), e.g. {EXAMPLE_LISTEN}")
    parser.add_argument("--interval", type=float, metavar="SECONDS",
                        help=f"with --serve: seconds between observations, each bounded to that long "
                             f"(default {DEFAULT_INTERVAL:g})")
    parser.add_argument("--secret-dir", metavar="DIR",
                        help="where the certificate Secret is mounted here; each port is compared with the "
                             f"certificate it holds now (default {layout.CERT_DIR}, skipped when absent)")
    parser.add_argument("--crl", metavar="FILE",
                        help="CRLs (PEM) to judge revocation against: report served certificates and sessions "
                             "they revoke, and each CRL's nextUpdate (default: the connection's sslcrl, else "
                             f"{layout.CRL_FILE} in --secret-dir when present)")
    parser.add_argument("--pooler", action="append", default=[], metavar="HOST:PORT",
                        help="also audit the pooler clients reach at HOST:PORT (repeatable): its certificate, "
                             "whether it takes plaintext, and SHOW CLIENTS/SHOW SERVERS on its admin console as "
                             "PCK_POOLER_AUTH_USER with PCK_POOLER_AUTH_PASSWORD (or _FILE)")
    parser.add_argument("--install-view", action="store_true",
                        help="first create (or replace) the ssl_connections monitoring view on every primary")
    parser.set_defaults(func=cmd_verify)


def options_from(args: argparse.Namespace) -> VerifyOptions:
    """The parsed flags as VerifyOptions."""
    output = ("json" if args.json else "prometheus" if args.prometheus else
              "serve" if args.serve is not None else "table")
    return VerifyOptions(conninfo=args.conninfo, mode=args.mode, ca=args.ca, api_port=args.api_port,
                         api_host=args.api_host, expiry_days=args.expiry_days, timeout=args.timeout,
                         output=output, install_view=args.install_view, serve=args.serve,
                         interval=args.interval, secret_dir=args.secret_dir, crl=args.crl,
                         poolers=tuple(args.pooler))


def cmd_verify(args: argparse.Namespace, out: Optional[TextIO] = None, err: Optional[TextIO] = None) -> int:
    """Run verify as `args` say; print the report; return 0, 1 (findings) or 2 (cannot run).

    `out` and `err` default to sys.stdout and sys.stderr as they are at the call, not at import.
    """
    out, err = out or sys.stdout, err or sys.stderr
    from entrypoint.audit import report
    from entrypoint.audit.findings import exit_status, find
    from entrypoint.audit.observe import observe
    from entrypoint.audit.redact import Redactor

    options = options_from(args)
    redactor = Redactor()
    try:
        if options.serve is not None:
            from entrypoint.audit.serve import serve

            return serve(options, err)
        obs = observe(options, redactor, err)
    except InputError as exc:
        print(redactor.scrub(exc.report()), file=err)
        return EXIT_BAD_INPUT
    findings = find(obs)
    render = {"json": report.render_json, "prometheus": report.render_prometheus}.get(options.output,
                                                                                       report.render_table)
    out.write(redactor.scrub(render(obs, findings)))
    return exit_status(findings)
