"""The TLS connection pooler (`pooler run|render|check`): PgBouncer in front of the coordinator, both legs at PGSSLMODE.

It reads the same environment and Secret as `run` and checks the certificates through the
same boot pipeline (so the pooler imports `boot`, the one product that may be imported by
another: one code path for what a member and a pooler accept), then renders pgbouncer.ini.
"""
