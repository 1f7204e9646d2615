"""Suite-wide fixtures."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _steady_umask():
    """Every test starts with umask 022: the Go runtime inside helm-python-sdk was seen to leave 077
    behind, and directories a test makes for the postgres user must not depend on test order."""
    old = os.umask(0o022)
    yield
    os.umask(old)
