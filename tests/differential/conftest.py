"""Differential prerequisites: root (PostgreSQL runs as postgres, dropped to from root), PostgreSQL 15 and its psql,
openssl. Without them the tests are skipped, except under CI, where a missing piece is a failure."""

from __future__ import annotations

import os
import pwd
import shutil

import pytest

from tests.differential.harness import OPENSSL, PG_BIN, PSQL


def _missing() -> list:
    missing = []
    if os.geteuid() != 0:
        missing.append("root (the server runs as the postgres user, started from root)")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        missing.append("the postgres user (Debian's postgresql-15)")
    for path, what in ((os.path.join(PG_BIN, "postgres"), "PostgreSQL 15"), (PSQL, "psql 15 (libpq 15)")):
        if not os.access(path, os.X_OK):
            missing.append(f"{what} in {PG_BIN}")
    if not (shutil.which(OPENSSL) or os.access(OPENSSL, os.X_OK)):
        missing.append("openssl")
    return missing


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    ours = [item for item in items if str(item.fspath).startswith(here)]
    missing = _missing() if ours else []
    if not missing:
        return
    if os.environ.get("CI"):
        raise pytest.UsageError("differential test prerequisites missing in CI: " + ", ".join(missing))
    skip = pytest.mark.skip(reason="needs " + ", ".join(missing))
    for item in ours:
        item.add_marker(skip)
