"""ruff (lint and import order) and mypy over the product, as configured in pyproject.toml: both must be clean."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _tool(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed in CI (scripts/setup installs requirements-dev.txt)")
        pytest.skip(f"{name} is not installed: pip install -r requirements-dev.txt")
    return found


def test_ruff_is_clean():
    result = subprocess.run([_tool("ruff"), "check", "--no-cache", "entrypoint"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean():
    result = subprocess.run([_tool("mypy"), "--no-incremental", "--cache-dir", os.devnull], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
