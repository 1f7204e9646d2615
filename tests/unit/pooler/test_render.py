"""pgbouncer.ini for every mode: plaintext refused on the client leg from require up, the server leg at the cluster's mode."""

from __future__ import annotations

import configparser

import pytest

from entrypoint.boot.stage import plan_paths
from entrypoint.errors import Collector
from entrypoint.pooler.render import auth_file_text, pgbouncer_sections, render_ini
from entrypoint.pooler.settings import parse_pooler
from entrypoint.sslmode import NAMES
from tests.unit.conftest import check, settings_for

POOLER_ENV = {"PCK_POOLER_TARGET": "citusdemo-0.default.svc.cluster.local:5432", "PCK_POOLER_AUTH_PASSWORD": "pw",
              "PCK_POOLER_SERVICE": "citusdemo-pooler.default.svc.cluster.local:6432"}


def ini_for(node_files, mode, **changes):
    settings = settings_for(mode, **changes)
    paths = plan_paths(settings, check(settings, node_files))
    bad = Collector()
    pooler = parse_pooler({**POOLER_ENV, **changes}, bad)
    assert not bad.problems
    text = render_ini(pgbouncer_sections(settings, paths, pooler, "/run/pck/pgbouncer-users.txt"))
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.read_string(text)
    return parser, paths


@pytest.mark.parametrize("mode", NAMES)
def test_both_legs_follow_the_mode(node_files, mode):
    ini, paths = ini_for(node_files, mode)
    main = ini["pgbouncer"]
    expected_client = {"disable": "disable", "allow": "prefer", "prefer": "prefer"}.get(mode, "require")
    assert main["client_tls_sslmode"] == expected_client
    assert main["server_tls_sslmode"] == {"allow": "prefer"}.get(mode, mode)
    if mode != "disable":
        assert main["client_tls_cert_file"] == paths.server_cert and main["client_tls_protocols"] == "tlsv1.2,tlsv1.3"
    assert ("server_tls_ca_file" in main) == (mode in ("verify-ca", "verify-full"))
    assert ini["databases"]["*"] == "host=citusdemo-0.default.svc.cluster.local port=5432"


def test_mutual_tls_demands_client_certificates_and_presents_the_members(node_files):
    ini, paths = ini_for(node_files, "verify-full", PCK_CLIENT_CERT_AUTH="true")
    main = ini["pgbouncer"]
    assert main["client_tls_sslmode"] == "verify-ca" and main["client_tls_ca_file"] == paths.ca
    assert (main["server_tls_cert_file"], main["server_tls_key_file"]) == (paths.client_cert, paths.client_key)


def test_tls13_only_reaches_both_legs(node_files):
    main = ini_for(node_files, "verify-full", PCK_TLS_MIN_VERSION="TLSv1.3")[0]["pgbouncer"]
    assert main["client_tls_protocols"] == main["server_tls_protocols"] == "tlsv1.3"


def test_the_ini_holds_no_password_and_the_auth_file_quotes(node_files):
    ini, _ = ini_for(node_files, "verify-full", PCK_POOLER_AUTH_PASSWORD='p"w')
    assert 'p"w' not in str(dict(ini["pgbouncer"]))
    bad = Collector()
    assert auth_file_text(parse_pooler({**POOLER_ENV, "PCK_POOLER_AUTH_PASSWORD": 'p"w'}, bad)) == '"pgbouncer" "p""w"\n'


@pytest.mark.parametrize("var, value", [("PCK_POOLER_TARGET", "a,b:5432"), ("PCK_POOLER_TARGET", ""),
                                        ("PCK_POOLER_POOL_MODE", "sessions"), ("PCK_POOLER_AUTH_PASSWORD", ""),
                                        ("PCK_POOLER_MAX_CLIENT_CONN", "0"), ("PCK_POOLER_LISTEN", "x y:6432")])
def test_bad_pooler_values_are_problems(var, value):
    bad = Collector()
    parse_pooler({**POOLER_ENV, var: value}, bad)
    assert var in [p.where for p in bad.problems]


def test_on_kubernetes_the_target_is_the_coordinator_groups_service():
    bad = Collector()
    pooler = parse_pooler({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "PATRONI_SCOPE": "citusdemo",
                           "POD_NAMESPACE": "prod", "PCK_POOLER_AUTH_PASSWORD": "pw"}, bad)
    assert not bad.problems
    assert str(pooler.target) == "citusdemo-0.prod.svc.cluster.local:5432"
    assert str(pooler.service) == "citusdemo-pooler.prod.svc.cluster.local:6432"
