"""Check the TLS inputs the way the mode needs: key/cert match, chain, dates, names. Pure over bytes."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Mapping, Optional, Union

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from entrypoint.boot.settings import Settings
from entrypoint.errors import Collector
from entrypoint.pki.keys import SUPPORTED_PRIVATE_KEYS, key_matches
from entrypoint.pki.load import fully_parsed, key_is_encrypted, key_pem, load_certificates, load_private_key
from entrypoint.pki.names import name_covered, san_names
from entrypoint.pki.verify import chain_problem, key_problem

# What a read gives back: the bytes, or the OSError that stopped it.
FileContents = Mapping[str, Union[bytes, OSError]]


@dataclass(frozen=True)
class KeyPair:
    """A certificate (leaf first, then any intermediates from the same file) and its private key."""

    chain: tuple
    key: object
    key_pem: bytes  # unencrypted PKCS#8, what the staged copy holds

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


@dataclass(frozen=True)
class TlsMaterial:
    """Everything checked and ready to stage. Absent parts are None."""

    server: Optional[KeyPair]
    client: Optional[KeyPair]  # separate client pair for mutual TLS; None means the server pair
    cas: tuple
    ca_pem: Optional[bytes]
    extra_files: Mapping[str, bytes]  # Patroni's own TLS file variables -> content
    warnings: tuple


def read_files(paths: list) -> dict:
    """Read each path; returns {path: bytes or the OSError}. The only I/O in this module."""
    out: dict = {}
    for path in paths:
        try:
            with open(path, "rb") as handle:
                out[path] = handle.read()
        except OSError as exc:
            out[path] = exc
    return out


def files_to_read(settings: Settings) -> list:
    """Every file the checks look at, in a stable order."""
    paths = []
    if settings.server_ssl or settings.tls.cert_explicit or settings.tls.key_explicit:
        paths += [settings.tls.cert_file, settings.tls.key_file]
    if settings.mode.uses_tls:
        paths.append(settings.tls.ca_file)
    if settings.mtls.cert_file and settings.mtls.key_file:
        paths += [settings.mtls.cert_file, settings.mtls.key_file]
    paths += list(settings.tls.patroni_files.values())
    return list(dict.fromkeys(paths))


def check_material(settings: Settings, files: FileContents, now: datetime.datetime) -> TlsMaterial:
    """Check the TLS inputs against the mode.

    Returns the TlsMaterial (with warnings); raises InputError listing every problem.
    """
    bad = Collector()
    warnings: list = []
    password = settings.key_password.encode() if settings.key_password is not None else None
    if settings.mode.server_ssl == "if-certs" and not settings.tls.cert_present:
        warnings.append(f"PGSSLMODE={settings.mode} but no certificate at {settings.tls.cert_file}: "
                        "PostgreSQL runs without TLS and internal links fall back to plaintext")
    wants_pair = settings.server_ssl or settings.tls.cert_explicit or settings.tls.key_explicit
    server = _check_pair(bad, files, settings.tls.cert_file, "PGSSLCERT", settings.tls.key_file, "PGSSLKEY",
                         password, "PGSSLKEY_PASSWORD") if wants_pair else None
    cas, ca_pem = _check_cas(bad, settings, files)
    client = None
    if settings.mtls.cert_file and settings.mtls.key_file:
        client = _check_pair(bad, files, settings.mtls.cert_file, "PCK_CLIENT_CERT",
                             settings.mtls.key_file, "PCK_CLIENT_KEY", password, "PGSSLKEY_PASSWORD")
    for path, pair, var in ((settings.tls.cert_file, server, "PGSSLCERT"),
                            (settings.mtls.cert_file, client, "PCK_CLIENT_CERT")):
        if pair is not None and path is not None:
            _check_leaf(bad, warnings, settings, pair, path, var, cas, now)
    for ca in cas:
        _check_dates(bad, warnings, ca, "PGSSLROOTCERT", settings.tls.ca_file, now, settings.tuning.expiry_warn_days,
                     subject=True)
    if server is not None and settings.mode.verifies_host:
        _check_names(bad, settings, server)
    extra = _patroni_files(bad, settings, files)
    bad.raise_if_any()
    return TlsMaterial(server=server, client=client, cas=tuple(cas), ca_pem=ca_pem,
                       extra_files=extra, warnings=tuple(warnings))


def _check_cas(bad: Collector, settings: Settings, files: FileContents) -> tuple:
    """Returns (CA certificates, their PEM) when the mode needs them, or a CA file is given or present."""
    ca_data = files.get(settings.tls.ca_file)
    ca_needed = settings.mode.verifies_ca or settings.mtls.enabled
    if not (ca_needed or (settings.mode.uses_tls and settings.tls.ca_explicit) or isinstance(ca_data, bytes)):
        return [], None
    cas = _load_cas(bad, ca_data, settings.tls.ca_file, required=ca_needed or settings.tls.ca_explicit)
    return cas, (ca_data if cas else None)


def _check_leaf(bad: Collector, warnings: list, settings: Settings, pair: KeyPair, path: str, var: str,
                cas: list, now: datetime.datetime) -> None:
    _check_dates(bad, warnings, pair.leaf, var, path, now, settings.tuning.expiry_warn_days)
    weak = key_problem(pair.leaf)
    if weak:
        bad.add(var, f"{path} {weak}", "issue the certificate again with an ECDSA P-256 or RSA-2048+ key and SHA-256 "
                                        "(patroni-citus-k8s certs generate)")
    if not (cas and (settings.mode.verifies_ca or settings.mtls.enabled)):
        return
    # Members check servers with it; with mutual TLS they present the same pair as clients.
    for purpose in ("server",) + (("client",) if settings.mtls.enabled else ()):
        problem = chain_problem(pair.chain, cas, purpose)
        if problem:
            bad.add(var, f"{path} {problem} {settings.tls.ca_file} "
                         f"(issuer: {pair.leaf.issuer.rfc4514_string()}, checked as a {purpose} certificate)",
                    "mount the CA that signed this certificate as ca.crt, or re-issue the certificate from that CA "
                    "(patroni-citus-k8s certs generate --renew)")
            return


def _check_names(bad: Collector, settings: Settings, server: KeyPair) -> None:
    """verify-full: the certificate covers every name peers use to reach this node."""
    for var, address in (("PATRONI_POSTGRESQL_CONNECT_ADDRESS", settings.addresses.connect),
                         ("PATRONI_RESTAPI_CONNECT_ADDRESS", settings.addresses.restapi_connect)):
        if name_covered(server.leaf, address.host):
            continue
        dns, ips = san_names(server.leaf)
        how = "derived from the pod name" if settings.addresses.connect_derived else "as configured"
        bad.add(settings.tls.cert_file,
                f"does not cover {address.host!r}, the name peers use to reach this node ({var}, {how}); "
                f"its SANs are {', '.join(dns + ips) or 'none'}",
                f"re-issue the certificate with {address.host!r} or a wildcard for its domain in the SANs "
                f"(patroni-citus-k8s certs generate), or set {var} to a covered name")


def _patroni_files(bad: Collector, settings: Settings, files: FileContents) -> dict:
    extra = {}
    for var, path in settings.tls.patroni_files.items():
        data = files.get(path)
        if isinstance(data, bytes):
            extra[var] = data
        else:
            bad.add(var, f"cannot read {path}: {_why(data)}", "mount the file, or unset the variable")
    return extra


def _why(data) -> str:
    if isinstance(data, OSError):
        return data.strerror or str(data)
    return "not read"


def _read_or_complain(bad: Collector, files: FileContents, path: str, var: str, what: str) -> Optional[bytes]:
    data = files.get(path)
    if isinstance(data, OSError) or data is None:
        if isinstance(data, PermissionError):
            fix = ("the container user cannot read it: give the pod an fsGroup that owns the Secret mount "
                   "(defaultMode 0640/0600 with fsGroup), or start the container as root so the entrypoint "
                   "stages a copy")
        else:
            fix = f"mount the Secret with the {what} at that path, or set {var} to where it is"
        bad.add(var, f"cannot read {path}: {_why(data)}", fix)
        return None
    if not data.strip():
        bad.add(var, f"{path} is empty", f"put the PEM-encoded {what} in the Secret")
        return None
    return data


def _check_pair(bad: Collector, files: FileContents, cert_path: str, cert_var: str, key_path: str, key_var: str,
                password: Optional[bytes], password_var: str) -> Optional[KeyPair]:
    cert_data = _read_or_complain(bad, files, cert_path, cert_var, "certificate")
    key_data = _read_or_complain(bad, files, key_path, key_var, "private key")
    chain = None
    if cert_data is not None:
        try:
            chain = load_certificates(cert_data)
        except ValueError:
            bad.add(cert_var, f"{cert_path} is not a PEM certificate",
                    "the file must hold -----BEGIN CERTIFICATE----- blocks (convert DER with openssl x509 -inform der)")
    key = None
    if key_data is not None:
        encrypted = key_is_encrypted(key_data)
        if encrypted and password is None:
            bad.add(key_var, f"{key_path} is encrypted and no passphrase is given",
                    f"set {password_var} (or {password_var}_FILE), or mount an unencrypted key")
        else:
            try:
                key = load_private_key(key_data, password if encrypted else None)
            except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
                if encrypted and not isinstance(exc, UnsupportedAlgorithm):
                    bad.add(password_var, f"does not decrypt {key_path}",
                            "give the passphrase the key was encrypted with")
                else:
                    bad.add(key_var, f"{key_path} is not a PEM private key ({exc.__class__.__name__})",
                            "the file must hold a -----BEGIN PRIVATE KEY----- (or RSA/EC PRIVATE KEY) block")
            else:
                if not isinstance(key, SUPPORTED_PRIVATE_KEYS):
                    bad.add(key_var, f"{key_path} holds an unsupported key type", "use an RSA or ECDSA key")
                    key = None
    if chain is not None and not all(fully_parsed(cert) for cert in chain):
        bad.add(cert_var, f"{cert_path} holds a damaged certificate (its fields do not parse)",
                "issue the certificate again and update the Secret")
        chain = None
    if chain is None or key is None:
        return None
    if not key_matches(key, chain[0]):
        bad.add(key_var, f"{key_path} does not belong to the certificate {cert_path}",
                "mount the key that was generated with this certificate (both from the same Secret)")
        return None
    return KeyPair(chain=tuple(chain), key=key, key_pem=key_pem(key))


def _load_cas(bad: Collector, data, path: str, required: bool) -> list:
    if data is None or isinstance(data, OSError):
        if required:
            bad.add("PGSSLROOTCERT", f"cannot read {path}: {_why(data)}",
                    "mount the CA certificate as ca.crt in the Secret, or set PGSSLROOTCERT to where it is")
        return []
    if not data.strip():
        if required:
            bad.add("PGSSLROOTCERT", f"{path} is empty", "put the PEM-encoded CA certificate(s) in it")
        return []
    try:
        cas = load_certificates(data)
    except ValueError:
        cas = []
    if not cas or not all(fully_parsed(ca) for ca in cas):
        bad.add("PGSSLROOTCERT", f"{path} is not a PEM certificate bundle (or holds a damaged certificate)",
                "the file must hold one or more intact -----BEGIN CERTIFICATE----- blocks")
        return []
    return cas


def _check_dates(bad: Collector, warnings: list, cert: x509.Certificate, var: str, path: str,
                 now: datetime.datetime, warn_days: int, subject: bool = False) -> None:
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
