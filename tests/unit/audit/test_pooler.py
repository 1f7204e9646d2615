"""verify --pooler over fixed observations: the pooler's rules, its table rows and its metrics (pure)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from entrypoint.audit.findings import connection_counts, find
from entrypoint.audit.model import Connection, Member
from entrypoint.audit.options import VerifyOptions
from entrypoint.audit.pooler import _tls, pooler_members
from entrypoint.audit.report import render_prometheus, render_table, to_data
from tests.unit.audit.test_findings import codes, member, observations, served

CLIENT = Connection("pooler_client", "app@10.0.0.9", True, "TLSv1.3", "TLS_AES_256_GCM_SHA384")
SERVER = Connection("pooler_server", "app@10.0.0.100", True, "TLSv1.3", "TLS_AES_256_GCM_SHA384")


def pooler(**changes) -> Member:
    p = Member(name="pooler pool.example:6432", host="pool.example", port=6432, role="pooler",
               served=[served("pooler", "pool.example", port=6432)], plaintext_accepted=False,
               connections=[CLIENT, SERVER], link_modes={"pooler_server": "verify-full"})
    for key, value in changes.items():
        setattr(p, key, value)
    return p


def test_a_clean_pooler_has_no_findings():
    assert find(observations(member(), pooler())) == []


def test_a_pooler_taking_plaintext_or_holding_plaintext_legs_is_an_error_from_require_up():
    bad = pooler(plaintext_accepted=True,
                 connections=[Connection("pooler_client", "app@10.0.0.9", False), SERVER,
                              Connection("pooler_server", "app@10.0.0.100", False)])
    found = find(observations(member(), bad, mode="require"))
    assert sorted(codes(found)) == ["plaintext_accepted", "plaintext_connection", "plaintext_connection"]
    assert {f.where for f in found if f.code == "plaintext_connection"} == {"pooler_client", "pooler_server"}
    assert find(observations(member(), bad, mode="prefer")) == []


def test_the_pooler_certificate_is_judged_like_a_members_port():
    obs = observations(member(), pooler(served=[served("pooler", "pool.example", port=6432, name_covered=False,
                                                       chains_to_ca=False)]))
    assert sorted(codes(find(obs))) == ["name_not_covered", "not_chained"]
    plain = observations(member(), pooler(served=[served("pooler", "pool.example", port=6432, tls=False)]))
    assert [(f.code, f.what.split(",")[0]) for f in find(plain)] == [("plaintext_port", "serves no TLS")]


def test_a_weaker_server_leg_and_an_unreadable_console_are_findings():
    found = find(observations(member(), pooler(link_modes={"pooler_server": "prefer"},
                                               sql_error="no PCK_POOLER_AUTH_PASSWORD given")))
    assert sorted(codes(found)) == ["link_mode_weaker", "unreachable"]
    assert any("admin console" in f.what for f in found)


def test_counts_table_json_and_metrics_carry_the_two_legs_and_members_keep_theirs():
    obs = observations(member(), pooler())
    assert connection_counts(obs.members[1]) == {"pooler_client": (1, 0), "pooler_server": (1, 0)}
    assert set(connection_counts(obs.members[0])) == {"client", "replication", "citus"}
    table = render_table(obs, [])
    assert "pooler pool.example:6432" in table and "pooler 6432" in table and "rejected" in table
    data = to_data(obs, [])
    assert data["members"][1]["connection_counts"]["pooler_server"] == {"encrypted": 1, "plaintext": 0}
    families = {f.name: f for f in text_string_to_metric_families(render_prometheus(obs, []))}
    sessions = {(s.labels["member"], s.labels["link"], s.labels["encryption"]): s.value
                for s in families["pck_tls_sessions"].samples}
    assert sessions[("pooler pool.example:6432", "pooler_server", "tls")] == 1
    assert ("m-0", "pooler_server", "tls") not in sessions
    ports = {(s.labels["member"], s.labels["service"]) for s in families["pck_tls_port_tls"].samples}
    assert ("pooler pool.example:6432", "pooler") in ports


def test_tls_column_and_flags():
    assert _tls("TLSv1.3/TLS_AES_256_GCM_SHA384/ECDH=prime256v1") == (True, "TLSv1.3", "TLS_AES_256_GCM_SHA384")
    assert _tls("") == (False, None, None)
    assert [(m.host, m.port, m.role) for m in pooler_members(VerifyOptions(poolers=("p.example:6432", "[::1]:6433")))] \
        == [("p.example", 6432, "pooler"), ("::1", 6433, "pooler")]
    assert [p.where for p in VerifyOptions(poolers=("nope",)).problems()] == ["--pooler"]
