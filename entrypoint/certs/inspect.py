"""What `certs inspect` reports about certificates and keys: names, dates, keys, chain, host coverage.

`inspect_material` is pure over bytes; `inspect_paths` only reads the files first.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509.oid import ExtendedKeyUsageOID

from entrypoint.errors import Problem, printable
from entrypoint.pki import reader
from entrypoint.pki.chain import chains_to
from entrypoint.pki.keys import describe_key, key_matches
from entrypoint.pki.load import fully_parsed, load_certificates, load_private_key
from entrypoint.pki.names import name_covered, san_names
from entrypoint.pki.verify import chain_problem

_KEY_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.S)
_EKU_NAMES = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}
_DIR_PATTERNS = ("*.crt", "*.pem", "*.key")


# --- The report -----------------------------------------------------------------------------

@dataclass
class CertInfo:
    """One certificate and what the checks found."""

    label: str
    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    days_left: int
    key_type: str
    is_ca: bool
    dns_names: list[str]
    ip_addresses: list[str]
    extended_key_usage: list[str]
    key: Optional[str] = None
    chains_to_ca: Optional[bool] = None
    hosts: dict[str, bool] = field(default_factory=dict)


@dataclass
class KeyInfo:
    """One private key and the certificates it belongs to."""

    label: str
    key_type: str
    encrypted: bool = False
    matches: list[str] = field(default_factory=list)


@dataclass
class Report:
    """Everything `certs inspect` found, plus the problems (exit 2) and warnings."""

    certificates: list[CertInfo] = field(default_factory=list)
    keys: list[KeyInfo] = field(default_factory=list)
    ca: Optional[str] = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def expand_paths(paths: Sequence[str]) -> list[str]:
    """Return files for `paths`, a directory standing for its *.crt, *.pem and *.key files."""
    out: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted({f for pattern in _DIR_PATTERNS for f in glob.glob(os.path.join(path, pattern))})
            out += found or [path]
        else:
            out.append(path)
    return out


def inspect_paths(paths: Sequence[str], ca_path: Optional[str] = None, hosts: Sequence[str] = (),
                  warn_days: int = 30, now: Optional[dt.datetime] = None) -> Report:
    """Read `paths` (and `ca_path`) and return inspect_material's report; unreadable files are problems."""
    files: dict[str, bytes] = {}
    read_problems: list[Problem] = []
    for path in expand_paths(paths):
        data, problem = _read(path, "PATH")
        if problem:
            read_problems.append(problem)
        else:
            files[path] = data
    ca_pem = None
    if ca_path is not None:
        ca_pem, problem = _read(ca_path, "--ca")
        if problem:
            read_problems.append(problem)
    report = inspect_material(files, ca_pem=ca_pem, ca_label=ca_path, hosts=hosts, warn_days=warn_days,
                              now=now or dt.datetime.now(dt.timezone.utc))
    report.problems[:0] = read_problems
    report.warnings += [w for path, data in files.items() if _KEY_BLOCK.search(data)
                        for w in [key_mode_warning(path, os.stat(path))] if w]
    return report


def key_mode_warning(path: str, st: os.stat_result) -> Optional[str]:
    """Return a warning when PostgreSQL would refuse this key file's permissions, else None.

    PostgreSQL accepts a key owned by its own user with no group or world access, or one
    owned by root with at most group read.
    """
    mode = st.st_mode & 0o777
    if st.st_uid == 0 and not mode & 0o037 or not mode & 0o077:
        return None
    return (f"{path}: private key mode {mode:04o} gives other users access, and PostgreSQL refuses "
            f"such a key file (its owner: at most 0600; root: at most 0640); chmod 0600 {path}")


def _read(path: str, what: str) -> tuple[bytes, Optional[Problem]]:
    """The file's bytes through the one safe reader (no FIFO, device or oversized file), or a Problem."""
    if os.path.isdir(path):
        return b"", Problem(f"{what} {path}", "is a directory with no *.crt, *.pem or *.key files",
                            "give certificate or key files")
    try:
        return reader.read_file(path, reader.CA_BUNDLE), None
    except OSError as exc:
        return b"", Problem(f"{what} {path}", f"cannot read it: {reader.why(exc)}",
                            "give a regular PEM file you can read")


