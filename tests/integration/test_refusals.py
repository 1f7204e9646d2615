"""`check` and `run`, as root with a root-owned Secret mount, refuse bad TLS input before anything starts."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.cluster import ENTRYPOINT, LocalCluster, TestCA


@pytest.fixture
def member_env(tmp_path):
    cluster = LocalCluster(mode="verify-full", members=1, scope="refuse", base_ip=91, workdir=str(tmp_path))
    member = cluster.members[0]
    env = cluster.member_env(member)
    env["PATRONI_ETCD3_HOSTS"] = "127.0.0.1:9"  # nothing may be contacted
    return cluster, member, env


def _run(args, env):
    return subprocess.run([ENTRYPOINT, *args], env=env, capture_output=True, text=True, timeout=60)


def _assert_nothing_started(member):
    assert not os.path.exists(member.data_dir)
    assert not os.path.exists(member.config_file)
    assert not os.path.exists(os.path.join(member.runtime_dir, "tls"))


@pytest.mark.parametrize("command", [["check"], ["run"]])
def test_certificate_without_the_members_name_is_refused(member_env, command):
    cluster, member, env = member_env
    member.pair = cluster.ca.issue("127.0.0.250", "elsewhere.example", cn="wrong")
    cluster.write_cert_dir(member)
    result = _run(command, env)
    assert result.returncode == 2, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert f"does not cover '{member.host}'" in out
    assert "PATRONI_POSTGRESQL_CONNECT_ADDRESS" in out and "fix:" in out
    _assert_nothing_started(member)


def test_certificate_from_another_ca_is_refused_by_run(member_env):
    cluster, member, env = member_env
    member.pair = TestCA("rogue CA").issue(member.host)
    cluster.write_cert_dir(member)
    result = _run(["run"], env)
    assert result.returncode == 2
    assert "was not signed by any CA" in result.stderr
    _assert_nothing_started(member)


def test_check_passes_and_reports_for_a_good_member(member_env):
    cluster, member, env = member_env
    cluster.write_cert_dir(member)
    result = _run(["check"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"covers {member.host}: yes" in result.stdout
    assert "would start" in result.stdout
    _assert_nothing_started(member)


def _with_crl(cluster, member, crl: bytes) -> str:
    """The Secret with `crl` as its ca.crl; returns that file's path (the link the kubelet makes)."""
    cluster.crl_pem = crl
    cluster.write_cert_dir(member)
    return os.path.join(member.cert_dir, "ca.crl")


