"""Parse every input once (environment values and a few host facts) into one frozen Settings.

One parser per section, each `(env, facts, bad) -> frozen section`; `parse_settings`
calls them in order and raises one InputError listing every problem. Nothing here reads
os.environ or the disk: the command-line edge passes both in.
"""

from __future__ import annotations

import ipaddress
import os.path
import socket
from dataclasses import dataclass, field, replace
from typing import Mapping, Optional

from entrypoint import layout, sslmode
from entrypoint.boot.environ import Env, host_problem, unknown_variables
from entrypoint.errors import Collector
from entrypoint.sslmode import Mode

EXPIRY_WARN_DAYS = 30
MAX_EXPIRY_WARN_DAYS = 3650
WATCH_INTERVAL = 1.0
MIN_WATCH_INTERVAL = 0.2  # below this the watcher would burn CPU for nothing (polls cost a stat per file)
MAX_WATCH_INTERVAL = 3600.0
MAX_CITUS_GROUP = 10000


@dataclass(frozen=True)
class PatroniFile:
    """One of Patroni's own TLS file variables: what it holds and what it goes with.

    Patroni reads these itself. When they point at files the run user cannot read (a
    root-owned Secret mount), the entrypoint checks them like PGSSL*, stages re-encoded
    private copies and points the variable at the copy in the environment Patroni inherits.
    """

    var: str
    role: str  # "ca", "cert" or "key"
    partner: Optional[str] = None  # the key of a certificate, the certificate of a key
    password_var: Optional[str] = None  # Patroni's passphrase variable for an encrypted key


def _patroni_files() -> tuple:
    out = []
    for section, cert, key, password in (("ETCD3", "CERT", "KEY", "KEY_PASSWORD"),
                                         ("ETCD", "CERT", "KEY", "KEY_PASSWORD"),
                                         ("CONSUL", "CERT", "KEY", None),
                                         ("ZOOKEEPER", "CERT", "KEY", "KEY_PASSWORD"),
                                         ("RESTAPI", "CERTFILE", "KEYFILE", "KEYFILE_PASSWORD"),
                                         ("CTL", "CERTFILE", "KEYFILE", "KEYFILE_PASSWORD")):
        p = f"PATRONI_{section}_"
        ca = p + ("CAFILE" if section == "RESTAPI" else "CACERT")
        out += [PatroniFile(ca, "ca"), PatroniFile(p + cert, "cert", p + key),
                PatroniFile(p + key, "key", p + cert, p + password if password else None)]
    return tuple(out)


PATRONI_TLS_FILES = _patroni_files()
PATRONI_TLS_FILE_VARS = tuple(f.var for f in PATRONI_TLS_FILES)


@dataclass(frozen=True)
class HostFacts:
    """What the command-line edge looked up on the host, so parsing itself stays pure."""

    cert_dir_entries: frozenset = frozenset()  # file names present in the cert directory
    pg_bin_dir: Optional[str] = None  # newest /usr/lib/postgresql/*/bin, when found
    key_password_file_content: Optional[str] = None  # read from PGSSLKEY_PASSWORD_FILE
    key_password_file_error: Optional[str] = None  # why it could not be read
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
class TlsFiles:
    """Where this node's certificate, key and CA are, and Patroni's own TLS file variables."""

    cert_file: str
    key_file: str
    ca_file: str
    cert_explicit: bool  # set by PGSSLCERT, so a missing file is an error even in prefer
    key_explicit: bool
    ca_explicit: bool
    cert_present: bool  # a certificate file is expected to be there
    key_password_vars: tuple = ()  # PGSSLKEY_PASSWORD and/or _FILE, when given (disable ignores them)
    crl_file: Optional[str] = None  # PGSSLCRL, else ca.crl when the Secret carries one: revocation on
    crl_explicit: bool = False
    crl_later: Optional[str] = None  # where a ca.crl added to the Secret later would appear (takes a restart)
    key_password_file: Optional[str] = None  # PGSSLKEY_PASSWORD_FILE: read with the key, so rotation re-reads it
    patroni_files: Mapping[str, str] = field(default_factory=dict)  # Patroni TLS file variable -> path
    patroni_passwords: Mapping[str, str] = field(default_factory=dict)  # its passphrase variables -> value


