"""The `verify` command: discover a running cluster's members, observe every port and link, report findings."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
from typing import TYPE_CHECKING, Optional, TextIO

from entrypoint.findings import MODES, Connection, Member, Observations, exit_status, find

if TYPE_CHECKING:
    from entrypoint.probe_tls import ClientCert

EXIT_CANNOT_RUN = 2
DEFAULT_API_PORT = 8008
REDACTED = "<redacted>"

# The seed guide's monitoring view, corrected: every TCP connection (the seed's `WHERE ssl = true`
# hid exactly the plaintext ones it meant to catch), labelled by link. The seed's six columns come
# first, unchanged, so CREATE OR REPLACE also upgrades a view created from the seed.
SSL_CONNECTIONS_VIEW = """
CREATE OR REPLACE VIEW public.ssl_connections AS
SELECT a.usename,
       a.client_addr,
       s.ssl,
       s.version AS ssl_version,
       s.cipher,
       s.bits,
       a.pid,
       a.datname,
       a.application_name,
       a.backend_type,
       CASE WHEN a.backend_type = 'walsender' THEN 'replication'
            WHEN a.application_name ILIKE 'citus%' THEN 'citus'
            ELSE 'client' END AS link,
       s.client_dn
  FROM pg_catalog.pg_stat_activity a
  JOIN pg_catalog.pg_stat_ssl s ON s.pid = a.pid
 WHERE a.client_addr IS NOT NULL
"""

CLIENT_CONNECTIONS = """
SELECT CASE WHEN a.application_name ILIKE 'citus%' THEN 'citus' ELSE 'client' END,
       host(a.client_addr), coalesce(s.ssl, false), s.version, s.cipher
  FROM pg_catalog.pg_stat_activity a LEFT JOIN pg_catalog.pg_stat_ssl s ON s.pid = a.pid
 WHERE a.backend_type = 'client backend' AND a.client_addr IS NOT NULL AND a.pid <> pg_backend_pid()
"""

# pg_stat_replication has no ssl column (the seed's query fails): join pg_stat_ssl on pid.
REPLICATION_CONNECTIONS = """
SELECT r.application_name || ' ' || host(r.client_addr), coalesce(s.ssl, false), s.version, s.cipher
  FROM pg_catalog.pg_stat_replication r LEFT JOIN pg_catalog.pg_stat_ssl s ON s.pid = r.pid
 WHERE r.client_addr IS NOT NULL
"""


class CannotRun(Exception):
    """verify cannot do its job (exit 2); the message says what, where and the fix."""


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
    parser.add_argument("--mode", choices=MODES,
                        help="the sslmode the cluster must satisfy (default: the sslmode of this connection, "
                             "which inside a pod is the cluster's PGSSLMODE)")
    parser.add_argument("--ca", metavar="FILE",
                        help="CA certificate(s) the members' certificates must chain to (default: the "
                             "connection's sslrootcert)")
    parser.add_argument("--api-port", type=int, default=DEFAULT_API_PORT, metavar="PORT",
                        help=f"Patroni REST API port asked for the member list (default {DEFAULT_API_PORT})")
    parser.add_argument("--api-host", metavar="HOST",
                        help="host of the REST API asked for the member list (default: the connection's host)")
    parser.add_argument("--expiry-days", type=int, default=30, metavar="DAYS",
                        help="report certificates expiring within DAYS (default 30)")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="for each connection and handshake (default 5)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    output.add_argument("--prometheus", action="store_true",
                        help="print Prometheus text exposition (for node_exporter's textfile collector)")
    parser.add_argument("--install-view", action="store_true",
                        help="first create (or replace) the ssl_connections monitoring view on every primary")
    parser.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run verify as `args` say; print the report; return 0, 1 (findings) or 2 (cannot run)."""
    secrets: list = []
    try:
        obs = observe(args, secrets, err)
    except CannotRun as exc:
        print(f"patroni-citus-k8s verify: {scrub(str(exc), secrets)}", file=err)
        return EXIT_CANNOT_RUN
    from entrypoint import report

    findings = find(obs)
    if args.json:
        text = report.render_json(obs, findings)
    elif args.prometheus:
        text = report.render_prometheus(obs, findings)
    else:
        text = report.render_table(obs, findings)
    out.write(scrub(text, secrets))
    return exit_status(findings)


