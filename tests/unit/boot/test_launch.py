"""launch.resolve_command: the program run execs must be executable by the user it runs as after the drop."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from entrypoint.boot.launch import RunUser, resolve_command
from entrypoint.errors import InputError

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the run user differs from the caller only for root")


@pytest.fixture
def scratch():
    """A directory postgres can enter (pytest's own tmp_path sits under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="pck-launch-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def _user(name: str = "postgres") -> RunUser:
    entry = pwd.getpwnam(name)
    return RunUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir,
                   tuple(os.getgrouplist(entry.pw_name, entry.pw_gid)))


@needs_root
@pytest.mark.parametrize("dir_mode, file_mode, words", [
    (0o700, 0o755, "cannot enter"),
    (0o755, 0o700, "no execute permission"),
    (0o755, 0o711, "is a script and it cannot read it"),
])
def test_a_program_the_run_user_cannot_exec_is_refused(scratch, dir_mode, file_mode, words):
    where = scratch / "d"
    where.mkdir()
    program = where / "prog"
    program.write_text("#!/bin/sh\n")
    program.chmod(file_mode)
    where.chmod(dir_mode)
    with pytest.raises(InputError) as err:
        resolve_command([str(program)], {"PATH": "/usr/bin"}, _user())
    (problem,) = err.value.problems
    assert problem.where == "run --" and words in problem.what and "postgres" in problem.what


@needs_root
def test_a_link_inside_a_directory_the_run_user_cannot_enter_is_refused(scratch):
    """The target (/bin/sh) is reachable; the link to it is not, and exec goes through the link."""
    hidden = scratch / "root-only"
    hidden.mkdir(mode=0o700)
    (hidden / "sh").symlink_to("/bin/sh")
    with pytest.raises(InputError) as err:
        resolve_command([str(hidden / "sh")], {"PATH": "/usr/bin"}, _user())
    assert f"cannot enter {hidden}" in err.value.problems[0].what
    hidden.chmod(0o755)
    assert resolve_command([str(hidden / "sh")], {"PATH": "/usr/bin"}, _user())  # the control


def _set_acl(path: Path, user_perms: int, owner: int = 7, group: int = 1, other: int = 0) -> None:
    """A POSIX access ACL with a named-user entry for postgres, written as the kernel stores it (no setfacl here)."""
    import struct
    uid = pwd.getpwnam("postgres").pw_uid
    entries = [(0x01, owner, 0xFFFFFFFF), (0x02, user_perms, uid), (0x04, group, 0xFFFFFFFF),
               (0x10, 7, 0xFFFFFFFF), (0x20, other, 0xFFFFFFFF)]  # user_obj, user, group_obj, mask, other
    os.setxattr(path, "system.posix_acl_access",
                struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries))


@needs_root
def test_an_acl_that_lets_the_run_user_in_is_honoured(scratch):
    """Mode 0710 root:root would keep postgres out; its ACL entry lets it through, as the kernel decides."""
    hidden = scratch / "acl"
    hidden.mkdir()
    (hidden / "sh").symlink_to("/bin/sh")
    _set_acl(hidden, user_perms=1)
    assert resolve_command([str(hidden / "sh")], {"PATH": "/usr/bin"}, _user())


@needs_root
def test_an_acl_that_keeps_the_run_user_out_is_refused_though_the_mode_bits_allow(scratch):
    hidden = scratch / "acl"
    hidden.mkdir()
    (hidden / "sh").symlink_to("/bin/sh")
    _set_acl(hidden, user_perms=0, group=5, other=5)  # mode bits read 0775: "other" could enter
    with pytest.raises(InputError) as err:
        resolve_command([str(hidden / "sh")], {"PATH": "/usr/bin"}, _user())
    assert "the kernel refuses it" in err.value.problems[0].what and "ACL" in err.value.problems[0].what


@needs_root
def test_control_a_program_anyone_may_run_passes():
    assert resolve_command(["sh", "-c", "true"], {"PATH": "/usr/bin:/bin"}, _user())[0].endswith("/sh")


def test_passphrases_of_staged_keys_stay_out_of_patronis_environment():
    """The staged copies are decrypted: PGSSLKEY_PASSWORD and Patroni's *_KEYFILE_PASSWORD are not passed on."""
    from entrypoint.boot.launch import exec_environment
    from entrypoint.boot.stage import StagedPaths
    from tests.unit.conftest import settings_for

    env = {"PATH": "/usr/bin", "PGSSLKEY_PASSWORD": "pg-pass", "PATRONI_RESTAPI_KEYFILE": "/s/rest.key",
           "PATRONI_RESTAPI_KEYFILE_PASSWORD": "rest-pass", "PATRONI_CTL_KEYFILE_PASSWORD": "ctl-pass"}
    paths = StagedPaths("/run/tls/server.crt", "/run/tls/server.key", "/run/tls/ca.crt", None, None,
                        extra={"PATRONI_RESTAPI_KEYFILE": "/run/tls/patroni-restapi.key"})
    out = exec_environment(env, settings_for("verify-full"), paths, _user())
    assert out["PATRONI_RESTAPI_KEYFILE"] == "/run/tls/patroni-restapi.key"
    assert "PATRONI_RESTAPI_KEYFILE_PASSWORD" not in out and "PGSSLKEY_PASSWORD" not in out
    assert out["PATRONI_CTL_KEYFILE_PASSWORD"] == "ctl-pass"  # no ctl key staged: Patroni reads its own file


@needs_root
def test_a_fifo_with_execute_bits_is_not_a_program(scratch):
    os.mkfifo(scratch / "postgres")
    (scratch / "postgres").chmod(0o755)
    with pytest.raises(InputError) as err:
        resolve_command(["postgres"], {"PATH": str(scratch)}, _user())
    assert "is not an executable program" in err.value.problems[0].what


@needs_root
def test_the_kernel_check_survives_an_ignored_sigchld():
    """Inherited SIGCHLD=SIG_IGN reaps the checking child before waitpid: the mode bits judge instead."""
    import signal
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        assert resolve_command(["sh", "-c", "true"], {"PATH": "/usr/bin:/bin"}, _user())[0].endswith("/sh")
    finally:
        signal.signal(signal.SIGCHLD, previous)
