"""build_config / render_yaml: the mode table of DESIGN.md, pg_hba semantics, redaction, and exact round trips."""

from __future__ import annotations

import ipaddress

import pytest
import yaml
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from entrypoint.errors import InputError
from entrypoint.boot.render import REDACTED, build_config, render_for, render_yaml
from entrypoint.boot.settings import parse_settings
from entrypoint.sslmode import NAMES as MODES
from entrypoint.boot.stage import plan_paths
from tests.unit.conftest import SEED_NAMES, check, env_with, facts

TLS_DIR = "/run/pck/tls"
STAGED_CA = f"{TLS_DIR}/ca.crt"
STAGED_CERT, STAGED_KEY = f"{TLS_DIR}/server.crt", f"{TLS_DIR}/server.key"
CITUS = {"PATRONI_CITUS_GROUP": "1", "PATRONI_CITUS_DATABASE": "citus"}
REQUIRED = ("require", "verify-ca", "verify-full")
ROLES = ("superuser", "replication", "rewind")
REWIND = {"PATRONI_REWIND_USERNAME": "rewinder", "PATRONI_REWIND_PASSWORD": "rw-Secret-3"}


def pipeline(node_files: dict, mode: str, names: tuple = SEED_NAMES, **changes):
    """Settings and staged paths the way `render` gets them, from in-memory certificates."""
    settings = parse_settings(env_with(**{**REWIND, "PGSSLMODE": mode, **changes}), facts(names))
    material = check(settings, node_files if names else {})
    return settings, plan_paths(settings, material)


def config_for(node_files: dict, mode: str, names: tuple = SEED_NAMES, **changes) -> dict:
    """The configuration as Patroni will read it: rendered with secrets, then parsed back."""
    settings, paths = pipeline(node_files, mode, names, **changes)
    return yaml.safe_load(render_for(settings, paths, show_secrets=True))


# --- server side: ssl and its files -------------------------------------------------------

@pytest.mark.parametrize("mode, names, ssl", [
    ("disable", SEED_NAMES, "off"),
    ("allow", SEED_NAMES, "on"), ("prefer", SEED_NAMES, "on"),
    ("allow", (), "off"), ("prefer", (), "off"),
    ("require", SEED_NAMES, "on"), ("verify-ca", SEED_NAMES, "on"), ("verify-full", SEED_NAMES, "on"),
])
def test_server_ssl_follows_the_mode_table(node_files, mode, names, ssl):
    params = config_for(node_files, mode, names)["postgresql"]["parameters"]
    assert params["ssl"] == ssl
    tls_keys = {"ssl_cert_file", "ssl_key_file", "ssl_ca_file", "ssl_min_protocol_version"}
    if ssl == "off":
        assert not tls_keys & set(params)
    else:
        assert (params["ssl_cert_file"], params["ssl_key_file"], params["ssl_ca_file"]) == \
            (STAGED_CERT, STAGED_KEY, STAGED_CA)
        assert params["ssl_min_protocol_version"] == "TLSv1.2"


def test_min_protocol_version_is_configurable(node_files):
    params = config_for(node_files, "require", PCK_TLS_MIN_VERSION="TLSv1.3")["postgresql"]["parameters"]
    assert params["ssl_min_protocol_version"] == "TLSv1.3"


def test_require_without_a_ca_serves_tls_without_ssl_ca_file(node_files):
    files = {k: v for k, v in node_files.items() if not k.endswith("ca.crt")}
    params = config_for(files, "require")["postgresql"]["parameters"]
    assert params["ssl"] == "on" and "ssl_ca_file" not in params


# --- pg_hba: evaluated the way PostgreSQL does (first matching line wins) ------------------

def hba_method(lines: list, ssl: bool, database: str, address: str):
    """Return (method, options) of the first TCP line matching; None when none does (PostgreSQL rejects)."""
    addr = ipaddress.ip_address(address)
    for line in lines:
        kind, db, _user, *rest = line.split()
        if kind == "local" or (kind == "hostssl" and not ssl) or (kind == "hostnossl" and ssl):
            continue
        if (db == "replication") != (database == "replication"):
            continue
        if addr not in ipaddress.ip_network(rest[0]):
            continue
        return rest[1], tuple(rest[2:])
    return None


