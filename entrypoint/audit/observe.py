"""Connect to a running cluster and observe it: discover members, query each, probe both of its ports."""

from __future__ import annotations

import copy
import datetime as dt
import os
import re
import threading
import time
import urllib.parse
from typing import Callable, List, Optional, TextIO, Tuple

from entrypoint import layout
from entrypoint.audit import sql
from entrypoint.audit.discover import discover
from entrypoint.audit.model import Connection, Member, MountedSecret, Observations, ServedCert
from entrypoint.audit.options import VerifyOptions
from entrypoint.audit.probes import (
    ClientCert,
    ProbeError,
    accepts_plaintext,
    describe_certificate,
    https_handshake,
    postgres_handshake,
)
from entrypoint.audit.redact import Redactor
from entrypoint.audit.revocation import Revocation, default_crl, explicit_crl, mark
from entrypoint.audit.secret import cert_info, read_secret, secret_dir_usable
from entrypoint.errors import InputError, Problem

COMMAND = "patroni-citus-k8s verify"
OUTCOME = "nothing was checked"
CONNINFO_FIX = ("check CONNINFO (or PGHOST, PGPORT, PGUSER, PGPASSWORD, PGSSLMODE, PGSSLROOTCERT) and that the "
                "member is running")


def cannot_run(where: str, what: str, fix: str) -> InputError:
    return InputError([Problem(where, what, fix)], COMMAND, OUTCOME)


def preflight(options: VerifyOptions) -> Tuple[list, Revocation]:
    """Every Problem with the flags and the files they name, before anything connects; returns the --ca
    certificates and the --crl CRLs."""
    problems = options.problems()
    cas = _load_cas(options.ca, problems) if options.ca is not None else []
    crls = explicit_crl(options.crl, problems)
    if options.secret_dir is not None and options.secret_dir.strip():
        why = secret_dir_usable(options.secret_dir)
        if why is not None:
            problems.append(Problem(f"--secret-dir {options.secret_dir}", why,
                                    "give the directory the certificate Secret is mounted at, holding "
                                    f"{' or '.join(layout.CERT_NAMES)} (and {layout.CA_FILE})"))
    if problems:
        raise InputError(problems, COMMAND, OUTCOME)
    return cas, crls


def observe(options: VerifyOptions, redactor: Redactor, err: TextIO, deadline: Optional[float] = None) -> Observations:
    """Connect, discover and observe every member, all within `deadline` (time.monotonic()). Raises InputError."""
    started = time.monotonic()
    deadline = started + options.budget if deadline is None else deadline
    cas, revocation = preflight(options)
    try:
        import psycopg
    except ImportError as exc:
        raise cannot_run("verify", "psycopg is not installed", "pip install 'patroni-citus-k8s[ops]'") from exc

    connect_options = _connect_options(options, redactor)
    try:
        seed = psycopg.connect(psycopg.conninfo.make_conninfo("", **connect_options), autocommit=True)
    except psycopg.Error as exc:
        raise cannot_run("CONNINFO", f"cannot connect to {_target(connect_options)}: {_one_line(exc)}",
                         CONNINFO_FIX) from exc
    with seed:
        effective = {o.keyword.decode(): o.val.decode() for o in seed.pgconn.info if o.val is not None}
        redactor.secret(effective.get("password"))
        redactor.shown(v for k, v in effective.items() if k != "password")
        obs = Observations(
            observed_at=dt.datetime.now(dt.timezone.utc),
            mode=options.mode or effective.get("sslmode", "prefer"),
            mode_source="--mode" if options.mode else "the sslmode of this connection",
            expiry_days=options.expiry_days, target=_target(effective),
            ca_file=options.ca or _existing(effective.get("sslrootcert")))
        api_host = options.api_host or ("localhost" if seed.info.host.startswith("/") else seed.info.host)
        client = _client_cert(effective)
        obs.citus, members, obs.discovery_errors = discover(seed, api_host, options.api_port, client,
                                                            options.timeout)
        seed_host = seed.info.host
    if not members:
        port = int(effective.get("port") or 5432)
        members = [Member(name=f"{seed_host}:{port}", host=seed_host, port=port)]
    if options.ca is None:
        cas = _load_cas(obs.ca_file, [])
    obs.cas = [cert_info(c) for c in cas]
    obs.secret = _mounted_secret(options)
    if options.install_view:
        _install_views(members, effective, options, redactor, err)
    observe_members(members, lambda m: observe_member(m, effective, obs.ca_file, cas, client, options.timeout,
                                                      redactor), deadline)
    poolers = _observe_poolers(options, effective, obs.ca_file, cas, client, redactor, deadline)
    obs.members = members + poolers
    if revocation.path is None:
        revocation = default_crl(_existing(effective.get("sslcrl")), options.secret_directory)
    mark(obs, revocation, cas)
    obs.duration = time.monotonic() - started
    if all(m.sql_error is not None for m in members):
        errors = "; ".join(f"{m.name}: {m.sql_error}" for m in members)
        raise cannot_run("verify", f"none of the {len(members)} member(s) could be queried ({errors})",
                         "run verify where the members' addresses resolve and are reachable "
                         "(e.g. kubectl exec into a pod)")
    return obs