def observe(args: argparse.Namespace, secrets: list, err: TextIO) -> Observations:
    """Connect, discover and observe every member. Raises CannotRun."""
    _check_arguments(args)
    try:
        import psycopg
    except ImportError as exc:
        raise CannotRun("psycopg is not installed\n    fix: pip install 'patroni-citus-k8s[ops]'") from exc

    options = _connect_options(args.conninfo, args.timeout, secrets)
    try:
        seed = psycopg.connect(psycopg.conninfo.make_conninfo("", **options), autocommit=True)
    except psycopg.Error as exc:
        where = _target(options)
        raise CannotRun(f"cannot connect to {where}: {_one_line(exc)}\n    fix: check CONNINFO (or PGHOST, PGPORT, "
                        "PGUSER, PGPASSWORD, PGSSLMODE, PGSSLROOTCERT) and that the member is running") from exc
    with seed:
        effective = {o.keyword.decode(): o.val.decode() for o in seed.pgconn.info if o.val is not None}
        if effective.get("password"):
            secrets.append(effective["password"])
        seed_host = seed.info.host
        obs = Observations(
            observed_at=dt.datetime.now(dt.timezone.utc),
            mode=args.mode or effective.get("sslmode", "prefer"),
            mode_source="--mode" if args.mode else "the sslmode of this connection",
            expiry_days=args.expiry_days, target=_target(effective),
            ca_file=args.ca or _existing(effective.get("sslrootcert")))
        api_host = args.api_host or ("localhost" if seed_host.startswith("/") else seed_host)
        client = _client_cert(effective)
        obs.citus, members, obs.discovery_errors = discover(seed, api_host, args.api_port, client, args.timeout)
    if not members:
        port = int(effective.get("port") or 5432)
        members = [Member(name=f"{seed_host}:{port}", host=seed_host, port=port)]
    cas = _load_cas(obs.ca_file)
    if args.install_view:
        for member in members:
            if member.role in ("leader", "primary", "master"):  # a standby leader is read-only
                install_view(member, effective, args.timeout, secrets)
                print(f"patroni-citus-k8s verify: ssl_connections view created or replaced on {member.name} "
                      f"(database {effective.get('dbname')})", file=err)
    for member in members:
        observe_member(member, effective, obs.ca_file, cas, client, args.timeout, secrets)
    obs.members = members
    if all(m.sql_error is not None for m in members):
        errors = "; ".join(f"{m.name}: {m.sql_error}" for m in members)
        raise CannotRun(f"none of the {len(members)} member(s) could be queried ({errors})\n    fix: run verify "
                        "where the members' addresses resolve and are reachable (e.g. kubectl exec into a pod)")
    return obs


def _check_arguments(args: argparse.Namespace) -> None:
    problems = []
    if args.expiry_days < 0:
        problems.append(f"--expiry-days {args.expiry_days}: must be 0 or more (days before expiry to report)")
    if args.timeout <= 0:
        problems.append(f"--timeout {args.timeout}: must be more than 0 seconds")
    if not 0 < args.api_port < 65536:
        problems.append(f"--api-port {args.api_port}: must be a TCP port, 1 to 65535 (Patroni's default is 8008)")
    if args.ca is not None:
        try:
            _load_cas(args.ca)
        except CannotRun as exc:
            problems.append(str(exc))
    if problems:
        raise CannotRun("\n  ".join(["bad arguments:"] + problems))


def _connect_options(conninfo: str, timeout: float, secrets: list) -> dict:
    import psycopg

    try:
        options = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        # libpq quotes the offending fragment, which may be a password: leave it out.
        message = re.sub(r'"[^"]*"', '"…"', _one_line(exc))
        raise CannotRun(f"CONNINFO is not a libpq connection string or URI ({message})\n    fix: give "
                        "key=value pairs ('host=db-0 user=postgres sslmode=verify-full') or a "
                        "postgresql://user@host:5432/dbname?sslmode=verify-full URI") from exc
    if options.get("password"):
        secrets.append(str(options["password"]))
    if os.environ.get("PGPASSWORD"):
        secrets.append(os.environ["PGPASSWORD"])
    if "connect_timeout" not in options and not os.environ.get("PGCONNECT_TIMEOUT"):
        options["connect_timeout"] = str(max(2, round(timeout)))
    return options