@dataclass(frozen=True)
class MutualTls:
    """Client certificates between members (PCK_CLIENT_CERT_AUTH) and the pair presented."""

    enabled: bool
    cert_file: Optional[str]  # a separate client pair; None means the server pair
    key_file: Optional[str]
    restapi_verify_client: Optional[str] = None  # Patroni's own PATRONI_RESTAPI_VERIFY_CLIENT, when set


@dataclass(frozen=True)
class Paths:
    runtime_dir: str
    config_file: str
    socket_dir: str
    data_dir: str
    bin_dir: Optional[str]
    run_as: str


@dataclass(frozen=True)
class Identity:
    scope: str
    name: str
    namespace: Optional[str]


@dataclass(frozen=True)
class Addresses:
    listen: Address
    listen_host: str
    connect: Address
    connect_derived: bool  # derived from the Kubernetes pod name, not given
    restapi_listen: str
    restapi_connect: Address


@dataclass(frozen=True)
class Users:
    superuser: User
    replication: User
    rewind: Optional[User]
    restapi: Optional[User] = None  # Patroni's REST API basic auth (PATRONI_RESTAPI_USERNAME/_PASSWORD), if any


@dataclass(frozen=True)
class Citus:
    group: int
    database: str


@dataclass(frozen=True)
class Tuning:
    tls_min_version: str
    expiry_warn_days: int
    watch_interval: float  # seconds between looks at the certificate directory; 0 turns the watcher off
    tls_upgrade: bool = False  # PCK_TLS_UPGRADE: peers may serve no TLS yet (a rolling change of PGSSLMODE)


@dataclass(frozen=True)
class Settings:
    """Every input the pipeline uses, parsed and checked for consistency, by section."""

    mode: Mode
    tls: TlsFiles
    key_password: Optional[str]
    mtls: MutualTls
    paths: Paths
    identity: Identity
    addresses: Addresses
    users: Users
    citus: Optional[Citus]
    tuning: Tuning
    # (variable, Address) pairs the certificate must cover at verify-full; empty: a member's connect
    # addresses. A pooler names its Service here (parse_settings' `served_names`); an Address of None
    # stands for a name not given (the pooler reports that itself).
    served_names: tuple = ()

    # The sslmode of this member's own client links (replication, rewind, superuser, Citus):
    # the mode itself, or `prefer` while a rolling change to TLS is under way (PCK_TLS_UPGRADE)
    # and a peer may still serve none; the watcher tightens it once every peer does.
    link_mode: Optional[Mode] = None

    @property
    def links(self) -> Mode:
        return self.link_mode or self.mode

    @property
    def transitional(self) -> bool:
        return self.links is not self.mode

    def tightened(self) -> "Settings":
        """These settings with every client link at the mode itself."""
        return replace(self, link_mode=None)

    @property
    def server_ssl(self) -> bool:
        """PostgreSQL's `ssl` setting: on when required, or when allowed and certificates exist."""
        return self.mode.server_ssl == "on" or (self.mode.server_ssl == "if-certs" and self.tls.cert_present)


def config_file_path(values: Mapping[str, str], bad: Optional[Collector] = None) -> str:
    """Where `run` writes Patroni's YAML (and `probe` reads it): PCK_CONFIG_FILE, else in the runtime dir."""
    env = Env(values, bad or Collector())
    runtime_dir = env.path("PCK_RUNTIME_DIR", layout.RUNTIME_DIR)
    return env.path("PCK_CONFIG_FILE", os.path.join(runtime_dir, layout.CONFIG_FILE_NAME))


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


def parse_settings(values: Mapping[str, str], facts: HostFacts = HostFacts(), *, require_passwords: bool = True,
                   served_names: tuple = ()) -> Settings:
    """Parse the environment into Settings.

    Returns the Settings; raises InputError listing every problem found. A pooler, which
    runs no Patroni, passes `require_passwords=False` (the Patroni passwords are not its
    inputs) and `served_names`, the (variable, Address) pairs its certificate must cover.
    """
    bad = Collector()
    env = Env(values, bad)
    unknown_variables(values, bad)
    given_mode = _mode(env, bad)  # None when PGSSLMODE is not a mode (already a problem)
    mode = given_mode or sslmode.get(sslmode.DEFAULT)
    tls = _tls_files(env, facts, bad)
    key_password = _key_password(env, facts, bad) if mode.uses_tls else None  # disable reads no TLS file
    mtls = _mutual_tls(env, given_mode, bad)
    tuning = _tuning(env, bad)
    paths = _paths(env, facts, bad)
    identity = _identity(env, facts, bad)
    addresses = _addresses(env, mode, identity, bad)
    users = _users(env, bad, require_passwords)
    citus = _citus(env, bad)
    _check_socket_path(bad, paths, addresses)
    if given_mode is not None:
        _check_patroni_agrees(bad, env, given_mode, mtls.enabled)
    link_mode = _link_mode(bad, mode, mtls, tuning)
    bad.raise_if_any()
    return Settings(mode=mode, tls=tls, key_password=key_password, mtls=mtls, paths=paths, identity=identity,
                    addresses=addresses, users=users, citus=citus, tuning=tuning, link_mode=link_mode,
                    served_names=tuple(served_names))