def _observe_poolers(options: VerifyOptions, effective: dict, ca_file: Optional[str], cas: list,
                     client: Optional[ClientCert], redactor: Redactor, deadline: float) -> List[Member]:
    """The --pooler entries, observed like members (each in its own thread, within the same deadline)."""
    from entrypoint.audit import pooler

    poolers = pooler.pooler_members(options)
    if poolers:
        credentials = pooler.auth(redactor)
        observe_members(poolers, lambda m: pooler.observe_pooler(m, effective, ca_file, cas, client, options.timeout,
                                                                 redactor, credentials), deadline)
    return poolers


def observe_members(members: List[Member], look: Callable[[Member], None], deadline: float) -> None:
    """Run `look` on every member at once, each on its own copy in a daemon thread, until `deadline`.

    A member whose look has not finished by then (a hung PostgreSQL, a port that accepts
    and never answers) keeps what discovery knew and is reported as unreachable; the others
    are reported in full. The threads are daemons, so a hung one never keeps the process alive.
    """
    work: List[tuple] = [(member, copy.deepcopy(member), []) for member in members]
    threads = [threading.Thread(target=_look_safely, args=(look, scratch, failure), daemon=True,
                                name=f"observe {member.name}") for member, scratch, failure in work]
    for thread in threads:
        thread.start()
    for (member, scratch, failure), thread in zip(work, threads):
        thread.join(max(0.0, deadline - time.monotonic()))
        if failure:
            raise failure[0]
        if thread.is_alive():
            _timed_out(member)
        else:
            vars(member).update(vars(scratch))


def _look_safely(look: Callable[[Member], None], member: Member, failure: list) -> None:
    try:
        look(member)
    except Exception as exc:  # noqa: BLE001 - handed to the observing thread, which raises it (a bug)
        failure.append(exc)


def _timed_out(member: Member) -> None:
    what = "no answer before the observation's time was up (a hung member, or --timeout/--interval too short)"
    member.sql_error = what
    member.served = [ServedCert("postgres", member.port, member.host, error=what)]
    if member.api_url:
        url = urllib.parse.urlsplit(member.api_url)
        member.served.append(ServedCert("restapi", url.port or layout.RESTAPI_PORT, url.hostname or member.host,
                                        error=what))


def _mounted_secret(options: VerifyOptions) -> Optional[MountedSecret]:
    """The Secret at --secret-dir; at the default directory only when it exists (verify may run outside a pod)."""
    directory = options.secret_directory
    if options.secret_dir is None and not os.path.isdir(directory):
        return None
    return read_secret(directory)


def _install_views(members: List[Member], effective: dict, options: VerifyOptions, redactor: Redactor,
                   err: TextIO) -> None:
    for member in members:
        if member.role in ("leader", "primary", "master"):  # a standby leader is read-only
            install_view(member, effective, options.timeout, redactor)
            print(f"{COMMAND}: ssl_connections view created or replaced on {member.name} "
                  f"(database {effective.get('dbname')})", file=err)


def _connect_options(options: VerifyOptions, redactor: Redactor) -> dict:
    import psycopg

    try:
        params = psycopg.conninfo.conninfo_to_dict(options.conninfo)
    except psycopg.ProgrammingError as exc:
        # libpq quotes the offending fragment, which may be a password: leave it out.
        message = re.sub(r'"[^"]*"', '"…"', _one_line(exc))
        raise cannot_run("CONNINFO", f"is not a libpq connection string or URI ({message})",
                         "give key=value pairs ('host=db-0 user=postgres sslmode=verify-full') or a "
                         "postgresql://user@host:5432/dbname?sslmode=verify-full URI") from exc
    redactor.secret(params.get("password"))
    redactor.secret(os.environ.get("PGPASSWORD"))
    if "connect_timeout" not in params and not os.environ.get("PGCONNECT_TIMEOUT"):
        params["connect_timeout"] = str(max(2, round(options.timeout)))
    return params


def _target(params: dict) -> str:
    """The connection, for messages: where and as whom, never the password."""
    keys = ("host", "hostaddr", "port", "user", "dbname", "sslmode")
    shown = " ".join(f"{k}={params[k]}" for k in keys if params.get(k))
    return shown or "the libpq defaults (no CONNINFO, no PG* variables)"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or exc.__class__.__name__


def _existing(path: Optional[str]) -> Optional[str]:
    return path if path and os.path.isfile(path) else None


def _client_cert(effective: dict) -> Optional[ClientCert]:
    cert, key = _existing(effective.get("sslcert")), _existing(effective.get("sslkey"))
    return ClientCert(cert, key) if cert and key else None


