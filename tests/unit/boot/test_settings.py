"""parse_settings: every input parsed once, defaults, derivations, and every problem reported together."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from entrypoint.errors import InputError
from entrypoint.boot.settings import HostFacts, parse_settings
from entrypoint.sslmode import NAMES as MODES
from tests.unit.conftest import BASE_ENV, CERT_MANAGER_NAMES, SEED_NAMES, env_with, facts


def problems(env: dict, host: HostFacts = facts()) -> dict:
    """Parse `env` expecting failure; returns {where: problem} for every problem reported."""
    with pytest.raises(InputError) as caught:
        parse_settings(env, host)
    return {p.where: p for p in caught.value.problems}


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_parses_with_its_flags(mode):
    s = parse_settings(env_with(PGSSLMODE=mode), facts())
    assert s.mode.name == mode
    assert s.mode.uses_tls == (mode != "disable")
    assert s.mode.requires_tls == (mode in ("require", "verify-ca", "verify-full"))
    assert s.mode.verifies_ca == (mode in ("verify-ca", "verify-full"))
    assert s.server_ssl == (mode != "disable")  # certificates are present in facts()


def test_mode_defaults_to_prefer():
    assert parse_settings(env_with(PGSSLMODE=None), facts()).mode.name == "prefer"


@pytest.mark.parametrize("mode", ["verify_full", "REQUIRE", "tls", "verify-full "[:-2]])
def test_unknown_mode_names_the_variable_and_the_choices(mode):
    found = problems(env_with(PGSSLMODE=mode))
    assert "unknown mode" in found["PGSSLMODE"].what and repr(mode) in found["PGSSLMODE"].what
    assert "verify-full" in found["PGSSLMODE"].fix


@pytest.mark.parametrize("names, cert, key", [
    (SEED_NAMES, "server.crt", "server.key"),
    (CERT_MANAGER_NAMES, "tls.crt", "tls.key"),
    (SEED_NAMES + CERT_MANAGER_NAMES, "server.crt", "server.key"),  # the seed's names win
    ((), "server.crt", "server.key"),  # nothing mounted: the seed's names, reported missing later
])
def test_default_file_names_follow_what_the_secret_holds(names, cert, key):
    s = parse_settings(env_with(PGSSLMODE="require"), facts(names))
    assert (s.tls.cert_file, s.tls.key_file, s.tls.ca_file) == (f"/certs/{cert}", f"/certs/{key}", "/certs/ca.crt")
    assert s.tls.cert_present == bool(names)


def test_explicit_paths_win_over_the_directory():
    s = parse_settings(env_with(PGSSLCERT="/x/a.pem", PGSSLKEY="/x/a.key", PGSSLROOTCERT="/x/ca.pem"),
                       facts(CERT_MANAGER_NAMES))
    assert (s.tls.cert_file, s.tls.key_file, s.tls.ca_file) == ("/x/a.pem", "/x/a.key", "/x/ca.pem")
    assert s.tls.cert_explicit and s.tls.key_explicit and s.tls.ca_explicit and s.tls.cert_present


def test_default_cert_dir_is_the_seeds():
    s = parse_settings(env_with(PCK_CERT_DIR=None), facts())
    assert s.tls.cert_file == "/etc/ssl/certs/postgresql/server.crt"


def test_relative_paths_are_refused():
    found = problems(env_with(PGSSLCERT="server.crt", PCK_RUNTIME_DIR="run"))
    assert set(found) >= {"PGSSLCERT", "PCK_RUNTIME_DIR"}


@pytest.mark.parametrize("text, value", [
    ("false", False), ("False", False), ("0", False), ("no", False), ("off", False), ("", False),
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), (" on ", True),
])
def test_booleans_mean_what_they_say(text, value):
    s = parse_settings(env_with(PGSSLMODE="require", PCK_CLIENT_CERT_AUTH=text), facts())
    assert s.mtls.enabled is value


@pytest.mark.parametrize("junk", ["ture", "enabled", "2", "y es", "nope"])
def test_junk_boolean_is_an_error(junk):
    found = problems(env_with(PGSSLMODE="require", PCK_CLIENT_CERT_AUTH=junk))
    assert "not a boolean" in found["PCK_CLIENT_CERT_AUTH"].what


@pytest.mark.parametrize("var", ["PATRONI_SCOPE", "PATRONI_NAME", "PATRONI_SUPERUSER_PASSWORD",
                                 "PATRONI_REPLICATION_PASSWORD"])
@pytest.mark.parametrize("value", [None, ""])
def test_required_variables(var, value):
    found = problems(env_with(**{var: value}))
    assert var in found and found[var].fix


def test_rewind_user_needs_its_password():
    found = problems(env_with(PATRONI_REWIND_USERNAME="rewinder"))
    assert "PATRONI_REWIND_PASSWORD" in found
    s = parse_settings(env_with(PATRONI_REWIND_USERNAME="rewinder", PATRONI_REWIND_PASSWORD="rw"), facts())
    assert (s.users.rewind.username, s.users.rewind.password) == ("rewinder", "rw")


def test_explicit_connect_address_is_honoured():
    s = parse_settings(env_with(KUBERNETES_SERVICE_HOST="10.0.0.1",
                                PATRONI_POSTGRESQL_CONNECT_ADDRESS="db.example.org:6432"), facts())
    assert (s.addresses.connect.host, s.addresses.connect.port, s.addresses.connect_derived) == ("db.example.org", 6432, False)
    assert str(s.addresses.restapi_connect) == "db.example.org:8008"


def test_ipv6_connect_address():
    s = parse_settings(env_with(PATRONI_POSTGRESQL_CONNECT_ADDRESS="[fd00::5]:5432"), facts())
    assert s.addresses.connect.host == "fd00::5" and str(s.addresses.connect) == "[fd00::5]:5432"


K8S = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "PATRONI_POSTGRESQL_CONNECT_ADDRESS": None,
       "PATRONI_NAME": "citusdemo-1-0", "PATRONI_SCOPE": "citusdemo"}


@pytest.mark.parametrize("extra, host", [
    ({"PATRONI_KUBERNETES_NAMESPACE": "prod"}, "citusdemo-1-0.citusdemo.prod.svc.cluster.local"),
    ({"POD_NAMESPACE": "ns2"}, "citusdemo-1-0.citusdemo.ns2.svc.cluster.local"),
    ({"PATRONI_KUBERNETES_NAMESPACE": "prod", "PCK_HEADLESS_SERVICE": "pg-hl", "PCK_CLUSTER_DOMAIN": "corp.local"},
     "citusdemo-1-0.pg-hl.prod.svc.corp.local"),
    ({"PATRONI_KUBERNETES_NAMESPACE": "prod", "PCK_CLUSTER_DOMAIN": "corp.local.",
      "PATRONI_POSTGRESQL_LISTEN": "*:6432"}, "citusdemo-1-0.citusdemo.prod.svc.corp.local"),
])
def test_connect_address_derived_on_kubernetes(extra, host):
    s = parse_settings(env_with(**K8S, **extra), facts())
    assert s.addresses.connect.host == host and s.addresses.connect_derived
    assert s.addresses.connect.port == s.addresses.listen.port
    assert s.addresses.restapi_connect.host == host


@pytest.mark.parametrize("mode", MODES)
def test_connect_address_unknowable_is_an_error(mode):
    found = problems(env_with(PGSSLMODE=mode, PATRONI_POSTGRESQL_CONNECT_ADDRESS=None))
    problem = found["PATRONI_POSTGRESQL_CONNECT_ADDRESS"]
    assert "no name can be derived" in problem.what
    assert ("SANs cover" in problem.fix) == (mode == "verify-full")


def test_specific_listen_address_is_the_connect_address():
    s = parse_settings(env_with(PATRONI_POSTGRESQL_CONNECT_ADDRESS=None,
                                PATRONI_POSTGRESQL_LISTEN="10.1.2.3:5433"), facts())
    assert str(s.addresses.connect) == "10.1.2.3:5433" and s.addresses.listen_host == "10.1.2.3"


def test_patroni_multi_host_listen_is_accepted():
    """Patroni's documented form: hosts separated by commas, the port after the last one."""
    s = parse_settings(env_with(PATRONI_POSTGRESQL_LISTEN="127.0.0.2,127.0.0.3:5433"), facts())
    assert s.addresses.listen.port == 5433
    assert s.addresses.listen_host.startswith("127.0.0.2")


