"""Render pgbouncer.ini (and its auth file) from the checked TLS settings and the pooler's: both legs at PGSSLMODE.

Pure: Settings, the staged paths and PoolerSettings in, text out. The ini holds no secret
(the auth file holds the auth_user's password and is written 0600 beside it).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from entrypoint.boot.settings import Settings
from entrypoint.boot.stage import StagedPaths
from entrypoint.pooler.settings import PoolerSettings
from entrypoint.pooler.sql import AUTH_QUERY

# server_tls_sslmode per PGSSLMODE. PgBouncer 1.18 documents its `allow` as unimplemented
# ("FIXME"), so allow asks for TLS first, as prefer does; everything else is the same word.
SERVER_MODES = {"disable": "disable", "allow": "prefer", "prefer": "prefer", "require": "require",
                "verify-ca": "verify-ca", "verify-full": "verify-full"}
PROTOCOLS = {"TLSv1.2": "tlsv1.2,tlsv1.3", "TLSv1.3": "tlsv1.3"}


def client_leg(settings: Settings, paths: StagedPaths) -> Dict[str, str]:
    """Clients -> PgBouncer: plaintext refused from require up; client certificates demanded under mutual TLS."""
    if not (settings.server_ssl and paths.server_cert and paths.server_key):
        return {"client_tls_sslmode": "disable"}
    if settings.mtls.enabled:
        mode = "verify-ca"  # as the members' pg_hba: clientcert=verify-ca
    else:
        mode = "require" if settings.mode.requires_tls else "prefer"
    out = {"client_tls_sslmode": mode, "client_tls_cert_file": paths.server_cert,
           "client_tls_key_file": paths.server_key, "client_tls_protocols": PROTOCOLS[settings.tuning.tls_min_version]}
    if paths.ca:
        out["client_tls_ca_file"] = paths.ca
    return out


def server_leg(settings: Settings, paths: StagedPaths) -> Dict[str, str]:
    """PgBouncer -> the coordinator primary: the cluster's own mode, host name checked at verify-full."""
    out = {"server_tls_sslmode": SERVER_MODES[settings.mode.name]}
    if settings.mode.name == "disable":
        return out
    out["server_tls_protocols"] = PROTOCOLS[settings.tuning.tls_min_version]
    if settings.mode.verifies_ca and paths.ca:
        out["server_tls_ca_file"] = paths.ca
    if settings.mtls.enabled and paths.client_cert and paths.client_key:
        out["server_tls_cert_file"] = paths.client_cert
        out["server_tls_key_file"] = paths.client_key
    return out


def pgbouncer_sections(settings: Settings, paths: StagedPaths, pooler: PoolerSettings,
                       auth_file: str) -> List[Tuple[str, Dict[str, str]]]:
    """The ini as sections of key/value pairs, in the order they are written."""
    target = f"host={pooler.target.host} port={pooler.target.port}"
    main: Dict[str, str] = {
        "listen_addr": pooler.listen.host,
        "listen_port": str(pooler.listen.port),
        "unix_socket_dir": "",  # TCP only: nothing written outside the runtime dir (read-only root filesystem)
        "auth_type": "scram-sha-256",
        "auth_file": auth_file,
        "auth_user": pooler.auth_user,
        # SCRAM pass-through: the lookup returns the role's SCRAM secret, never a password in clear.
        "auth_query": AUTH_QUERY,
        "stats_users": pooler.auth_user,
        "pool_mode": pooler.pool_mode,
        "max_client_conn": str(pooler.max_client_conn),
        "default_pool_size": str(pooler.default_pool_size),
        "ignore_startup_parameters": "extra_float_digits",
        # After a failed server login PgBouncer waits this long before the next attempt (default 15 s):
        # during a failover the Service has no primary for a moment, and clients should not wait 15 s more.
        "server_login_retry": "1",
    }
    main.update(client_leg(settings, paths))
    main.update(server_leg(settings, paths))
    return [("databases", {"*": target}), ("pgbouncer", main)]


def render_ini(sections: List[Tuple[str, Dict[str, str]]]) -> str:
    """The ini text. Values were validated upstream (no newlines, no control characters); a bad one is a bug."""
    lines = ["; rendered by patroni-citus-k8s pooler from the environment and the certificate directory: do not edit"]
    for name, values in sections:
        lines += ["", f"[{name}]"]
        for key, value in values.items():
            if "\n" in value or "\r" in value:
                raise ValueError(f"{key}: a value with a line break cannot be written to pgbouncer.ini")
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def auth_file_text(pooler: PoolerSettings) -> str:
    """PgBouncer's auth file: the auth_user's own password, the one line it needs (quotes doubled)."""
    def quoted(text: str) -> str:
        return '"' + text.replace('"', '""') + '"'
    return f"{quoted(pooler.auth_user)} {quoted(pooler.auth_password or '')}\n"
