"""Certificates no honest CA issues, signed for real: a duplicate extension, version 4, control characters.

cryptography's builder refuses to make them, so the TBS part is built with the builder
and patched in DER, then signed with the issuer's key and wrapped by hand.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.pki import BACKDATE, NOW, Pair, TestCA, new_key, pem_key

SAN_OID = bytes([0x06, 0x03, 0x55, 0x1D, 0x11])  # 2.5.29.17 subjectAltName
IAN_OID = bytes([0x06, 0x03, 0x55, 0x1D, 0x12])  # 2.5.29.18 issuerAltName: same length, patched into a second SAN


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _length(len(body)) + body


def _read_tlv(der: bytes, at: int) -> tuple:
    """(start of the value, end of the element) of the element at `at`."""
    first = der[at + 1]
    if first < 0x80:
        return at + 2, at + 2 + first
    count = first & 0x7F
    size = int.from_bytes(der[at + 2:at + 2 + count], "big")
    return at + 2 + count, at + 2 + count + size


def pem(der: bytes) -> bytes:
    text = base64.b64encode(der)
    lines = b"\n".join(text[i:i + 64] for i in range(0, len(text), 64))
    return b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"


def _resign(cert: x509.Certificate, tbs: bytes, issuer_key) -> bytes:
    """`cert`'s outer structure around a patched `tbs`, signed again by `issuer_key` (ECDSA-SHA256)."""
    der = cert.public_bytes(serialization.Encoding.DER)
    body, _ = _read_tlv(der, 0)
    _, tbs_end = _read_tlv(der, body)
    _, alg_end = _read_tlv(der, tbs_end)
    algorithm = der[tbs_end:alg_end]
    signature = issuer_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return _tlv(0x30, tbs + algorithm + _tlv(0x03, b"\x00" + signature))


def _builder(ca: TestCA, key, names, cn: str, extra=(), subject: Optional[x509.Name] = None) -> x509.CertificateBuilder:
    builder = (x509.CertificateBuilder()
               .subject_name(subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca.cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(NOW - BACKDATE).not_valid_after(NOW + dt.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False))
    for ext in extra:
        builder = builder.add_extension(ext, critical=False)
    return builder


def duplicate_san(ca: TestCA, *names: str) -> Pair:
    """A leaf with two subjectAltName extensions (the second one was an issuerAltName), validly signed by `ca`."""
    key = new_key(ca.key_type)
    cert = _builder(ca, key, names, names[0], [x509.IssuerAlternativeName([x509.DNSName(names[0])])]).sign(
        ca.key, hashes.SHA256())
    tbs = cert.tbs_certificate_bytes
    assert tbs.count(IAN_OID) == 1
    der = _resign(cert, tbs.replace(IAN_OID, SAN_OID), ca.key)
    return Pair(pem(der), pem_key(key), cert, key)


def version_4(ca: TestCA, *names: str) -> Pair:
    """A leaf whose version field says 4 (value 3), which no X.509 parser accepts, validly signed by `ca`."""
    key = new_key(ca.key_type)
    cert = _builder(ca, key, names, names[0]).sign(ca.key, hashes.SHA256())
    tbs = bytearray(cert.tbs_certificate_bytes)
    at = bytes(tbs).index(bytes([0xA0, 0x03, 0x02, 0x01, 0x02]))
    tbs[at + 4] = 0x03
    return Pair(pem(_resign(cert, bytes(tbs), ca.key)), pem_key(key), cert, key)


def with_subject(ca: TestCA, cn: str, *names: str, organization: Optional[str] = None) -> Pair:
    """A leaf whose CN (and O) may hold anything, newlines and ESC included; the builder allows that."""
    key = new_key(ca.key_type)
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if organization is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    cert = _builder(ca, key, names, cn, subject=x509.Name(attrs)).sign(ca.key, hashes.SHA256())
    return Pair(cert.public_bytes(serialization.Encoding.PEM), pem_key(key), cert, key)


def _der_tree(der: bytes) -> list:
    out, at = [], 0
    while at < len(der):
        start, end = _read_tlv(der, at)
        tag, value = der[at], der[start:end]
        out.append((tag, _der_tree(value) if tag & 0x20 else value))
        at = end
    return out


def _der_bytes(tree: list) -> bytes:
    return b"".join(_tlv(tag, _der_bytes(value) if tag & 0x20 else value) for tag, value in tree)


def with_kdf_iterations(encrypted_pem: bytes, iterations: int) -> bytes:
    """An encrypted PKCS#8 key (PBES2/PBKDF2) whose iteration count says `iterations`; the rest unchanged."""
    body = b"".join(encrypted_pem.strip().split(b"\n")[1:-1])
    tree = _der_tree(base64.b64decode(body))
    # EncryptedPrivateKeyInfo -> AlgorithmIdentifier(PBES2) -> params -> keyDerivationFunc(PBKDF2) -> params
    pbkdf2_params = tree[0][1][0][1][1][1][0][1][1][1]
    assert pbkdf2_params[1][0] == 0x02, "not a PBKDF2 iteration count"
    pbkdf2_params[1] = (0x02, iterations.to_bytes(iterations.bit_length() // 8 + 1, "big"))
    text = base64.b64encode(_der_bytes(tree))
    lines = b"\n".join(text[i:i + 64] for i in range(0, len(text), 64))
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + lines + b"\n-----END ENCRYPTED PRIVATE KEY-----\n"
