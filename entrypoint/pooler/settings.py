"""The pooler's own settings (PCK_POOLER_*): where it listens, where the primary is, how it authenticates, pools."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

from entrypoint import layout
from entrypoint.boot.environ import Env
from entrypoint.boot.settings import Address, parse_address
from entrypoint.errors import Collector

POOL_MODES = ("transaction", "session", "statement")
DEFAULT_PORT = 6432
DEFAULT_AUTH_USER = "pgbouncer"


@dataclass(frozen=True)
class PoolerSettings:
    listen: Address
    target: Address  # the coordinator primary: on Kubernetes its group Service, which Patroni points at it
    service: Optional[Address]  # the name clients reach the pooler by (its certificate must cover it at verify-full)
    auth_user: str
    auth_password: Optional[str]
    pool_mode: str
    max_client_conn: int
    default_pool_size: int


def parse_pooler(values: Mapping[str, str], bad: Collector, password_file: Optional[str] = None,
                 password_file_error: Optional[str] = None) -> PoolerSettings:
    """The PCK_POOLER_* variables; problems go to `bad`. `password_file` is PCK_POOLER_AUTH_PASSWORD_FILE's content
    (read by the command-line edge through the safe reader), `password_file_error` why it could not be read."""
    env = Env(values, bad)
    listen = _address(env, "PCK_POOLER_LISTEN", f"0.0.0.0:{DEFAULT_PORT}")
    target = _address(env, "PCK_POOLER_TARGET", _default_target(env))
    service_text = env.text("PCK_POOLER_SERVICE", _default_service(env, listen.port))
    service = _address(env, "PCK_POOLER_SERVICE", service_text) if service_text else None
    mode = env.word("PCK_POOLER_POOL_MODE", "transaction")
    if mode not in POOL_MODES:
        bad.add("PCK_POOLER_POOL_MODE", f"{mode!r} is not a pool mode", f"use one of {', '.join(POOL_MODES)}")
    auth_user, password = parse_auth(values, bad, password_file, password_file_error)
    return PoolerSettings(listen=listen, target=target, service=service,
                          auth_user=auth_user, auth_password=password,
                          pool_mode=mode if mode in POOL_MODES else "transaction",
                          max_client_conn=env.integer("PCK_POOLER_MAX_CLIENT_CONN", 1000, 1, 100000),
                          default_pool_size=env.integer("PCK_POOLER_DEFAULT_POOL_SIZE", 20, 1, 10000))


def parse_auth(values: Mapping[str, str], bad: Collector, password_file: Optional[str] = None,
               password_file_error: Optional[str] = None) -> Tuple[str, Optional[str]]:
    """(auth_user, its password): what `pooler setup` needs, read as `pooler run` reads it."""
    env = Env(values, bad)
    return env.name("PCK_POOLER_AUTH_USER", DEFAULT_AUTH_USER), _password(env, password_file, password_file_error)


def _password(env: Env, file_content: Optional[str], file_error: Optional[str]) -> Optional[str]:
    """The auth_user's password, from the variable or the file; a problem never shows the value."""
    password = env.get("PCK_POOLER_AUTH_PASSWORD") or None
    source = "PCK_POOLER_AUTH_PASSWORD"
    if env.given("PCK_POOLER_AUTH_PASSWORD_FILE"):
        if password:
            env.bad.add("PCK_POOLER_AUTH_PASSWORD", "both it and PCK_POOLER_AUTH_PASSWORD_FILE are set", "set one")
        source = "PCK_POOLER_AUTH_PASSWORD_FILE"
        if file_error is not None:
            env.bad.add(source, f"{env.get(source)}: {file_error}",
                        "mount the password as a regular file (a Secret key) readable by the user the container "
                        "starts as")
            return None
        password = (file_content or "").rstrip("\r\n") or None
    if password and any(ord(c) < 0x20 or ord(c) == 0x7f for c in password):
        env.bad.add(source, "the password holds a line break or another control character (not shown)",
                    "use a password of printable characters")
        return None
    if not password and not env.bad.has(source) and not env.bad.has("PCK_POOLER_AUTH_PASSWORD"):
        env.bad.add("PCK_POOLER_AUTH_PASSWORD", "not set",
                    "set the password of the pooler's auth_user role (PCK_POOLER_AUTH_PASSWORD_FILE from a Secret); "
                    "`patroni-citus-k8s pooler setup` gives the role the same one")
    return password


def _address(env: Env, name: str, default: str) -> Address:
    from entrypoint.boot.environ import host_problem

    text = env.text(name, default)
    address = parse_address(text) if text else None
    problem: Optional[str] = "not set"
    if text:
        problem = host_problem(address.host) if address else "it is not host:port"
    if problem or address is None:
        if not env.bad.has(name):
            env.bad.add(name, f"{text!r}: {problem}" if text else "not set",
                        "give host:port, e.g. citusdemo-0.default.svc.cluster.local:5432")
        return Address("unknown", DEFAULT_PORT)
    return address


def _default_target(env: Env) -> str:
    """On Kubernetes, the coordinator group's Service `<scope>-0` (Patroni keeps its endpoint on the primary)."""
    scope, namespace = env.text("PATRONI_SCOPE"), env.text("PATRONI_KUBERNETES_NAMESPACE") or env.text("POD_NAMESPACE")
    if not (env.given("KUBERNETES_SERVICE_HOST") and scope and namespace):
        return ""
    domain = env.text("PCK_CLUSTER_DOMAIN", layout.CLUSTER_DOMAIN).strip(".")
    return f"{scope}-0.{namespace}.svc.{domain}:{layout.POSTGRES_PORT}"


def _default_service(env: Env, port: int) -> str:
    scope, namespace = env.text("PATRONI_SCOPE"), env.text("PATRONI_KUBERNETES_NAMESPACE") or env.text("POD_NAMESPACE")
    if not (env.given("KUBERNETES_SERVICE_HOST") and scope and namespace):
        return ""
    domain = env.text("PCK_CLUSTER_DOMAIN", layout.CLUSTER_DOMAIN).strip(".")
    return f"{scope}-pooler.{namespace}.svc.{domain}:{port}"
