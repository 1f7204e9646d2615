"""The SQL that lets PgBouncer authenticate clients without holding their passwords: a role and a lookup function.

Created by `patroni-citus-k8s pooler setup`, idempotently, in template1 and every database
that allows connections on the coordinator primary (PgBouncer 1.18 runs auth_query in the
database a client asks for). The function is SECURITY DEFINER, owned by the superuser
that runs setup, executable by the pooler's role only, and returns no row for superusers,
replication roles, roles that cannot log in or whose password has expired: those are
refused by the pooler as unknown (connect to PostgreSQL directly for them).
"""

from __future__ import annotations

from typing import List

SCHEMA = "pgbouncer"
FUNCTION = f"{SCHEMA}.user_lookup"

# RETURNS TABLE, not a single record: no matching role is no row, which PgBouncer treats as
# an unknown user (a failed login), not as a configuration error that drops its connection.
LOOKUP = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}(i_username text)
RETURNS TABLE (uname text, phash text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT rolname::text, rolpassword
      FROM pg_catalog.pg_authid
     WHERE rolname = i_username AND rolcanlogin AND NOT rolsuper AND NOT rolreplication
       AND (rolvaliduntil IS NULL OR rolvaliduntil > now())
$$
"""

# What PgBouncer runs (auth_query), with the client's user name as $1.
AUTH_QUERY = f"SELECT uname, phash FROM {FUNCTION}($1)"


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A quoted SQL string literal (standard_conforming_strings is on from PostgreSQL 9.1)."""
    return "'" + text.replace("'", "''") + "'"


def role_statements(role: str, verifier: str) -> List[str]:
    """Create or update the auth_user role; `verifier` is its SCRAM secret, computed by the client (never the
    password in clear, which a statement log would keep)."""
    q = ident(role)
    return [f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {literal(role)}) THEN "
            f"CREATE ROLE {q} LOGIN; END IF; END $$",
            f"ALTER ROLE {q} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
            f"PASSWORD {literal(verifier)} VALID UNTIL 'infinity'"]


def database_statements(role: str) -> List[str]:
    """The schema and the lookup function in one database; the role may use the schema and call the function only."""
    q = ident(role)
    return [f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
            f"REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC",
            f"GRANT USAGE ON SCHEMA {SCHEMA} TO {q}",
            LOOKUP,
            f"REVOKE ALL ON FUNCTION {FUNCTION}(text) FROM PUBLIC",
            f"GRANT EXECUTE ON FUNCTION {FUNCTION}(text) TO {q}"]


# The databases setup visits: template1 (so databases created later have the lookup) and
# every database clients may connect to; template0 never allows connections.
DATABASES = ("SELECT datname FROM pg_catalog.pg_database WHERE datallowconn OR datname = 'template1' "
             "ORDER BY datname = 'template1' DESC, datname")
PRIMARY_AND_SUPERUSER = ("SELECT pg_catalog.pg_is_in_recovery(), "
                         "(SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)")
HAS_CITUS = "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus')"
