"""Reading the environment: empty means unset everywhere, typos and odd values are refused with their name and fix."""

from __future__ import annotations

import pytest

from entrypoint.boot.environ import PRODUCT_VARIABLES, host_problem
from entrypoint.boot.settings import parse_settings
from entrypoint.errors import InputError
from tests.unit.conftest import env_with, facts


def problems(**changes) -> dict:
    with pytest.raises(InputError) as caught:
        parse_settings(env_with(**changes), facts())
    return {p.where: p for p in caught.value.problems}


def parsed(**changes):
    return parse_settings(env_with(**changes), facts())


@pytest.mark.parametrize("var", ["PCK_RUNTIME_DIR", "PCK_CERT_DIR", "PCK_SOCKET_DIR", "PCK_CONFIG_FILE",
                                 "PCK_TLS_MIN_VERSION", "PCK_EXPIRY_WARN_DAYS", "PCK_CERT_WATCH_INTERVAL",
                                 "PCK_CLIENT_CERT_AUTH", "PCK_RUN_AS", "PGSSLMODE", "PGSSLCERT"])
def test_an_empty_value_is_the_same_as_unset(var):
    assert parsed(**{var: ""}) == parsed(**{var: None})


def test_an_empty_runtime_dir_never_becomes_root():
    s = parsed(PCK_RUNTIME_DIR="")
    assert s.paths.runtime_dir == "/run/patroni-citus-k8s" and s.tls.cert_file.startswith("/certs/")


@pytest.mark.parametrize("var", ["PCK_RUNTIME_DIR", "PCK_CERT_DIR", "PCK_SOCKET_DIR", "PATRONI_POSTGRESQL_DATA_DIR",
                                 "PCK_CONFIG_FILE"])
@pytest.mark.parametrize("value", ["/", "//", "/./", "/tmp/.."])
def test_root_is_never_a_product_directory(var, value):
    found = problems(**{var: value})
    assert var in found and ("root directory" in found[var].what or "'..'" in found[var].what)


@pytest.mark.parametrize("typo, meant", [("PCK_CLIENT_CERT_AUTHH", "PCK_CLIENT_CERT_AUTH"),
                                         ("PCK_RUNTIMEDIR", "PCK_RUNTIME_DIR"),
                                         ("PCK_CERT_WATCH_INTERVALL", "PCK_CERT_WATCH_INTERVAL"),
                                         ("PGSSLMDOE", "PGSSLMODE"), ("PGSSLROOTCRT", "PGSSLROOTCERT"),
                                         ("PGSSLKEY_PASWORD_FILE", "PGSSLKEY_PASSWORD_FILE")])
def test_a_misspelled_variable_is_refused_with_the_one_it_resembles(typo, meant):
    found = problems(**{typo: "true"})
    assert typo in found and meant in found[typo].fix


def test_libpqs_own_ssl_variables_are_not_typos():
    parsed(PGSSLSNI="1", PGSSLCRL="/x/crl.pem", PGSSLCOMPRESSION="0", PGSSLMINPROTOCOLVERSION="TLSv1.2")


def test_tooling_variables_of_the_project_are_not_typos():
    parsed(PCK_PREFIX="/opt/x", PCK_TEST_NET="2", PCK_CONTAINERS="0")


def test_every_product_variable_is_in_the_readme():
    import pathlib
    readme = (pathlib.Path(__file__).resolve().parents[3] / "README.md").read_text()
    assert [v for v in PRODUCT_VARIABLES if f"`{v}`" not in readme] == []


def test_a_value_that_is_not_utf8_is_refused():
    bad = b"pass\xff".decode("utf-8", "surrogateescape")  # what os.environ gives for such bytes
    found = problems(PATRONI_SUPERUSER_PASSWORD=bad)
    assert "not valid UTF-8" in found["PATRONI_SUPERUSER_PASSWORD"].what


@pytest.mark.parametrize("var", ["PCK_RUNTIME_DIR", "PGSSLCERT", "PATRONI_SCOPE", "PCK_RUN_AS"])
@pytest.mark.parametrize("value", ["/run/a\nb", "/run/a\x1b[2Jb", "/run/a\tb"])
def test_control_characters_in_names_and_paths_are_refused(var, value):
    assert var in problems(**{var: value})


@pytest.mark.parametrize("value, words", [
    ("db-0,evil:5432", "comma"), ("db 0:5432", "space"), ("db\n0:5432", "control"), (":5432", "not host:port"),
    ("db-0:0", "not host:port"), ("db-0:65536", "not host:port"), ("db-0", "not host:port"), ("d'b:5432", "neither"),
])
def test_connect_addresses_libpq_would_misread_are_refused(value, words):
    found = problems(PATRONI_POSTGRESQL_CONNECT_ADDRESS=value)
    assert words in found["PATRONI_POSTGRESQL_CONNECT_ADDRESS"].what


def test_patronis_multi_host_listen_is_checked_host_by_host():
    assert parsed(PATRONI_POSTGRESQL_LISTEN="127.0.0.2,127.0.0.3:5433").addresses.listen.port == 5433
    assert "PATRONI_POSTGRESQL_LISTEN" in problems(PATRONI_POSTGRESQL_LISTEN="127.0.0.2, x y:5433")


@pytest.mark.parametrize("host, ok", [("citusdemo-0-0.citusdemo.default.svc.cluster.local", True), ("10.0.0.5", True),
                                      ("fd00::5", True), ("[fd00::5]", True), ("db.example.", True), ("", False),
                                      ("a,b", False), ("a b", False), ("a;b", False)])
def test_host_problem(host, ok):
    assert (host_problem(host) is None) is ok


@pytest.mark.parametrize("var, value", [("PCK_EXPIRY_WARN_DAYS", "1000000000"), ("PCK_EXPIRY_WARN_DAYS", "-1"),
                                        ("PCK_CERT_WATCH_INTERVAL", "1e-9"), ("PCK_CERT_WATCH_INTERVAL", "nan"),
                                        ("PCK_CERT_WATCH_INTERVAL", "inf"), ("PCK_CERT_WATCH_INTERVAL", "7200"),
                                        ("PATRONI_CITUS_GROUP", "99999999999999999999")])
def test_numbers_out_of_their_sane_range_are_refused(var, value):
    assert var in problems(**{var: value, "PATRONI_CITUS_DATABASE": "citus"})


@pytest.mark.parametrize("value, seconds", [("0", 0.0), ("0.2", 0.2), ("3600", 3600.0), (" 5 ", 5.0)])
def test_watch_interval_bounds(value, seconds):
    assert parsed(PCK_CERT_WATCH_INTERVAL=value).tuning.watch_interval == seconds


@pytest.mark.parametrize("var", ["PCK_RUNTIME_DIR", "PCK_CONFIG_FILE", "PCK_SOCKET_DIR", "PATRONI_POSTGRESQL_DATA_DIR",
                                 "PGSSLCERT"])
@pytest.mark.parametrize("value", ["/x/" + "n" * 201, "/" + "/".join(["d" * 100] * 41)])
def test_paths_no_file_system_takes_are_refused(var, value):
    found = problems(**{var: value})
    assert var in found and "bytes" in found[var].what


def test_a_socket_path_longer_than_sun_path_is_refused():
    found = problems(PCK_SOCKET_DIR="/" + "s" * 93)  # "/sss...s/.s.PGSQL.5432" is 108 bytes
    assert "PCK_SOCKET_DIR" in found and "107" in found["PCK_SOCKET_DIR"].what
    parsed(PCK_SOCKET_DIR="/" + "s" * 92)