def _link_mode(bad: Collector, mode: Mode, mtls: MutualTls, tuning: Tuning) -> Optional[Mode]:
    """`prefer` for the member's own client links during a rolling change to a mode that refuses plaintext."""
    if not (tuning.tls_upgrade and mode.requires_tls):
        return None
    if mtls.enabled:
        bad.add("PCK_TLS_UPGRADE", "cannot go with PCK_CLIENT_CERT_AUTH=true: members that still run without TLS "
                                   "have no client certificate, so the new ones would refuse them",
                "turn TLS on first (this mode, without mutual TLS), then mutual TLS in a second rolling update")
        return None
    return sslmode.get("prefer")


UNIX_SOCKET_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1: PostgreSQL refuses a longer socket path


def _check_socket_path(bad: Collector, paths: Paths, addresses: Addresses) -> None:
    socket = os.path.join(paths.socket_dir, f".s.PGSQL.{addresses.listen.port}")
    if len(socket.encode()) > UNIX_SOCKET_PATH_MAX:
        bad.add("PCK_SOCKET_DIR", f"the socket path {socket} is {len(socket.encode())} bytes, more than a Unix socket "
                                  f"path may be ({UNIX_SOCKET_PATH_MAX}): PostgreSQL would refuse to start",
                f"use a shorter directory, such as {layout.SOCKET_DIR}")


def _mode(env: Env, bad: Collector) -> Optional[Mode]:
    name = env.word("PGSSLMODE", sslmode.DEFAULT)
    mode = sslmode.parse(name)
    if mode is None:
        bad.add("PGSSLMODE", f"unknown mode {name!r}", f"use one of: {', '.join(sslmode.NAMES)}")
    return mode


def _default_file(cert_dir: str, names: tuple, entries: frozenset) -> str:
    for name in names:
        if name in entries:
            return os.path.join(cert_dir, name)
    return os.path.join(cert_dir, names[0])


def _tls_files(env: Env, facts: HostFacts, bad: Collector) -> TlsFiles:
    cert_dir = env.path("PCK_CERT_DIR", layout.CERT_DIR)
    entries = facts.cert_dir_entries
    cert_file = env.path("PGSSLCERT", _default_file(cert_dir, layout.CERT_NAMES, entries))
    key_file = env.path("PGSSLKEY", _default_file(cert_dir, layout.KEY_NAMES, entries))
    ca_file = env.path("PGSSLROOTCERT", _default_file(cert_dir, layout.CA_NAMES, entries))
    default_crl = os.path.join(cert_dir, layout.CRL_FILE) if layout.CRL_FILE in entries else None
    crl_file = env.optional_path("PGSSLCRL") or default_crl
    if env.given("PGSSLCRLDIR"):
        bad.add("PGSSLCRLDIR", "is not supported: Citus's node_conninfo accepts sslcrl, not sslcrldir, so a CRL "
                               "directory could not reach every link", "put the CRLs in one PEM file and set PGSSLCRL")
    return TlsFiles(
        cert_file=cert_file, key_file=key_file, ca_file=ca_file, crl_file=crl_file,
        crl_explicit=env.given("PGSSLCRL"),
        crl_later=None if crl_file else os.path.join(cert_dir, layout.CRL_FILE),
        cert_explicit=env.given("PGSSLCERT"), key_explicit=env.given("PGSSLKEY"),
        ca_explicit=env.given("PGSSLROOTCERT"),
        cert_present=env.given("PGSSLCERT") or os.path.basename(cert_file) in entries,
        key_password_vars=tuple(v for v in ("PGSSLKEY_PASSWORD", "PGSSLKEY_PASSWORD_FILE") if env.given(v)),
        key_password_file=env.get("PGSSLKEY_PASSWORD_FILE") or None,
        patroni_files={var: path for var in PATRONI_TLS_FILE_VARS for path in [env.optional_path(var)] if path},
        patroni_passwords={f.password_var: env.get(f.password_var) for f in PATRONI_TLS_FILES
                           if f.password_var and env.given(f.password_var)})