def inspect_material(files: dict[str, bytes], ca_pem: Optional[bytes] = None, ca_label: Optional[str] = None,
                     hosts: Sequence[str] = (), warn_days: int = 30,
                     now: Optional[dt.datetime] = None) -> Report:
    """Return the report for PEM `files` ({label: bytes}), checked against `ca_pem` and `hosts`."""
    now = now or dt.datetime.now(dt.timezone.utc)
    report = Report(ca=ca_label)
    certs: list[tuple[CertInfo, list]] = []  # (info, [certificate, intermediates...])
    keys: list[tuple[KeyInfo, Any]] = []
    for label, data in files.items():
        found = _read_file(label, data, now, report, certs, keys)
        if not found and not any(p.where == label for p in report.problems):
            report.problems.append(Problem(label, "no PEM certificate or private key found",
                                           "give a .crt/.key file in PEM form (-----BEGIN CERTIFICATE----- ...)"))
    cas: list = []
    if ca_pem is not None:
        cas = _certificates_in(f"--ca {ca_label}", ca_pem, report)
        if not cas:
            report.problems.append(Problem(f"--ca {ca_label}", "holds no PEM certificate", "give the CA's ca.crt"))
    for info, chain in certs:
        _check_dates(info, now, warn_days, report)
        if cas:
            _check_chain(info, chain, cas, ca_label, now, report)
    _check_hosts(certs, hosts, report)
    _match_keys(certs, keys, report)
    report.certificates = [info for info, _ in certs]
    return report


def _check_chain(info: CertInfo, chain: list, cas: list, ca_label: Optional[str], now: dt.datetime,
                 report: Report) -> None:
    """A leaf is judged as libpq and PostgreSQL judge it (pki.verify); a CA only by who signed it."""
    if info.is_ca:
        info.chains_to_ca = chains_to(chain, cas)
        why = None if info.chains_to_ca else "was not signed by any CA in it"
    else:
        purpose = "client" if info.extended_key_usage == ["clientAuth"] else "server"
        why = chain_problem(chain, cas, purpose, now)
        info.chains_to_ca = why is None
    if why:
        report.problems.append(Problem(info.label, f"does not chain to --ca {ca_label}: {why} (issuer {info.issuer})",
                                       "give the CA that signed it, or regenerate it from this CA"))


def _read_file(label: str, data: bytes, now: dt.datetime, report: Report, certs: list, keys: list) -> int:
    """Add the certificates and keys in one file to `certs` and `keys`; returns how many blocks it held."""
    found = _certificates_in(label, data, report)
    for index, cert in enumerate(found):
        cert_label = label if len(found) == 1 else f"{label}[{index}]"
        # Later certificates in the same file are the intermediates a server sends.
        certs.append((_describe_cert(cert_label, cert, now), [cert] + found[index + 1:]))
    key_blocks = [m.group(0) for m in _KEY_BLOCK.finditer(data)]
    for index, block in enumerate(key_blocks):
        key_label = label if len(key_blocks) == 1 else f"{label}[key {index}]"
        try:
            key = load_private_key(block, None)
            keys.append((KeyInfo(key_label, _key_type(key)), key))
        except TypeError:
            report.keys.append(KeyInfo(key_label, "unknown", encrypted=True))
            report.warnings.append(f"{key_label}: the key is encrypted, so it was not matched "
                                   f"against the certificates")
        except (ValueError, UnsupportedAlgorithm) as exc:
            report.problems.append(Problem(key_label, f"the private key cannot be loaded ({exc})",
                                           "give a PEM RSA or ECDSA key"))
    return len(found) + len(key_blocks)


def _check_hosts(certs: list, hosts: Sequence[str], report: Report) -> None:
    # Host names concern the certificates servers present, not CAs or client-only certificates.
    servers = [pair for pair in certs if not pair[0].is_ca and
               (not pair[0].extended_key_usage or "serverAuth" in pair[0].extended_key_usage)] or certs
    for info, chain in servers:
        for host in hosts:
            info.hosts[host] = name_covered(chain[0], host)
            if not info.hosts[host]:
                report.problems.append(Problem(info.label, f"does not cover host {host!r} for verify-full",
                                               f"add it to the certificate (certs generate --san {host}) or "
                                               "connect by a listed name"))


def _match_keys(certs: list, keys: list, report: Report) -> None:
    for key_info, key in keys:
        key_info.matches = [info.label for info, chain in certs if key_matches(key, chain[0])]
        for info, _ in certs:
            if info.label in key_info.matches:
                info.key = key_info.label
        if certs and not key_info.matches:
            report.problems.append(Problem(key_info.label, "matches none of the certificates given",
                                           "pair each key with its own certificate"))
        report.keys.append(key_info)


