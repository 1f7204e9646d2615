"""pki.crl: loading CRL bundles and judging them as OpenSSL would use them."""

from __future__ import annotations

import datetime as dt

import pytest

from entrypoint.certs.crls import issue_crl, revoke
from entrypoint.pki.crl import crl_pem, judge, load_crls, revocation
from tests.support.pki import NOW, TestCA


@pytest.fixture(scope="module")
def ca():
    return TestCA("crl CA")


def test_a_bundle_of_crls_loads_in_order_and_round_trips(ca):
    other = TestCA("other")
    crls = [issue_crl(ca.cert, ca.key, [], 1, NOW, 30), issue_crl(other.cert, other.key, [], 1, NOW, 30)]
    loaded = load_crls(b"junk\n" + crl_pem(crls))
    assert [c.issuer for c in loaded] == [ca.cert.subject, other.cert.subject]


@pytest.mark.parametrize("data", [b"", b"hello", b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
                                  b"-----BEGIN X509 CRL-----\nAAAA\n"])
def test_garbage_is_a_value_error(data):
    with pytest.raises(ValueError):
        load_crls(data)


def test_judge_refuses_expired_foreign_and_unsigned_crls(ca):
    other = TestCA("other")
    expired = issue_crl(ca.cert, ca.key, [], 1, NOW - dt.timedelta(days=10), 1)
    foreign = issue_crl(other.cert, other.key, [], 1, NOW, 30)
    verdict = judge([expired, foreign], [ca.cert], NOW, 30)
    assert len(verdict.problems) == 2
    assert "expired" in verdict.problems[0] and "refuse every certificate" in verdict.problems[0]
    assert "not in the root certificate file" in verdict.problems[1]


def test_judge_warns_before_next_update(ca):
    soon = issue_crl(ca.cert, ca.key, [], 1, NOW, 5)
    verdict = judge([soon], [ca.cert], NOW, 30)
    assert verdict.problems == [] and "expires in" in verdict.warnings[0]


def test_revocation_finds_the_entry_by_issuer_and_serial(ca):
    pair, kept = ca.issue("db.example"), ca.issue("other.example")
    crl = revoke(ca.cert, ca.key, None, [pair.cert.serial_number], "keyCompromise", NOW, 30)
    assert revocation(pair.cert, [crl]) is not None and revocation(kept.cert, [crl]) is None
