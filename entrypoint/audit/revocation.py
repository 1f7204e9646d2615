"""Revocation in verify: which CRLs to judge against, and what they revoke among served certificates and sessions.

The CRL file is `--crl`, else the connection's `sslcrl`, else `ca.crl` in the mounted
Secret (what the members stage). It is read through the one safe reader and judged with
pki.crl, the same rules the entrypoint applies before it stages a CRL.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from typing import List, Optional

from entrypoint import layout
from entrypoint.audit.model import CrlInfo, Observations
from entrypoint.errors import Problem
from entrypoint.pki import reader
from entrypoint.pki.crl import is_revoked, judge, load_crls, pg_issuer, revoked_pairs


@dataclass
class Revocation:
    """The CRL file verify uses (None: no revocation checking) and what came of reading it."""

    path: Optional[str] = None
    crls: list = field(default_factory=list)  # cryptography CRLs
    error: Optional[str] = None  # why the file could not be used


def read_crls(path: str) -> list:
    """The CRLs in `path`; raises ValueError with a one-line reason (no content) when the file cannot be used."""
    try:
        data = reader.read_file(path, reader.CRL)
    except OSError as exc:
        raise ValueError(f"cannot read it ({reader.why(exc)})") from exc
    try:
        return load_crls(data)
    except ValueError as exc:
        raise ValueError(f"is not a PEM CRL bundle ({exc})") from exc


def explicit_crl(path: Optional[str], problems: List[Problem]) -> Revocation:
    """--crl FILE, checked before anything connects: a file that cannot be used is a Problem (exit 2)."""
    if path is None or not path.strip():
        return Revocation()
    try:
        return Revocation(path, read_crls(path))
    except ValueError as exc:
        problems.append(Problem(f"--crl {path}", str(exc), "give the PEM file with the CRLs (the Secret's ca.crl, "
                                                           "as certs generate and certs revoke write it)"))
        return Revocation(path)


def default_crl(sslcrl: Optional[str], secret_dir: Optional[str]) -> Revocation:
    """The connection's sslcrl, else the Secret's ca.crl when there is one; a bad file is kept as `error`."""
    candidates = [sslcrl] if sslcrl else []
    if secret_dir:
        candidates.append(os.path.join(secret_dir, layout.CRL_FILE))
    for path in candidates:
        if os.path.lexists(path):
            try:
                return Revocation(path, read_crls(path))
            except ValueError as exc:
                return Revocation(path, error=str(exc))
    return Revocation()


def mark(obs: Observations, revocation: Revocation, cas: list) -> None:
    """Record the CRLs in `obs`, with what pki.crl.judge says of them against `cas`, and mark every served
    certificate and session they revoke."""
    obs.crl_file, obs.crl_error = revocation.path, revocation.error
    if not revocation.crls:
        return
    obs.crls = [CrlInfo(issuer=c.issuer.rfc4514_string(), next_update=c.next_update_utc,
                        revoked=tuple(format(e.serial_number, "x") for e in c), pg_issuer=pg_issuer(c.issuer))
                for c in revocation.crls]
    by_name = {(info.issuer, int(serial, 16)) for info in obs.crls for serial in info.revoked}
    by_pg_name = revoked_pairs(revocation.crls)
    for member in obs.members:
        for served in member.served:
            if served.tls and served.serial and served.issuer:
                served.revoked = (served.issuer, int(served.serial, 16)) in by_name
        for conn in member.connections:
            if conn.client_serial:
                conn.revoked = is_revoked(by_pg_name, conn.client_issuer or "", int(conn.client_serial, 16))
    if cas:
        verdict = judge(revocation.crls, cas, obs.observed_at, obs.expiry_days)
        obs.crl_problems, obs.crl_warnings = list(verdict.problems), list(verdict.warnings)


def seconds_left(info: CrlInfo, now: dt.datetime) -> Optional[float]:
    return None if info.next_update is None else (info.next_update - now).total_seconds()
