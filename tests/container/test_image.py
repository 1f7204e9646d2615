"""The image built from Dockerfile.citus: its configuration and what it leaves out."""

from __future__ import annotations

import json

import pytest

from tests.container.harness import run

pytestmark = pytest.mark.container


def _config(docker: str, image: str) -> dict:
    return json.loads(run([docker, "image", "inspect", image]).stdout)[0]["Config"]


def test_entrypoint_is_run_and_defaults_match_the_seed(docker, image):
    config = _config(docker, image)
    assert config["Entrypoint"] + config["Cmd"] == ["patroni-citus-k8s", "run"]
    assert "PGSSLMODE=prefer" in config["Env"]
    assert set(config["ExposedPorts"]) == {"5432/tcp", "8008/tcp", "6432/tcp"}


def test_healthcheck_uses_the_tls_aware_probe(docker, image):
    assert _config(docker, image)["Healthcheck"]["Test"] == ["CMD", "patroni-citus-k8s", "probe", "readiness",
                                                             "--timeout", "3"]


def test_runs_as_postgres_999_by_default(docker, image):
    assert _config(docker, image)["User"] == "999:999"  # numeric: Kubernetes can check runAsNonRoot
    out = run([docker, "run", "--rm", "--network=none", "--entrypoint", "id", image]).stdout
    assert out.startswith("uid=999(postgres) gid=999(postgres)"), out


def test_no_compiler_and_no_pip_in_the_final_image(docker, image):
    script = ("for tool in gcc cc c++ clang make; do command -v $tool && exit 1; done; "
              "test ! -e /opt/patroni-citus-k8s/venv/bin/pip")
    run([docker, "run", "--rm", "--network=none", "--entrypoint", "sh", image, "-c", script])


def test_bad_input_stops_before_anything_starts(docker, image):
    # No PATRONI_SCOPE, no passwords: exit status 2, one message per problem, nothing started.
    proc = run([docker, "run", "--rm", "--network=none", "-e", "PGSSLMODE=verify-full", image], check=False)
    assert proc.returncode == 2, proc.stderr
    for variable in ("PATRONI_SCOPE", "PATRONI_SUPERUSER_PASSWORD"):
        assert variable in proc.stderr


def test_pgbouncer_is_in_the_image_for_pooler_run(docker, image, base_image):
    """`patroni-citus-k8s pooler run` execs PgBouncer: Debian's 1.18 on the local base, runnable as postgres."""
    out = run([docker, "run", "--rm", "--network=none", "--entrypoint", "/usr/sbin/pgbouncer", image,
               "--version"]).stdout
    assert out.startswith("PgBouncer "), out
    if base_image.startswith("patroni-citus-k8s-base:"):  # scripts/container-setup's Debian bookworm base
        assert out.split()[1].startswith("1.18"), out
