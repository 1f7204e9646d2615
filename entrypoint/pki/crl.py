"""Certificate revocation lists: load a PEM bundle of CRLs, judge it against CAs, ask whether a certificate is revoked.

Shared by the boot pipeline (PGSSLCRL: refuse a CRL that would make OpenSSL refuse every
connection), the certificate tool (`certs revoke`) and the audit (revoked certificates
still served). Pure over objects and bytes.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

PEM_CRL = b"-----BEGIN X509 CRL-----"
_END = b"-----END X509 CRL-----"

# The reason names `certs revoke --reason` takes, as RFC 5280 spells them.
REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "certificateHold": x509.ReasonFlags.certificate_hold,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
}


def load_crls(pem: bytes) -> List[x509.CertificateRevocationList]:
    """Every CRL in a PEM blob, in file order; raises ValueError when there is none or one does not parse."""
    crls: List[x509.CertificateRevocationList] = []
    for block in pem.split(PEM_CRL)[1:]:
        body = block.split(_END, 1)
        if len(body) != 2:
            raise ValueError("a CRL block is not terminated")
        try:
            crl = x509.load_pem_x509_crl(PEM_CRL + body[0] + _END + b"\n")
        except ValueError:
            raise ValueError(f"CRL block {len(crls) + 1} is not a DER-encoded CRL in base64") from None
        try:  # cryptography parses lazily: touch what the checks use
            crl.issuer.rfc4514_string(), crl.last_update_utc, crl.next_update_utc  # noqa: B018
            list(crl), list(crl.extensions)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"a CRL's fields do not parse ({exc})") from exc
        crls.append(crl)
    if not crls:
        raise ValueError("no CRL found")
    return crls


def crl_pem(crls: Sequence[x509.CertificateRevocationList]) -> bytes:
    """The CRLs re-encoded as one PEM blob (what is staged)."""
    from cryptography.hazmat.primitives.serialization import Encoding
    return b"".join(crl.public_bytes(Encoding.PEM) for crl in crls)


def issuer_of(crl: x509.CertificateRevocationList, cas: Sequence[x509.Certificate]) -> Optional[x509.Certificate]:
    """The CA in `cas` whose name and key signed `crl`, or None."""
    for ca in cas:
        if ca.subject != crl.issuer:
            continue
        try:
            if crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
                return ca
        except (TypeError, ValueError, UnsupportedAlgorithm):
            continue
    return None


@dataclass(frozen=True)
class CrlVerdict:
    """What is wrong with a CRL bundle (problems) and what is only a warning, each a one-line reason."""

    problems: List[str]
    warnings: List[str]


def judge(crls: Sequence[x509.CertificateRevocationList], cas: Sequence[x509.Certificate], now: dt.datetime,
          warn_days: int) -> CrlVerdict:
    """Whether OpenSSL (X509_V_FLAG_CRL_CHECK, as PostgreSQL and libpq use it) can use these CRLs with these CAs.

    A CRL past its nextUpdate makes OpenSSL refuse every certificate of that CA; one not
    signed by a CA in the bundle, or for a CA that is not there, is a mistake in the Secret.
    Once a CRL file is given, PostgreSQL and libpq check every certificate of a chain
    (X509_V_FLAG_CRL_CHECK_ALL): a CA in `cas` without its own CRL has every certificate it
    issued refused ("unable to get certificate CRL"), e.g. the new CA of a rotation bundle.
    """
    problems: List[str] = []
    warnings: List[str] = []
    for authority in cas:
        if not any(issuer_of(crl, [authority]) is not None for crl in crls):
            problems.append(f"the CA {authority.subject.rfc4514_string()} has no CRL in it: with a CRL file PostgreSQL "
                            "and libpq check every certificate of a chain and refuse every certificate that CA "
                            "issued")
    for index, crl in enumerate(crls):
        name = f"CRL {index + 1} (issuer {crl.issuer.rfc4514_string()})"
        ca = issuer_of(crl, cas)
        if ca is None:
            known = any(c.subject == crl.issuer for c in cas)
            problems.append(f"{name} is not signed by that CA in the root certificate file" if known else
                            f"{name} is for a CA that is not in the root certificate file")
            continue
        if not _may_sign_crls(ca):
            problems.append(f"{name}: its CA's keyUsage does not allow cRLSign, so OpenSSL rejects the CRL")
        next_update = crl.next_update_utc
        if crl.last_update_utc > now:
            problems.append(f"{name} is not valid until {crl.last_update_utc:%Y-%m-%d %H:%M} UTC (lastUpdate)")
        elif next_update is None:
            problems.append(f"{name} has no nextUpdate: RFC 5280 requires one, and a CRL without it never goes "
                            "stale, so an old copy would hide every later revocation (OpenSSL itself accepts it)")
        elif next_update <= now:
            problems.append(f"{name} expired on {next_update:%Y-%m-%d %H:%M} UTC (nextUpdate): OpenSSL would "
                            "refuse every certificate from its CA")
        elif next_update - now < dt.timedelta(days=warn_days):
            warnings.append(f"{name} expires in {(next_update - now).days} days ({next_update:%Y-%m-%d} UTC): "
                            "re-sign it (patroni-citus-k8s certs revoke --out-dir DIR --refresh)")
    return CrlVerdict(problems, warnings)


def _may_sign_crls(ca: x509.Certificate) -> bool:
    try:
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return bool(usage.crl_sign)


def revocation(cert: x509.Certificate, crls: Sequence[x509.CertificateRevocationList]) -> Optional[
        x509.RevokedCertificate]:
    """The CRL entry that revokes `cert` (same issuer name and serial), or None."""
    for crl in crls:
        if crl.issuer == cert.issuer:
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is not None:
                return entry
    return None


# Matching the sessions pg_stat_ssl shows (client_serial, issuer_dn) against CRLs: the
# watcher ends them, verify reports them. OpenSSL's short names, as issuer_dn spells them
# ("/CN=x/O=y", in certificate order).
_SHORT_NAMES = {"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU",
                "2.5.4.5": "serialNumber", "0.9.2342.19200300.100.1.25": "DC", "1.2.840.113549.1.9.1": "emailAddress"}
_ESCAPE = re.compile(r'([,+"\\<>;])')  # what ASN1_STRFLGS_RFC2253 escapes inside a value


def pg_issuer(name: x509.Name) -> str:
    """A name as PostgreSQL's pg_stat_ssl prints it (X509_NAME_to_cstring)."""
    parts = []
    for attribute in name:
        key = _SHORT_NAMES.get(attribute.oid.dotted_string, attribute.oid.dotted_string)
        value = attribute.value if isinstance(attribute.value, str) else attribute.value.hex()
        parts.append("/" + key + "=" + _ESCAPE.sub(r"\\\1", value))
    return "".join(parts)


def revoked_pairs(crls: Sequence[x509.CertificateRevocationList]) -> Dict[int, Set[str]]:
    """serial -> the issuers (as PostgreSQL prints them) that revoked it: one look-up per session, however long."""
    out: Dict[int, Set[str]] = {}
    for crl in crls:
        issuer = pg_issuer(crl.issuer)
        for entry in crl:
            out.setdefault(int(entry.serial_number), set()).add(issuer)
    return out


# pg_stat_ssl keeps only the first NAMEDATALEN-1 (63) bytes of issuer_dn, cut at a character
# boundary: a name that long may be a prefix of the full one; a shorter one is the whole name.
STAT_NAME_BYTES = 63
MAX_CHARACTER_BYTES = 4


def is_revoked(revoked: Dict[int, Set[str]], issuer_dn: str, serial: int) -> bool:
    """Whether pg_stat_ssl's (issuer_dn, serial) is in `revoked` (revoked_pairs: full issuer names)."""
    names = revoked.get(serial)
    if not issuer_dn or not names:
        return False
    clipped = len(issuer_dn.encode()) > STAT_NAME_BYTES - MAX_CHARACTER_BYTES
    return issuer_dn in names or clipped and any(name.startswith(issuer_dn) for name in names)
