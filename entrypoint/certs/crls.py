"""Issue the cluster's CRL: empty at `certs generate`, one entry more at each `certs revoke`, re-signed on `--refresh`.

Pure: the CA, the existing CRL and a clock in, a new CRL (or the Problems) out. A CRL
past its nextUpdate makes OpenSSL refuse every certificate of the CA, so the default
nextUpdate is long (DEFAULT_CRL_DAYS) and the entrypoint warns well before it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, List, Optional, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from entrypoint.certs.issue import BACKDATE
from entrypoint.errors import Problem
from entrypoint.pki.chain import issued_by
from entrypoint.pki.crl import REASONS, issuer_of

DEFAULT_CRL_DAYS = 3650  # as long as the CA lives by default: a forgotten refresh never takes the cluster down
MAX_CRL_DAYS = 36500


def crl_number(crl: Optional[x509.CertificateRevocationList]) -> int:
    if crl is None:
        return 0
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return 0


def issue_crl(ca_cert: x509.Certificate, ca_key: Any, entries: Sequence[x509.RevokedCertificate], number: int,
              now: dt.datetime, days: int) -> x509.CertificateRevocationList:
    """A CRL signed by the CA with `entries`, CRL number `number`, valid `days` days from `now`."""
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_cert.subject)
               .last_update(now - BACKDATE)
               .next_update(now + dt.timedelta(days=days))
               .add_extension(x509.CRLNumber(number), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    for entry in entries:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(ca_key, hashes.SHA256())


def revoked_entry(serial: int, reason: str, when: dt.datetime) -> x509.RevokedCertificate:
    builder = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
    if reason != "unspecified":  # RFC 5280: absent rather than unspecified
        builder = builder.add_extension(x509.CRLReason(REASONS[reason]), critical=False)
    return builder.build()


def check_existing(ca_cert: x509.Certificate, crl: Optional[x509.CertificateRevocationList],
                   path: str) -> List[Problem]:
    """An existing ca.crl must be this CA's, or keeping its entries would ship someone else's list."""
    if crl is None or issuer_of(crl, [ca_cert]) is not None:
        return []
    return [Problem(path, f"is not signed by the CA in ca.crt ({ca_cert.subject.rfc4514_string()})",
                    "give the --out-dir whose ca.crt issued this CRL, or move the foreign ca.crl away")]


def check_revocation(ca_cert: x509.Certificate, crl: Optional[x509.CertificateRevocationList], serial: int,
                     cert: Optional[x509.Certificate], cert_label: str) -> List[Problem]:
    """Problems with revoking `serial` (taken from `cert` when given) under this CA."""
    problems = []
    if cert is not None and not issued_by(cert, ca_cert):
        problems.append(Problem(cert_label, f"was issued by {cert.issuer.rfc4514_string()}, not by this CA "
                                            f"({ca_cert.subject.rfc4514_string()})",
                                "revoke it with the CA that issued it (its own --out-dir), or check the file"))
    if crl is not None and crl.get_revoked_certificate_by_serial_number(serial) is not None:
        problems.append(Problem("--serial" if cert is None else cert_label,
                                f"serial {serial:x} is already revoked in ca.crl",
                                "nothing to do; the CRL is unchanged"))
    return problems


def revoke(ca_cert: x509.Certificate, ca_key: Any, crl: Optional[x509.CertificateRevocationList],
           serials: Sequence[int], reason: str, now: dt.datetime, days: int) -> x509.CertificateRevocationList:
    """The next CRL: every earlier entry kept, `serials` added, the CRL number one more."""
    entries = list(crl) if crl is not None else []
    entries += [revoked_entry(serial, reason, now) for serial in serials]
    return issue_crl(ca_cert, ca_key, entries, crl_number(crl) + 1, now, days)
