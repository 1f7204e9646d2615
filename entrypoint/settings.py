"""Parse every input once (environment values and a few host facts) into one frozen Settings."""

from __future__ import annotations

import os.path
from dataclasses import dataclass, field
from typing import Mapping, Optional

from entrypoint.errors import Collector

MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")
DEFAULT_CERT_DIR = "/etc/ssl/certs/postgresql"
DEFAULT_RUNTIME_DIR = "/run/patroni-citus-k8s"
DEFAULT_SOCKET_DIR = "/var/run/postgresql"
DEFAULT_DATA_DIR = "/var/lib/postgresql/data/pgdata"

# The file names a Secret may carry: ours first (the seed's), then cert-manager's.
CERT_NAMES = ("server.crt", "tls.crt")
KEY_NAMES = ("server.key", "tls.key")
CA_NAMES = ("ca.crt",)

# Patroni reads these TLS file variables itself. When they point at files the run user
# cannot read (a root-owned Secret mount), we stage private copies and point the
# variable at the copy in the environment Patroni inherits.
PATRONI_TLS_FILE_VARS = (
    "PATRONI_ETCD3_CACERT", "PATRONI_ETCD3_CERT", "PATRONI_ETCD3_KEY",
    "PATRONI_ETCD_CACERT", "PATRONI_ETCD_CERT", "PATRONI_ETCD_KEY",
    "PATRONI_RESTAPI_CERTFILE", "PATRONI_RESTAPI_KEYFILE", "PATRONI_RESTAPI_CAFILE",
    "PATRONI_CTL_CACERT", "PATRONI_CTL_CERTFILE", "PATRONI_CTL_KEYFILE",
)

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class HostFacts:
    """What the command-line edge looked up on the host, so parsing itself stays pure."""

    cert_dir_entries: frozenset = frozenset()  # file names present in the cert directory
    euid: int = 0
    pg_bin_dir: Optional[str] = None  # newest /usr/lib/postgresql/*/bin, when found
    key_password_file_content: Optional[str] = None  # read from PGSSLKEY_PASSWORD_FILE
    service_account_namespace: Optional[str] = None  # the pod's namespace, from its service account mount


@dataclass(frozen=True)
class Address:
    """A host and port, as in `PATRONI_POSTGRESQL_CONNECT_ADDRESS=host:port`."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class User:
    username: str
    password: Optional[str]


@dataclass(frozen=True)
class Settings:
    """Every input the pipeline uses, parsed and checked for consistency."""

    mode: str
    cert_file: str
    key_file: str
    ca_file: str
    cert_explicit: bool  # set by PGSSLCERT, so a missing file is an error even in prefer
    key_explicit: bool
    ca_explicit: bool
    cert_present: bool  # a certificate file is expected to be there
    key_password: Optional[str]
    client_cert_auth: bool
    client_cert_file: Optional[str]  # separate client certificate for mutual TLS, if any
    client_key_file: Optional[str]
    tls_min_version: str
    expiry_warn_days: int
    runtime_dir: str
    config_file: str
    run_as: str
    socket_dir: str
    scope: str
    name: str
    namespace: Optional[str]
    listen: Address
    listen_host: str
    connect: Address
    connect_derived: bool  # derived from the Kubernetes pod name, not given
    restapi_listen: str
    restapi_connect: Address
    data_dir: str
    bin_dir: Optional[str]
    superuser: User
    replication: User
    rewind: Optional[User]
    citus_group: Optional[int]
    citus_database: Optional[str]
    restapi_verify_client: Optional[str] = None  # Patroni's own PATRONI_RESTAPI_VERIFY_CLIENT, when set
    watch_interval: float = 1.0  # seconds between looks at the certificate directory; 0 turns the watcher off
    patroni_tls_files: Mapping[str, str] = field(default_factory=dict)

    @property
    def tls_wanted(self) -> bool:
        """True when the server must (require and up) or may (allow, prefer) use TLS."""
        return self.mode != "disable"

    @property
    def tls_required(self) -> bool:
        return self.mode in ("require", "verify-ca", "verify-full")

    @property
    def server_ssl(self) -> bool:
        """PostgreSQL's `ssl` setting: on when required, or when allowed and certificates exist."""
        return self.tls_required or (self.tls_wanted and self.cert_present)

    @property
    def verifies_ca(self) -> bool:
        return self.mode in ("verify-ca", "verify-full")

    @property
    def is_citus(self) -> bool:
        return self.citus_group is not None


