"""The Dockerfile and the compose file repeat facts whose one home is `entrypoint.layout` / `entrypoint.sslmode`."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from entrypoint import layout, sslmode
from entrypoint.certs.names import ClusterNames, server_names
from entrypoint.errors import Collector
from entrypoint.pooler.settings import DEFAULT_PORT as POOLER_PORT
from entrypoint.pooler.settings import parse_pooler

REPO = Path(__file__).resolve().parents[2]


def _dockerfile() -> str:
    return (REPO / "Dockerfile.citus").read_text()


def test_dockerfile_environment_is_the_entrypoints_defaults() -> None:
    text = _dockerfile()
    assert re.search(rf"^\s*PGSSLMODE={sslmode.DEFAULT}\b", text, re.M)
    assert f"PATRONICTL_CONFIG_FILE={layout.RUNTIME_DIR}/{layout.CONFIG_FILE_NAME}" in text


def test_dockerfile_creates_the_directories_layout_names() -> None:
    made = set(re.findall(r"install -d -o postgres -g postgres -m \d+ (\S+);", _dockerfile()))
    assert {layout.RUNTIME_DIR, os.path.dirname(layout.DATA_DIR), layout.SOCKET_DIR} <= made


def test_dockerfile_exposes_the_ports() -> None:
    (line,) = [ln for ln in _dockerfile().splitlines() if ln.startswith("EXPOSE")]
    assert line.split()[1:] == [str(layout.POSTGRES_PORT), str(layout.RESTAPI_PORT), str(POOLER_PORT)]


def test_dockerfile_installs_pgbouncer_and_the_local_base_carries_it() -> None:
    """`pooler run` execs PgBouncer: the image has it whatever the base (the local base from Debian)."""
    assert "[ -x /usr/sbin/pgbouncer ] || need=\"$need pgbouncer\"" in _dockerfile()
    setup = (REPO / "scripts" / "container-setup").read_text()
    (packages,) = re.findall(r"^base_packages=\((.*)\)$", setup, re.M)
    assert "pgbouncer" in packages.split()


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _members() -> dict:
    """The compose services that are Patroni members (they have a connect address)."""
    return {name: svc for name, svc in _compose()["services"].items()
            if "PATRONI_POSTGRESQL_CONNECT_ADDRESS" in (svc.get("environment") or {})}


def test_compose_members_mount_the_secret_where_layout_says() -> None:
    members = _members()
    assert set(members) == {"citusdemo-0-0", "citusdemo-0-1", "citusdemo-1-0", "citusdemo-2-0"}
    for name, svc in members.items():
        targets = [v.rsplit(":", 2)[-2] if v.endswith((":ro", ":rw")) else v.rsplit(":", 1)[-1] for v in svc["volumes"]]
        assert layout.CERT_DIR in targets, name
        env = svc["environment"]
        assert env["PGSSLMODE"] in sslmode.NAMES
        assert env["PATRONI_POSTGRESQL_LISTEN"].endswith(f":{layout.POSTGRES_PORT}")
        assert env["PATRONI_RESTAPI_LISTEN"].endswith(f":{layout.RESTAPI_PORT}")


def test_compose_certs_service_writes_the_secret_file_names() -> None:
    command = "\n".join(_compose()["services"]["certs"]["command"])
    for name in (layout.CA_FILE, layout.CERT_FILE, layout.KEY_FILE, layout.CRL_FILE):
        assert name in command
    assert f"/certs/node/{layout.CRL_FILE}" in command  # the CRL, as a Secret's optional ca.crl
    assert layout.CA_KEY_FILE not in command.split("/certs/node")[-1]  # the CA key never reaches a member


def _resolved(env: dict) -> dict:
    """The environment with compose's `${NAME:-default}` replaced by its default (what a bare `up` gives)."""
    return {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v)) for k, v in env.items()}


def _certs_names() -> ClusterNames:
    """The names the compose `certs` service asks `certs generate` for."""
    args = "\n".join(_compose()["services"]["certs"]["command"]).split()
    i = args.index("generate")
    flags = dict(zip(args[i + 1::2], args[i + 2::2]))
    return ClusterNames(cluster=flags["--cluster"], namespace=flags["--namespace"], groups=int(flags["--groups"]))