def _key_password(env: Env, facts: HostFacts, bad: Collector) -> Optional[str]:
    if env.given("PGSSLKEY_PASSWORD") and env.given("PGSSLKEY_PASSWORD_FILE"):
        bad.add("PGSSLKEY_PASSWORD", "both PGSSLKEY_PASSWORD and PGSSLKEY_PASSWORD_FILE are set",
                "set only one of them")
        return None
    if env.given("PGSSLKEY_PASSWORD_FILE"):
        if facts.key_password_file_content is None:
            bad.add("PGSSLKEY_PASSWORD_FILE", f"{env.get('PGSSLKEY_PASSWORD_FILE')}: "
                                              f"{facts.key_password_file_error or 'cannot be read'}",
                    "mount the passphrase as a regular file (a Secret key) readable by the user the container "
                    "starts as")
            return None
        return facts.key_password_file_content.rstrip("\r\n")
    return env.get("PGSSLKEY_PASSWORD") or None


def _mutual_tls(env: Env, mode: Optional[Mode], bad: Collector) -> MutualTls:
    enabled = env.boolean("PCK_CLIENT_CERT_AUTH", False)
    cert_file = env.optional_path("PCK_CLIENT_CERT")
    key_file = env.optional_path("PCK_CLIENT_KEY")
    if bool(cert_file) != bool(key_file):
        bad.add("PCK_CLIENT_CERT" if key_file else "PCK_CLIENT_KEY",
                "a client certificate needs both PCK_CLIENT_CERT and PCK_CLIENT_KEY",
                "set both, or neither to use the server certificate as the client certificate")
    if enabled and mode is not None and not mode.requires_tls:
        bad.add("PCK_CLIENT_CERT_AUTH", f"mutual TLS needs TLS on every link, but PGSSLMODE is {mode.name!r}",
                f"set PGSSLMODE to {', '.join(sslmode.with_tls_required()[:-1])} or "
                f"{sslmode.with_tls_required()[-1]}, or PCK_CLIENT_CERT_AUTH=false")
    return MutualTls(enabled=enabled, cert_file=cert_file, key_file=key_file,
                     restapi_verify_client=env.word("PATRONI_RESTAPI_VERIFY_CLIENT") or None)


def _tuning(env: Env, bad: Collector) -> Tuning:
    tls_min_version = env.word("PCK_TLS_MIN_VERSION", sslmode.DEFAULT_TLS_VERSION)
    if tls_min_version not in sslmode.TLS_VERSIONS:
        bad.add("PCK_TLS_MIN_VERSION", f"unsupported value {tls_min_version!r}",
                f"use {' or '.join(sslmode.TLS_VERSIONS)}; older protocols are not offered")
        tls_min_version = sslmode.DEFAULT_TLS_VERSION
    return Tuning(tls_min_version=tls_min_version,
                  expiry_warn_days=env.integer("PCK_EXPIRY_WARN_DAYS", EXPIRY_WARN_DAYS, 0, MAX_EXPIRY_WARN_DAYS),
                  watch_interval=env.seconds("PCK_CERT_WATCH_INTERVAL", WATCH_INTERVAL, MIN_WATCH_INTERVAL,
                                             MAX_WATCH_INTERVAL, off=0.0),
                  tls_upgrade=env.boolean("PCK_TLS_UPGRADE", False))


def _paths(env: Env, facts: HostFacts, bad: Collector) -> Paths:
    runtime_dir = env.path("PCK_RUNTIME_DIR", layout.RUNTIME_DIR)
    config_file = env.path("PCK_CONFIG_FILE", os.path.join(runtime_dir, layout.CONFIG_FILE_NAME))
    return Paths(runtime_dir=runtime_dir, config_file=config_file,
                 socket_dir=env.path("PCK_SOCKET_DIR", layout.SOCKET_DIR),
                 data_dir=env.path("PATRONI_POSTGRESQL_DATA_DIR", layout.DATA_DIR),
                 bin_dir=env.optional_path("PATRONI_POSTGRESQL_BIN_DIR") or facts.pg_bin_dir,
                 run_as=env.name("PCK_RUN_AS", layout.RUN_AS))