def _target(options: dict) -> str:
    """The connection, for messages: where and as whom, never the password."""
    keys = ("host", "hostaddr", "port", "user", "dbname", "sslmode")
    shown = " ".join(f"{k}={options[k]}" for k in keys if options.get(k))
    return shown or "the libpq defaults (no CONNINFO, no PG* variables)"


def scrub(text: str, secrets: list) -> str:
    """Return `text` with every secret replaced by <redacted>."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or exc.__class__.__name__


def _existing(path: Optional[str]) -> Optional[str]:
    return path if path and os.path.isfile(path) else None


def _client_cert(effective: dict) -> Optional[ClientCert]:
    from entrypoint.probe_tls import ClientCert

    cert, key = _existing(effective.get("sslcert")), _existing(effective.get("sslkey"))
    return ClientCert(cert, key) if cert and key else None


def _load_cas(path: Optional[str]) -> list:
    if not path:
        return []
    from entrypoint.tls import load_certificates

    try:
        with open(path, "rb") as handle:
            return load_certificates(handle.read())
    except OSError as exc:
        raise CannotRun(f"--ca {path}: cannot read it ({exc.strerror}); give the CA certificate file") from exc
    except ValueError as exc:
        raise CannotRun(f"--ca {path}: holds no PEM certificate; give the CA's ca.crt") from exc


# --- discovery --------------------------------------------------------------------------------

def discover(seed, api_host: str, api_port: int, client: Optional[ClientCert], timeout: float) -> tuple:
    """Return (citus, members, errors): Patroni's members of the seed's group, and for Citus every group's."""
    errors: list = []
    members: list = []
    try:
        members = _cluster_members(api_host, api_port, client, timeout, group=None)
    except CannotRun as exc:
        errors.append(str(exc))
    citus = seed.execute("SELECT to_regclass('pg_catalog.pg_dist_node') IS NOT NULL").fetchone()[0]
    if not citus:
        return False, members, errors
    nodes = seed.execute("SELECT groupid, nodename, nodeport FROM pg_catalog.pg_dist_node "
                         "WHERE noderole = 'primary' ORDER BY groupid, nodename").fetchall()
    seed_group = list(members)  # /cluster lists one group: every member of the seed's shares its group
    for group, host, port in nodes:
        if any((m.host, m.port) == (host, port) for m in members):
            for member in seed_group:
                member.group = group if member.group is None else member.group
            continue
        try:
            members += _cluster_members(host, api_port, client, timeout, group=group)
        except CannotRun as exc:
            errors.append(str(exc))
            members.append(Member(name=f"{host}:{port}", host=host, port=port, group=group))
    return True, sorted(members, key=lambda m: (-1 if m.group is None else m.group, m.name)), errors


def _cluster_members(host: str, port: int, client: Optional[ClientCert], timeout: float,
                     group: Optional[int]) -> list:
    import urllib.parse

    body = api_get(host, port, "/cluster", client, timeout)
    members = []
    for item in body.get("members", []):
        api_url = item.get("api_url")
        member_host = item.get("host") or (urllib.parse.urlsplit(api_url).hostname if api_url else None)
        if not member_host:
            continue
        members.append(Member(name=item.get("name") or member_host, host=member_host, port=int(item.get("port") or 5432),
                              api_url=api_url, role=item.get("role"), state=item.get("state"), group=group))
    return members


def api_get(host: str, port: int, path: str, client: Optional[ClientCert], timeout: float) -> dict:
    """GET a Patroni REST API path over HTTPS, else HTTP; returns the JSON body, raises CannotRun.

    The chain is not checked here: this only finds the members, whose certificates the
    probes then judge one by one.
    """
    import json
    import ssl
    import urllib.error
    import urllib.request

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if client is not None:
        ctx.load_cert_chain(client.cert_file, client.key_file)
    last: Optional[BaseException] = None
    for scheme in ("https", "http"):
        url = f"{scheme}://{_url_host(host)}:{port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=ctx if scheme == "https" else None) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = exc
    reason = getattr(last, "reason", last)
    raise CannotRun(f"Patroni REST API at {host}:{port} did not answer {path} ({reason})")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# --- observing one member ---------------------------------------------------------------------