def _certificates_in(label: str, data: bytes, report: Report) -> list:
    """Return the certificates in `data`; a block that does not parse becomes a problem."""
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return []
    try:
        certs = load_certificates(data)
    except ValueError as exc:
        report.problems.append(Problem(label, f"a certificate block cannot be parsed ({exc})",
                                       "check the file is PEM and not truncated, or regenerate it"))
        return []
    if not all(fully_parsed(cert) for cert in certs):
        report.problems.append(Problem(label, "holds a damaged certificate (its fields do not parse, e.g. an "
                                              "extension given twice)", "issue the certificate again"))
        return []
    return certs


def _check_dates(info: CertInfo, now: dt.datetime, warn_days: int, report: Report) -> None:
    if info.not_after <= now:
        report.problems.append(Problem(info.label, f"expired on {info.not_after:%Y-%m-%d %H:%M} UTC",
                                       "issue a new one (certs generate --renew)"))
    elif info.not_before > now:
        report.problems.append(Problem(info.label, f"not valid before {info.not_before:%Y-%m-%d %H:%M} UTC",
                                       "check the clock of the machine that issued it"))
    elif info.days_left < warn_days:
        report.warnings.append(f"{info.label}: expires in {info.days_left} days "
                               f"({info.not_after:%Y-%m-%d}); renew it (certs generate --renew)")


def _describe_cert(label: str, cert: x509.Certificate, now: dt.datetime) -> CertInfo:
    dns_names, ip_addresses = san_names(cert)
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = bool(basic.ca)
    except x509.ExtensionNotFound:
        is_ca = False
    try:
        eku = [_EKU_NAMES.get(oid, oid.dotted_string)
               for oid in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value]
    except x509.ExtensionNotFound:
        eku = []
    not_after = cert.not_valid_after_utc
    return CertInfo(
        label=label, subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"), not_before=cert.not_valid_before_utc, not_after=not_after,
        days_left=(not_after - now).days, key_type=_key_type(cert.public_key()), is_ca=is_ca,
        dns_names=list(dns_names), ip_addresses=list(ip_addresses), extended_key_usage=eku)


def _key_type(key: Any) -> str:
    return describe_key(key)


# --- Output ---------------------------------------------------------------------------------

def report_json(report: Report) -> dict:
    """Return the report as JSON-ready data (dates in ISO 8601 UTC)."""
    def cert(info: CertInfo) -> dict:
        data = dict(vars(info))
        data["not_before"] = info.not_before.isoformat()
        data["not_after"] = info.not_after.isoformat()
        return data

    return {
        "certificates": [cert(info) for info in report.certificates],
        "keys": [dict(vars(info)) for info in report.keys],
        "ca": report.ca,
        "ok": not report.problems,
        "problems": [vars(p) for p in report.problems],
        "warnings": list(report.warnings),
    }


def render_text(report: Report) -> str:
    """Return the report as text for a terminal, one block per certificate and key.

    Subjects, names and file names may hold anything (a newline, ESC): each line is
    escaped on its own, so a field can neither forge a line nor drive the terminal.
    """
    lines: list[str] = []
    for info in report.certificates:
        lines.append(f"{info.label}: certificate{' (CA)' if info.is_ca else ''}")
        lines.append(f"  subject:   {info.subject}")
        lines.append(f"  issuer:    {info.issuer}")
        lines.append(f"  valid:     {info.not_before:%Y-%m-%d %H:%M} to {info.not_after:%Y-%m-%d %H:%M} UTC "
                     f"({info.days_left} days left)")
        lines.append(f"  key:       {info.key_type}" + (f", private key in {info.key}" if info.key else ""))
        if info.dns_names or info.ip_addresses:
            lines.append(f"  names:     {', '.join(info.dns_names + info.ip_addresses)}")
        if info.extended_key_usage:
            lines.append(f"  usage:     {', '.join(info.extended_key_usage)}")
        if info.chains_to_ca is not None:
            lines.append(f"  chain:     {'ok, signed by' if info.chains_to_ca else 'NOT signed by'} {report.ca}")
        for host, covered in info.hosts.items():
            lines.append(f"  host {host}: {'covered' if covered else 'NOT covered'}")
    for key in report.keys:
        if key.encrypted:
            lines.append(f"{key.label}: private key (encrypted, not checked)")
        else:
            matches = ", ".join(key.matches) if key.matches else "no certificate given here"
            lines.append(f"{key.label}: private key {key.key_type}, matches {matches}")
    return "\n".join(printable(line) for line in lines)
