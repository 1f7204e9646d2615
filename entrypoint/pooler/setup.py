"""`pooler setup [CONNINFO]`: create or update the auth role and the lookup function on the coordinator primary.

Connects as a superuser with CONNINFO or libpq's PG* variables (as `verify` does). The
role gets its password as a SCRAM secret computed here (libpq's PQencryptPasswordConn),
so the password in clear never travels in a statement a log could keep. The schema and
function go into template1 and every database that allows connections, because PgBouncer
1.18 runs auth_query in the database the client asks for.

With Citus, DDL propagation is off for these statements: only the coordinator answers the
pooler, so each node keeps its own objects and workers get neither the role nor a
SECURITY DEFINER function they would never run. Replicas of the coordinator get them by
physical replication, so a failover keeps them. Running setup again changes nothing but
the password (to the one given).
"""

from __future__ import annotations

import re
import sys
from typing import List, Mapping, Optional

from entrypoint.errors import EXIT_OK, Collector, InputError, Problem
from entrypoint.pooler import sql
from entrypoint.pooler.plan import _password_file
from entrypoint.pooler.settings import parse_auth

COMMAND = "patroni-citus-k8s pooler setup"
OUTCOME = "nothing more was changed"
FIX = "check CONNINFO (or PGHOST, PGUSER, PGPASSWORD, PGSSLMODE, PGSSLROOTCERT): a superuser on the coordinator primary"


def _fail(where: str, what: str, fix: str = FIX) -> InputError:
    return InputError([Problem(where, what, fix)], COMMAND, OUTCOME)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _params(conninfo: str, timeout: float) -> dict:
    import psycopg

    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        raise _fail("CONNINFO", "is not a libpq connection string or URI (" + re.sub(r'"[^"]*"', '"…"', _one_line(exc))
                    + ")") from None
    params.setdefault("connect_timeout", str(max(2, round(timeout))))
    return params


def _connect(params: dict, dbname: Optional[str] = None):
    import psycopg

    if dbname is not None:
        params = {**params, "dbname": dbname}
    try:
        return psycopg.connect(psycopg.conninfo.make_conninfo("", **params), autocommit=True)
    except psycopg.Error as exc:
        where = "CONNINFO" if dbname is None else f"database {dbname}"
        raise _fail(where, f"cannot connect: {_one_line(exc)}") from None


def _no_propagation(conn) -> None:
    """Inside a transaction: with Citus, keep this session's DDL on this node."""
    if conn.execute(sql.HAS_CITUS).fetchone()[0]:
        conn.execute("SET LOCAL citus.enable_ddl_propagation TO off")


def _check_target(conn, role: str) -> None:
    in_recovery, superuser = conn.execute(sql.PRIMARY_AND_SUPERUSER).fetchone()
    if in_recovery:
        raise _fail("CONNINFO", f"{conn.info.host}:{conn.info.port} is a replica (in recovery)",
                    "connect to the coordinator primary (on Kubernetes its group Service, <scope>-0)")
    if not superuser:
        raise _fail("CONNINFO", f"{conn.info.user!r} is not a superuser",
                    "connect as a superuser (postgres): the lookup function reads pg_authid")
    row = conn.execute("SELECT rolsuper OR rolreplication FROM pg_catalog.pg_roles WHERE rolname = %s",
                       (role,)).fetchone()
    if row and row[0]:
        raise _fail("PCK_POOLER_AUTH_USER", f"{role!r} is a superuser or replication role",
                    "give the pooler a role of its own (default pgbouncer): setup would strip this one's rights")


def setup(conninfo: str, timeout: float, env: Mapping[str, str]) -> int:
    """Create or update everything; print one line per database; InputError (exit 2) when it cannot."""
    import psycopg

    bad = Collector()
    content, error = _password_file(env)
    role, password = parse_auth(env, bad, content, error)
    bad.raise_if_any(COMMAND, "nothing was changed")
    assert password is not None  # parse_auth reports a missing one
    params = _params(conninfo, timeout)
    with _connect(params) as conn:
        _check_target(conn, role)
        verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
        try:
            with conn.transaction():
                _no_propagation(conn)
                for statement in sql.role_statements(role, verifier):
                    conn.execute(statement)
            databases: List[str] = [row[0] for row in conn.execute(sql.DATABASES)]
        except psycopg.Error as exc:
            raise _fail(f"role {role}", f"could not be created or updated: {_one_line(exc)}") from None
    print(f"{COMMAND}: role {role} created or updated (SCRAM secret set)")
    for dbname in databases:
        with _connect(params, dbname) as conn:
            try:
                with conn.transaction():
                    _no_propagation(conn)
                    for statement in sql.database_statements(role):
                        conn.execute(statement)
            except psycopg.Error as exc:
                raise _fail(f"database {dbname}", f"the lookup function could not be created: {_one_line(exc)}") \
                    from None
        print(f"{COMMAND}: {dbname}: schema {sql.SCHEMA} and {sql.FUNCTION}(text) in place")
    sys.stdout.flush()
    return EXIT_OK