@pytest.mark.parametrize("var, value", [
    ("PATRONI_POSTGRESQL_LISTEN", "5432"), ("PATRONI_POSTGRESQL_LISTEN", "*:99999"),
    ("PATRONI_POSTGRESQL_CONNECT_ADDRESS", "host-without-port"), ("PATRONI_RESTAPI_LISTEN", "x:y"),
    ("PATRONI_RESTAPI_CONNECT_ADDRESS", "[::1]8008"), ("PCK_TLS_MIN_VERSION", "TLSv1.1"),
    ("PATRONI_POSTGRESQL_LISTEN", "*:\u00b2"), ("PATRONI_POSTGRESQL_CONNECT_ADDRESS", "h:\u0665\u0664\u0663\u0662"),
    ("PCK_EXPIRY_WARN_DAYS", "soon"), ("PCK_EXPIRY_WARN_DAYS", "-1"), ("PATRONI_CITUS_GROUP", "one"),
])
def test_malformed_values_name_their_variable(var, value):
    assert var in problems(env_with(**{var: value, "PATRONI_CITUS_DATABASE": "citus"}))


def test_citus_group_and_database_go_together():
    assert "PATRONI_CITUS_DATABASE" in problems(env_with(PATRONI_CITUS_GROUP="1"))
    assert "PATRONI_CITUS_GROUP" in problems(env_with(PATRONI_CITUS_DATABASE="citus"))
    s = parse_settings(env_with(PATRONI_CITUS_GROUP="0", PATRONI_CITUS_DATABASE="citus"), facts())
    assert (s.citus.group, s.citus.database) == (0, "citus")