def member_conninfo(member: Member, effective: dict) -> str:
    """The seed connection's settings (credentials, sslmode, certificates), pointed at `member`."""
    import psycopg

    params = {k: v for k, v in effective.items() if k not in ("host", "hostaddr", "port")}
    params.update(host=member.host, port=str(member.port))
    return psycopg.conninfo.make_conninfo("", **params)


def observe_member(member: Member, effective: dict, ca_file: Optional[str], cas: list,
                   client: Optional[ClientCert], timeout: float, secrets: list) -> None:
    """Fill `member` with what its PostgreSQL reports and the certificates both its ports serve."""
    import urllib.parse

    import psycopg

    from entrypoint.probe_tls import (ProbeError, ServedCert, accepts_plaintext, describe_certificate, https_handshake,
                                      postgres_handshake)

    try:
        with psycopg.connect(member_conninfo(member, effective), autocommit=True) as conn:
            _query_member(conn, member)
    except psycopg.Error as exc:
        member.sql_error = scrub(_one_line(exc), secrets)
    # After the queries, so the probes' short-lived connections are not counted as clients.
    served = ServedCert("postgres", member.port, member.host)
    try:
        describe_certificate(served, postgres_handshake(member.host, member.port, ca_file, client, timeout), cas)
    except ProbeError as exc:
        served.error = str(exc)
    member.served.append(served)
    try:
        member.plaintext_accepted = accepts_plaintext(member.host, member.port, timeout)
    except ProbeError:
        pass  # the certificate probe above already says the port is unreachable
    if member.api_url:
        url = urllib.parse.urlsplit(member.api_url)
        api = ServedCert("restapi", url.port or DEFAULT_API_PORT, url.hostname or member.host)
        try:
            describe_certificate(api, https_handshake(api.host, api.port, ca_file, client, timeout), cas)
        except ProbeError as exc:
            api.error = str(exc)
        member.served.append(api)


def _query_member(conn, member: Member) -> None:
    from psycopg.conninfo import conninfo_to_dict

    ssl_on, min_version, in_recovery, node_conninfo = conn.execute(
        "SELECT current_setting('ssl'), current_setting('ssl_min_protocol_version'), pg_is_in_recovery(), "
        "current_setting('citus.node_conninfo', true)").fetchone()
    member.ssl, member.ssl_min_protocol_version = ssl_on, min_version
    if member.role is None:
        member.role = "replica" if in_recovery else "primary"
    for link, peer, encrypted, version, cipher in conn.execute(CLIENT_CONNECTIONS):
        member.connections.append(Connection(link, peer, bool(encrypted), version, cipher))
    for peer, encrypted, version, cipher in conn.execute(REPLICATION_CONNECTIONS):
        member.connections.append(Connection("replication", peer, bool(encrypted), version, cipher))
    receiver = conn.execute("SELECT conninfo FROM pg_catalog.pg_stat_wal_receiver").fetchone()
    if receiver and receiver[0]:
        member.link_modes["replication"] = _sslmode_of(receiver[0], conninfo_to_dict)
    if node_conninfo is not None:
        member.link_modes["citus"] = _sslmode_of(node_conninfo, conninfo_to_dict)


def _sslmode_of(conninfo: str, parse) -> Optional[str]:
    try:
        return parse(conninfo).get("sslmode") or "prefer"  # libpq's default when the string names none
    except Exception:  # noqa: BLE001 - an unparsable string is reported as unknown, not a crash
        return None


def install_view(member: Member, effective: dict, timeout: float, secrets: list) -> None:
    """Create or replace public.ssl_connections on `member` (a primary). Raises CannotRun."""
    import psycopg

    try:
        with psycopg.connect(member_conninfo(member, effective), autocommit=True) as conn:
            with conn.transaction():
                # With Citus, each node gets its own local view: nothing is propagated.
                if conn.execute("SELECT current_setting('citus.enable_ddl_propagation', true)").fetchone()[0]:
                    conn.execute("SET LOCAL citus.enable_ddl_propagation TO off")
                conn.execute(SSL_CONNECTIONS_VIEW)
    except psycopg.Error as exc:
        raise CannotRun(f"--install-view on {member.name} ({member.host}:{member.port}) failed: "
                        f"{scrub(_one_line(exc), secrets)}\n    fix: connect as a user allowed to create views in "
                        "the public schema (e.g. postgres), or drop a conflicting ssl_connections first") from exc
