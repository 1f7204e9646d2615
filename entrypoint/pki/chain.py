"""Whether a certificate chain leads to one of a set of CAs."""

from __future__ import annotations

from typing import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm


def chains_to(chain: Sequence[x509.Certificate], cas: Sequence[x509.Certificate]) -> bool:
    """True when the leaf, through any intermediates given, was issued by one of the CAs."""
    current = chain[0]
    intermediates = list(chain[1:])
    for _ in range(len(chain) + 1):
        for ca in cas:
            if issued_by(current, ca):
                return True
        parent = next((c for c in intermediates if issued_by(current, c)), None)
        if parent is None:
            return False
        intermediates.remove(parent)
        current = parent
    return False


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when `issuer`'s name and key signed `cert`."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True