def config_file_path(env: Mapping[str, str]) -> str:
    """Where `run` writes Patroni's YAML (and `probe` reads it): PCK_CONFIG_FILE, else in the runtime dir."""
    runtime_dir = env.get("PCK_RUNTIME_DIR", DEFAULT_RUNTIME_DIR).rstrip("/") or "/"
    return env.get("PCK_CONFIG_FILE") or os.path.join(runtime_dir, "patroni.yml")


def parse_bool(value: str) -> Optional[bool]:
    """Return True/False for the usual spellings, None for anything else ("false" is False)."""
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def parse_address(value: str) -> Optional[Address]:
    """Parse `host:port` or `[v6]:port`; None when it is not that shape."""
    value = value.strip()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            return None
        port_text = rest[1:]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            return None
    if not host or not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        return None
    return Address(host, int(port_text))


def _first_listen_host(listen: str) -> str:
    """`host:port` for the first host of Patroni's `h1,h2:port` listen form (the port follows the last host)."""
    hosts, sep, port = listen.strip().rpartition(":")
    if not sep:
        return listen.strip()
    return f"{hosts.split(',')[0].strip()}:{port}"


def _is_wildcard(host: str) -> bool:
    return host in ("*", "0.0.0.0", "::", "")


def _default_file(cert_dir: str, names: tuple, entries: frozenset) -> str:
    for name in names:
        if name in entries:
            return os.path.join(cert_dir, name)
    return os.path.join(cert_dir, names[0])


