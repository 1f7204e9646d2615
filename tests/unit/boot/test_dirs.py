"""boot.dirs: judged before anything is written; the one claim, a fresh empty volume for the data directory."""

from __future__ import annotations

import os

import pytest

from entrypoint.boot import dirs
from entrypoint.boot.dirs import Who, check_directories
from tests.unit.conftest import settings_for

RUN_USER = Who(uid=12345, gid=12345, groups=(12345,), root=True)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="root-owned directories")


def _settings(tmp_path, data_dir):
    return settings_for("disable", PCK_RUNTIME_DIR=str(tmp_path / "run"), PCK_SOCKET_DIR=str(tmp_path / "sock"),
                        PATRONI_POSTGRESQL_DATA_DIR=str(data_dir))


@needs_root
def test_a_fresh_empty_root_owned_volume_is_claimable_for_the_data_dir(tmp_path, monkeypatch):
    volume = tmp_path / "volume"
    volume.mkdir(mode=0o755)
    monkeypatch.setattr(dirs.os.path, "ismount", lambda path: path == str(volume))
    assert [p for p in check_directories(_settings(tmp_path, volume / "pgdata"), RUN_USER)] == []


@needs_root
@pytest.mark.parametrize("how", ["not a mount", "not empty", "sticky"])
def test_anything_else_root_owned_is_refused_for_the_data_dir(tmp_path, monkeypatch, how):
    volume = tmp_path / "volume"
    volume.mkdir(mode=0o755)
    if how == "not empty":
        (volume / "someone's").write_text("")
    if how == "sticky":
        volume.chmod(0o1777)
    monkeypatch.setattr(dirs.os.path, "ismount", lambda path: how != "not a mount" and path == str(volume))
    problems = check_directories(_settings(tmp_path, volume / "pgdata"), RUN_USER)
    if how == "sticky":  # world-writable: usable as it is, never claimed
        assert problems == []
    else:
        assert [p.where for p in problems] == ["PATRONI_POSTGRESQL_DATA_DIR"]


def test_a_symlinked_runtime_dir_is_refused_a_symlinked_socket_dir_is_not(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "run").symlink_to(real)
    (tmp_path / "sock").symlink_to(real)
    me = Who(os.getuid(), os.getgid(), (os.getgid(),), root=os.geteuid() == 0)
    problems = check_directories(_settings(tmp_path, tmp_path / "data" / "pgdata"), me)
    assert [(p.where, "symbolic link" in p.what, str(real) in p.fix) for p in problems] == [
        ("PCK_RUNTIME_DIR", True, True)]


@pytest.mark.parametrize("which", ["run", "sock", "data"])
def test_a_path_through_a_symlink_loop_is_a_problem_not_an_exception(tmp_path, which):
    (tmp_path / "loop").symlink_to("loop")
    paths = {"run": tmp_path / "run", "sock": tmp_path / "sock", "data": tmp_path / "data" / "pgdata"}
    paths[which] = tmp_path / "loop" / "x"
    settings = settings_for("disable", PCK_RUNTIME_DIR=str(paths["run"]), PCK_SOCKET_DIR=str(paths["sock"]),
                            PATRONI_POSTGRESQL_DATA_DIR=str(paths["data"]))
    me = Who(os.getuid(), os.getgid(), (os.getgid(),), root=os.geteuid() == 0)
    (problem,) = check_directories(settings, me)
    assert "symbolic link loop" in problem.what and str(tmp_path / "loop") in problem.what
