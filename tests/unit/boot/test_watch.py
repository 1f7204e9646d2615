"""CertWatcher.step over real files in a temporary directory: a lasting error is logged once, not every look."""

from __future__ import annotations

import errno
import os

from entrypoint.boot import watch
from entrypoint.boot.stage import stage_material
from tests.unit.conftest import WILDCARD, check, settings_for


def _watcher(tmp_path, ca, node, logged):
    certs, run = tmp_path / "certs", tmp_path / "run"
    certs.mkdir()
    run.mkdir()
    ca.write_dir(str(certs), node)
    settings = settings_for("verify-full", PCK_CERT_DIR=str(certs), PCK_RUNTIME_DIR=str(run))
    files = {str(certs / n): (certs / n).read_bytes() for n in os.listdir(certs)}
    paths = stage_material(settings, check(settings, files), os.getuid(), os.getgid())
    return certs, watch.CertWatcher(settings, os.getuid(), os.getgid(), paths, lambda: None, logged.append)


def test_a_lasting_staging_error_is_logged_once_and_the_set_is_taken_when_it_clears(tmp_path, ca, node, monkeypatch):
    logged: list = []
    certs, watcher = _watcher(tmp_path, ca, node, logged)
    new = ca.issue(WILDCARD)
    (certs / "server.crt").write_bytes(new.cert_pem)
    (certs / "server.key").write_bytes(new.key_pem)
    real = watch.stage_material

    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(watch, "stage_material", full)
    assert [watcher.step(settle=0) for _ in range(5)] == ["error"] * 5
    assert len(logged) == 1 and "could not stage" in logged[0] and "No space left" in logged[0]
    monkeypatch.setattr(watch, "stage_material", real)
    assert watcher.step(settle=0) == "applied"
    assert watcher.step(settle=0) == "unchanged"


def test_a_crl_added_to_a_secret_that_had_none_is_reported_once_as_needing_a_restart(tmp_path, ca, node):
    logged: list = []
    certs, watcher = _watcher(tmp_path, ca, node, logged)
    assert watcher.step(settle=0) == "unchanged" and logged == []
    (certs / "ca.crl").write_bytes(ca.crl())
    assert [watcher.step(settle=0) for _ in range(3)] == ["unchanged"] * 3  # not read: nothing renders ssl_crl_file
    assert len(logged) == 1 and "ca.crl appeared" in logged[0] and "restarts" in logged[0]


def test_a_rotated_encrypted_key_with_a_new_passphrase_file_is_taken(tmp_path, ca, node):
    """PGSSLKEY_PASSWORD_FILE is read with the key at every look, not once at start."""
    from entrypoint.boot.settings import parse_settings
    from tests.unit.conftest import encrypt_key, env_with, facts
    certs, run, secret = tmp_path / "certs", tmp_path / "run", tmp_path / "pw"
    for d in (certs, run):
        d.mkdir()
    ca.write_dir(str(certs), node)
    (certs / "server.key").write_bytes(encrypt_key(node, b"first"))
    secret.write_bytes(b"first\n")
    settings = parse_settings(env_with(PGSSLMODE="verify-full", PCK_CERT_DIR=str(certs), PCK_RUNTIME_DIR=str(run),
                                       PGSSLKEY_PASSWORD_FILE=str(secret)),
                              facts(key_password_file_content="first\n"))  # as the start read it
    files = {path: open(path, "rb").read() for path in watch.files_to_read(settings)}
    assert str(secret) in files
    paths = stage_material(settings, check(settings, files), os.getuid(), os.getgid())
    logged: list = []
    watcher = watch.CertWatcher(settings, os.getuid(), os.getgid(), paths, lambda: None, logged.append)
    new = ca.issue(WILDCARD)
    (certs / "server.crt").write_bytes(new.cert_pem)
    (certs / "server.key").write_bytes(encrypt_key(new, b"second"))
    secret.write_bytes(b"second\n")
    assert watcher.step(settle=0) == "applied", logged
    assert (run / "tls" / "server.crt").read_bytes() == new.cert_pem