def parse_settings(env: Mapping[str, str], facts: HostFacts = HostFacts()) -> Settings:
    """Parse the environment into Settings.

    Returns the Settings; raises InputError listing every problem found.
    """
    bad = Collector()

    def get(name: str, default: str = "") -> str:
        return env.get(name, default)

    mode = get("PGSSLMODE", "prefer").strip() or "prefer"
    if mode not in MODES:
        bad.add("PGSSLMODE", f"unknown mode {mode!r}",
                f"use one of: {', '.join(MODES)}")

    cert_dir = get("PCK_CERT_DIR", DEFAULT_CERT_DIR).rstrip("/") or "/"
    entries = facts.cert_dir_entries
    cert_file = get("PGSSLCERT") or _default_file(cert_dir, CERT_NAMES, entries)
    key_file = get("PGSSLKEY") or _default_file(cert_dir, KEY_NAMES, entries)
    ca_file = get("PGSSLROOTCERT") or _default_file(cert_dir, CA_NAMES, entries)
    for var, path in (("PGSSLCERT", cert_file), ("PGSSLKEY", key_file), ("PGSSLROOTCERT", ca_file)):
        if not os.path.isabs(path):
            bad.add(var, f"{path!r} is not an absolute path", "give the full path of the file inside the container")
    cert_present = bool(get("PGSSLCERT")) or os.path.basename(cert_file) in entries

    key_password = get("PGSSLKEY_PASSWORD") or None
    if get("PGSSLKEY_PASSWORD") and get("PGSSLKEY_PASSWORD_FILE"):
        bad.add("PGSSLKEY_PASSWORD", "both PGSSLKEY_PASSWORD and PGSSLKEY_PASSWORD_FILE are set",
                "set only one of them")
    elif get("PGSSLKEY_PASSWORD_FILE"):
        if facts.key_password_file_content is None:
            bad.add("PGSSLKEY_PASSWORD_FILE", f"cannot read {get('PGSSLKEY_PASSWORD_FILE')!r}",
                    "mount the file and make it readable by the user the container starts as")
        else:
            key_password = facts.key_password_file_content.rstrip("\r\n")

    client_cert_auth = _bool(bad, env, "PCK_CLIENT_CERT_AUTH", False)
    client_cert_file = get("PCK_CLIENT_CERT") or None
    client_key_file = get("PCK_CLIENT_KEY") or None
    if bool(client_cert_file) != bool(client_key_file):
        bad.add("PCK_CLIENT_CERT" if client_key_file else "PCK_CLIENT_KEY",
                "a client certificate needs both PCK_CLIENT_CERT and PCK_CLIENT_KEY",
                "set both, or neither to use the server certificate as the client certificate")
    if client_cert_auth and mode in MODES and mode not in ("require", "verify-ca", "verify-full"):
        bad.add("PCK_CLIENT_CERT_AUTH", f"mutual TLS needs TLS on every link, but PGSSLMODE is {mode!r}",
                "set PGSSLMODE to require, verify-ca or verify-full, or PCK_CLIENT_CERT_AUTH=false")

    tls_min_version = get("PCK_TLS_MIN_VERSION", "TLSv1.2")
    if tls_min_version not in TLS_VERSIONS:
        bad.add("PCK_TLS_MIN_VERSION", f"unsupported value {tls_min_version!r}",
                f"use {' or '.join(TLS_VERSIONS)}; older protocols are not offered")
    expiry_warn_days = _int(bad, env, "PCK_EXPIRY_WARN_DAYS", 30)
    watch_interval = _seconds(bad, env, "PCK_CERT_WATCH_INTERVAL", 1.0)

    runtime_dir = get("PCK_RUNTIME_DIR", DEFAULT_RUNTIME_DIR).rstrip("/") or "/"
    config_file = config_file_path(env)
    socket_dir = get("PCK_SOCKET_DIR", DEFAULT_SOCKET_DIR)
    for var, path in (("PCK_RUNTIME_DIR", runtime_dir), ("PCK_CONFIG_FILE", config_file),
                      ("PCK_SOCKET_DIR", socket_dir)):
        if not os.path.isabs(path):
            bad.add(var, f"{path!r} is not an absolute path", "give an absolute path")
    run_as = get("PCK_RUN_AS", "postgres")

    scope = get("PATRONI_SCOPE")
    if not scope:
        bad.add("PATRONI_SCOPE", "not set", "set it to the cluster name, e.g. PATRONI_SCOPE=citusdemo")
    name = get("PATRONI_NAME")
    if not name:
        bad.add("PATRONI_NAME", "not set",
                "set it to the member name; on Kubernetes use the pod name (fieldRef metadata.name)")
    namespace = get("PATRONI_KUBERNETES_NAMESPACE") or get("POD_NAMESPACE") or facts.service_account_namespace
    on_kubernetes = bool(get("KUBERNETES_SERVICE_HOST"))

    listen_text = get("PATRONI_POSTGRESQL_LISTEN", "*:5432")
    listen = parse_address(_first_listen_host(listen_text).replace("*", "0.0.0.0", 1)) if listen_text else None
    if listen is None:
        bad.add("PATRONI_POSTGRESQL_LISTEN", f"{listen_text!r} is not host:port",
                "use e.g. *:5432 or 0.0.0.0:5432")
        listen = Address("0.0.0.0", 5432)
    listen_host = listen_text.strip().rpartition(":")[0] or "*"

    connect_derived = False
    connect_text = get("PATRONI_POSTGRESQL_CONNECT_ADDRESS")
    connect: Optional[Address] = None
    if connect_text:
        connect = parse_address(connect_text)
        if connect is None:
            bad.add("PATRONI_POSTGRESQL_CONNECT_ADDRESS", f"{connect_text!r} is not host:port",
                    "use the name peers reach this node by, e.g. citusdemo-0-0.citusdemo.default.svc.cluster.local:5432")
    elif on_kubernetes and name:
        service = get("PCK_HEADLESS_SERVICE") or scope
        domain = get("PCK_CLUSTER_DOMAIN", "cluster.local").strip(".")
        if namespace is None:
            bad.add("PATRONI_KUBERNETES_NAMESPACE", "the pod's namespace is unknown, so its DNS name cannot be derived",
                    "set PATRONI_KUBERNETES_NAMESPACE from the downward API (fieldRef metadata.namespace)")
        connect = Address(f"{name}.{service}.{namespace or 'default'}.svc.{domain}", listen.port)
        connect_derived = True
    elif not _is_wildcard(listen.host):
        connect = listen
    else:
        bad.add("PATRONI_POSTGRESQL_CONNECT_ADDRESS",
                "not set, and no name can be derived (not a Kubernetes pod, and PATRONI_POSTGRESQL_LISTEN is a wildcard)",
                "set it to host:port with the name peers use to reach this node"
                + (" and that the certificate's SANs cover" if mode == "verify-full" else ""))
    if connect is None:
        connect = Address("unknown", listen.port)

    restapi_listen = get("PATRONI_RESTAPI_LISTEN", "0.0.0.0:8008")
    restapi_listen_addr = parse_address(restapi_listen.replace("*", "0.0.0.0", 1))
    if restapi_listen_addr is None:
        bad.add("PATRONI_RESTAPI_LISTEN", f"{restapi_listen!r} is not host:port", "use e.g. 0.0.0.0:8008")
        restapi_listen_addr = Address("0.0.0.0", 8008)
    restapi_connect_text = get("PATRONI_RESTAPI_CONNECT_ADDRESS")
    restapi_connect = parse_address(restapi_connect_text) if restapi_connect_text else \
        Address(connect.host, restapi_listen_addr.port)
    if restapi_connect is None:
        bad.add("PATRONI_RESTAPI_CONNECT_ADDRESS", f"{restapi_connect_text!r} is not host:port",
                "use the name peers reach the REST API by, e.g. citusdemo-0-0.citusdemo.default.svc.cluster.local:8008")
        restapi_connect = Address(connect.host, restapi_listen_addr.port)

    superuser = User(get("PATRONI_SUPERUSER_USERNAME", "postgres"), get("PATRONI_SUPERUSER_PASSWORD") or None)
    replication = User(get("PATRONI_REPLICATION_USERNAME", "replicator"), get("PATRONI_REPLICATION_PASSWORD") or None)
    for var, user in (("PATRONI_SUPERUSER_PASSWORD", superuser), ("PATRONI_REPLICATION_PASSWORD", replication)):
        if not user.password:
            bad.add(var, "not set", f"set a password for the {user.username!r} role (from a Kubernetes Secret)")
    rewind = None
    if get("PATRONI_REWIND_USERNAME"):
        rewind = User(get("PATRONI_REWIND_USERNAME"), get("PATRONI_REWIND_PASSWORD") or None)
        if not rewind.password:
            bad.add("PATRONI_REWIND_PASSWORD", "PATRONI_REWIND_USERNAME is set but its password is not",
                    "set PATRONI_REWIND_PASSWORD, or unset PATRONI_REWIND_USERNAME to rewind as the superuser")

    citus_group: Optional[int] = None
    citus_database = get("PATRONI_CITUS_DATABASE") or None
    if get("PATRONI_CITUS_GROUP"):
        citus_group = _int(bad, env, "PATRONI_CITUS_GROUP", 0)
        if citus_database is None:
            bad.add("PATRONI_CITUS_DATABASE", "PATRONI_CITUS_GROUP is set but the Citus database is not",
                    "set PATRONI_CITUS_DATABASE, e.g. citus")
    elif citus_database:
        bad.add("PATRONI_CITUS_GROUP", "PATRONI_CITUS_DATABASE is set but the group is not",
                "set PATRONI_CITUS_GROUP: 0 for the coordinator, 1.. for workers")

    _check_patroni_agrees(bad, env, mode, client_cert_auth)

    patroni_tls_files = {var: env[var] for var in PATRONI_TLS_FILE_VARS if env.get(var)}

    bad.raise_if_any()
    return Settings(
        mode=mode, cert_file=cert_file, key_file=key_file, ca_file=ca_file,
        cert_explicit=bool(get("PGSSLCERT")), key_explicit=bool(get("PGSSLKEY")),
        ca_explicit=bool(get("PGSSLROOTCERT")), cert_present=cert_present,
        key_password=key_password, client_cert_auth=bool(client_cert_auth),
        client_cert_file=client_cert_file, client_key_file=client_key_file,
        tls_min_version=tls_min_version, expiry_warn_days=expiry_warn_days,
        runtime_dir=runtime_dir, config_file=config_file, run_as=run_as, socket_dir=socket_dir,
        scope=scope, name=name, namespace=namespace, listen=listen, listen_host=listen_host,
        connect=connect, connect_derived=connect_derived,
        restapi_listen=restapi_listen, restapi_connect=restapi_connect,
        data_dir=get("PATRONI_POSTGRESQL_DATA_DIR", DEFAULT_DATA_DIR),
        bin_dir=get("PATRONI_POSTGRESQL_BIN_DIR") or facts.pg_bin_dir,
        superuser=superuser, replication=replication, rewind=rewind,
        citus_group=citus_group, citus_database=citus_database,
        watch_interval=watch_interval, patroni_tls_files=patroni_tls_files,
        restapi_verify_client=get("PATRONI_RESTAPI_VERIFY_CLIENT") or None,
    )


