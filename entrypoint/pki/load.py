"""Load PEM certificates and keys into cryptography objects, and encode checked objects back to PEM."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"

# What cryptography raises for bytes that are not a sound certificate. Not all of them are
# ValueErrors: a version field other than v1-v3 is InvalidVersion (at load), an extension
# given twice DuplicateExtension and a SAN kind it does not model UnsupportedGeneralNameType
# (both lazily, on first access). Callers catch ValueError; these functions turn the rest into it.
PARSE_ERRORS = (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion, x509.DuplicateExtension,
                x509.UnsupportedGeneralNameType)


def load_certificates(pem: bytes) -> List[x509.Certificate]:
    """Return every certificate in a PEM blob, in file order; raises ValueError when there is none or one is unsound."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except PARSE_ERRORS as exc:
        raise ValueError(f"a certificate does not parse: {exc}") from None
    if not certs:
        raise ValueError("no certificate found")
    return certs


def load_private_key(pem: bytes, password: Optional[bytes]) -> Any:
    """Return the private key.

    Raises TypeError when a password is missing or not needed, ValueError when it is wrong or the data not PEM.
    """
    return serialization.load_pem_private_key(pem, password=password)


def key_is_encrypted(pem: bytes) -> bool:
    """Whether the first key block in `pem` is encrypted (PKCS#8 ENCRYPTED or a legacy Proc-Type header)."""
    return b"ENCRYPTED" in pem.split(b"-----END", 1)[0]


def fully_parsed(cert: x509.Certificate) -> bool:
    """cryptography parses lazily: touch every field the checks use, so damage shows here, not later."""
    try:
        cert.public_key()
        cert.not_valid_before_utc, cert.not_valid_after_utc  # noqa: B018
        cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()  # noqa: B018
        list(cert.extensions)
        cert.serial_number  # noqa: B018
    except PARSE_ERRORS:
        return False
    return True


def cert_pem(cert: x509.Certificate) -> bytes:
    """`cert` as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def chain_pem(chain: Sequence[x509.Certificate]) -> bytes:
    """The certificates of `chain`, in order, as one PEM blob (re-encoded: nothing else passes through)."""
    return b"".join(cert_pem(cert) for cert in chain)


def key_pem(key: Any) -> bytes:
    """`key` as unencrypted PKCS#8 PEM (PostgreSQL cannot prompt for a passphrase)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
