"""In-memory test PKI built directly on `cryptography`, not on the product's certgen, so a certgen bug cannot hide behind itself.

Like trustme: `TestCA()` then `ca.issue(*names)`; names are IP addresses or DNS names
and become the right SAN type.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.timezone.utc)
BACKDATE = dt.timedelta(minutes=5)


@dataclass
class Pair:
    cert_pem: bytes
    key_pem: bytes
    cert: x509.Certificate
    key: object


def new_key(key_type: str = "ecdsa-p256"):
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    raise ValueError(key_type)


def pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class TestCA:
    """A CA that issues server certificates (serverAuth + clientAuth, as cluster members use them)."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str = "test CA", key_type: str = "ecdsa-p256", days: int = 365) -> None:
        self.key = new_key(key_type)
        self.key_type = key_type
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(NOW - BACKDATE).not_valid_after(NOW + dt.timedelta(days=days))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                    critical=True)
                     .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
                     .sign(self.key, hashes.SHA256()))
        self.cert_pem = pem_cert(self.cert)

    def issue(self, *names: str, days: int = 365, now: dt.datetime = NOW, cn: str = "",
              key_type: Optional[str] = None) -> Pair:
        return issue_leaf(self.cert, self.key, names, new_key(key_type or self.key_type), days, now, cn)

    def issue_client(self, user: str, days: int = 365) -> Pair:
        """A client certificate (clientAuth only) with CN=`user`."""
        return issue_leaf(self.cert, self.key, (), new_key(self.key_type), days, cn=user,
                          usages=(ExtendedKeyUsageOID.CLIENT_AUTH,))

    def crl(self, revoked=(), days: int = 30, now: dt.datetime = NOW) -> bytes:
        """A PEM CRL of this CA listing the serials of `revoked` (Pairs or ints), valid `days` days."""
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
                   .last_update(now - BACKDATE).next_update(now + dt.timedelta(days=days)))
        for item in revoked:
            serial = item if isinstance(item, int) else item.cert.serial_number
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now - BACKDATE).build())
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def write_dir(self, directory: str, pair: Pair, ca_pem: Optional[bytes] = None,
                  names: tuple = ("ca.crt", "server.crt", "server.key"), crl_pem: Optional[bytes] = None) -> str:
        """Write ca/cert/key (and ca.crl when given) into `directory` as a Secret mount would (root-owned, 0600)."""
        os.makedirs(directory, exist_ok=True)
        files = list(zip(names, (ca_pem or self.cert_pem, pair.cert_pem, pair.key_pem)))
        if crl_pem is not None:
            files.append(("ca.crl", crl_pem))
        for name, data in files:
            path = os.path.join(directory, name)
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        return directory


def issue_leaf(issuer_cert: x509.Certificate, issuer_key, names, key, days: int = 365, now: dt.datetime = NOW,
               cn: str = "", usages=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)) -> Pair:
    """A leaf certificate for `names` with `key`, signed by the given issuer (by default serverAuth + clientAuth)."""
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn or (names[0] if names else "node"))]))
               .issuer_name(issuer_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - BACKDATE).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]),
                                        critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    return Pair(pem_cert(cert), pem_key(key), cert, key)
