"""THE default paths and Secret file names. The chart, the compose file and the Dockerfile repeat some of
them; tests/helm/test_chart_entrypoint_contract.py and tests/unit/test_contracts.py compare each copy with these."""

from __future__ import annotations

from typing import Tuple

# Where the certificate Secret is mounted, and the key names inside it.
CERT_DIR = "/etc/ssl/certs/postgresql"
CA_FILE = "ca.crt"
CERT_FILE = "server.crt"  # the seed's names
KEY_FILE = "server.key"
CM_CERT_FILE = "tls.crt"  # cert-manager's and kubernetes.io/tls names
CM_KEY_FILE = "tls.key"
CA_KEY_FILE = "ca.key"  # certs generate only; never mounted in a member
CRL_FILE = "ca.crl"  # optional: revoked certificates, signed by the CA

# The names a Secret may carry, ours first (the seed's), then cert-manager's.
CERT_NAMES: Tuple[str, ...] = (CERT_FILE, CM_CERT_FILE)
KEY_NAMES: Tuple[str, ...] = (KEY_FILE, CM_KEY_FILE)
CA_NAMES: Tuple[str, ...] = (CA_FILE,)

# The runtime directory: staged copies, pgpass and the rendered configuration.
RUNTIME_DIR = "/run/patroni-citus-k8s"
STAGED_TLS_DIR = "tls"
CONFIG_FILE_NAME = "patroni.yml"
POOLER_INI_NAME = "pgbouncer.ini"  # the pooler's PgBouncer configuration, in its runtime dir
PGPASS_FILE_NAME = "pgpass"

SOCKET_DIR = "/var/run/postgresql"
DATA_DIR = "/var/lib/postgresql/data/pgdata"
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin/postgres"
RUN_AS = "postgres"
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
CLUSTER_DOMAIN = "cluster.local"

POSTGRES_PORT = 5432
RESTAPI_PORT = 8008