CLIENTS = [(db, address) for db in ("postgres", "citus", "replication") for address in ("10.1.2.3", "fd00::9")]


@pytest.mark.parametrize("mode", REQUIRED)
@pytest.mark.parametrize("mtls", [False, True])
def test_pg_hba_rejects_plaintext_before_anything_accepts_it(node_files, mode, mtls):
    hba = config_for(node_files, mode, PCK_CLIENT_CERT_AUTH=str(mtls))["postgresql"]["pg_hba"]
    for db, address in CLIENTS:
        assert hba_method(hba, ssl=False, database=db, address=address) == ("reject", ()), (db, address, hba)
        expected = ("scram-sha-256", ("clientcert=verify-ca",) if mtls else ())
        assert hba_method(hba, ssl=True, database=db, address=address) == expected, (db, address, hba)
    # No plain `host` line at all: even a line added later by hand cannot reopen plaintext above them.
    assert not any(line.split()[0] == "host" for line in hba)


@pytest.mark.parametrize("mode, names", [("disable", SEED_NAMES), ("allow", SEED_NAMES), ("prefer", SEED_NAMES),
                                         ("prefer", ())])
def test_pg_hba_accepts_both_when_tls_is_optional(node_files, mode, names):
    hba = config_for(node_files, mode, names)["postgresql"]["pg_hba"]
    for db, address in CLIENTS:
        for ssl in (False, True):
            assert hba_method(hba, ssl=ssl, database=db, address=address) == ("scram-sha-256", ())
    assert not any("reject" in line for line in hba)


@pytest.mark.parametrize("mode", MODES)
def test_pg_hba_local_socket_first(node_files, mode):
    hba = config_for(node_files, mode)["postgresql"]["pg_hba"]
    assert hba[:2] == ["local all postgres peer", "local all all scram-sha-256"]


# --- client side of internal links -------------------------------------------------------

@pytest.mark.parametrize("mode, sslmode, rootcert", [
    ("disable", "disable", None), ("allow", "allow", None), ("prefer", "prefer", None),
    ("require", "require", None),  # require must not carry sslrootcert: libpq would verify the CA
    ("verify-ca", "verify-ca", STAGED_CA), ("verify-full", "verify-full", STAGED_CA),
])
def test_client_tls_per_role(node_files, mode, sslmode, rootcert):
    auth = config_for(node_files, mode)["postgresql"]["authentication"]
    for role in ROLES:
        assert auth[role]["sslmode"] == sslmode
        assert auth[role].get("sslrootcert") == rootcert
        assert "sslcert" not in auth[role] and "sslkey" not in auth[role]


@pytest.mark.parametrize("mode", REQUIRED)
def test_mutual_tls_client_side(node_files, mode):
    config = config_for(node_files, mode, PCK_CLIENT_CERT_AUTH="true", **CITUS)
    for role in ROLES:
        role_cfg = config["postgresql"]["authentication"][role]
        assert (role_cfg["sslcert"], role_cfg["sslkey"]) == (STAGED_CERT, STAGED_KEY)
    conninfo = parse_conninfo(config["postgresql"]["parameters"]["citus.node_conninfo"])
    assert (conninfo["sslcert"], conninfo["sslkey"]) == (STAGED_CERT, STAGED_KEY)
    assert config["restapi"]["verify_client"] == "required"
    assert (config["ctl"]["certfile"], config["ctl"]["keyfile"]) == (STAGED_CERT, STAGED_KEY)