def test_tls_min_version_configurable():
    assert parse_settings(env_with(PCK_TLS_MIN_VERSION="TLSv1.3"), facts()).tuning.tls_min_version == "TLSv1.3"
    assert parse_settings(BASE_ENV, facts()).tuning.tls_min_version == "TLSv1.2"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("role", ["SUPERUSER", "REPLICATION", "REWIND"])
def test_patroni_sslmode_that_contradicts_the_mode(mode, role):
    other = "verify-full" if mode == "disable" else "disable"
    found = problems(env_with(PGSSLMODE=mode, **{f"PATRONI_{role}_SSLMODE": other}))
    assert f"PATRONI_{role}_SSLMODE" in found


def test_patroni_sslmode_that_agrees_is_fine():
    s = parse_settings(env_with(PGSSLMODE="verify-full", PATRONI_REPLICATION_SSLMODE="verify-full"), facts())
    assert s.mode.name == "verify-full"


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
def test_client_cert_auth_needs_a_tls_only_mode(mode):
    found = problems(env_with(PGSSLMODE=mode, PCK_CLIENT_CERT_AUTH="true"))
    assert "PGSSLMODE" in found["PCK_CLIENT_CERT_AUTH"].fix


def test_other_contradictions():
    found = problems(env_with(PGSSLMODE="verify-full", PCK_CLIENT_CERT_AUTH="true",
                              PATRONI_RESTAPI_VERIFY_CLIENT="optional", PATRONI_CTL_INSECURE="true",
                              PCK_CLIENT_CERT="/x/c.crt"))
    assert {"PATRONI_RESTAPI_VERIFY_CLIENT", "PATRONI_CTL_INSECURE", "PCK_CLIENT_KEY"} <= set(found)


