"""verify's rules over observations (pure), and describe_certificate over real in-memory certificates."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization

from entrypoint.audit.model import Connection, Member, Observations, ServedCert
from entrypoint.audit.findings import (ERROR, WARNING, connection_counts,
                                 exit_status, find)
from entrypoint.audit.probes import Handshake, describe_certificate
from tests.support.pki import NOW, TestCA

CA = TestCA("cluster CA")
OTHER_CA = TestCA("other CA")


def served(service: str = "postgres", host: str = "10.0.0.1", days: float = 300, issuer: str = "ca-1",
           **changes) -> ServedCert:
    cert = ServedCert(service=service, port=5432 if service == "postgres" else 8008, host=host, tls=True,
                      protocol="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", subject=f"CN={host}",
                      issuer="CN=cluster CA", issuer_id=issuer, ip_addresses=[host],
                      not_after=NOW + dt.timedelta(days=days), name_covered=True, chains_to_ca=True)
    for key, value in changes.items():
        setattr(cert, key, value)
    return cert


def member(name: str = "m-0", host: str = "10.0.0.1", **changes) -> Member:
    m = Member(name=name, host=host, role="leader", ssl="on", ssl_min_protocol_version="TLSv1.2",
               served=[served("postgres", host), served("restapi", host)])
    for key, value in changes.items():
        setattr(m, key, value)
    return m


def observations(*members: Member, mode: str = "verify-full", expiry_days: int = 30, **changes) -> Observations:
    obs = Observations(observed_at=NOW, mode=mode, mode_source="--mode", expiry_days=expiry_days,
                       target="host=10.0.0.1", ca_file="/ca.crt", members=list(members) or [member()])
    for key, value in changes.items():
        setattr(obs, key, value)
    return obs


def codes(findings: list) -> list:
    return [f.code for f in findings]


def test_a_clean_cluster_has_no_findings_and_exits_0():
    obs = observations(member("m-0", "10.0.0.1"), member("m-1", "10.0.0.2",
                       connections=[Connection("replication", "m-0 10.0.0.1", True, "TLSv1.3")]))
    assert find(obs) == [] and exit_status([]) == 0


@pytest.mark.parametrize("mode, expected", [
    ("disable", []), ("allow", []), ("prefer", []),
    ("require", ["plaintext_connection"]), ("verify-ca", ["plaintext_connection"]),
    ("verify-full", ["plaintext_connection"]),
])
def test_plaintext_connections_are_findings_only_where_the_mode_forbids_them(mode, expected):
    m = member(connections=[Connection("client", "10.9.9.9", False), Connection("client", "10.9.9.8", False),
                            Connection("client", "10.9.9.7", True, "TLSv1.3")])
    findings = find(observations(m, mode=mode))
    assert codes(findings) == expected
    if expected:
        (f,) = findings
        assert f.severity == ERROR and f.where == "client" and f.member == "m-0"
        assert "2 plaintext client connections (from 10.9.9.8, 10.9.9.9)" in f.what
        assert exit_status(findings) == 1


def test_each_link_is_judged_on_its_own():
    m = member(connections=[Connection("replication", "m-1 10.0.0.2", False), Connection("citus", "10.0.0.5", False),
                            Connection("client", "10.0.0.6", True, "TLSv1.2")])
    findings = find(observations(m, mode="require"))
    assert [(f.code, f.where) for f in findings] == [("plaintext_connection", "replication"),
                                                      ("plaintext_connection", "citus")]
    assert "1 plaintext replication connection (from m-1 10.0.0.2)" in findings[0].what


def test_tls_below_1_2_anywhere_is_an_error():
    m = member(ssl_min_protocol_version="TLSv1.1",
               connections=[Connection("client", "10.0.0.9", True, "TLSv1.1"),
                            Connection("client", "10.0.0.8", True, "TLSv1.3")])
    m.served[0].protocol = "TLSv1"
    findings = find(observations(m, mode="prefer"))
    assert codes(findings) == ["tls_too_old"] * 3
    assert {f.where for f in findings} == {"postgres 10.0.0.1:5432", "client"}
    assert "TLSv1.1, below TLSv1.2" in findings[0].what


@pytest.mark.parametrize("days, expiry_days, expected", [
    (300, 30, []), (30.5, 30, []), (29.5, 30, ["cert_expiring"]), (4.5, 30, ["cert_expiring"]),
    (4.5, 3, []), (-1, 30, ["cert_expired"]), (0, 30, ["cert_expired"]), (10, 0, []),
])
def test_expiry_within_the_days_given_is_a_warning_and_past_it_an_error(days, expiry_days, expected):
    m = member()
    m.served = [served(days=days)]
    findings = find(observations(m, expiry_days=expiry_days))
    assert codes(findings) == expected
    for f in findings:
        assert f.severity == (ERROR if f.code == "cert_expired" else WARNING)
    if expected == ["cert_expiring"]:
        assert f"expires in {int(days)} days" in findings[0].what and f"within {expiry_days}" in findings[0].what


def test_name_not_covered_matters_at_verify_full_only():
    m = member()
    m.served[1].name_covered = False
    m.served[1].dns_names = ["elsewhere.example"]
    for mode in ("require", "verify-ca"):
        assert find(observations(m, mode=mode)) == []
    (f,) = find(observations(m, mode="verify-full"))
    assert f.code == "name_not_covered" and f.where == "restapi 10.0.0.1:8008" and f.severity == ERROR
    assert "name not covered" in f.what and "'10.0.0.1'" in f.what and "elsewhere.example" in f.what


def test_a_chain_to_another_ca_matters_where_the_mode_verifies_the_ca():
    m = member()
    m.served[0].chains_to_ca = False
    assert find(observations(m, mode="require")) == []
    for mode in ("verify-ca", "verify-full"):
        assert codes(find(observations(m, mode=mode))) == ["not_chained"]
    m.served[0].chains_to_ca = None  # no CA given: nothing to judge
    assert find(observations(m, mode="verify-full")) == []


def test_members_with_different_cas_are_one_finding_naming_both_groups():
    a, b = member("m-0", "10.0.0.1"), member("m-1", "10.0.0.2")
    for cert in b.served:
        cert.issuer_id, cert.issuer = "ca-2", "CN=other CA"
    (f,) = find(observations(a, b, mode="prefer"))
    assert f.code == "different_cas" and f.member is None and f.severity == ERROR
    assert "2 different CAs" in f.what
    assert "CN=cluster CA (m-0 postgres, m-0 restapi)" in f.what and "CN=other CA (m-1 postgres, m-1 restapi)" in f.what


def test_ports_without_tls_do_not_count_as_a_ca():
    a, b = member("m-0", "10.0.0.1"), member("m-1", "10.0.0.2")
    b.served = [ServedCert("postgres", 5432, "10.0.0.2", tls=False)]
    assert codes(find(observations(a, b, mode="prefer"))) == ["plaintext_port"]


@pytest.mark.parametrize("mode, expected", [("disable", []), ("prefer", [WARNING]), ("allow", [WARNING]),
                                            ("require", [ERROR]), ("verify-full", [ERROR])])
def test_a_port_without_tls_is_judged_by_the_mode(mode, expected):
    m = member()
    m.served = [ServedCert("restapi", 8008, "10.0.0.1", tls=False)]
    findings = find(observations(m, mode=mode))
    assert [f.severity for f in findings] == expected
    if findings:
        assert findings[0].code == "plaintext_port" and "serves plain HTTP" in findings[0].what


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"])
def test_a_member_accepting_plaintext_is_a_finding_where_the_mode_forbids_plaintext(mode):
    findings = find(observations(member(plaintext_accepted=True), mode=mode))
    if mode in ("require", "verify-ca", "verify-full"):
        (f,) = findings
        assert f.code == "plaintext_accepted" and f.severity == ERROR and f.where == "postgres 10.0.0.1:5432"
        assert "hostnossl" in f.fix
    else:
        assert findings == []
    for unknown_or_rejected in (False, None):
        assert find(observations(member(plaintext_accepted=unknown_or_rejected), mode=mode)) == []


def test_ssl_off_where_plaintext_is_forbidden():
    m = member(ssl="off")
    assert find(observations(m, mode="prefer")) == []
    assert codes(find(observations(m, mode="require"))) == ["ssl_off"]


def test_unreachable_member_port_and_rest_api_are_errors():
    m = member(sql_error="connection refused")
    m.served[1].error = "10.0.0.1:8008: cannot connect (Connection refused)"
    obs = observations(m, discovery_errors=["Patroni REST API at 10.0.0.1:8008 did not answer /cluster (refused)"])
    findings = find(obs)
    assert codes(findings) == ["unreachable"] * 3
    assert [f.where for f in findings] == ["discovery", "postgres 10.0.0.1:5432", "restapi 10.0.0.1:8008"]
    assert "cannot query PostgreSQL: connection refused" in findings[1].what


def test_an_internal_link_weaker_than_the_mode_is_an_error():
    m = member(link_modes={"replication": "prefer", "citus": "verify-full"})
    (f,) = find(observations(m, mode="verify-ca"))
    assert f.code == "link_mode_weaker" and f.where == "replication"
    assert "sslmode=prefer, weaker than verify-ca" in f.what
    assert find(observations(member(link_modes={"replication": "verify-full"}), mode="verify-ca")) == []


def test_errors_come_before_warnings():
    a = member("m-0", "10.0.0.1")
    a.served[0].not_after = NOW + dt.timedelta(days=3)
    b = member("m-1", "10.0.0.2", sql_error="timeout")
    findings = find(observations(a, b))
    assert [f.severity for f in findings] == [ERROR, WARNING]


def test_connection_counts_include_every_link_with_zeros():
    m = member(connections=[Connection("client", "a", True), Connection("client", "b", False),
                            Connection("replication", "c", True)])
    assert connection_counts(m) == {"client": (1, 1), "replication": (1, 0), "citus": (0, 0)}


# --- describe_certificate ---------------------------------------------------------------------

def der(pair) -> bytes:
    return pair.cert.public_bytes(serialization.Encoding.DER)


def test_describe_certificate_reads_names_dates_coverage_and_chain():
    pair = CA.issue("db-0.demo.ns.svc", "10.0.0.1", days=40, cn="db-0")
    shake = Handshake(tls=True, der=der(pair), protocol="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256", verified=True)
    cert = describe_certificate(ServedCert("postgres", 5432, "db-0.demo.ns.svc"), shake, [CA.cert])
    assert cert.tls and cert.protocol == "TLSv1.3" and cert.cipher == "TLS_AES_128_GCM_SHA256"
    assert cert.subject == "CN=db-0" and "cluster CA" in cert.issuer
    assert cert.dns_names == ["db-0.demo.ns.svc"] and cert.ip_addresses == ["10.0.0.1"]
    assert cert.name_covered is True and cert.chains_to_ca is True
    assert cert.not_after == pair.cert.not_valid_after_utc


def test_describe_certificate_judges_the_name_with_libpq_rules():
    pair = CA.issue("*.demo.ns.svc", cn="wild")
    shake = Handshake(tls=True, der=der(pair))
    assert describe_certificate(ServedCert("restapi", 8008, "db-1.demo.ns.svc"), shake, []).name_covered is True
    assert describe_certificate(ServedCert("restapi", 8008, "a.b.demo.ns.svc"), shake, []).name_covered is False
    assert describe_certificate(ServedCert("restapi", 8008, "10.0.0.1"), shake, []).name_covered is False


def test_describe_certificate_checks_the_chain_itself_when_openssl_refused_it():
    pair = CA.issue("10.0.0.1")
    refused = Handshake(tls=True, der=der(pair), verified=False, verify_error="certificate has expired")
    assert describe_certificate(ServedCert("postgres", 5432, "10.0.0.1"), refused, [CA.cert]).chains_to_ca is True
    other = OTHER_CA.issue("10.0.0.1")
    shake = Handshake(tls=True, der=der(other), verified=False)
    assert describe_certificate(ServedCert("postgres", 5432, "10.0.0.1"), shake, [CA.cert]).chains_to_ca is False
    assert describe_certificate(ServedCert("postgres", 5432, "10.0.0.1"), shake, []).chains_to_ca is None


def test_describe_certificate_tells_cas_apart_by_key_identifier():
    one, two, three = CA.issue("a"), CA.issue("b"), OTHER_CA.issue("c")
    ids = [describe_certificate(ServedCert("postgres", 5432, "a"), Handshake(tls=True, der=der(p)), []).issuer_id
           for p in (one, two, three)]
    assert ids[0] == ids[1] != ids[2]


def test_describe_certificate_leaves_a_plaintext_port_empty():
    cert = describe_certificate(ServedCert("postgres", 5432, "10.0.0.1"), Handshake(tls=False), [CA.cert])
    assert cert.tls is False and cert.subject is None and cert.name_covered is None and cert.chains_to_ca is None
