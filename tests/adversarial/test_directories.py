"""Directories that are not ours: `/`, `/tmp`, shared 1777 directories, other users' directories, paths under a
regular file, a config path that is a directory. Each is refused with exit 2 and nothing created, or used as it
is; never chowned or chmodded.

Every case runs in a scratch root (sandbox.py): a private mount namespace with a tmpfs as `/` and a chroot, so
a case that would chown `/` or `/tmp` changes only a throwaway file system. The status (mode, owner) of each
watched path is compared before and after.
"""

from __future__ import annotations

import base64
import stat

import pytest

from tests.adversarial.conftest import PASSWORDS, POSTGRES, WILDCARD
from tests.adversarial.sandbox import in_scratch_root
from tests.support.box import NODE
from tests.support.pki import TestCA

PG = (POSTGRES.pw_uid, POSTGRES.pw_gid)
NOBODY = 65534
CA = TestCA("scratch-root CA")
PAIR = CA.issue(WILDCARD)


def _certs(directory: str = "/certs") -> list:
    files = {"ca.crt": CA.cert_pem, "server.crt": PAIR.cert_pem, "server.key": PAIR.key_pem}
    return [["dir", directory, 0o755, 0, 0]] + [
        ["file", f"{directory}/{name}", base64.b64encode(data).decode(), 0o600, 0, 0] for name, data in files.items()]


def _env(**changes) -> dict:
    env = {"PGSSLMODE": "verify-full", "PCK_CERT_DIR": "/certs", "PCK_RUNTIME_DIR": "/srv/run",
           "PCK_SOCKET_DIR": "/srv/sock", "PATRONI_POSTGRESQL_DATA_DIR": "/srv/data/pgdata",
           "PATRONI_SCOPE": "demo", "PATRONI_NAME": "demo-0-0", "PATRONI_POSTGRESQL_CONNECT_ADDRESS": f"{NODE}:5432",
           "PATRONI_SUPERUSER_PASSWORD": PASSWORDS[0], "PATRONI_REPLICATION_PASSWORD": PASSWORDS[1],
           "PCK_CERT_WATCH_INTERVAL": "0"}
    env.update(changes)
    return env


def scratch(env: dict, make: list = (), watch=("/", "/tmp"), command=("run", "--", "/usr/bin/true")) -> dict:
    make = [["dir", "/srv", 0o755, 0, 0]] + _certs() + list(make)
    return in_scratch_root({"make": make, "env": env, "argv": list(command), "watch": list(watch)})


def refused(result: dict, *words: str) -> None:
    output = result["stdout"] + result["stderr"]
    assert result["rc"] == 2, output
    assert "fix: " in output and "Traceback" not in output, output
    for word in words:
        assert word in output, (word, output)
    assert result["tree_after"] == result["tree_before"]  # nothing created, removed, chowned or chmodded
    assert result["after"] == result["before"]


def unchanged(result: dict) -> None:
    assert result["after"] == result["before"], (result["before"], result["after"])


def started(result: dict) -> None:
    assert result["rc"] == 0, result["stdout"] + result["stderr"]


def _mode(status) -> int:
    return status[1]


# --- Empty and `/` --------------------------------------------------------------------------------------

def test_an_empty_runtime_dir_is_the_default_not_root():
    result = scratch(_env(PCK_RUNTIME_DIR=""), watch=["/", "/tmp", "/run/patroni-citus-k8s"])
    started(result)
    assert result["after"]["/"] == result["before"]["/"] == [stat.S_IFDIR, 0o755, 0, 0]
    assert result["after"]["/run/patroni-citus-k8s"] == [stat.S_IFDIR, 0o700, *PG]


def test_an_empty_cert_dir_is_the_default_not_root():
    result = scratch(_env(PCK_CERT_DIR=""))
    refused(result, "PGSSLCERT", "/etc/ssl/certs/postgresql/server.crt", "No such file")


@pytest.mark.parametrize("var", ["PCK_RUNTIME_DIR", "PCK_SOCKET_DIR", "PCK_CERT_DIR", "PATRONI_POSTGRESQL_DATA_DIR",
                                 "PCK_CONFIG_FILE"])
@pytest.mark.parametrize("value", ["/", "//", "/./"])
def test_root_is_never_a_product_directory(var, value):
    refused(scratch(_env(**{var: value})), var, "root directory")