def test_an_expired_crl_refuses_the_start(member_env):
    import datetime as dt
    from tests.support.pki import NOW
    cluster, member, env = member_env
    _with_crl(cluster, member, cluster.ca.crl(days=1, now=NOW - dt.timedelta(days=3)))
    result = _run(["run"], env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "PGSSLCRL" in result.stderr and "expired" in result.stderr and "fix:" in result.stderr
    _assert_nothing_started(member)


def test_a_crl_revoking_the_members_own_certificate_refuses_the_start(member_env):
    cluster, member, env = member_env
    _with_crl(cluster, member, cluster.ca.crl([member.pair]))
    result = _run(["run"], env)
    assert result.returncode == 2
    assert "is revoked" in result.stderr and "PGSSLCERT" in result.stderr
    _assert_nothing_started(member)


@pytest.mark.parametrize("kind", ["fifo", "huge", "device", "shadow"])
def test_a_hostile_crl_file_is_refused_without_hanging_or_reading_it_all(member_env, kind):
    cluster, member, env = member_env
    path = _with_crl(cluster, member, cluster.ca.crl())
    target = os.path.realpath(path)
    os.unlink(target)
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "huge":
        with open(target, "wb") as handle:
            handle.truncate(200 * 1024 * 1024)  # 200 MB, sparse
    elif kind == "device":
        os.symlink("/dev/zero", target)
    else:
        os.symlink("/etc/shadow", target)
    result = _run(["run"], env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "PGSSLCRL" in result.stderr and "Traceback" not in result.stderr
    if kind == "shadow":
        assert "root:" not in result.stderr
    _assert_nothing_started(member)


def _bin_dir_without(tmp_path, program: str) -> str:
    """A bin directory with links to every PostgreSQL program but `program`."""
    real = "/usr/lib/postgresql/15/bin"
    partial = tmp_path / "pgbin"
    partial.mkdir()
    for name in os.listdir(real):
        if name != program:
            os.symlink(os.path.join(real, name), partial / name)
    return str(partial)


@pytest.mark.parametrize("command", [["check"], ["run"]])
@pytest.mark.parametrize("case", ["absent", "no-initdb", "no-pg_isready", "unreachable"])
def test_postgres_programs_missing_or_unreachable_are_refused(member_env, tmp_path, command, case):
    """Without this, Patroni starts, loops on a failing bootstrap, and the pod never says why."""
    cluster, member, env = member_env
    cluster.write_cert_dir(member)
    if case == "absent":
        env["PATRONI_POSTGRESQL_BIN_DIR"] = "/usr/lib/postgresql/99/bin"
        expected = "postgres, pg_ctl, initdb, pg_controldata, pg_basebackup, pg_isready, pg_rewind not found"
    elif case.startswith("no-"):
        env["PATRONI_POSTGRESQL_BIN_DIR"] = _bin_dir_without(tmp_path, case[3:])
        expected = f"{case[3:]} not found as executable files"
    else:  # root can reach it, postgres (after the drop) cannot
        hidden = tmp_path / "root-only"
        hidden.mkdir(mode=0o700)
        env["PATRONI_POSTGRESQL_BIN_DIR"] = _bin_dir_without(hidden, "none")
        os.chmod(tmp_path, 0o755)
        expected = "postgres (the user Patroni runs as after the privilege drop) cannot run"
    result = _run(command, env)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "PATRONI_POSTGRESQL_BIN_DIR" in out and expected in out and "fix:" in out
    _assert_nothing_started(member)


@pytest.mark.parametrize("command", [["check"], ["run"]])
def test_rest_api_on_postgres_port_is_refused(member_env, command):
    cluster, member, env = member_env
    cluster.write_cert_dir(member)
    env["PATRONI_RESTAPI_LISTEN"] = f"{member.host}:{env['PATRONI_POSTGRESQL_LISTEN'].rpartition(':')[2]}"
    result = _run(command, env)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "PATRONI_RESTAPI_LISTEN" in out and "also PostgreSQL's" in out
    _assert_nothing_started(member)


def test_root_that_cannot_change_ids_is_refused_before_anything_is_written(member_env):
    """A container as root with capabilities.drop [ALL]: the privilege drop would fail after the files were written."""
    cluster, member, env = member_env
    cluster.write_cert_dir(member)
    result = subprocess.run(["setpriv", "--inh-caps=-setuid,-setgid", "--bounding-set=-setuid,-setgid", ENTRYPOINT,
                             "run"], env=env, capture_output=True, text=True, timeout=60)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "PCK_RUN_AS: root cannot take the ids of postgres" in out and "CAP_SETUID" in out
    assert "kernel refuses" not in out  # the cause is named once, not blamed on every program
    _assert_nothing_started(member)


def test_a_bin_dir_on_a_noexec_mount_is_named_as_such(member_env, tmp_path):
    """In a throwaway mount namespace: a copy of the bin dir, bind-mounted noexec."""
    import shutil
    import tempfile
    from entrypoint.boot.launch import POSTGRES_PROGRAMS

    cluster, member, env = member_env
    cluster.write_cert_dir(member)
    bin_dir = tempfile.mkdtemp(prefix="pck-noexec-")  # under /tmp, which postgres may enter
    os.chmod(bin_dir, 0o755)
    try:
        for program in POSTGRES_PROGRAMS:  # copies: noexec applies to the mount the file itself is on
            shutil.copy2(os.path.join("/usr/lib/postgresql/15/bin", program), bin_dir)
        script = (f"mount --bind {bin_dir} {bin_dir} && mount -o remount,bind,noexec {bin_dir} && "
                  f"exec {ENTRYPOINT} check")
        env["PATRONI_POSTGRESQL_BIN_DIR"] = bin_dir
        result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], env=env,
                                capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(bin_dir)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "mounted noexec" in out and "not found" not in out
    _assert_nothing_started(member)
