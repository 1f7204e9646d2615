"""Issue certificates: a CA, server certificates with the cluster's names, client certificates for roles.

Pure: values in, cryptography objects out, so tests call it with a fixed clock.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, List, Optional, Sequence, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from entrypoint.pki.keys import key_matches, key_type
from entrypoint.pki.load import fully_parsed, load_certificates
from entrypoint.pki.names import general_names

DEFAULT_CA_DAYS = 3650
DEFAULT_SERVER_DAYS = 1095
MAX_DAYS = 36500
# Certificates start a little in the past so a node whose clock lags does not reject them.
BACKDATE = dt.timedelta(minutes=5)


def utc_now() -> dt.datetime:
    """Return the current time, timezone-aware UTC."""
    return dt.datetime.now(dt.timezone.utc)


def new_private_key(name: str) -> Any:
    """Return a fresh private key of the key type `name`; raises ValueError for an unknown one."""
    kind = key_type(name)
    if kind is None:
        raise ValueError(f"unknown key type {name!r}")
    return kind.generate()


def _name(common_name: str, organization: Optional[str] = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _key_usage(digital_signature: bool, key_encipherment: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False, key_encipherment=key_encipherment,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
        encipher_only=False, decipher_only=False)


def issue_ca(key: Any, common_name: str, days: int, now: dt.datetime) -> x509.Certificate:
    """Return a self-signed CA certificate valid `days` days from `now` that may sign leaves only."""
    subject = _name(common_name, "patroni-citus-k8s")
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(digital_signature=True, cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _issue_leaf(ca_cert: x509.Certificate, ca_key: Any, key: Any, common_name: str, days: int, now: dt.datetime,
                usages: List[x509.ObjectIdentifier], sans: Optional[Sequence[str]]) -> x509.Certificate:
    # RSA key exchange (TLS 1.2 non-ECDHE suites) needs keyEncipherment; ECDSA keys only sign.
    usage = _key_usage(digital_signature=True, key_encipherment=isinstance(key, rsa.RSAPrivateKey))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(general_names(sans)), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def issue_server_cert(ca_cert: x509.Certificate, ca_key: Any, key: Any, names: Sequence[str],
                      common_name: str, days: int, now: dt.datetime) -> x509.Certificate:
    """Return a server certificate for `names` signed by the CA.

    It carries serverAuth and clientAuth because members present it as their client
    certificate when mutual TLS is on.
    """
    return _issue_leaf(ca_cert, ca_key, key, common_name, days, now,
                       [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], names)


def issue_client_cert(ca_cert: x509.Certificate, ca_key: Any, key: Any, user: str, days: int,
                      now: dt.datetime) -> x509.Certificate:
    """Return a client certificate with CN=`user` (the role pg_hba `clientcert=verify-full` checks)."""
    return _issue_leaf(ca_cert, ca_key, key, user, days, now, [ExtendedKeyUsageOID.CLIENT_AUTH], None)


def load_ca(cert_pem_bytes: bytes, key_pem_bytes: bytes) -> Tuple[x509.Certificate, Any]:
    """Return the CA certificate and key from PEM; raises ValueError if unusable as a CA, TypeError if encrypted."""
    cert = load_certificates(cert_pem_bytes)[0]
    if not fully_parsed(cert):
        raise ValueError("the CA certificate is damaged (its fields do not parse, e.g. an extension given twice)")
    key = serialization.load_pem_private_key(key_pem_bytes, password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ValueError(f"the CA key is {type(key).__name__}; only RSA and ECDSA keys are supported")
    if not key_matches(key, cert):
        raise ValueError("the CA key does not belong to the CA certificate")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise ValueError("the CA certificate is not a CA (basicConstraints CA:TRUE is missing)")
    return cert, key
