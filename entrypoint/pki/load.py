"""Load PEM certificates and keys into cryptography objects, and encode checked objects back to PEM."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Callable, Iterator, List, Optional, Sequence

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
        certs = _no_panic(x509.load_pem_x509_certificates, pem)
    except PARSE_ERRORS as exc:
        raise ValueError(f"a certificate does not parse: {exc}") from None
    if not certs:
        raise ValueError("no certificate found")
    return certs


# An encrypted PKCS#8 key names its key-derivation work (PBKDF2 rounds, scrypt's N, r and p),
# and decrypting does all of it: 2^31 PBKDF2 rounds take minutes, 2^32 made cryptography's
# Rust code panic. OpenSSL writes 2048 rounds by default, OWASP advises 600,000; past
# MAX_KDF_ROUNDS (or a product of the parameters past MAX_KDF_WORK) the key is refused unread.
MAX_KDF_ROUNDS = 2_000_000
MAX_KDF_WORK = 2 ** 28
_ENCRYPTED_PKCS8 = re.compile(rb"-----BEGIN ENCRYPTED PRIVATE KEY-----(.*?)-----END ENCRYPTED PRIVATE KEY-----", re.S)


def kdf_work_problem(pem: bytes) -> Optional[str]:
    """Why decrypting the first encrypted PKCS#8 key in `pem` would take unbounded time, or None.

    Only the DER of the key's encryption parameters is read (its integers); a key that does
    not parse that far is left to cryptography, which refuses it.
    """
    found = _ENCRYPTED_PKCS8.search(pem)
    if not found:
        return None
    try:
        values = [v for v in _der_integers(base64.b64decode(b"".join(found.group(1).split()), validate=True)) if v > 1]
    except (ValueError, binascii.Error):
        return None
    work = 1
    for value in values:
        work *= value
    if max(values, default=0) > MAX_KDF_ROUNDS or work > MAX_KDF_WORK:
        return (f"asks for {max(values):,} key-derivation iterations to decrypt (at most {MAX_KDF_ROUNDS:,} are "
                "accepted: decrypting would take minutes or never end)")
    return None


def _der_integers(der: bytes, depth: int = 0) -> Iterator[int]:
    """Every INTEGER in a DER encoding, descending into constructed elements; ValueError when it is not DER."""
    at = 0
    while at < len(der):
        if at + 2 > len(der) or depth > 16:
            raise ValueError("truncated DER")
        tag, size, at = der[at], der[at + 1], at + 2
        if size & 0x80:
            count = size & 0x7F
            if not 0 < count <= 4 or at + count > len(der):
                raise ValueError("bad DER length")
            size, at = int.from_bytes(der[at:at + count], "big"), at + count
        if at + size > len(der):
            raise ValueError("truncated DER")
        value, at = der[at:at + size], at + size
        if tag == 0x02:
            yield int.from_bytes(value, "big", signed=True)
        elif tag & 0x20:
            yield from _der_integers(value, depth + 1)


def load_private_key(pem: bytes, password: Optional[bytes]) -> Any:
    """Return the private key.

    Raises TypeError when a password is missing or not needed, ValueError when it is wrong, the data not PEM, or
    its decryption would not end (kdf_work_problem).
    """
    if password is not None:
        problem = kdf_work_problem(pem)
        if problem:
            raise ValueError(problem)
    return _no_panic(serialization.load_pem_private_key, pem, password=password)


def _no_panic(parse: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`parse(...)`, with a panic in cryptography's Rust code turned into ValueError.

    pyo3 raises a panic as PanicException, a BaseException: bytes that make the parser
    panic must not escape every `except Exception` (the CLI's last line, the watcher's loop).
    """
    try:
        return parse(*args, **kwargs)
    except BaseException as exc:
        if type(exc).__name__ == "PanicException":
            raise ValueError(f"cryptography could not parse it ({exc})") from None
        raise


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