def _aliases(service: dict) -> list:
    return service["networks"]["citus"]["aliases"]


def test_compose_pooler_is_named_as_the_chart_names_it_and_the_certificate_covers_it() -> None:
    services = _compose()["services"]
    names = _certs_names()
    pooler = services[f"{names.cluster}-pooler"]
    sans = server_names(names)
    reachable = [pooler["hostname"], *_aliases(pooler)]
    service = f"{names.cluster}-pooler"
    assert reachable == [service, f"{service}.{names.namespace}", f"{service}.{names.namespace}.svc",
                         f"{service}.{names.namespace}.svc.{names.domain}"]
    assert set(reachable) <= set(sans)
    env = _resolved(pooler["environment"])
    assert env["PATRONI_SCOPE"] == names.cluster
    # The pooler's own parser accepts what compose gives it, and agrees with the names.
    bad = Collector()
    parsed = parse_pooler(env, bad)
    assert bad.problems == []
    assert (parsed.service.host, parsed.service.port) == (reachable[-1], POOLER_PORT)
    assert parsed.listen.port == POOLER_PORT
    target = services["citusdemo-0-0"]
    assert f"{parsed.target.host}:{parsed.target.port}" == target["environment"]["PATRONI_POSTGRESQL_CONNECT_ADDRESS"]
    assert parsed.target.host in _aliases(target)
    assert env["PGSSLMODE"] == services["citusdemo-0-0"]["environment"]["PGSSLMODE"]
    assert pooler["command"] == ["pooler", "run"]
    assert pooler["healthcheck"]["test"] == ["CMD", "patroni-citus-k8s", "pooler", "probe", "readiness"]
    assert pooler["volumes"] == services["citusdemo-0-0"]["volumes"]  # the same Secret-like mount
    # The pooler pods never get the superuser's (or any member's) password.
    assert not [k for k in env if k.startswith("PATRONI_") and k.endswith("PASSWORD")]
    assert not [k for k in env if k.startswith("PG") and "PASSWORD" in k]


def test_compose_pooler_setup_reaches_the_primary_as_the_superuser_with_the_poolers_password() -> None:
    services = _compose()["services"]
    setup = services["pooler-setup"]
    env = _resolved(setup["environment"])
    pooler = _resolved(services["citusdemo-pooler"]["environment"])
    coordinator = [_resolved(m["environment"]) for m in _members().values()
                   if m["environment"].get("PATRONI_CITUS_GROUP") == "0"]
    hosts = env["PGHOST"].split(",")
    assert sorted(hosts) == sorted(m["PATRONI_POSTGRESQL_CONNECT_ADDRESS"].rsplit(":", 1)[0] for m in coordinator)
    assert env["PGTARGETSESSIONATTRS"] == "read-write"  # whichever member is the primary
    assert (env["PGUSER"], env["PGPASSWORD"]) == (coordinator[0]["PATRONI_SUPERUSER_USERNAME"],
                                                  coordinator[0]["PATRONI_SUPERUSER_PASSWORD"])
    assert env["PGSSLMODE"] == coordinator[0]["PGSSLMODE"]
    assert env["PGSSLROOTCERT"] == f"{layout.CERT_DIR}/{layout.CA_FILE}"
    for key in ("PCK_POOLER_AUTH_USER", "PCK_POOLER_AUTH_PASSWORD"):
        assert env[key] == pooler[key]
    assert setup["depends_on"]["citusdemo-0-0"]["condition"] == "service_healthy"
    assert "patroni-citus-k8s pooler setup" in "\n".join(setup["command"])


def test_healthcheck_timeout_leaves_room_for_the_probes_own_timeout_and_python() -> None:
    """Docker kills a check that outlives --timeout: the probe must give up first, with its message."""
    text = _dockerfile()
    docker_timeout = int(re.search(r"HEALTHCHECK [^\n]*--timeout=(\d+)s", text).group(1))
    probe = re.search(r'"probe", "readiness", "--timeout", "(\d+(?:\.\d+)?)"', text)
    assert probe, "HEALTHCHECK must pass --timeout to the probe"
    assert float(probe.group(1)) + 3 <= docker_timeout  # about a second of Python start-up, twice over
