"""pki.load over certificates cryptography rejects with its own exception classes, not ValueError."""

from __future__ import annotations

import pytest

from entrypoint.pki.load import fully_parsed, load_certificates
from tests.support import forge
from tests.support.pki import TestCA

CA = TestCA("load test CA")


def test_a_version_4_certificate_is_a_value_error_at_load():
    with pytest.raises(ValueError, match="does not parse"):
        load_certificates(forge.version_4(CA, "a.example").cert_pem)


def test_a_duplicate_extension_makes_the_certificate_not_fully_parsed():
    (cert,) = load_certificates(forge.duplicate_san(CA, "a.example").cert_pem)  # cryptography parses lazily
    assert not fully_parsed(cert)


def test_control_a_sound_certificate_is_fully_parsed():
    (cert,) = load_certificates(CA.issue("a.example").cert_pem)
    assert fully_parsed(cert)