def _identity(env: Env, facts: HostFacts, bad: Collector) -> Identity:
    scope = env.text("PATRONI_SCOPE")
    if not scope:
        bad.add("PATRONI_SCOPE", "not set", "set it to the cluster name, e.g. PATRONI_SCOPE=citusdemo")
    name = env.text("PATRONI_NAME")
    if not name:
        bad.add("PATRONI_NAME", "not set",
                "set it to the member name; on Kubernetes use the pod name (fieldRef metadata.name)")
    namespace = env.text("PATRONI_KUBERNETES_NAMESPACE") or env.text("POD_NAMESPACE") or facts.service_account_namespace
    return Identity(scope=scope, name=name, namespace=namespace)


def _first_listen_host(listen: str) -> str:
    """`host:port` for the first host of Patroni's `h1,h2:port` listen form (the port follows the last host)."""
    hosts, sep, port = listen.strip().rpartition(":")
    if not sep:
        return listen.strip()
    return f"{hosts.split(',')[0].strip()}:{port}"


def _is_wildcard(host: str) -> bool:
    return host in ("*", "0.0.0.0", "::", "")


def _address(env: Env, name: str, text: str, example: str, hosts: Optional[str] = None) -> Optional[Address]:
    """`text` parsed as host:port with a host that is safe to hand to libpq and Patroni; None (and a Problem) if not.

    A problem quotes the variable's value as given, not `text` (which may be rewritten from it).
    """
    if env.bad.has(name):
        return None  # already refused as text (control characters, not UTF-8)
    address = parse_address(text)
    problem = host_problem(address.host) if address else "it is not host:port"
    for host in (hosts.split(",") if hosts else ()):
        problem = problem or host_problem(host.strip().strip("[]"))
    if problem or address is None:
        env.bad.add(name, f"{env.text(name, text)!r}: {problem}", f"use e.g. {example}")
        return None
    return address


def _addresses(env: Env, mode: Mode, identity: Identity, bad: Collector) -> Addresses:
    listen_text = env.text("PATRONI_POSTGRESQL_LISTEN", f"*:{layout.POSTGRES_PORT}")
    hosts = listen_text.strip().rpartition(":")[0]
    listen = _address(env, "PATRONI_POSTGRESQL_LISTEN", _first_listen_host(listen_text).replace("*", "0.0.0.0", 1),
                      "*:5432 or 0.0.0.0:5432", hosts=hosts.replace("*", "0.0.0.0"))
    listen = listen or Address("0.0.0.0", layout.POSTGRES_PORT)
    connect, derived = _connect_address(env, mode, identity, listen, bad)
    restapi_listen = env.text("PATRONI_RESTAPI_LISTEN", f"0.0.0.0:{layout.RESTAPI_PORT}")
    restapi_listen_addr = _address(env, "PATRONI_RESTAPI_LISTEN", restapi_listen.replace("*", "0.0.0.0", 1),
                                   "0.0.0.0:8008") or Address("0.0.0.0", layout.RESTAPI_PORT)
    _check_ports_apart(bad, hosts or listen.host, listen.port,
                       Address(restapi_listen.strip().rpartition(":")[0] or "*", restapi_listen_addr.port))
    restapi_connect = Address(connect.host, restapi_listen_addr.port)
    if env.given("PATRONI_RESTAPI_CONNECT_ADDRESS"):
        restapi_connect = _address(env, "PATRONI_RESTAPI_CONNECT_ADDRESS", env.text("PATRONI_RESTAPI_CONNECT_ADDRESS"),
                                   "citusdemo-0-0.citusdemo.default.svc.cluster.local:8008") or restapi_connect
    return Addresses(listen=listen, listen_host=hosts or "*", connect=connect, connect_derived=derived,
                     restapi_listen=restapi_listen, restapi_connect=restapi_connect)


