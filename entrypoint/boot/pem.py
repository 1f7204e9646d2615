"""Parse what was read into checked objects, one Problem per thing wrong: certificate chains, keys, CA bundles, dates.

Pure over bytes. `boot.material` (the PGSSL* files) and `boot.patroni_files` (Patroni's
own TLS file variables) share these, so a file is judged the same whoever names it.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Union

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from entrypoint.errors import Collector
from entrypoint.pki.keys import SUPPORTED_PRIVATE_KEYS, key_matches
from entrypoint.pki.load import (
    PEM_CERTIFICATE,
    fully_parsed,
    kdf_work_problem,
    key_is_encrypted,
    key_pem,
    load_certificates,
    load_private_key,
)
from entrypoint.pki.reader import FileRefused, why

# What a read gives back: the bytes, or the OSError that stopped it.
FileContents = Mapping[str, Union[bytes, OSError]]

_KEY_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.S)
FORMAT_ERRORS = (ValueError, TypeError, UnsupportedAlgorithm)


@dataclass(frozen=True)
class KeyPair:
    """A certificate (leaf first, then any intermediates from the same file) and its private key."""

    chain: tuple
    key: Any
    key_pem: bytes  # unencrypted PKCS#8, what the staged copy holds

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


def readable(bad: Collector, files: FileContents, path: str, var: str, what: str) -> Optional[bytes]:
    """The bytes read from `path`, or None with a Problem saying why there are none."""
    data = files.get(path)
    if isinstance(data, OSError) or data is None:
        if isinstance(data, PermissionError):
            fix = ("the container user cannot read it: give the pod an fsGroup that owns the Secret mount "
                   "(defaultMode 0640/0600 with fsGroup), or start the container as root so the entrypoint "
                   "stages a copy")
        elif isinstance(data, FileRefused):
            fix = f"mount a regular file with the {what} there (a Secret key), or set {var} to where it is"
        else:
            fix = f"mount the Secret with the {what} at that path, or set {var} to where it is"
        bad.add(var, f"{path}: {why(data) if data is not None else 'was not read'}", fix)
        return None
    if not data.strip():
        bad.add(var, f"{path} is empty", f"put the PEM-encoded {what} in the Secret")
        return None
    return data


def parse_chain(bad: Collector, data: bytes, path: str, var: str) -> Optional[List[x509.Certificate]]:
    """Every certificate in `data`, each fully parsed (cryptography parses lazily), or None with a Problem."""
    try:
        chain = load_certificates(data)
    except FORMAT_ERRORS:
        chain = []
    if not chain:
        bad.add(var, f"{path} is not a PEM certificate" if PEM_CERTIFICATE not in data else
                f"{path} holds a certificate block that does not parse",
                "the file must hold intact -----BEGIN CERTIFICATE----- blocks (convert DER with "
                "openssl x509 -inform der)")
        return None
    if not all(fully_parsed(cert) for cert in chain):
        bad.add(var, f"{path} holds a damaged certificate (its fields do not parse, e.g. an extension given twice)",
                "issue the certificate again and update the Secret")
        return None
    return chain


def parse_key(bad: Collector, data: bytes, path: str, var: str, password: Optional[bytes],
              password_var: Optional[str]) -> Any:
    """The private key in `data` (decrypted with `password` when it is encrypted), or None with a Problem."""
    encrypted = key_is_encrypted(data)
    if encrypted and password is None:
        fix = f"set {password_var}, or mount an unencrypted key" if password_var else "mount an unencrypted key"
        bad.add(var, f"{path} is encrypted and no passphrase is given", fix)
        return None
    too_costly = kdf_work_problem(data) if encrypted else None
    if too_costly:
        bad.add(var, f"{path} {too_costly}", "encrypt it again with an ordinary iteration count (openssl pkcs8 "
                                             "-topk8 -v2 aes-256-cbc -iter 100000), or mount it unencrypted")
        return None
    try:
        key = load_private_key(data, password if encrypted else None)
    except FORMAT_ERRORS as exc:
        if encrypted and not isinstance(exc, UnsupportedAlgorithm):
            bad.add(password_var or var, f"does not decrypt {path}", "give the passphrase the key was encrypted with")
        else:
            bad.add(var, f"{path} is not a PEM private key ({exc.__class__.__name__})",
                    "the file must hold a -----BEGIN PRIVATE KEY----- (or RSA/EC PRIVATE KEY) block")
        return None
    if not isinstance(key, SUPPORTED_PRIVATE_KEYS):
        bad.add(var, f"{path} holds an unsupported key type", "use an RSA or ECDSA key")
        return None
    return key


def has_private_key(data: bytes) -> bool:
    return _KEY_BLOCK.search(data) is not None


def pair(bad: Collector, chain: Optional[list], key: Any, cert_path: str, key_path: str,
         key_var: str) -> Optional[KeyPair]:
    """The KeyPair when both parsed and belong together, else None (with a Problem for a mismatch)."""
    if chain is None or key is None:
        return None
    if not key_matches(key, chain[0]):
        bad.add(key_var, f"{key_path} does not belong to the certificate {cert_path}",
                "mount the key that was generated with this certificate (both from the same Secret)")
        return None
    return KeyPair(chain=tuple(chain), key=key, key_pem=key_pem(key))


def load_pair(bad: Collector, files: FileContents, cert_path: str, cert_var: str, key_path: str, key_var: str,
              password: Optional[bytes], password_var: Optional[str]) -> Optional[KeyPair]:
    """Read, parse and match a certificate and its key."""
    cert_data = readable(bad, files, cert_path, cert_var, "certificate")
    key_data = readable(bad, files, key_path, key_var, "private key")
    chain = parse_chain(bad, cert_data, cert_path, cert_var) if cert_data is not None else None
    key = parse_key(bad, key_data, key_path, key_var, password, password_var) if key_data is not None else None
    return pair(bad, chain, key, cert_path, key_path, key_var)


def load_cas(bad: Collector, files: FileContents, path: str, var: str, required: bool,
             warnings: List[str]) -> list:
    """The CA certificates in the bundle at `path`; [] when absent and not required."""
    data = files.get(path)
    if not required and (data is None or isinstance(data, FileNotFoundError)):
        return []
    data = readable(bad, files, path, var, "CA certificate(s)")
    if data is None:
        return []
    cas = parse_chain(bad, data, path, var)
    if cas and has_private_key(data):
        warnings.append(f"{var}: {path} also holds a private key; only its certificates were staged, but everyone "
                        "who can read the Secret can read that key: take it out of the Secret")
    return cas or []


def check_dates(bad: Collector, warnings: List[str], cert: x509.Certificate, var: str, path: str,
                now: datetime.datetime, warn_days: int, subject: bool = False) -> None:
    """Not yet valid or expired is a Problem; expiring within `warn_days` is a warning."""
    name = f"{path} ({cert.subject.rfc4514_string()})" if subject else path
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        bad.add(var, f"{name} is not valid until {start:%Y-%m-%d %H:%M} UTC",
                "check the node's clock, or issue a certificate whose validity has started")
    elif now > end:
        bad.add(var, f"{name} expired on {end:%Y-%m-%d %H:%M} UTC",
                "issue a new certificate (patroni-citus-k8s certs generate --renew) and update the Secret")
    elif end - now < datetime.timedelta(days=warn_days):
        days = (end - now).days
        warnings.append(f"{var}: {name} expires in {days} day{'s' if days != 1 else ''} ({end:%Y-%m-%d} UTC); "
                        "rotate it soon")
