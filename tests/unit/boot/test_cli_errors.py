"""The real command in a subprocess: bad input exits 2 naming the variable or file and the fix, and leaves no trace."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.support.box import REPO, CommandBox
from tests.support.pki import TestCA
from tests.unit.conftest import encrypt_key

PYTHON = "/opt/patroni-citus-k8s/venv/bin/python"
if not os.access(PYTHON, os.X_OK):
    PYTHON = sys.executable
PASSWORDS = ("su-Cli-Secret-1", "repl-Cli-Secret-2")


class Box(CommandBox):
    """The shared command box, with this suite's passwords."""

    PASSWORDS = PASSWORDS


@pytest.fixture(scope="module")
def pki():
    ca = TestCA("cli test CA")
    return ca, ca.issue("*.demo.ns.svc.cluster.local", "localhost")


@pytest.fixture
def box(pki):
    # Not pytest's tmp_path: after the privilege drop the postgres user must reach the stub and the dirs.
    root = Path(tempfile.mkdtemp(prefix="pck-cli-"))
    root.chmod(0o1777)
    ca, pair = pki
    ca.write_dir(str(root / "certs"), pair)
    (root / "bin").mkdir()
    stub = root / "bin" / "stub-patroni"
    stub.write_text(f"#!/bin/sh\necho \"exec as $(id -un) $*\" > {root / 'exec-marker'}\n")
    stub.chmod(0o755)
    shutil.copy(stub, root / "bin" / "patroni")
    yield Box(root)
    shutil.rmtree(root)


def invoke(box: Box, command: list, env: dict, **how) -> subprocess.CompletedProcess:
    argv = [PYTHON, "-m", "entrypoint", *command]
    if command[0] == "run":
        argv += ["--", str(box.root / "bin" / "stub-patroni")]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, **how)


def as_postgres() -> dict:
    """subprocess arguments that start the command as the postgres user, as a pod with runAsUser does."""
    user = pwd.getpwnam("postgres")
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start commands as another user")


COMMANDS = [["run"], ["check"], ["render"]]


def replace_file(box: Box, name: str, data: bytes) -> None:
    path = box.certs / name
    path.unlink()
    path.write_bytes(data)


# Each case: a change to the box (its env, its cert files), then what the message must name.
def unknown_mode(box, pki):
    return box.env(PGSSLMODE="verify_full"), ["PGSSLMODE", "unknown mode 'verify_full'", "verify-full"]


def missing_cert_dir(box, pki):
    return (box.env(PGSSLMODE="require", PCK_CERT_DIR=str(box.root / "nowhere")),
            ["PGSSLCERT", f"{box.root}/nowhere/server.crt", "No such file", "PGSSLKEY", "mount the Secret"])


def mismatched_key(box, pki):
    ca, _ = pki
    replace_file(box, "server.key", ca.issue("other.example").key_pem)
    return box.env(PGSSLMODE="require"), ["PGSSLKEY", f"{box.certs}/server.key", "does not belong"]


def not_pem(box, pki):
    _, pair = pki
    replace_file(box, "server.crt", pair.cert.public_bytes(serialization.Encoding.DER))
    return box.env(), ["PGSSLCERT", "not a PEM certificate", "openssl x509 -inform der"]


def uncovered_name(box, pki):
    return (box.env(PATRONI_POSTGRESQL_CONNECT_ADDRESS="db.elsewhere.example:5432"),
            [f"{box.certs}/server.crt", "does not cover 'db.elsewhere.example'", "re-issue"])


def encrypted_key(box, pki):
    _, pair = pki
    replace_file(box, "server.key", encrypt_key(pair, b"pw"))
    return box.env(), ["PGSSLKEY", "encrypted", "PGSSLKEY_PASSWORD"]


def wrong_ca(box, pki):
    replace_file(box, "ca.crt", TestCA("stranger").cert_pem)
    return box.env(PGSSLMODE="verify-ca"), ["PGSSLCERT", "not signed by any CA", "ca.crt"]


def contradiction(box, pki):
    return (box.env(PATRONI_REPLICATION_SSLMODE="disable", PCK_CLIENT_CERT_AUTH="maybe"),
            ["PATRONI_REPLICATION_SSLMODE", "PCK_CLIENT_CERT_AUTH", "2 problems"])


