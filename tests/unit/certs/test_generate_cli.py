"""`patroni-citus-k8s certs generate` and scripts/generate-ssl-certs.sh as a user runs them.

Each test runs the real command in a child process and checks the exit status, the
message, and that a refused run leaves no file behind.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def certs(cwd, *args, env=None, user=None) -> subprocess.CompletedProcess:
    """Run `python -m entrypoint certs ARGS` in `cwd` from this checkout."""
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": REPO, **(env or {})}
    return subprocess.run([sys.executable, "-m", "entrypoint", "certs", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, user=user)


def _listing(path) -> list:
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def test_defaults_write_the_seeds_four_files_with_private_keys(tmp_path):
    result = certs(tmp_path, "generate")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "certs"
    assert _listing(out) == ["ca.crl", "ca.crt", "ca.key", "server.crt", "server.key"]
    for key in ("ca.key", "server.key"):
        assert stat.S_IMODE(os.stat(out / key).st_mode) == 0o600
    assert "kubectl create secret generic citusdemo-ssl-certs" in result.stdout
    verify = subprocess.run(["openssl", "verify", "-CAfile", out / "ca.crt", out / "server.crt"],
                            capture_output=True, text=True)
    assert verify.returncode == 0 and "OK" in verify.stdout


def test_environment_names_the_cluster_and_flags_override_it(tmp_path):
    result = certs(tmp_path, "generate", "--namespace", "prod", env={"CLUSTER_NAME": "shop", "NAMESPACE": "dev"})
    assert result.returncode == 0, result.stderr
    assert "*.shop.prod.svc.cluster.local" in result.stdout and "shop-workers.prod" in result.stdout
    assert "--namespace=prod" in result.stdout


@pytest.mark.parametrize("args,env,needles", [
    (["--key-type", "dsa-1024"], {}, ["--key-type", "ecdsa-p256"]),
    ([], {"CLUSTER_NAME": "Citus_Demo"}, ["CLUSTER_NAME", "lowercase"]),
    (["--san", "*.citusdemo-*.default.svc.cluster.local"], {}, ["--san", "whole left-most label"]),
    (["--groups", "0"], {}, ["--groups"]),
    (["--client", "../etc/passwd"], {}, ["--client"]),
    (["--server-days", "4000"], {}, ["--server-days", "--ca-days"]),
    (["--k8s-secret", "configmap"], {}, ["--k8s-secret", "opaque"]),
    (["--renew"], {}, ["--renew", "ca.crt"]),
    (["--renew", "--force"], {}, ["--force, --renew: contradict each other"]),
])
def test_bad_input_exits_2_naming_the_input_and_writes_nothing(tmp_path, args, env, needles):
    result = certs(tmp_path, "generate", *args, env=env)
    assert result.returncode == 2, result.stderr
    for needle in needles:
        assert needle in result.stderr
    assert _listing(tmp_path) == []  # not even the certs/ directory


def test_existing_files_are_never_overwritten_without_force(tmp_path):
    out = tmp_path / "certs"
    out.mkdir()
    (out / "server.key").write_bytes(b"precious")
    result = certs(tmp_path, "generate")
    assert result.returncode == 2
    assert "server.key" in result.stderr and "--force" in result.stderr and "--renew" in result.stderr
    assert _listing(out) == ["server.key"] and (out / "server.key").read_bytes() == b"precious"

    forced = certs(tmp_path, "generate", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (out / "server.key").read_bytes() != b"precious"
    assert stat.S_IMODE(os.stat(out / "server.key").st_mode) == 0o600


def test_a_failed_forced_run_restores_what_was_there(tmp_path):
    out = tmp_path / "certs"
    out.mkdir()
    (out / "ca.crt").write_bytes(b"old ca")
    (out / "server.key").mkdir()  # a file cannot replace it, so writing fails half-way
    result = certs(tmp_path, "generate", "--force")
    assert result.returncode == 2 and "nothing was written" in result.stderr
    assert _listing(out) == ["ca.crt", "server.key"] and (out / "ca.crt").read_bytes() == b"old ca"


def test_out_dir_that_is_a_file_or_below_one_is_refused(tmp_path):
    (tmp_path / "plain").write_text("x")
    for out_dir in ("plain", "plain/certs"):
        result = certs(tmp_path, "generate", "--out-dir", out_dir)
        assert result.returncode == 2 and "--out-dir" in result.stderr, result.stderr
    assert _listing(tmp_path) == ["plain"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the command as another user")
def test_unwritable_out_dir_is_refused_for_a_user_who_cannot_write_it():
    user = pwd.getpwnam("postgres")
    base = tempfile.mkdtemp(dir="/tmp")
    try:
        os.chmod(base, 0o755)  # root's directory: postgres may read, not write
        code = os.path.join(base, "code")
        shutil.copytree(os.path.join(REPO, "entrypoint"), os.path.join(code, "entrypoint"))
        result = subprocess.run([sys.executable, "-m", "entrypoint", "certs", "generate", "--out-dir", base],
                                cwd="/tmp", env={"PATH": "/usr/bin:/bin", "PYTHONPATH": code},
                                capture_output=True, text=True, user=user.pw_uid, group=user.pw_gid)
        assert result.returncode == 2, result.stderr
        assert "--out-dir: cannot write to" in result.stderr and "Permission denied" in result.stderr
        assert _listing(base) == ["code"]
    finally:
        shutil.rmtree(base)


def test_renew_keeps_the_ca_and_replaces_the_server_certificate(tmp_path):
    assert certs(tmp_path, "generate").returncode == 0
    out = tmp_path / "certs"
    before = {name: (out / name).read_bytes() for name in _listing(out)}
    result = certs(tmp_path, "generate", "--renew", "--server-days", "90", "--client", "postgres")
    assert result.returncode == 0, result.stderr
    assert (out / "ca.crt").read_bytes() == before["ca.crt"] and (out / "ca.key").read_bytes() == before["ca.key"]
    assert (out / "server.crt").read_bytes() != before["server.crt"]
    verify = subprocess.run(["openssl", "verify", "-CAfile", out / "ca.crt", out / "server.crt",
                             out / "client-postgres.crt"], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert _listing(out) == ["ca.crl", "ca.crt", "ca.key", "client-postgres.crt", "client-postgres.key",
                             "server.crt", "server.key"]


def test_manifests_are_written_and_announced(tmp_path):
    result = certs(tmp_path, "generate", "--k8s-secret", "tls", "--cert-manager")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "certs"
    assert stat.S_IMODE(os.stat(out / "secret.yaml").st_mode) == 0o600
    assert "kubectl apply -f certs/secret.yaml" in result.stdout
    assert "kubectl create secret tls citusdemo-ca" in result.stdout
    assert "kubectl apply -f certs/cert-manager.yaml" in result.stdout


def test_seed_script_usage_works_verbatim(tmp_path):
    # A stand-in for the installed command, so the script's first choice runs this checkout.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "patroni-citus-k8s"
    shim.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m entrypoint \"$@\"\n")
    shim.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    script = os.path.join(REPO, "scripts", "generate-ssl-certs.sh")
    result = subprocess.run(
        ["bash", "-c", f"export CLUSTER_NAME=citusdemo NAMESPACE=default; {script}"], cwd=work,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert _listing(work / "certs") == ["ca.crl", "ca.crt", "ca.key", "server.crt", "server.key"]
    assert "kubectl create secret generic citusdemo-ssl-certs" in result.stdout
    again = subprocess.run(["bash", script], cwd=work, env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
                           capture_output=True, text=True)
    assert again.returncode == 2 and "already exist" in again.stderr