def test_a_data_dir_directly_under_root_does_not_chown_root():
    """Every `/` is a mount point: the fresh-volume claim must not take it."""
    refused(scratch(_env(PATRONI_POSTGRESQL_DATA_DIR="/pgdata")), "PATRONI_POSTGRESQL_DATA_DIR", "/")


# --- Shared directories: used as they are ------------------------------------------------------------

def test_tmp_as_socket_dir_keeps_its_sticky_bit_and_owner():
    result = scratch(_env(PCK_SOCKET_DIR="/tmp"))
    started(result)
    unchanged(result)
    assert result["after"]["/tmp"] == [stat.S_IFDIR, 0o1777, 0, 0]


def test_a_config_file_in_a_shared_1777_directory_leaves_the_directory_as_it_was():
    result = scratch(_env(PCK_CONFIG_FILE="/shared/patroni.yml"), make=[["dir", "/shared", 0o1777, 0, 0]],
                     watch=["/", "/tmp", "/shared", "/shared/patroni.yml"])
    started(result)
    assert result["after"]["/shared"] == [stat.S_IFDIR, 0o1777, 0, 0]
    assert result["after"]["/shared/patroni.yml"] == [stat.S_IFREG, 0o600, *PG]


def test_a_shared_runtime_dir_is_used_as_it_is_and_other_users_files_in_it_are_left_alone():
    make = [["dir", "/shared", 0o1777, 0, 0],
            ["file", "/shared/tls.someone-elses", base64.b64encode(b"theirs").decode(), 0o644, NOBODY, NOBODY],
            ["dir", "/shared/.link-theirs", 0o755, NOBODY, NOBODY]]
    result = scratch(_env(PCK_RUNTIME_DIR="/shared"), make=make,
                     watch=["/shared", "/shared/tls.someone-elses", "/shared/.link-theirs"])
    started(result)
    unchanged(result)
    assert result["after"]["/shared"] == [stat.S_IFDIR, 0o1777, 0, 0]


@pytest.mark.parametrize("var", ["PCK_RUNTIME_DIR", "PCK_SOCKET_DIR"])
def test_another_users_directory_is_refused_not_taken_over(var):
    result = scratch(_env(**{var: "/theirs"}), make=[["dir", "/theirs", 0o700, NOBODY, NOBODY]],
                     watch=["/theirs"])
    refused(result, var, "/theirs", "not writable by the run user")


def test_another_users_directory_as_the_data_dir_parent_is_refused():
    result = scratch(_env(PATRONI_POSTGRESQL_DATA_DIR="/theirs/pgdata"),
                     make=[["dir", "/theirs", 0o755, NOBODY, NOBODY]], watch=["/theirs"])
    refused(result, "PATRONI_POSTGRESQL_DATA_DIR", "/theirs")


def test_a_root_directory_that_is_not_a_mount_is_not_claimed_for_the_data_dir():
    result = scratch(_env(PATRONI_POSTGRESQL_DATA_DIR="/plain/pgdata"), make=[["dir", "/plain", 0o755, 0, 0]],
                     watch=["/plain"])
    refused(result, "PATRONI_POSTGRESQL_DATA_DIR", "/plain")


def test_control_a_fresh_empty_volume_is_claimed_for_the_data_dir():
    """The one documented exception (boot.dirs): a fresh, empty, root-owned mount as the data dir's parent is
    handed to the run user, as the postgres image does. It also proves the checks above see a chown."""
    result = scratch(_env(PATRONI_POSTGRESQL_DATA_DIR="/volume/pgdata"), make=[["volume", "/volume"]],
                     watch=["/volume"])
    started(result)
    assert result["before"]["/volume"] == [stat.S_IFDIR, 0o755, 0, 0]
    assert result["after"]["/volume"] == [stat.S_IFDIR, 0o700, *PG]


# --- Paths that cannot be directories, a config path that is one --------------------------------------

FILE = ["file", "/srv/afile", base64.b64encode(b"x").decode(), 0o644, 0, 0]


@pytest.mark.parametrize("var, value", [("PCK_SOCKET_DIR", "/srv/afile/sock"),
                                        ("PCK_RUNTIME_DIR", "/srv/afile/run"),
                                        ("PATRONI_POSTGRESQL_DATA_DIR", "/srv/afile/pgdata"),
                                        ("PATRONI_POSTGRESQL_DATA_DIR", "/srv/afile/deeper/pgdata"),
                                        ("PCK_CONFIG_FILE", "/srv/afile/patroni.yml")])
