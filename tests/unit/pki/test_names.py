"""pki.names: libpq's host name rules (fe-secure-openssl.c, PostgreSQL 15) and the IP-vs-DNS classifier."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entrypoint.pki.names import is_ip, libpq_address, name_covered, normalise
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


def _libc_reading(host: str):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.inet_pton(family, host) if family == socket.AF_INET6 else socket.inet_aton(host)
    except (OSError, ValueError):
        return None


@settings(max_examples=400)
@given(st.text(alphabet="0123456789abcdefxX.: \t+-_%", max_size=24))
def test_hosts_read_as_addresses_exactly_as_libc_reads_them(host):
    """libpq decides IP-or-name with inet_aton (IPv4) and inet_pton (IPv6); the port uses libc as the oracle."""
    assert libpq_address(host) == _libc_reading(host)


@pytest.mark.parametrize("host, address", [("127.1", "127.0.0.1"), ("0x7f.0.0.1", "127.0.0.1"),
                                           ("2130706433", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1")])
def test_an_ip_host_in_inet_aton_spelling_meets_the_ip_san(ca, host, address):
    assert name_covered(ca.issue(address).cert, host)


def test_a_name_with_an_embedded_nul_ends_the_search(ca):
    """libpq refuses at the first SAN with a NUL ('SSL certificate's name contains embedded null')."""
    assert not name_covered(ca.issue("evil\x00.demo.test", "db.demo.test").cert, "db.demo.test")
    assert name_covered(ca.issue("db.demo.test", "evil\x00.demo.test").cert, "db.demo.test")
