"""PGSSLCRL in the boot checks: which CRL is read, and the traps that would make OpenSSL refuse every connection."""

from __future__ import annotations

import datetime as dt

import pytest

from entrypoint.boot.material import check_material, files_to_read
from entrypoint.errors import InputError
from tests.support.pki import NOW, TestCA
from tests.unit.conftest import SEED_NAMES, WILDCARD, cert_files, check, settings_for

CRL = "/certs/ca.crl"
WITH_CRL = SEED_NAMES + ("ca.crl",)


def files_with(ca, node, crl: bytes, ca_pem=None) -> dict:
    return {**cert_files(node, ca_pem or ca.cert_pem), CRL: crl}


def refusals(settings, files, now=NOW) -> list:
    with pytest.raises(InputError) as caught:
        check(settings, files, now)
    return [(p.where, p.what) for p in caught.value.problems]


def test_ca_crl_in_the_secret_is_read_and_staged_re_encoded(ca, node):
    settings = settings_for("verify-full", WITH_CRL)
    assert settings.tls.crl_file == CRL and CRL in files_to_read(settings)
    material = check(settings, files_with(ca, node, b"comment\n" + ca.crl()))
    assert len(material.crls) == 1 and material.crl_pem.startswith(b"-----BEGIN X509 CRL-----")


def test_no_crl_file_means_no_revocation_checking(ca, node, node_files):
    settings = settings_for("verify-full")
    assert settings.tls.crl_file is None
    assert check(settings, node_files).crls == ()


def test_pgsslcrl_names_another_file_and_pgsslcrldir_is_refused(ca, node):
    settings = settings_for("verify-full", PGSSLCRL="/elsewhere/revoked.pem")
    assert settings.tls.crl_file == "/elsewhere/revoked.pem" and settings.tls.crl_explicit
    with pytest.raises(InputError) as caught:
        settings_for("verify-full", PGSSLCRLDIR="/crls")
    assert "sslcrldir" in caught.value.report() and "PGSSLCRL" in caught.value.report()


def test_an_expired_crl_is_refused_because_openssl_would_refuse_everyone(ca, node):
    expired = ca.crl(days=1, now=NOW - dt.timedelta(days=3))
    (where, what), = refusals(settings_for("verify-full", WITH_CRL), files_with(ca, node, expired))
    assert where == "PGSSLCRL" and "expired" in what and "refuse every certificate" in what


def test_a_crl_soon_past_next_update_is_a_warning(ca, node):
    material = check(settings_for("verify-full", WITH_CRL), files_with(ca, node, ca.crl(days=3)))
    assert any("PGSSLCRL" in w and "expires in" in w for w in material.warnings)


@pytest.mark.parametrize("data, words", [
    (b"", "is empty"), (b"\x00" * 1000, "not a PEM CRL"),
    (b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n", "not a PEM CRL"),
])
def test_garbage_is_refused(ca, node, data, words):
    (where, what), = refusals(settings_for("verify-full", WITH_CRL), files_with(ca, node, data))
    assert where == "PGSSLCRL" and words in what


def test_a_crl_of_another_ca_or_forged_with_the_same_name_is_refused(ca, node):
    foreign = TestCA("someone else").crl()
    forged = TestCA(ca.cert.subject.rfc4514_string().split("=", 1)[1]).crl()
    for crl, words in ((foreign, "not in the root certificate file"), (forged, "not signed by that CA")):
        found = refusals(settings_for("verify-full", WITH_CRL), files_with(ca, node, crl))
        assert any(words in what for _, what in found), found


def test_every_ca_of_the_bundle_needs_its_crl(ca, node):
    """CRL_CHECK_ALL: the new CA of a rotation bundle without a CRL would have all its certificates refused."""
    new_ca = TestCA("the new CA")
    files = files_with(ca, node, ca.crl(), ca_pem=ca.cert_pem + new_ca.cert_pem)
    (where, what), = refusals(settings_for("verify-full", WITH_CRL), files)
    assert where == "PGSSLCRL" and "the new CA" in what and "has no CRL" in what
    files[CRL] = ca.crl() + new_ca.crl()
    assert len(check(settings_for("verify-full", WITH_CRL), files).crls) == 2


def test_own_revoked_certificate_is_refused_at_start_and_only_warned_about_while_running(ca):
    node = ca.issue(WILDCARD, "localhost")
    settings, files = settings_for("verify-full", WITH_CRL), files_with(ca, node, ca.crl([node]))
    (where, what), = refusals(settings, files)
    assert where == "PGSSLCERT" and "revoked" in what and format(node.cert.serial_number, "x") in what
    read = {path: files[path] for path in files_to_read(settings)}
    material = check_material(settings, read, NOW, running=True)
    assert any("revoked" in w for w in material.warnings)


def test_disable_does_not_read_the_crl(ca, node):
    settings = settings_for("disable", WITH_CRL)
    assert CRL not in files_to_read(settings)