def test_mutual_tls_with_a_separate_client_pair(ca, node_files):
    client = ca.issue(cn="postgres")
    files = {**node_files, "/c/client.crt": client.cert_pem, "/c/client.key": client.key_pem}
    config = config_for(files, "verify-full", PCK_CLIENT_CERT_AUTH="yes", PCK_CLIENT_CERT="/c/client.crt",
                        PCK_CLIENT_KEY="/c/client.key")
    assert config["postgresql"]["authentication"]["replication"]["sslcert"] == f"{TLS_DIR}/client.crt"
    assert config["ctl"]["keyfile"] == f"{TLS_DIR}/client.key"
    assert config["restapi"]["certfile"] == STAGED_CERT


def parse_conninfo(text: str) -> dict:
    """A libpq conninfo parser (keyword=value, values optionally single-quoted with backslash escapes)."""
    out, i = {}, 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        key_end = text.index("=", i)
        key, i = text[i:key_end].strip(), key_end + 1
        value = []
        if i < len(text) and text[i] == "'":
            i += 1
            while text[i] != "'":
                if text[i] == "\\":
                    i += 1
                value.append(text[i])
                i += 1
            i += 1
        else:
            while i < len(text) and not text[i].isspace():
                if text[i] == "\\":
                    i += 1
                value.append(text[i])
                i += 1
        out[key] = "".join(value)
    return out


@pytest.mark.parametrize("mode, expected", [
    ("disable", {"sslmode": "disable"}), ("allow", {"sslmode": "allow"}), ("prefer", {"sslmode": "prefer"}),
    ("require", {"sslmode": "require"}),
    ("verify-ca", {"sslmode": "verify-ca", "sslrootcert": STAGED_CA}),
    ("verify-full", {"sslmode": "verify-full", "sslrootcert": STAGED_CA}),
])
def test_citus_node_conninfo_in_every_mode(node_files, mode, expected):
    config = config_for(node_files, mode, **CITUS)
    assert parse_conninfo(config["postgresql"]["parameters"]["citus.node_conninfo"]) == expected
    assert config["citus"] == {"group": 1, "database": "citus"}


def test_no_citus_no_citus_settings(node_files):
    config = config_for(node_files, "verify-full")
    assert "citus" not in config and "citus.node_conninfo" not in config["postgresql"]["parameters"]


def test_node_conninfo_quotes_awkward_paths(node_files):
    runtime = "/run/it's a \\dir"
    config = config_for(node_files, "verify-full", PCK_RUNTIME_DIR=runtime, **CITUS)
    conninfo = parse_conninfo(config["postgresql"]["parameters"]["citus.node_conninfo"])
    assert conninfo["sslrootcert"] == f"{runtime}/tls/ca.crt"


# --- REST API and ctl ------------------------------------------------------------------------

@pytest.mark.parametrize("mode, names, restapi_tls, ctl", [
    ("disable", SEED_NAMES, False, None),
    ("prefer", (), False, None),
    ("allow", SEED_NAMES, True, {"cacert": STAGED_CA, "insecure": True}),
    ("prefer", SEED_NAMES, True, {"cacert": STAGED_CA, "insecure": True}),
    ("require", SEED_NAMES, True, {"cacert": STAGED_CA, "insecure": True}),
    # Patroni checks the chain but not the name with insecure + a client certificate: that is verify-ca.
    ("verify-ca", SEED_NAMES, True, {"cacert": STAGED_CA, "insecure": True, "certfile": STAGED_CERT,
                                     "keyfile": STAGED_KEY}),
    ("verify-full", SEED_NAMES, True, {"cacert": STAGED_CA, "insecure": False}),
])
def test_restapi_and_ctl_per_mode(node_files, mode, names, restapi_tls, ctl):
    config = config_for(node_files, mode, names)
    restapi = config["restapi"]
    assert restapi["connect_address"] == "demo-0-0.demo.ns.svc.cluster.local:8008"
    if restapi_tls:
        assert (restapi["certfile"], restapi["keyfile"], restapi["cafile"]) == (STAGED_CERT, STAGED_KEY, STAGED_CA)
    else:
        assert not {"certfile", "keyfile", "cafile"} & set(restapi)
    assert "verify_client" not in restapi
    assert config.get("ctl") == ctl


