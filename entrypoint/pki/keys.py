"""Key types: the table of those the product issues, how to describe any key, whether a key fits a certificate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa


@dataclass(frozen=True)
class KeyType:
    """One key type `certs generate` can make: its flag name, cert-manager's spelling, and a generator."""

    name: str
    algorithm: str  # cert-manager's privateKey.algorithm
    size: int
    generate: Callable[[], Any]

    @property
    def signs_only(self) -> bool:
        """ECDSA keys only sign; RSA keys may also encipher (TLS 1.2 RSA key exchange)."""
        return self.algorithm != "RSA"


def _rsa(bits: int) -> Callable[[], Any]:
    return lambda: rsa.generate_private_key(public_exponent=65537, key_size=bits)


# ECDSA P-256 is the default: bench/handshake measured it well ahead of RSA-2048 on new
# TLS connections per second (the server signs every handshake), see docs/certificates.md.
KEY_TYPES: Tuple[KeyType, ...] = (
    KeyType("ecdsa-p256", "ECDSA", 256, lambda: ec.generate_private_key(ec.SECP256R1())),
    KeyType("rsa-2048", "RSA", 2048, _rsa(2048)),
    KeyType("rsa-3072", "RSA", 3072, _rsa(3072)),
    KeyType("rsa-4096", "RSA", 4096, _rsa(4096)),
)
KEY_TYPE_NAMES: Tuple[str, ...] = tuple(k.name for k in KEY_TYPES)
DEFAULT_KEY_TYPE = "ecdsa-p256"

# The private key classes PostgreSQL (through OpenSSL) can serve.
SUPPORTED_PRIVATE_KEYS = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey,
                          ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)


def key_type(name: str) -> Optional[KeyType]:
    """The KeyType called `name`, or None."""
    return next((k for k in KEY_TYPES if k.name == name), None)


def describe_key(key: object) -> str:
    """The KEY_TYPES spelling for any public or private key, e.g. 'ecdsa-p256' or 'rsa-2048'."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"rsa-{key.key_size}"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ecdsa-p256" if isinstance(key.curve, ec.SECP256R1) else f"ecdsa-{key.curve.name}"
    return type(key).__name__


def key_matches(key: Any, cert: x509.Certificate) -> bool:
    """True when the private key belongs to the certificate's public key."""
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return bool(key.public_key().public_bytes(der, pub) == cert.public_key().public_bytes(der, pub))
