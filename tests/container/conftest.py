"""Fixtures for the container suite: the image built from Dockerfile.citus and one compose cluster.

The suite runs only when PCK_CONTAINER_TESTS=1 (scripts/container-test sets it after
preparing an engine), so a plain `pytest` never builds images behind anyone's back.
Variables it reads: PCK_BASE_IMAGE, PCK_ETCD_IMAGE, PCK_WHEELS (from scripts/container-setup),
PCK_DOCKER and PCK_COMPOSE (which clients to use), PCK_CONTAINER_LAYOUT=plain (run the
plain Patroni layout even when the base has Citus).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import pytest
import yaml

from tests.container import harness
from tests.container.harness import Cluster, run

IMAGE = os.environ.get("PCK_TEST_IMAGE", "patroni-citus-k8s:container-test")
MEMBERS_CITUS = ["citusdemo-0-0", "citusdemo-0-1", "citusdemo-1-0", "citusdemo-2-0"]


def _skip_reason() -> str | None:
    if os.environ.get("PCK_CONTAINER_TESTS") != "1":
        return "container suite: run scripts/container-test (it sets PCK_CONTAINER_TESTS=1 after preparing an engine)"
    if not harness.engine_answers():
        return "container suite: no Docker engine answers (scripts/container-setup starts one)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _skip_reason()
    if reason is None:
        return
    for item in items:
        if "tests/container/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def docker() -> str:
    return harness.docker_cli()


@pytest.fixture(scope="session")
def base_image() -> str:
    return os.environ.get("PCK_BASE_IMAGE", "citusdata/citus:12.1")


@pytest.fixture(scope="session")
def image(docker: str, base_image: str) -> str:
    """Build Dockerfile.citus once for the session and return its tag.

    With a local wheel directory the build runs with --network=none: nothing in it may
    reach a registry or an index.
    """
    wheels = os.environ.get("PCK_WHEELS", "docker/wheels")
    has_wheels = any(name.endswith(".whl") for name in os.listdir(os.path.join(harness.REPO, wheels)))
    cmd = [docker, "build", "-q", "-f", "Dockerfile.citus", "--build-arg", f"BASE_IMAGE={base_image}",
           "--build-arg", f"WHEELS={wheels}", "-t", IMAGE]
    if has_wheels:
        cmd.insert(2, "--network=none")
    started = time.monotonic()
    run([*cmd, harness.REPO], timeout=1200, env={"DOCKER_BUILDKIT": "0"})
    print(f"\ncontainer suite: built {IMAGE} from {base_image} in {time.monotonic() - started:.0f} s")
    return IMAGE


@pytest.fixture(scope="session")
def citus(docker: str, base_image: str) -> bool:
    """Whether the suite runs the Citus layout: when the base has Citus, unless PCK_CONTAINER_LAYOUT=plain."""
    if os.environ.get("PCK_CONTAINER_LAYOUT") == "plain":
        return False
    return harness.base_has_citus(docker, base_image)


@pytest.fixture(scope="session", params=["verify-full", "verify-full+mutual-tls"])
def cluster(request, docker: str, image: str, citus: bool):
    """Start docker-compose.yml (resolved by the compose CLI itself) and yield a Cluster once every member runs.

    Twice: as the file stands (verify-full), then with PCK_CLIENT_CERT_AUTH=true on every
    member. Stops and removes every container, network and volume of each project
    afterwards, and fails if any is left.
    """
    mtls = request.param.endswith("mutual-tls")
    workdir = tempfile.mkdtemp(prefix="pck-container-")
    certs = os.path.join(workdir, "certs")
    os.mkdir(certs)
    project = f"pcktest{os.getpid()}{'mtls' if mtls else ''}"
    env = {
        "PCK_IMAGE": image,
        "PCK_CERTS_DIR": certs,
        "PCK_ETCD_IMAGE": os.environ.get("PCK_ETCD_IMAGE", "quay.io/coreos/etcd:v3.5.21"),
        "PCK_BASE_IMAGE": os.environ.get("PCK_BASE_IMAGE", "citusdata/citus:12.1"),
        "PCK_WHEELS": os.environ.get("PCK_WHEELS", "docker/wheels"),
        "PATRONI_SUPERUSER_PASSWORD": "suite-superuser-pw",
        "PATRONI_REPLICATION_PASSWORD": "suite-replication-pw",
        "COMPOSE_PROJECT_NAME": project,
    }
    compose = harness.compose_cli()
    rendered = run([*compose, "-f", harness.COMPOSE_FILE, "config"], env=env).stdout
    doc = harness.derive_compose_file(rendered, citus, mtls)
    compose_file = os.path.join(workdir, "compose.yml")
    with open(compose_file, "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False)
    layout = ("Citus layout: coordinator group 0 (two members) and worker groups 1 and 2" if citus else
              "plain Patroni layout (Citus absent from the base image, or PCK_CONTAINER_LAYOUT=plain): "
              "PATRONI_CITUS_* dropped from docker-compose.yml, four members in one cluster; Citus checks skipped")
    print(f"\ncontainer suite: {request.param}; {' '.join(compose)}; project {project}; {layout}; "
          f"{harness.ROOT_MEMBER} starts as root")
    cl = Cluster(docker=docker, compose=compose, project=project, compose_file=compose_file, env=env,
                 citus=citus, mtls=mtls, members=list(MEMBERS_CITUS))
    started = time.monotonic()
    try:
        cl.compose_run("up", "-d", "--no-build", timeout=600)
        harness.wait_for("every member running or streaming in patronictl list",
                         lambda: _all_running(cl), timeout=300, interval=3)
        print(f"container suite: cluster up in {time.monotonic() - started:.0f} s")
        yield cl
    except BaseException:
        print(cl.compose_run("ps", check=False).stdout)
        print(cl.compose_run("logs", "--no-color", "--tail=60", check=False).stdout[-20000:])
        raise
    finally:
        cl.compose_run("down", "-v", "--remove-orphans", "--timeout", "20", check=False, timeout=300)
        shutil.rmtree(workdir, ignore_errors=True)
        left = cl.leftovers()
        assert not left, f"containers or networks of project {project} left behind: {left}"


def _all_running(cl: Cluster) -> list[dict] | None:
    """Return the member rows once every member is up, with one leader per group and the rest streaming."""
    rows = cl.members_state(cl.members[0])
    names = {row["Member"] for row in rows}
    if names != set(cl.members):
        return None
    for row in rows:
        if row["Role"] in ("Leader", "Standby Leader"):
            if row["State"] != "running":
                return None
        elif row["State"] != "streaming":
            return None
    return rows


@pytest.fixture(scope="session")
def members_rows(cluster: Cluster) -> list[dict]:
    rows = _all_running(cluster)
    assert rows, "members stopped running after start-up"
    return rows
