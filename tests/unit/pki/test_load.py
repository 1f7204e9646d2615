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


def _encrypted(rounds: int) -> bytes:
    from tests.unit.conftest import encrypt_key

    return forge.with_kdf_iterations(encrypt_key(CA.issue("k.example"), b"pw"), rounds)


@pytest.mark.parametrize("rounds", [2**31 - 1, 2**32, 2**100])
def test_a_key_asking_for_absurd_kdf_work_is_refused_before_decrypting(rounds):
    from entrypoint.pki.load import kdf_work_problem, load_private_key

    assert "iterations" in kdf_work_problem(_encrypted(rounds))
    with pytest.raises(ValueError, match="iterations"):
        load_private_key(_encrypted(rounds), b"pw")


def test_ordinary_kdf_work_and_unencrypted_keys_pass():
    from entrypoint.pki.load import kdf_work_problem

    assert kdf_work_problem(_encrypted(600_000)) is None
    assert kdf_work_problem(CA.issue("k.example").key_pem) is None
    assert kdf_work_problem(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n!!not base64\n-----END ENCRYPTED PRIVATE KEY-----") \
        is None  # left to cryptography, which refuses it


def test_a_panic_in_cryptography_becomes_a_value_error():
    from entrypoint.pki import load

    class PanicException(BaseException):  # what pyo3 raises for a Rust panic
        pass

    def panics(*_args, **_kwargs):
        raise PanicException("called `Result::unwrap()` on an `Err` value")

    with pytest.raises(ValueError, match="could not parse"):
        load._no_panic(panics, b"")
    with pytest.raises(KeyboardInterrupt):
        load._no_panic(lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