def _check_patroni_agrees(bad: Collector, env: Mapping[str, str], mode: str, mtls: Optional[bool]) -> None:
    """Patroni's own variables override the YAML; refuse ones that would silently undo the TLS mode."""
    if mode not in MODES:
        return
    for role in ("SUPERUSER", "REPLICATION", "REWIND"):
        var = f"PATRONI_{role}_SSLMODE"
        if env.get(var) and env[var] != mode:
            bad.add(var, f"says {env[var]!r} but PGSSLMODE={mode} needs sslmode={mode} on every internal link",
                    f"unset {var}; PGSSLMODE sets the mode of every internal link")
        for suffix, instead in (("SSLROOTCERT", "PGSSLROOTCERT"), ("SSLCERT", "PCK_CLIENT_CERT"),
                                ("SSLKEY", "PCK_CLIENT_KEY")):
            var = f"PATRONI_{role}_{suffix}"
            if env.get(var):
                bad.add(var, "would override the staged copy the entrypoint renders for this link "
                             "(and may point at a file the postgres user cannot read)",
                        f"unset {var}; set {instead} once for every internal link")
    verify_client = env.get("PATRONI_RESTAPI_VERIFY_CLIENT")
    if verify_client and verify_client not in ("none", "optional", "required"):
        bad.add("PATRONI_RESTAPI_VERIFY_CLIENT", f"{verify_client!r} is not none, optional or required",
                "unset it; PCK_CLIENT_CERT_AUTH=true turns on client certificates everywhere")
    elif verify_client and mtls and verify_client != "required":
        bad.add("PATRONI_RESTAPI_VERIFY_CLIENT", f"says {verify_client!r} but PCK_CLIENT_CERT_AUTH=true needs 'required'",
                "unset PATRONI_RESTAPI_VERIFY_CLIENT")
    insecure = env.get("PATRONI_CTL_INSECURE")
    if insecure and parse_bool(insecure) and mode == "verify-full":
        bad.add("PATRONI_CTL_INSECURE", "turns off certificate checks of the REST API, but PGSSLMODE=verify-full",
                "unset PATRONI_CTL_INSECURE")


def _bool(bad: Collector, env: Mapping[str, str], name: str, default: bool) -> Optional[bool]:
    if name not in env:
        return default
    value = parse_bool(env[name])
    if value is None:
        bad.add(name, f"{env[name]!r} is not a boolean", "use true or false")
    return value


def _seconds(bad: Collector, env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        bad.add(name, f"{text!r} is not a number of seconds between 0 and 3600",
                f"use e.g. {default:g}, or 0 to turn certificate watching off")
        return default
    return value


def _int(bad: Collector, env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        bad.add(name, f"{text!r} is not a whole number", f"use a number such as {default}")
        return default
    if value < 0:
        bad.add(name, f"{value} is negative", f"use a number such as {default}")
    return value