def missing_scope(box, pki):
    return box.env(PATRONI_SCOPE=None), ["PATRONI_SCOPE", "not set"]


CASES = [unknown_mode, missing_cert_dir, mismatched_key, not_pem, uncovered_name, encrypted_key, wrong_ca,
         contradiction, missing_scope]


# Every case through `run`; the first three through check and render as well (they share validate()).
MATRIX = [(case, ["run"]) for case in CASES] + [(case, command) for case in CASES[:3] for command in COMMANDS[1:]]


@pytest.mark.parametrize("case, command", MATRIX, ids=[f"{c.__name__}-{cmd[0]}" for c, cmd in MATRIX])
def test_bad_input_exits_2_with_a_fix_and_leaves_no_trace(box, pki, case, command):
    env, words = case(box, pki)
    result = invoke(box, command, env)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "nothing was started" in output and "fix: " in output
    for word in words:
        assert word in output, (word, output)
    assert "Traceback" not in output
    assert box.traces() == []
    if command[0] != "check":
        assert result.stdout == ""  # nothing that could be mistaken for a configuration


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to PCK_RUN_AS happens only when started as root")
@pytest.mark.parametrize("command", [["run"], ["check"]], ids=lambda c: c[0])
def test_unknown_run_user_exits_2(box, command):
    result = invoke(box, command, box.env(PCK_RUN_AS="no-such-user"))
    assert result.returncode == 2 and "PCK_RUN_AS" in result.stdout + result.stderr
    assert box.traces() == []


@pytest.mark.parametrize("command", [["check"], ["render"], ["render", "--show-secrets"]], ids=" ".join)
def test_good_input_check_and_render_have_no_side_effects(box, command):
    result = invoke(box, command, box.env())
    assert result.returncode == 0, result.stderr
    assert box.traces() == []
    shown = [p for p in PASSWORDS if p in result.stdout + result.stderr]
    assert shown == (list(PASSWORDS) if "--show-secrets" in command else [])


@pytest.mark.skipif(os.geteuid() != 0, reason="the control run drops root to the postgres user")
def test_control_good_input_run_leaves_exactly_the_expected_traces(box):
    """Proves the no-trace checks above can fail: a good `run` stages, writes and execs."""
    result = invoke(box, ["run"], box.env())
    assert result.returncode == 0, result.stderr
    assert box.marker.read_text().startswith("exec as postgres")
    assert sorted(box.traces()) == sorted(["run", "data", "sock", "exec-marker"])
    key = box.runtime / "tls" / "server.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    config = (box.runtime / "patroni.yml").read_text()
    assert all(p in config for p in PASSWORDS)
    assert stat.S_IMODE((box.runtime / "patroni.yml").stat().st_mode) == 0o600


@needs_root
def test_non_root_start_with_a_root_only_secret_mount_says_fsgroup(box):
    """A pod running as postgres with the Secret mounted root:root 0600 (no fsGroup)."""
    result = invoke(box, ["run"], box.env(), **as_postgres())
    output = result.stderr
    assert result.returncode == 2, output
    assert f"PGSSLKEY: {box.certs}/server.key: Permission denied" in output
    assert "fsGroup" in output
    assert box.traces() == []


@needs_root
def test_non_root_start_with_an_unwritable_runtime_dir_says_emptydir(box):
    for path in box.certs.iterdir():
        path.chmod(0o644)
    locked = box.root / "locked"
    locked.mkdir(mode=0o755)
    result = invoke(box, ["run"], box.env(PCK_RUNTIME_DIR=str(locked / "run")), **as_postgres())
    assert result.returncode == 2, result.stderr
    assert "PCK_RUNTIME_DIR" in result.stderr and "emptyDir" in result.stderr and "Traceback" not in result.stderr
    assert box.traces() == [] and list(locked.iterdir()) == []


def test_runtime_dir_that_cannot_be_a_directory_exits_2(box):
    (box.root / "a-file").write_text("")
    result = invoke(box, ["run"], box.env(PCK_RUNTIME_DIR=str(box.root / "a-file" / "run")))
    assert result.returncode == 2, result.stderr
    assert "PCK_RUNTIME_DIR" in result.stderr and "Traceback" not in result.stderr
