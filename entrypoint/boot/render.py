"""Build Patroni's configuration from Settings and staged paths, render it with jinja2, prove the YAML says that."""

from __future__ import annotations

import copy
import os
from typing import Any

import jinja2
import yaml

from entrypoint import __version__, layout
from entrypoint.boot.settings import Settings
from entrypoint.boot.stage import StagedPaths

REDACTED = "<redacted>"
SECRET_KEYS = ("password",)
TEMPLATE = "patroni.yml.j2"
AUTH_METHOD = "scram-sha-256"


class RenderBug(Exception):
    """The rendered text does not parse back to the intended configuration: a bug, exit 1."""


def libpq_quote(value: str) -> str:
    """Quote a conninfo value the way libpq parses it (single quotes, backslash escapes)."""
    if value and all(ch.isalnum() or ch in "/._-+:" for ch in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def client_tls_params(settings: Settings, paths: StagedPaths) -> dict:
    """The libpq TLS keywords every internal client link uses (superuser, replication, rewind, Citus).

    `sslrootcert` only where the mode verifies: libpq turns `require` into `verify-ca`
    when it finds a root certificate, and require must mean what it says.
    """
    params = {"sslmode": settings.links.name}
    if settings.links.verifies_ca and paths.ca:
        params["sslrootcert"] = paths.ca
        if paths.crl:  # libpq consults a CRL only when it verifies the chain
            params["sslcrl"] = paths.crl
    if settings.mtls.enabled and paths.client_cert and paths.client_key:
        params["sslcert"] = paths.client_cert
        params["sslkey"] = paths.client_key
    return params


def node_conninfo(settings: Settings, paths: StagedPaths) -> str:
    """`citus.node_conninfo`: set in every mode so Citus never turns ssl on behind our back."""
    return " ".join(f"{k}={libpq_quote(v)}" for k, v in client_tls_params(settings, paths).items())


def pg_hba(settings: Settings) -> list:
    """pg_hba lines, most specific first.

    Local connections use the socket: peer for the OS user PostgreSQL runs as (so
    `kubectl exec -- psql -U postgres` works), passwords for everyone else. When TLS is
    required, `hostnossl ... reject` comes before any line that could match plaintext,
    for IPv4 and IPv6, and separately for `replication`, which `all` does not match.
    """
    lines = [f"local all {settings.paths.run_as} peer", f"local all all {AUTH_METHOD}"]
    nets = ("0.0.0.0/0", "::/0")
    if settings.mode.requires_tls:
        for db in ("all", "replication"):
            lines += [f"hostnossl {db} all {net} reject" for net in nets]
        option = " clientcert=verify-ca" if settings.mtls.enabled else ""
        for db in ("all", "replication"):
            lines += [f"hostssl {db} all {net} {AUTH_METHOD}{option}" for net in nets]
    else:
        for db in ("all", "replication"):
            lines += [f"host {db} all {net} {AUTH_METHOD}" for net in nets]
    return lines


def server_parameters(settings: Settings, paths: StagedPaths) -> dict:
    params: dict = {
        "ssl": "on" if settings.server_ssl and paths.server_cert else "off",
        "unix_socket_directories": settings.paths.socket_dir,
        "password_encryption": AUTH_METHOD,
    }
    if params["ssl"] == "on":
        params["ssl_cert_file"] = paths.server_cert
        params["ssl_key_file"] = paths.server_key
        params["ssl_min_protocol_version"] = settings.tuning.tls_min_version
        if paths.ca:
            params["ssl_ca_file"] = paths.ca
        if paths.crl:  # client certificates (mutual TLS) are checked against it
            params["ssl_crl_file"] = paths.crl
    if settings.citus is not None:
        params["citus.node_conninfo"] = node_conninfo(settings, paths)
    return params


def _user(user, tls: dict) -> dict:
    return {"username": user.username, "password": user.password, **tls}


def restapi_and_ctl(settings: Settings, paths: StagedPaths) -> tuple:
    """The REST API server block and the `ctl` client block.

    Patroni's REST client always checks the host name when it verifies a certificate,
    except with `insecure: true` plus a client certificate, where it checks the chain
    only: that is exactly verify-ca, so verify-ca uses that combination.
    """
    restapi: dict = {"listen": settings.addresses.restapi_listen,
                     "connect_address": str(settings.addresses.restapi_connect)}
    ctl: dict = {}
    cert = paths.extra.get("PATRONI_RESTAPI_CERTFILE", paths.server_cert)
    key = paths.extra.get("PATRONI_RESTAPI_KEYFILE", paths.server_key)
    ca = paths.extra.get("PATRONI_RESTAPI_CAFILE", paths.ca)
    if not (settings.server_ssl and cert and key):
        return restapi, ctl
    restapi.update({"certfile": cert, "keyfile": key})
    if ca:
        restapi["cafile"] = ca
    if settings.mtls.enabled:
        restapi["verify_client"] = "required"
    if ca:
        ctl["cacert"] = paths.extra.get("PATRONI_CTL_CACERT", ca)
    if settings.mode.verifies_host:
        ctl["insecure"] = False
    else:
        ctl["insecure"] = True
    # Members call each other's REST API: where it asks for client certificates
    # (mutual TLS, or Patroni's own PATRONI_RESTAPI_VERIFY_CLIENT), they must present one.
    asks_client_cert = settings.mtls.enabled or settings.mtls.restapi_verify_client in ("optional", "required")
    if asks_client_cert or settings.mode.name == "verify-ca":
        ctl["certfile"] = paths.extra.get("PATRONI_CTL_CERTFILE", paths.client_cert or cert)
        ctl["keyfile"] = paths.extra.get("PATRONI_CTL_KEYFILE", paths.client_key or key)
    return restapi, ctl


def build_config(settings: Settings, paths: StagedPaths) -> dict:
    """Return the Patroni configuration as a plain dict (the single source of truth for the YAML)."""
    tls = client_tls_params(settings, paths)
    authentication = {
        "superuser": _user(settings.users.superuser, tls),
        "replication": _user(settings.users.replication, tls),
    }
    if settings.users.rewind is not None:
        authentication["rewind"] = _user(settings.users.rewind, tls)
    restapi, ctl = restapi_and_ctl(settings, paths)
    postgresql: dict = {
        "listen": f"{settings.addresses.listen_host}:{settings.addresses.listen.port}",
        "connect_address": str(settings.addresses.connect),
        "data_dir": settings.paths.data_dir,
        "pgpass": os.path.join(settings.paths.runtime_dir, layout.PGPASS_FILE_NAME),
        # Local connections (Patroni's own, pg_isready, Citus's citus.local_hostname)
        # go through the socket, so verify-full works whatever names the certificate has.
        "use_unix_socket": True,
        "use_unix_socket_repl": False,
        "authentication": authentication,
        "parameters": server_parameters(settings, paths),
        "pg_hba": pg_hba(settings),
        # A spread checkpoint made replica bootstrap take minutes; fast takes seconds.
        "basebackup": [{"checkpoint": "fast"}],
    }
    if settings.paths.bin_dir:
        postgresql["bin_dir"] = settings.paths.bin_dir
    config: dict = {
        "scope": settings.identity.scope,
        "name": settings.identity.name,
        "restapi": restapi,
    }
    if ctl:
        config["ctl"] = ctl
    if settings.citus is not None:
        config["citus"] = {"group": settings.citus.group, "database": settings.citus.database}
    config["bootstrap"] = {
        "dcs": {
            "ttl": 30,
            "loop_wait": 10,
            "retry_timeout": 10,
            "maximum_lag_on_failover": 1048576,
            "postgresql": {"use_pg_rewind": True, "use_slots": True},
        },
        "initdb": [{"encoding": "UTF8"}, "data-checksums", {"auth-local": "peer"}, {"auth-host": AUTH_METHOD}],
    }
    config["postgresql"] = postgresql
    return config


def redact(config: dict) -> dict:
    """Return a deep copy with every password replaced by a marker."""
    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (REDACTED if k in SECRET_KEYS and v is not None else walk(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node
    return walk(copy.deepcopy(config))


def yaml_scalar(value: Any) -> str:
    """Render one value as a YAML flow node that parses back to exactly that value."""
    text = yaml.safe_dump([value], default_flow_style=True, default_style='"' if isinstance(value, str) else None,
                          width=1 << 30, allow_unicode=True).strip()
    return text[1:-1]


def yaml_block(value: Any, indent: int) -> str:
    """Render a list or mapping as block YAML indented by `indent` spaces (strings always quoted)."""
    class QuotingDumper(yaml.SafeDumper):
        pass

    def represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.MappingNode:
        # Values are quoted; plain keys stay plain so the file reads like Patroni's docs.
        pairs = [(dumper.represent_scalar("tag:yaml.org,2002:str", k, style=None if _plain_key(k) else '"'),
                  dumper.represent_data(v)) for k, v in data.items()]
        return yaml.MappingNode("tag:yaml.org,2002:map", pairs, flow_style=False)

    QuotingDumper.add_representer(
        str, lambda dumper, data: dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"'))
    QuotingDumper.add_representer(dict, represent_dict)
    text = yaml.dump(value, Dumper=QuotingDumper, default_flow_style=False, sort_keys=False,
                     width=1 << 30, allow_unicode=True)
    pad = " " * indent
    return "\n".join(pad + line if line else line for line in text.rstrip("\n").split("\n"))


def _plain_key(key: str) -> bool:
    return isinstance(key, str) and key.replace("_", "a").replace("-", "a").replace(".", "a").isalnum() \
        and key.lower() not in ("y", "n", "yes", "no", "on", "off", "true", "false", "null")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("entrypoint.boot", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # YAML, not HTML: "a&b" must stay "a&b"
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["yaml"] = yaml_scalar
    env.filters["block"] = yaml_block
    return env


def render_yaml(config: dict, settings: Settings) -> str:
    """Render `config` through the template and parse it back.

    Returns the YAML text; raises RenderBug when it does not parse back to `config`.
    """
    text = _environment().get_template(TEMPLATE).render(c=config, mode=settings.mode.name, version=__version__)
    parsed = yaml.safe_load(text)
    if parsed != config:
        raise RenderBug("rendered YAML does not parse back to the intended configuration:\n"
                        + _first_difference(config, parsed))
    return text


def _first_difference(want: Any, got: Any, path: str = "") -> str:
    if isinstance(want, dict) and isinstance(got, dict):
        for key in list(want) + [k for k in got if k not in want]:
            if want.get(key, _MISSING) != got.get(key, _MISSING):
                return _first_difference(want.get(key), got.get(key), f"{path}.{key}")
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        for i, (a, b) in enumerate(zip(want, got)):
            if a != b:
                return _first_difference(a, b, f"{path}[{i}]")
    return f"at {path or '/'}: wanted {type(want).__name__}, got {type(got).__name__}"


_MISSING = object()


def render_for(settings: Settings, paths: StagedPaths, show_secrets: bool) -> str:
    """The text `render` prints: redacted unless asked otherwise."""
    config = build_config(settings, paths)
    return render_yaml(config if show_secrets else redact(config), settings)
