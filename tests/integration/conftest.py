"""Integration fixtures: real etcd, Patroni and PostgreSQL 15, every member started through `run` as root."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.support.cluster import ENTRYPOINT, ETCD, PG_BIN

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(config, items):
    missing = []
    if os.geteuid() != 0:
        missing.append("root (the tests start members through the entrypoint's privilege drop)")
    if not os.access(ENTRYPOINT, os.X_OK):
        missing.append(f"{ENTRYPOINT} (run scripts/setup)")
    if not shutil.which(ETCD) and not os.access(ETCD, os.X_OK):
        missing.append("etcd (Debian's etcd-server)")
    if not os.path.exists(os.path.join(PG_BIN, "postgres")):
        missing.append(f"PostgreSQL 15 in {PG_BIN}")
    if not missing:
        return
    if os.environ.get("CI"):
        # CI installs everything (scripts/setup): a missing piece there is a failure, not a skip.
        raise pytest.UsageError("integration prerequisites missing in CI: " + ", ".join(missing))
    skip = pytest.mark.skip(reason="needs " + ", ".join(missing))
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(skip)
