"""stage_material in a temporary runtime directory: modes from the first instant, atomic replace, decrypted keys."""

from __future__ import annotations

import os
import pwd
import shutil
import stat

import pytest
from cryptography.hazmat.primitives import serialization

from entrypoint.boot import fsops
from entrypoint.boot.stage import plan_paths, stage_material
from tests.unit.conftest import check, encrypt_key, settings_for

UID, GID = os.getuid(), os.getgid()


@pytest.fixture
def umask():
    """Set a umask for the test and restore the old one afterwards."""
    old = os.umask(0o022)
    os.umask(old)

    def set_to(mask: int) -> None:
        os.umask(mask)
    yield set_to
    os.umask(old)


def staged(tmp_path, files: dict, mode: str = "verify-full", **changes):
    (tmp_path / "run").mkdir(exist_ok=True)  # boot.dirs makes it before staging
    settings = settings_for(mode, PCK_RUNTIME_DIR=str(tmp_path / "run"), **changes)
    material = check(settings, files)
    return settings, material, stage_material(settings, material, UID, GID)


def listing(directory) -> list:
    return sorted(os.listdir(directory))


def mode_of(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
def test_keys_are_0600_whatever_the_umask(tmp_path, node_files, umask, mask):
    umask(mask)
    _, _, paths = staged(tmp_path, node_files)
    assert mode_of(paths.server_key) == 0o600
    assert mode_of(os.path.dirname(paths.server_key)) == 0o755


@pytest.mark.parametrize("mask", [0o000, 0o022])
def test_certificates_are_0644(tmp_path, node_files, umask, mask):
    umask(mask)
    _, _, paths = staged(tmp_path, node_files)
    assert (mode_of(paths.server_cert), mode_of(paths.ca)) == (0o644, 0o644)


def test_certificates_are_0644_under_a_strict_umask(tmp_path, node_files, umask):
    umask(0o077)
    _, _, paths = staged(tmp_path, node_files)
    assert mode_of(paths.server_cert) == 0o644


def test_key_file_is_never_wider_than_0600_at_any_instant(tmp_path, node_files, umask, monkeypatch):
    """Watch every file stage creates at the moment it is created, before anything could chmod it."""
    umask(0o000)
    created = {}
    real_open = os.open

    def watching_open(path, flags, mode=0o777, *args, **kwargs):
        fd = real_open(path, flags, mode, *args, **kwargs)
        if flags & os.O_CREAT:
            created[path] = (stat.S_IMODE(os.fstat(fd).st_mode), bool(flags & os.O_EXCL))
        return fd

    monkeypatch.setattr(fsops.os, "open", watching_open)
    _, _, paths = staged(tmp_path, node_files)
    key_temps = {p: v for p, v in created.items() if os.path.basename(p).startswith("server.key")}
    assert key_temps, created
    for path, (mode_at_creation, exclusive) in key_temps.items():
        assert mode_at_creation == 0o600 and exclusive, path
        assert not os.path.exists(path) or path == paths.server_key  # the temporary name is gone


def test_planted_files_are_not_reused_or_followed(tmp_path, node_files):
    """An old plain tls/ directory holding a symlink and a world-readable file changes nothing outside it."""
    tls = tmp_path / "run" / "tls"
    tls.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    victim.chmod(0o644)
    (tls / "server.key").symlink_to(victim)
    (tls / "server.key.tmp").write_bytes(b"old")
    _, material, paths = staged(tmp_path, node_files)
    assert victim.read_bytes() == b"untouched" and mode_of(str(victim)) == 0o644
    assert os.path.islink(tls) and not os.path.islink(paths.server_key) and mode_of(paths.server_key) == 0o600
    assert open(paths.server_key, "rb").read() == material.server.key_pem
    assert listing(tls) == ["ca.crt", "server.crt", "server.key"]
    assert [n for n in listing(tmp_path / "run") if n != "tls"] == [os.readlink(tls)]  # the old directory is gone


def test_restaging_replaces_atomically(tmp_path, ca, node_files):
    _, _, paths = staged(tmp_path, node_files)
    before = os.stat(paths.server_key).st_ino
    reader = open(paths.server_key, "rb")
    old = reader.read()
    renewed = ca.issue("*.demo.ns.svc.cluster.local")
    _, material, _ = staged(tmp_path, {**node_files, "/certs/server.crt": renewed.cert_pem,
                                       "/certs/server.key": renewed.key_pem})
    reader.seek(0)
    assert reader.read() == old  # a reader holding the old file keeps reading the whole old file
    reader.close()
    assert os.stat(paths.server_key).st_ino != before
    assert open(paths.server_key, "rb").read() == material.server.key_pem != old
    assert listing(os.path.dirname(paths.server_key)) == ["ca.crt", "server.crt", "server.key"]
    assert len([n for n in listing(tmp_path / "run") if n.startswith("tls.")]) == 2  # current and previous set


def test_a_failure_half_way_keeps_the_previous_set_whole(tmp_path, ca, node_files, monkeypatch):
    """New certificate written, new key not: the link still names the old set, whose key matches its cert."""
    _, old_material, paths = staged(tmp_path, node_files)
    real_create = fsops._create

    def full_disk(dir_fd, name, data, mode, owner):
        if name == "server.key":
            raise OSError(28, "No space left on device", name)
        real_create(dir_fd, name, data, mode, owner)

    monkeypatch.setattr(fsops, "_create", full_disk)
    renewed = ca.issue("*.demo.ns.svc.cluster.local")
    with pytest.raises(OSError):
        staged(tmp_path, {**node_files, "/certs/server.crt": renewed.cert_pem, "/certs/server.key": renewed.key_pem})
    assert open(paths.server_cert, "rb").read() == node_files["/certs/server.crt"]
    assert open(paths.server_key, "rb").read() == old_material.server.key_pem
    assert [n for n in listing(tmp_path / "run") if n != "tls"] == [os.readlink(tmp_path / "run" / "tls")]


def test_failed_write_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "dir-in-the-way"
    target.mkdir()
    (target / "x").write_bytes(b"")
    with pytest.raises(OSError):
        fsops.write_file(str(target), b"secret", 0o600, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir-in-the-way"]


@pytest.mark.parametrize("fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL])
def test_staged_key_is_decrypted_and_contents_exact(tmp_path, ca, node, node_files, fmt):
    files = {**node_files, "/certs/server.key": encrypt_key(node, b"pass phrase", fmt)}
    _, _, paths = staged(tmp_path, files, PGSSLKEY_PASSWORD="pass phrase")
    key_bytes = open(paths.server_key, "rb").read()
    assert b"ENCRYPTED" not in key_bytes
    key = serialization.load_pem_private_key(key_bytes, password=None)
    assert key.private_numbers() == node.key.private_numbers()
    assert open(paths.server_cert, "rb").read() == node.cert_pem
    assert open(paths.ca, "rb").read() == ca.cert_pem


def test_patroni_tls_files_are_staged_re_encoded(tmp_path, ca, node, node_files):
    """Only the certificates of a CA file reach the run user; a key file is staged 0600 as PKCS#8."""
    files = {**node_files, "/etcd/ca.pem": b"# comment\n" + ca.cert_pem + node.key_pem,
             "/etcd/c.crt": node.cert_pem, "/etcd/c.key": encrypt_key(node, b"pw")}
    _, material, paths = staged(tmp_path, files, PATRONI_ETCD3_CACERT="/etcd/ca.pem", PATRONI_ETCD3_CERT="/etcd/c.crt",
                                PATRONI_ETCD3_KEY="/etcd/c.key", PATRONI_ETCD3_KEY_PASSWORD="pw")
    ca_path = paths.extra["PATRONI_ETCD3_CACERT"]
    assert ca_path == str(tmp_path / "run" / "tls" / "patroni_etcd3_cacert.pem")
    assert open(ca_path, "rb").read() == ca.cert_pem and mode_of(ca_path) == 0o644
    key_path = paths.extra["PATRONI_ETCD3_KEY"]
    assert open(key_path, "rb").read() == node.key_pem and mode_of(key_path) == 0o600
    assert any("also holds a private key" in w for w in material.warnings)


@pytest.mark.parametrize("mode, names, expected", [
    ("disable", ("ca.crt", "server.crt", "server.key"), set()),
    ("prefer", (), set()),
    ("require", ("ca.crt", "server.crt", "server.key"), {"ca.crt", "server.crt", "server.key"}),
])
def test_only_what_the_mode_uses_is_staged(tmp_path, node_files, mode, names, expected):
    (tmp_path / "run").mkdir()
    settings = settings_for(mode, names, PCK_RUNTIME_DIR=str(tmp_path / "run"))
    present = node_files if names else {}
    paths = stage_material(settings, check(settings, present), UID, GID)
    tls = tmp_path / "run" / "tls"
    assert set(os.listdir(tls) if tls.exists() else ()) == expected
    assert (paths.server_key is None) == (not expected)


def test_plan_for_mutual_tls_shares_the_server_pair_unless_told(ca, node_files):
    settings = settings_for("require", PCK_CLIENT_CERT_AUTH="true")
    paths = plan_paths(settings, check(settings, node_files))
    assert (paths.client_cert, paths.client_key) == (paths.server_cert, paths.server_key)
    client = ca.issue(cn="postgres")
    settings = settings_for("require", PCK_CLIENT_CERT_AUTH="true", PCK_CLIENT_CERT="/c/c.crt", PCK_CLIENT_KEY="/c/c.key")
    paths = plan_paths(settings, check(settings, {**node_files, "/c/c.crt": client.cert_pem,
                                                 "/c/c.key": client.key_pem}))
    assert (paths.client_cert, paths.client_key) == ("/run/pck/tls/client.crt", "/run/pck/tls/client.key")


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership changes need root")
def test_root_stages_copies_owned_by_the_run_user(tmp_path, node_files):
    user = pwd.getpwnam("postgres")
    (tmp_path / "run").mkdir()
    settings = settings_for("verify-full", PCK_RUNTIME_DIR=str(tmp_path / "run"))
    paths = stage_material(settings, check(settings, node_files), user.pw_uid, user.pw_gid)
    for path in (paths.server_key, paths.server_cert, paths.ca, os.path.dirname(paths.ca)):
        assert (os.stat(path).st_uid, os.stat(path).st_gid) == (user.pw_uid, user.pw_gid), path
    assert os.lstat(tmp_path / "run" / "tls").st_uid == user.pw_uid  # the link too: a watcher that dropped root
    assert os.stat(tmp_path / "run").st_uid == 0  # an existing directory is left as it was


@pytest.mark.skipif(os.geteuid() != 0, reason="the hazard is root following a link the run user planted")
def test_root_does_not_follow_a_link_planted_in_the_runtime_dir(tmp_path, node_files):
    """The run user owns the runtime dir; on a restart as root, a link it left there must not be followed."""
    user = pwd.getpwnam("postgres")
    victim = tmp_path / "victim"  # stands for /etc or /root/.ssh
    victim.mkdir(mode=0o755)
    run = tmp_path / "run"
    run.mkdir()
    (run / "tls").symlink_to(victim)
    os.chown(run, user.pw_uid, user.pw_gid)
    settings = settings_for("verify-full", PCK_RUNTIME_DIR=str(run))
    try:
        stage_material(settings, check(settings, node_files), user.pw_uid, user.pw_gid)
    except OSError:
        pass  # refusing is fine; following is not
    assert os.stat(victim).st_uid == 0 and os.listdir(victim) == []
    assert not os.path.samefile(run / "tls", victim)


@pytest.mark.skipif(os.geteuid() != 0, reason="entries of another user need root to make")
def test_other_users_entries_in_a_shared_runtime_dir_are_left_alone(tmp_path, node_files):
    """A 1777 runtime dir: someone else's tls.* and .link-* are not ours to prune, nor their tls/ to replace."""
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o1777)
    theirs = [run / "tls.theirs", run / ".link-theirs"]
    theirs[0].write_text("theirs")
    theirs[1].mkdir()
    for path in theirs:
        os.chown(path, 65534, 65534)
    _, _, paths = staged(tmp_path, node_files)
    assert all(p.exists() for p in theirs) and open(paths.server_key, "rb").read()
    for path in [p for p in run.iterdir() if p not in theirs]:
        path.unlink() if path.is_symlink() else shutil.rmtree(path)
    (run / "tls").mkdir()
    os.chown(run / "tls", 65534, 65534)
    settings = settings_for("verify-full", PCK_RUNTIME_DIR=str(run))
    with pytest.raises(OSError, match="belongs to uid 65534"):
        stage_material(settings, check(settings, node_files), UID, GID)
    assert sorted(p.name for p in run.iterdir()) == sorted([".link-theirs", "tls", "tls.theirs"])
