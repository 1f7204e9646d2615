"""Read the certificate Secret as it is mounted here, to tell whether every port serves what it holds now.

The exporter mounts the same Secret as the members (the chart does this). Its files are
written by other programs (the kubelet, cert-manager, a person with kubectl), so they go
through the one safe reader (entrypoint.pki.reader): regular files only, bounded in size.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from typing import List, Optional, Tuple

from entrypoint import layout
from entrypoint.audit.model import CertInfo, MountedSecret
from entrypoint.pki import reader

MAX_FILE_BYTES = reader.CA_BUNDLE.limit


class UnreadableFile(Exception):
    """A file could not be used; the message says why (no secret content)."""


def read_regular_file(path: str, limit: int = MAX_FILE_BYTES) -> Tuple[bytes, float]:
    """Return (content, mtime) of the regular file at `path` through the one safe reader; raises UnreadableFile."""
    try:
        data = reader.read_file(path, reader.Kind("a certificate file", limit))
        return data, os.stat(path).st_mtime
    except OSError as exc:
        raise UnreadableFile(f"cannot read {path}: {reader.why(exc)}") from exc


def cert_info(cert) -> CertInfo:
    """Name, fingerprint, serial and expiry of a `cryptography` certificate."""
    from cryptography.hazmat.primitives.serialization import Encoding

    der = cert.public_bytes(Encoding.DER)
    return CertInfo(subject=cert.subject.rfc4514_string(), sha256=hashlib.sha256(der).hexdigest(),
                    serial=format(cert.serial_number, "x"), not_after=cert.not_valid_after_utc)


def _certificates(path: str) -> Tuple[list, float]:
    from entrypoint.pki.load import load_certificates

    data, mtime = read_regular_file(path)
    try:
        certs = load_certificates(data)
    except ValueError as exc:
        raise UnreadableFile(f"{path} holds no PEM certificate") from exc
    return certs, mtime


def _first_present(directory: str, names: Tuple[str, ...]) -> Optional[str]:
    for name in names:
        path = os.path.join(directory, name)
        if os.path.lexists(path):
            return path
    return None


def read_secret(directory: str) -> MountedSecret:
    """What the Secret mounted at `directory` holds: its certificate (server.crt, else tls.crt) and ca.crt.

    Never raises for the files' sake: a problem lands in `error`, so one bad update of the
    Secret is a metric, not a crash of the exporter.
    """
    secret = MountedSecret(directory=directory)
    cert_file = _first_present(directory, layout.CERT_NAMES)
    if cert_file is None:
        secret.error = f"no {' or '.join(layout.CERT_NAMES)} in {directory}"
        return secret
    secret.cert_file = cert_file
    problems: List[str] = []
    try:
        certs, mtime = _certificates(cert_file)
        secret.cert = cert_info(certs[0])  # the leaf; intermediates may follow it
        secret.changed_at = dt.datetime.fromtimestamp(mtime, dt.timezone.utc)
    except UnreadableFile as exc:
        problems.append(str(exc))
    ca_file = _first_present(directory, layout.CA_NAMES)
    if ca_file is not None:
        try:
            secret.cas = [cert_info(c) for c in _certificates(ca_file)[0]]
        except UnreadableFile as exc:
            problems.append(str(exc))
    secret.error = "; ".join(problems) or None
    return secret


def secret_dir_usable(directory: str) -> Optional[str]:
    """None when `directory` is a directory holding a certificate verify can read, else why not."""
    if not os.path.isdir(directory):
        return f"{directory} is not a directory"
    secret = read_secret(directory)
    return secret.error if secret.cert is None else None
