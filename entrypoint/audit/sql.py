"""The SQL verify runs: the corrected monitoring view and the connection queries."""

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
       host(a.client_addr), coalesce(s.ssl, false), s.version, s.cipher, s.client_serial::text, s.issuer_dn
  FROM pg_catalog.pg_stat_activity a LEFT JOIN pg_catalog.pg_stat_ssl s ON s.pid = a.pid
 WHERE a.backend_type = 'client backend' AND a.client_addr IS NOT NULL AND a.pid <> pg_backend_pid()
"""

# pg_stat_replication has no ssl column (the seed's query fails): join pg_stat_ssl on pid.
REPLICATION_CONNECTIONS = """
SELECT r.application_name || ' ' || host(r.client_addr), coalesce(s.ssl, false), s.version, s.cipher,
       s.client_serial::text, s.issuer_dn
  FROM pg_catalog.pg_stat_replication r LEFT JOIN pg_catalog.pg_stat_ssl s ON s.pid = r.pid
 WHERE r.client_addr IS NOT NULL
"""

SETTINGS = ("SELECT current_setting('ssl'), current_setting('ssl_min_protocol_version'), pg_is_in_recovery(), "
            "current_setting('citus.node_conninfo', true)")
WAL_RECEIVER = "SELECT conninfo FROM pg_catalog.pg_stat_wal_receiver"
IS_CITUS = "SELECT to_regclass('pg_catalog.pg_dist_node') IS NOT NULL"
PRIMARY_NODES = ("SELECT groupid, nodename, nodeport FROM pg_catalog.pg_dist_node "
                 "WHERE noderole = 'primary' ORDER BY groupid, nodename")
DDL_PROPAGATION = "SELECT current_setting('citus.enable_ddl_propagation', true)"