def test_patroni_restapi_file_variables_are_used_staged(node, node_files):
    files = {**node_files, "/api/cert.pem": node.cert_pem, "/api/key.pem": node.key_pem}
    config = config_for(files, "verify-full", PATRONI_RESTAPI_CERTFILE="/api/cert.pem",
                        PATRONI_RESTAPI_KEYFILE="/api/key.pem")
    assert config["restapi"]["certfile"] == f"{TLS_DIR}/patroni_restapi_certfile.pem"
    assert config["restapi"]["keyfile"] == f"{TLS_DIR}/patroni_restapi_keyfile.pem"


# --- what Patroni's own variables say must agree with the YAML ----------------------------------

@pytest.mark.parametrize("var, value, path", [
    ("PATRONI_POSTGRESQL_LISTEN", "*:5432", ("postgresql", "listen")),
    ("PATRONI_POSTGRESQL_LISTEN", "0.0.0.0:6543", ("postgresql", "listen")),
    ("PATRONI_POSTGRESQL_LISTEN", "10.0.0.5:5432", ("postgresql", "listen")),
    ("PATRONI_POSTGRESQL_CONNECT_ADDRESS", "[fd00::5]:5432", ("postgresql", "connect_address")),
    ("PATRONI_RESTAPI_LISTEN", "127.0.0.1:8009", ("restapi", "listen")),
    ("PATRONI_RESTAPI_CONNECT_ADDRESS", "api.example:8443", ("restapi", "connect_address")),
    ("PATRONI_POSTGRESQL_DATA_DIR", "/data/pg", ("postgresql", "data_dir")),
    ("PATRONI_POSTGRESQL_BIN_DIR", "/usr/lib/postgresql/15/bin", ("postgresql", "bin_dir")),
])
def test_rendered_values_agree_with_patroni_variables(node_files, var, value, path):
    config = config_for(node_files, "require", **{var: value})
    assert config[path[0]][path[1]] == value


def test_types_survive_no_string_booleans(node_files):
    config = config_for(node_files, "verify-full", **CITUS)
    pg = config["postgresql"]
    assert pg["use_unix_socket"] is True and pg["use_unix_socket_repl"] is False
    assert config["ctl"]["insecure"] is False and config["citus"]["group"] == 1
    assert pg["basebackup"] == [{"checkpoint": "fast"}]
    assert config["bootstrap"]["dcs"]["postgresql"] == {"use_pg_rewind": True, "use_slots": True}


# --- redaction -------------------------------------------------------------------------------------

SECRETS = {"PATRONI_SUPERUSER_PASSWORD": "Sup3r-'sécret'#: 🔑", "PATRONI_REPLICATION_PASSWORD": "R3pl\nline two",
           "PATRONI_REWIND_PASSWORD": "Rew1nd\u2028\"x\""}


@pytest.mark.parametrize("mode", MODES)
def test_redacted_render_shows_no_password(node_files, mode):
    settings, paths = pipeline(node_files, mode, **SECRETS)
    text = render_for(settings, paths, show_secrets=False)
    for secret in SECRETS.values():
        for fragment in secret.replace("\u2028", "\n").split("\n"):
            assert fragment not in text
    auth = yaml.safe_load(text)["postgresql"]["authentication"]
    assert {auth[role]["password"] for role in ROLES} == {REDACTED}


def test_show_secrets_renders_them_exactly(node_files):
    auth = config_for(node_files, "verify-full", **SECRETS)["postgresql"]["authentication"]
    assert [auth[role]["password"] for role in ROLES] == list(SECRETS.values())


def test_template_text_is_yaml_with_comments_not_a_dump(node_files):
    settings, paths = pipeline(node_files, "verify-full", **CITUS)
    text = render_for(settings, paths, show_secrets=False)
    assert text.startswith("# Patroni configuration rendered by patroni-citus-k8s")
    assert "PGSSLMODE=verify-full" in text.splitlines()[0]
    assert text.endswith("\n") and "&amp;" not in text