def test_key_password_from_variable_or_file_not_both():
    s = parse_settings(env_with(PGSSLKEY_PASSWORD_FILE="/s/pw"), facts(key_password_file_content="p w\n"))
    assert s.key_password == "p w"
    assert "PGSSLKEY_PASSWORD_FILE" in problems(env_with(PGSSLKEY_PASSWORD_FILE="/s/pw"))
    assert "PGSSLKEY_PASSWORD" in problems(env_with(PGSSLKEY_PASSWORD="a", PGSSLKEY_PASSWORD_FILE="/s/pw"),
                                           facts(key_password_file_content="a"))


def test_every_problem_is_reported_together():
    env = {"PGSSLMODE": "verify-fully", "PCK_CLIENT_CERT_AUTH": "maybe", "PATRONI_CITUS_GROUP": "x",
           "PCK_TLS_MIN_VERSION": "SSLv3"}
    with pytest.raises(InputError) as caught:
        parse_settings(env, HostFacts())
    where = [p.where for p in caught.value.problems]
    assert set(where) >= {"PGSSLMODE", "PCK_CLIENT_CERT_AUTH", "PATRONI_CITUS_GROUP", "PCK_TLS_MIN_VERSION",
                          "PATRONI_SCOPE", "PATRONI_NAME", "PATRONI_SUPERUSER_PASSWORD",
                          "PATRONI_REPLICATION_PASSWORD", "PATRONI_POSTGRESQL_CONNECT_ADDRESS",
                          "PATRONI_CITUS_DATABASE"}
    report = str(caught.value)
    assert report.startswith(f"patroni-citus-k8s: {len(where)} problems")
    assert report.count("fix: ") == len(where)


def test_parse_does_not_read_the_process_environment(monkeypatch):
    monkeypatch.setenv("PGSSLMODE", "disable")
    monkeypatch.setenv("PATRONI_SCOPE", "from-os-environ")
    s = parse_settings(env_with(PGSSLMODE="verify-full"), facts())
    assert (s.mode.name, s.identity.scope) == ("verify-full", "demo")


# Names parse_settings looks at, so generated environments hit real code paths.
KNOWN_VARS = sorted(set(BASE_ENV) | {
    "PGSSLMODE", "PGSSLCERT", "PGSSLKEY", "PGSSLROOTCERT", "PGSSLKEY_PASSWORD", "PGSSLKEY_PASSWORD_FILE",
    "PCK_CLIENT_CERT_AUTH", "PCK_CLIENT_CERT", "PCK_CLIENT_KEY", "PCK_TLS_MIN_VERSION", "PCK_EXPIRY_WARN_DAYS",
    "PCK_CONFIG_FILE", "PCK_SOCKET_DIR", "PCK_RUN_AS", "PCK_HEADLESS_SERVICE", "PCK_CLUSTER_DOMAIN",
    "KUBERNETES_SERVICE_HOST", "PATRONI_KUBERNETES_NAMESPACE", "POD_NAMESPACE", "PATRONI_POSTGRESQL_LISTEN",
    "PATRONI_RESTAPI_LISTEN", "PATRONI_RESTAPI_CONNECT_ADDRESS", "PATRONI_REWIND_USERNAME",
    "PATRONI_REWIND_PASSWORD", "PATRONI_CITUS_GROUP", "PATRONI_CITUS_DATABASE", "PATRONI_REPLICATION_SSLMODE",
    "PATRONI_RESTAPI_VERIFY_CLIENT", "PATRONI_CTL_INSECURE", "PATRONI_ETCD3_CERT", "PATRONI_POSTGRESQL_DATA_DIR",
})
# Values near the grammar's edges: modes, booleans, numbers in other scripts, addresses.
EDGE_VALUES = st.sampled_from(list(MODES) + [
    "", " ", "true", "false", "yes", "-1", "0", "65536", "²", "٥٤٣٢", "1_0", "*:5432", "[::]:5432", "[::1]",
    "a:b:c", "h:²", "h:٥٤٣٢", "x,y:5432", ":5432", "/abs/path", "rel/path", "TLSv1.3", "\x00", "é:5432",
])


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env=st.dictionaries(st.sampled_from(KNOWN_VARS), st.one_of(st.text(), EDGE_VALUES), max_size=12),
       base=st.booleans(), entries=st.sets(st.sampled_from(SEED_NAMES + CERT_MANAGER_NAMES)))
