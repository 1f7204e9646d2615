"""The SQL that lets PgBouncer authenticate clients without holding their passwords: a role and a lookup function.

Created in every database of the coordinator (PgBouncer runs auth_query in the database a
client asks for), idempotently, by `patroni-citus-k8s pooler setup`. The function is
SECURITY DEFINER, owned by the superuser, executable by the pooler's role only, and never
returns superusers or replication roles (connect to those directly, not through the pooler).
"""

from __future__ import annotations

from typing import List

SCHEMA = "pgbouncer"

LOOKUP = """
CREATE OR REPLACE FUNCTION pgbouncer.user_lookup(i_username text, OUT uname text, OUT phash text)
RETURNS record LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT rolname::text, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END
      FROM pg_catalog.pg_authid
     WHERE rolname = i_username AND rolcanlogin AND NOT rolsuper AND NOT rolreplication
$$
"""


def role_statements(role: str) -> List[str]:
    """Create or update the auth_user role (its password is set with a bound parameter by the caller)."""
    q = '"' + role.replace('"', '""') + '"'
    return [f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{role}') THEN "
            f"CREATE ROLE {q} LOGIN; END IF; END $$",
            f"ALTER ROLE {q} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"]


def database_statements(role: str) -> List[str]:
    """The schema and the lookup function in one database."""
    q = '"' + role.replace('"', '""') + '"'
    return [f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
            f"REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC",
            f"GRANT USAGE ON SCHEMA {SCHEMA} TO {q}",
            LOOKUP,
            f"REVOKE ALL ON FUNCTION {SCHEMA}.user_lookup(text) FROM PUBLIC",
            f"GRANT EXECUTE ON FUNCTION {SCHEMA}.user_lookup(text) TO {q}"]