def _load_cas(path: Optional[str], problems: List[Problem]) -> list:
    """The CA certificates in `path` ([] for none); a file that cannot be used becomes a Problem."""
    if not path:
        return []
    from entrypoint.pki import reader
    from entrypoint.pki.load import load_certificates

    try:
        return load_certificates(reader.read_file(path, reader.CA_BUNDLE))
    except OSError as exc:
        problems.append(Problem(f"--ca {path}", f"cannot read it ({reader.why(exc)})",
                                "give the CA certificate file (a regular PEM file)"))
    except ValueError:
        problems.append(Problem(f"--ca {path}", "holds no PEM certificate", "give the CA's ca.crt"))
    return []


def member_conninfo(member: Member, effective: dict) -> str:
    """The seed connection's settings (credentials, sslmode, certificates), pointed at `member`."""
    import psycopg

    params = {k: v for k, v in effective.items() if k not in ("host", "hostaddr", "port")}
    params.update(host=member.host, port=str(member.port))
    return psycopg.conninfo.make_conninfo("", **params)


def observe_member(member: Member, effective: dict, ca_file: Optional[str], cas: list,
                   client: Optional[ClientCert], timeout: float, redactor: Redactor) -> None:
    """Fill `member` with what its PostgreSQL reports and the certificates both its ports serve."""
    import psycopg

    try:
        with psycopg.connect(member_conninfo(member, effective), autocommit=True) as conn:
            _query_member(conn, member)
    except psycopg.Error as exc:
        member.sql_error = redactor.scrub(_one_line(exc))
    # After the queries, so the probes' short-lived connections are not counted as clients.
    member.served.append(_served(ServedCert("postgres", member.port, member.host),
                                 lambda s: postgres_handshake(s.host, s.port, ca_file, client, timeout), cas))
    try:
        member.plaintext_accepted = accepts_plaintext(member.host, member.port, timeout)
    except ProbeError:
        pass  # the certificate probe above already says the port is unreachable
    if member.api_url:
        url = urllib.parse.urlsplit(member.api_url)
        api = ServedCert("restapi", url.port or 8008, url.hostname or member.host)
        member.served.append(_served(api, lambda s: https_handshake(s.host, s.port, ca_file, client, timeout), cas))


def _served(served: ServedCert, shake, cas: list) -> ServedCert:
    try:
        describe_certificate(served, shake(served), cas)
    except ProbeError as exc:
        served.error = str(exc)
    return served


def _query_member(conn, member: Member) -> None:
    from psycopg.conninfo import conninfo_to_dict

    ssl_on, min_version, in_recovery, node_conninfo = conn.execute(sql.SETTINGS).fetchone()
    member.ssl, member.ssl_min_protocol_version = ssl_on, min_version
    if member.role is None:
        member.role = "replica" if in_recovery else "primary"
    for link, peer, encrypted, version, cipher, serial, issuer in conn.execute(sql.CLIENT_CONNECTIONS):
        member.connections.append(Connection(link, peer, bool(encrypted), version, cipher, _hex(serial), issuer))
    for peer, encrypted, version, cipher, serial, issuer in conn.execute(sql.REPLICATION_CONNECTIONS):
        member.connections.append(Connection("replication", peer, bool(encrypted), version, cipher, _hex(serial),
                                             issuer))
    receiver = conn.execute(sql.WAL_RECEIVER).fetchone()
    if receiver and receiver[0]:
        member.link_modes["replication"] = _sslmode_of(receiver[0], conninfo_to_dict)
    if node_conninfo is not None:
        member.link_modes["citus"] = _sslmode_of(node_conninfo, conninfo_to_dict)


def _hex(serial: Optional[str]) -> Optional[str]:
    """pg_stat_ssl.client_serial (a decimal numeric) in hex, as certificates' serials are shown."""
    return format(int(serial), "x") if serial else None


def _sslmode_of(conninfo: str, parse) -> Optional[str]:
    try:
        return parse(conninfo).get("sslmode") or "prefer"  # libpq's default when the string names none
    except Exception:  # noqa: BLE001 - an unparsable string is reported as unknown, not a crash
        return None


def install_view(member: Member, effective: dict, timeout: float, redactor: Redactor) -> None:
    """Create or replace public.ssl_connections on `member` (a primary). Raises InputError."""
    import psycopg

    try:
        with psycopg.connect(member_conninfo(member, effective), autocommit=True) as conn:
            with conn.transaction():
                # With Citus, each node gets its own local view: nothing is propagated.
                row = conn.execute(sql.DDL_PROPAGATION).fetchone()
                if row and row[0]:
                    conn.execute("SET LOCAL citus.enable_ddl_propagation TO off")
                conn.execute(sql.SSL_CONNECTIONS_VIEW)
    except psycopg.Error as exc:
        raise cannot_run("--install-view", f"on {member.name} ({member.host}:{member.port}) failed: "
                                           f"{redactor.scrub(_one_line(exc))}",
                         "connect as a user allowed to create views in the public schema (e.g. postgres), or "
                         "drop a conflicting ssl_connections first") from exc
