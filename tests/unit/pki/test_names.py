"""pki.names: libpq's host name rules (fe-secure-openssl.c, PostgreSQL 15) and the IP-vs-DNS classifier."""

from __future__ import annotations

import pytest

from entrypoint.pki.names import is_ip, name_covered, normalise
from tests.support.pki import TestCA


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA("names CA")


@pytest.mark.parametrize("sans, host, covered", [
    (["*.demo.ns.svc.cluster.local"], "demo-0-0.demo.ns.svc.cluster.local", True),
    (["*.demo.ns.svc.cluster.local"], "DEMO-0-0.demo.ns.svc.cluster.local", True),
    (["*.demo.ns.svc.cluster.local"], "demo-0-0.demo.ns.svc.cluster.local.", False),  # libpq keeps the dot
    (["*.demo.ns.svc.cluster.local"], "a.b.demo.ns.svc.cluster.local", False),  # one label only
    (["*.demo.ns.svc.cluster.local"], "demo.ns.svc.cluster.local", False),
    (["*.citusdemo-*"], "citusdemo-1.x", False),  # the seed's pattern covers nothing useful
    (["*.citusdemo-*"], "citusdemo-1-0.citusdemo.default.svc.cluster.local", False),
    (["citusdemo-1-0.citusdemo.default.svc.cluster.local"], "citusdemo-1-0.citusdemo.default.svc.cluster.local", True),
    (["other.example"], "demo-0-0.demo.ns.svc.cluster.local", False),
    (["10.0.0.5"], "10.0.0.5", True),
    (["10.0.0.5"], "10.0.0.6", False),
    (["fd00::5"], "[fd00:0::5]", True),
    (["localhost"], "127.0.0.1", False),  # an IP host needs an IP SAN
    (["10.0.0.5"], "host.example", False),
])
def test_name_coverage_matches_libpq(ca, sans, host, covered):
    assert name_covered(ca.issue(*sans).cert, host) is covered


def test_an_ip_host_falls_back_to_the_cn_when_no_ip_san_exists(ca):
    """libpq compares the CN when no SAN is of the host's own kind: an IP host with DNS SANs only."""
    assert name_covered(ca.issue("db.example", cn="10.1.2.3").cert, "10.1.2.3")
    assert not name_covered(ca.issue("db.example", "10.9.9.9", cn="10.1.2.3").cert, "10.1.2.3")


def test_a_dns_san_is_compared_as_text_even_for_an_ip_host(ca):
    assert name_covered(ca.issue("other", cn="x").cert, "other")
    pair = ca.issue("db.example", cn="x")
    assert not name_covered(pair.cert, "10.1.2.3")


@pytest.mark.parametrize("name, ip", [("10.0.0.1", True), ("[fd00::1]", True), ("::1", True),
                                      ("db-0.example", False), ("10.0.0.1.nip.io", False), ("", False)])
def test_one_classifier_for_ip_and_dns(name, ip):
    assert is_ip(name) is ip


def test_normalise_gives_canonical_ips_and_lowercase_names():
    assert normalise("0:0::1") == "::1" and normalise("DB.Example") == "db.example"