@pytest.mark.parametrize("command", ["run", "check"])
def test_a_directory_under_a_regular_file_is_refused_before_anything_is_written(var, value, command):
    argv = ("run", "--", "/usr/bin/true") if command == "run" else ("check",)
    result = scratch(_env(**{var: value}), make=[FILE], command=argv)
    refused(result, var, "/srv/afile")


@pytest.mark.parametrize("command", ["run", "check"])
def test_a_config_path_that_is_a_directory_is_refused_before_anything_is_written(command):
    argv = ("run", "--", "/usr/bin/true") if command == "run" else ("check",)
    result = scratch(_env(PCK_CONFIG_FILE="/srv/conf"), make=[["dir", "/srv/conf", 0o755, 0, 0]], command=argv)
    refused(result, "PCK_CONFIG_FILE", "/srv/conf", "is a directory")


@pytest.mark.parametrize("var, value", [("PCK_SOCKET_DIR", "/srv/afile"), ("PCK_RUNTIME_DIR", "/srv/afile"),
                                        ("PATRONI_POSTGRESQL_DATA_DIR", "/srv/afile")])
def test_a_directory_path_that_is_a_regular_file_is_refused(var, value):
    refused(scratch(_env(**{var: value}), make=[FILE]), var, "/srv/afile", "not a directory")


# --- A symbolic link where the entrypoint writes --------------------------------------------------------

@pytest.mark.parametrize("var, value", [("PCK_RUNTIME_DIR", "/srv/link"), ("PCK_CONFIG_FILE", "/srv/link/patroni.yml")])
@pytest.mark.parametrize("command", ["run", "check"])
def test_a_symlinked_directory_the_entrypoint_writes_into_is_refused_by_check_and_run_alike(var, value, command):
    """fsops never writes through a link (O_NOFOLLOW): check must say so too, before run creates anything."""
    argv = ("run", "--", "/usr/bin/true") if command == "run" else ("check",)
    make = [["dir", "/srv/real", 0o700, *PG], ["link", "/srv/link", "real"]]
    result = scratch(_env(**{var: value}), make=make, command=argv, watch=["/srv/real"])
    refused(result, var, "/srv/link", "symbolic link", "/srv/real")


def test_a_symlinked_socket_dir_is_used_where_it_points():
    """The entrypoint only creates the socket dir (PostgreSQL writes there): a link to one is fine."""
    make = [["dir", "/srv/realsock", 0o2775, *PG], ["link", "/srv/sock", "realsock"]]
    result = scratch(_env(), make=make, watch=["/srv/realsock", "/srv/sock"])
    started(result)
    unchanged(result)


# --- Paths no file system or PostgreSQL takes ---------------------------------------------------------------

LOOP = ["link", "/srv/loop", "loop"]


@pytest.mark.parametrize("var", ["PCK_RUNTIME_DIR", "PCK_SOCKET_DIR", "PATRONI_POSTGRESQL_DATA_DIR", "PCK_CONFIG_FILE"])
def test_a_path_through_a_symlink_loop_is_refused_not_an_internal_error(var):
    refused(scratch(_env(**{var: "/srv/loop/x"}), make=[LOOP]), var, "/srv/loop")


@pytest.mark.parametrize("var, value", [("PCK_RUNTIME_DIR", "/srv/" + "r" * 300),
                                        ("PCK_CONFIG_FILE", "/srv/run/" + "c" * 250 + ".yml"),
                                        ("PATRONI_POSTGRESQL_DATA_DIR", "/srv/" + "d" * 256 + "/pgdata")])
@pytest.mark.parametrize("command", ["run", "check"])
def test_a_name_too_long_for_the_file_system_is_refused_before_anything_is_written(var, value, command):
    argv = ("run", "--", "/usr/bin/true") if command == "run" else ("check",)
    refused(scratch(_env(**{var: value}), command=argv), var, "bytes")


@pytest.mark.parametrize("command", ["run", "check"])
def test_a_socket_dir_too_long_for_a_unix_socket_path_is_refused(command):
    """PostgreSQL refuses to start when <dir>/.s.PGSQL.<port> exceeds 107 bytes (sun_path)."""
    argv = ("run", "--", "/usr/bin/true") if command == "run" else ("check",)
    refused(scratch(_env(PCK_SOCKET_DIR="/srv/" + "s" * 90), command=argv), "PCK_SOCKET_DIR", "107")


def test_control_a_socket_dir_just_short_enough_starts():
    result = scratch(_env(PCK_SOCKET_DIR="/srv/" + "s" * (107 - len("/srv/") - len("/.s.PGSQL.5432"))))
    started(result)