def _check_ports_apart(bad: Collector, pg_hosts: str, pg_port: int, restapi: Address) -> None:
    """PostgreSQL and the REST API cannot both bind one port on overlapping addresses."""
    if pg_port != restapi.port or bad.has("PATRONI_POSTGRESQL_LISTEN") or bad.has("PATRONI_RESTAPI_LISTEN"):
        return
    rest = _bound(restapi.host, postgres=False)
    if any(_overlap(_bound(host, postgres=True), rest) for host in pg_hosts.split(",")):
        bad.add("PATRONI_RESTAPI_LISTEN", f"port {pg_port} is also PostgreSQL's (PATRONI_POSTGRESQL_LISTEN): "
                                          "whichever starts second could not bind it",
                f"give the REST API its own port, e.g. PATRONI_RESTAPI_LISTEN=0.0.0.0:{layout.RESTAPI_PORT}")


ANY_V4, ANY_V6 = "any IPv4", "any IPv6"


def _bound(host: str, postgres: bool) -> frozenset:
    """What a listen host binds: addresses, a wildcard of a family, or (a name not resolved here) the name.

    `*` is both families for both servers. `::` is IPv6 only for PostgreSQL (it sets
    IPV6_V6ONLY) and dual-stack for Patroni's REST API (Linux's default).
    """
    host = host.strip().strip("[]").lower()
    if host in ("", "*"):
        return frozenset({ANY_V4, ANY_V6})
    if host == "localhost":
        return frozenset({ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")})
    address = _ip(host)
    if address is None:
        return frozenset({host})
    if address.is_unspecified:
        if address.version == 4:
            return frozenset({ANY_V4})
        return frozenset({ANY_V6}) if postgres else frozenset({ANY_V6, ANY_V4})
    return frozenset({address})


def _ip(host: str) -> Optional[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))  # 127.1, as getaddrinfo reads it
    except OSError:
        return None


def _overlap(a: frozenset, b: frozenset) -> bool:
    if a & b:
        return True
    for one, other in ((a, b), (b, a)):
        if ANY_V4 in one and any(isinstance(x, ipaddress.IPv4Address) for x in other):
            return True
        if ANY_V6 in one and any(isinstance(x, ipaddress.IPv6Address) for x in other):
            return True
    return False


def _connect_address(env: Env, mode: Mode, identity: Identity, listen: Address, bad: Collector) -> tuple:
    """Returns (Address, derived): given, derived from the pod's DNS name, or the specific listen address."""
    if env.given("PATRONI_POSTGRESQL_CONNECT_ADDRESS"):
        connect = _address(env, "PATRONI_POSTGRESQL_CONNECT_ADDRESS", env.text("PATRONI_POSTGRESQL_CONNECT_ADDRESS"),
                           "citusdemo-0-0.citusdemo.default.svc.cluster.local:5432 (the name peers reach this "
                           "node by)")
        return connect or Address("unknown", listen.port), False
    if env.given("KUBERNETES_SERVICE_HOST") and identity.name:
        service = env.text("PCK_HEADLESS_SERVICE") or identity.scope
        domain = env.text("PCK_CLUSTER_DOMAIN", layout.CLUSTER_DOMAIN).strip(".")
        if identity.namespace is None:
            bad.add("PATRONI_KUBERNETES_NAMESPACE", "the pod's namespace is unknown, so its DNS name cannot be derived",
                    "set PATRONI_KUBERNETES_NAMESPACE from the downward API (fieldRef metadata.namespace)")
        host = f"{identity.name}.{service}.{identity.namespace or 'default'}.svc.{domain}"
        problem = host_problem(host)
        if problem:
            bad.add("PATRONI_NAME", f"the DNS name {host!r} derived from it (with PCK_HEADLESS_SERVICE, the namespace "
                                    f"and PCK_CLUSTER_DOMAIN) is not usable: {problem}",
                    "use the pod name, a plain DNS label, and set PATRONI_POSTGRESQL_CONNECT_ADDRESS if needed")
        return Address(host, listen.port), True
    if not _is_wildcard(listen.host):
        return listen, False
    bad.add("PATRONI_POSTGRESQL_CONNECT_ADDRESS",
            "not set, and no name can be derived (not a Kubernetes pod, and PATRONI_POSTGRESQL_LISTEN is a wildcard)",
            "set it to host:port with the name peers use to reach this node"
            + (" and that the certificate's SANs cover" if mode.verifies_host else ""))
    return Address("unknown", listen.port), False


def _users(env: Env, bad: Collector, require_passwords: bool = True) -> Users:
    superuser = User(env.name("PATRONI_SUPERUSER_USERNAME", "postgres"), env.get("PATRONI_SUPERUSER_PASSWORD") or None)
    replication = User(env.name("PATRONI_REPLICATION_USERNAME", "replicator"),
                       env.get("PATRONI_REPLICATION_PASSWORD") or None)
    for var, user in (("PATRONI_SUPERUSER_PASSWORD", superuser), ("PATRONI_REPLICATION_PASSWORD", replication)):
        if require_passwords and not user.password and not bad.has(var):
            bad.add(var, "not set", f"set a password for the {user.username!r} role (from a Kubernetes Secret)")
    rewind = None
    if env.given("PATRONI_REWIND_USERNAME"):
        rewind = User(env.name("PATRONI_REWIND_USERNAME", "rewind_user"), env.get("PATRONI_REWIND_PASSWORD") or None)
        if not rewind.password:
            bad.add("PATRONI_REWIND_PASSWORD", "PATRONI_REWIND_USERNAME is set but its password is not",
                    "set PATRONI_REWIND_PASSWORD, or unset PATRONI_REWIND_USERNAME to rewind as the superuser")
    restapi = None
    if env.given("PATRONI_RESTAPI_USERNAME"):
        restapi = User(env.text("PATRONI_RESTAPI_USERNAME"), env.get("PATRONI_RESTAPI_PASSWORD") or None)
    return Users(superuser=superuser, replication=replication, rewind=rewind, restapi=restapi)


def _citus(env: Env, bad: Collector) -> Optional[Citus]:
    database = env.name("PATRONI_CITUS_DATABASE", "") or None if env.given("PATRONI_CITUS_DATABASE") else None
    if env.given("PATRONI_CITUS_GROUP"):
        group = env.integer("PATRONI_CITUS_GROUP", 0, 0, MAX_CITUS_GROUP)
        if database is None:
            bad.add("PATRONI_CITUS_DATABASE", "PATRONI_CITUS_GROUP is set but the Citus database is not",
                    "set PATRONI_CITUS_DATABASE, e.g. citus")
            return None
        return Citus(group=group, database=database)
    if database:
        bad.add("PATRONI_CITUS_GROUP", "PATRONI_CITUS_DATABASE is set but the group is not",
                "set PATRONI_CITUS_GROUP: 0 for the coordinator, 1.. for workers")
    return None


def _check_patroni_agrees(bad: Collector, env: Env, mode: Mode, mtls: bool) -> None:
    """Patroni's own variables override the YAML; refuse ones that would silently undo the TLS mode."""
    for role in ("SUPERUSER", "REPLICATION", "REWIND"):
        var = f"PATRONI_{role}_SSLMODE"
        if env.given(var) and env.word(var) != mode.name:
            bad.add(var, f"says {env.get(var)!r} but PGSSLMODE={mode} needs sslmode={mode} on every internal link",
                    f"unset {var}; PGSSLMODE sets the mode of every internal link")
        for suffix, instead in (("SSLROOTCERT", "PGSSLROOTCERT"), ("SSLCERT", "PCK_CLIENT_CERT"),
                                ("SSLKEY", "PCK_CLIENT_KEY")):
            var = f"PATRONI_{role}_{suffix}"
            if env.given(var):
                bad.add(var, "would override the staged copy the entrypoint renders for this link "
                             "(and may point at a file the postgres user cannot read)",
                        f"unset {var}; set {instead} once for every internal link")
    verify_client = env.word("PATRONI_RESTAPI_VERIFY_CLIENT")
    if verify_client and verify_client not in ("none", "optional", "required"):
        bad.add("PATRONI_RESTAPI_VERIFY_CLIENT", f"{verify_client!r} is not none, optional or required",
                "unset it; PCK_CLIENT_CERT_AUTH=true turns on client certificates everywhere")
    elif verify_client and mtls and verify_client != "required":
        bad.add("PATRONI_RESTAPI_VERIFY_CLIENT",
                f"says {verify_client!r} but PCK_CLIENT_CERT_AUTH=true needs 'required'",
                "unset PATRONI_RESTAPI_VERIFY_CLIENT")
    if env.boolean("PATRONI_CTL_INSECURE", False) and mode.verifies_host:
        bad.add("PATRONI_CTL_INSECURE", "turns off certificate checks of the REST API, but PGSSLMODE=verify-full",
                "unset PATRONI_CTL_INSECURE")