# --- property tests: any text survives exactly ----------------------------------------------------

# Everything YAML and libpq treat specially, unicode line separators, astral characters, YAML keywords.
AWKWARD = st.one_of(
    st.text(alphabet=st.one_of(
        st.sampled_from(list("'\"\\:#&*!|>%@`{}[],?-=~ \t\n\r\u2028\u2029\x85\ufeff\x00🔑é\U0010fffd")),
        st.characters(exclude_categories=("Cs",))), min_size=1, max_size=40),
    st.sampled_from(["yes", "no", "null", "~", "true", "0x1F", "1e3", "- a", "? x", "&a", "*a", "!!str", "%TAG",
                     "---", "...", " lead", "trail ", "a: b", "#c", "\u2028", "🔑"]))


@hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                    HealthCheck.function_scoped_fixture])
@given(su=AWKWARD, repl=AWKWARD, user=AWKWARD, scope=AWKWARD, data_dir=AWKWARD, runtime=AWKWARD, mode=st.sampled_from(MODES))
def test_any_text_survives_render_and_reparse(node_files, su, repl, user, scope, data_dir, runtime, mode):
    env = env_with(PGSSLMODE=mode, PATRONI_SUPERUSER_PASSWORD=su, PATRONI_REPLICATION_PASSWORD=repl,
                   PATRONI_SUPERUSER_USERNAME=user, PATRONI_SCOPE=scope, PATRONI_POSTGRESQL_DATA_DIR="/" + data_dir,
                   PCK_RUNTIME_DIR="/" + runtime, **CITUS)
    try:
        settings = parse_settings(env, facts())
    except InputError as err:
        # Names and paths with control characters or odd shapes are refused; passwords never are.
        assert {p.where for p in err.problems} <= {"PATRONI_SUPERUSER_USERNAME", "PATRONI_SCOPE",
                                                   "PATRONI_POSTGRESQL_DATA_DIR", "PCK_RUNTIME_DIR"}, err.report()
        return
    material = check(settings, node_files)
    paths = plan_paths(settings, material)
    config = build_config(settings, paths)
    text = render_yaml(config, settings)
    parsed = yaml.safe_load(text)
    assert parsed == config
    auth = parsed["postgresql"]["authentication"]
    assert (auth["superuser"]["password"], auth["replication"]["password"], auth["superuser"]["username"]) == \
        (su, repl, user)
    assert (parsed["scope"], parsed["postgresql"]["data_dir"]) == (scope, settings.paths.data_dir)
    conninfo = parse_conninfo(parsed["postgresql"]["parameters"]["citus.node_conninfo"])
    if mode in ("verify-ca", "verify-full"):
        assert conninfo["sslrootcert"] == settings.paths.runtime_dir + "/tls/ca.crt"


@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full"])
def test_patroni_verify_client_required_gets_a_ctl_certificate_or_is_refused(node_files, mode):
    """Patroni's own variable turns on client certificates for the REST API; members then need ctl certfile/keyfile."""
    try:
        config = config_for(node_files, mode, PATRONI_RESTAPI_VERIFY_CLIENT="required")
    except InputError as err:
        assert "PATRONI_RESTAPI_VERIFY_CLIENT" in [p.where for p in err.problems]
        return
    assert (config["ctl"].get("certfile"), config["ctl"].get("keyfile")) == (STAGED_CERT, STAGED_KEY)


@pytest.mark.parametrize("mode", MODES)
def test_local_connections_use_the_socket(node_files, mode):
    """verify-full to the local node works whatever names the certificate has: Patroni and Citus use the socket."""
    pg = config_for(node_files, mode, PCK_SOCKET_DIR="/sock/dir", **CITUS)["postgresql"]
    assert pg["use_unix_socket"] is True
    # Patroni takes citus.local_hostname from the socket only with an explicit unix_socket_directories.
    assert pg["parameters"]["unix_socket_directories"] == "/sock/dir"