def test_parsing_raises_nothing_but_input_error(env, base, entries):
    full = {**BASE_ENV, **env} if base else env
    try:
        parse_settings(full, HostFacts(cert_dir_entries=frozenset(entries)))
    except InputError as err:
        assert err.problems and all(p.where and p.what and p.fix for p in err.problems)


@pytest.mark.parametrize("var", ["PATRONI_REPLICATION_SSLROOTCERT", "PATRONI_SUPERUSER_SSLKEY",
                                 "PATRONI_REWIND_SSLCERT"])
def test_patroni_role_tls_file_variables_are_refused_or_staged(var):
    """e.g. a root-only Secret path the run user cannot read after the privilege drop."""
    env = env_with(PGSSLMODE="verify-full", **{var: "/etc/ssl/certs/postgresql/ca.crt"})
    try:
        s = parse_settings(env, facts())
    except InputError as err:
        assert var in [p.where for p in err.problems]
        return
    assert var in s.tls.patroni_files


@pytest.mark.parametrize("pg, rest", [
    ("*:5432", "0.0.0.0:5432"), ("*:5432", "127.0.0.1:5432"), ("127.0.0.1:8008", "0.0.0.0:8008"),
    ("127.0.0.2,127.0.0.3:7000", "127.0.0.3:7000"), ("[::1]:6000", "[::1]:6000"), ("127.0.0.1:6000", ":::6000"),
    ("127.0.0.1:5432", "localhost:5432"), ("[::1]:5432", "[0:0:0:0:0:0:0:1]:5432"), ("127.0.0.1:5432", "127.1:5432"),
    ("127.0.0.1:5432", "[0:0:0:0:0:0:0:0]:5432"), ("DB.example:5432", "db.example:5432"),
    ("*:5432", "[::1]:5432"), ("[::1]:5432", "*:5432"),  # `*` is both families, for both servers
])
def test_postgres_and_rest_api_on_one_port_are_refused(pg, rest):
    found = problems(env_with(PATRONI_POSTGRESQL_LISTEN=pg, PATRONI_RESTAPI_LISTEN=rest))
    assert "also PostgreSQL's" in found["PATRONI_RESTAPI_LISTEN"].what
    assert "its own port" in found["PATRONI_RESTAPI_LISTEN"].fix


@pytest.mark.parametrize("pg, rest", [("127.0.0.2:6000", "127.0.0.3:6000"), ("*:5432", "0.0.0.0:8008"),
                                      ("[::1]:5432", "0.0.0.0:5432"), ("127.0.0.1:5432", "[::1]:5432"),
                                      # PostgreSQL's `::` is IPv6 only (IPV6_V6ONLY): the IPv4 port stays free
                                      ("[::]:5432", "127.0.0.1:5432"), ("[::]:5432", "0.0.0.0:5432")])
def test_one_port_on_different_addresses_is_accepted(pg, rest):
    s = parse_settings(env_with(PATRONI_POSTGRESQL_LISTEN=pg, PATRONI_RESTAPI_LISTEN=rest,
                                PATRONI_POSTGRESQL_CONNECT_ADDRESS="db.example:5432"), facts())
    assert s.addresses.restapi_listen == rest


def test_a_malformed_listen_address_is_reported_once_not_as_a_port_clash_too():
    found = problems(env_with(PATRONI_POSTGRESQL_LISTEN="127.0.0.1: 5432", PATRONI_RESTAPI_LISTEN="0.0.0.0:5432"))
    assert "PATRONI_POSTGRESQL_LISTEN" in found and "PATRONI_RESTAPI_LISTEN" not in found
