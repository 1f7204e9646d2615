"""The Dockerfile and the compose file repeat facts whose one home is `entrypoint.layout` / `entrypoint.sslmode`."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from entrypoint import layout, sslmode

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
    assert line.split()[1:] == [str(layout.POSTGRES_PORT), str(layout.RESTAPI_PORT)]


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_members_mount_the_secret_where_layout_says() -> None:
    members = {name: svc for name, svc in _compose()["services"].items() if name.startswith("citusdemo-")}
    assert members
    for name, svc in members.items():
        targets = [v.rsplit(":", 2)[-2] if v.endswith((":ro", ":rw")) else v.rsplit(":", 1)[-1] for v in svc["volumes"]]
        assert layout.CERT_DIR in targets, name
        env = svc["environment"]
        assert env["PGSSLMODE"] in sslmode.NAMES
        assert env["PATRONI_POSTGRESQL_LISTEN"].endswith(f":{layout.POSTGRES_PORT}")
        assert env["PATRONI_RESTAPI_LISTEN"].endswith(f":{layout.RESTAPI_PORT}")


def test_compose_certs_service_writes_the_secret_file_names() -> None:
    command = "\n".join(_compose()["services"]["certs"]["command"])
    for name in (layout.CA_FILE, layout.CERT_FILE, layout.KEY_FILE):
        assert name in command
    assert layout.CA_KEY_FILE not in command.split("/certs/node")[-1]  # the CA key never reaches a member


def test_healthcheck_timeout_leaves_room_for_the_probes_own_timeout_and_python() -> None:
    """Docker kills a check that outlives --timeout: the probe must give up first, with its message."""
    text = _dockerfile()
    docker_timeout = int(re.search(r"HEALTHCHECK [^\n]*--timeout=(\d+)s", text).group(1))
    probe = re.search(r'"probe", "readiness", "--timeout", "(\d+(?:\.\d+)?)"', text)
    assert probe, "HEALTHCHECK must pass --timeout to the probe"
    assert float(probe.group(1)) + 3 <= docker_timeout  # about a second of Python start-up, twice over
