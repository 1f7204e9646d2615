"""Load PEM material and check it the way the mode needs: key/cert match, chain, dates, names."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from typing import Mapping, Optional, Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from entrypoint.errors import Collector
from entrypoint.settings import Settings

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
    if settings.server_ssl or settings.cert_explicit or settings.key_explicit:
        paths += [settings.cert_file, settings.key_file]
    if settings.tls_wanted:
        paths.append(settings.ca_file)
    if settings.client_cert_file and settings.client_key_file:
        paths += [settings.client_cert_file, settings.client_key_file]
    paths += list(settings.patroni_tls_files.values())
    return list(dict.fromkeys(paths))


def load_certificates(pem: bytes) -> list:
    """Return every certificate in a PEM blob, in file order; raises ValueError when there is none."""
    certs = x509.load_pem_x509_certificates(pem)
    if not certs:
        raise ValueError("no certificate found")
    return certs


def load_private_key(pem: bytes, password: Optional[bytes]):
    """Return the private key; raises TypeError when a password is missing or not needed, ValueError when wrong or not PEM."""
    return serialization.load_pem_private_key(pem, password=password)


def key_is_encrypted(pem: bytes) -> bool:
    return b"ENCRYPTED" in pem.split(b"-----END", 1)[0]


def key_matches(key, cert: x509.Certificate) -> bool:
    """True when the private key belongs to the certificate's public key."""
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return key.public_key().public_bytes(der, pub) == cert.public_key().public_bytes(der, pub)


def chains_to(chain: list, cas: list) -> bool:
    """True when the leaf, through any intermediates given, was issued by one of the CAs."""
    current = chain[0]
    intermediates = list(chain[1:])
    for _ in range(len(chain) + 1):
        for ca in cas:
            if _issued_by(current, ca):
                return True
        parent = next((c for c in intermediates if _issued_by(current, c)), None)
        if parent is None:
            return False
        intermediates.remove(parent)
        current = parent
    return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def san_names(cert: x509.Certificate) -> tuple:
    """Return (dns names, ip addresses as strings) from the subjectAltName extension."""
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return (), ()
    dns = tuple(ext.get_values_for_type(x509.DNSName))
    ips = tuple(str(ip) for ip in ext.get_values_for_type(x509.IPAddress))
    return dns, ips


def common_name(cert: x509.Certificate) -> Optional[str]:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def name_covered(cert: x509.Certificate, host: str) -> bool:
    """True when libpq's verify-full would accept `cert` for `host`.

    libpq matches an IP address against IP SANs (and the CN only when there are no
    SANs at all), a name against dNSName SANs, with `*` allowed as the whole left-most
    label only, and against the CN only when the certificate has no dNSName SAN.
    """
    dns, ips = san_names(cert)
    host = host.strip("[]").rstrip(".").lower()
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        addr = None
    if addr is not None:
        if any(ipaddress.ip_address(ip) == addr for ip in ips):
            return True
        cn = common_name(cert)
        return not dns and not ips and cn is not None and cn == host
    if dns:
        return any(_dns_matches(pattern, host) for pattern in dns)
    cn = common_name(cert)
    return cn is not None and _dns_matches(cn, host)


def _dns_matches(pattern: str, host: str) -> bool:
    pattern = pattern.rstrip(".").lower()
    if pattern.startswith("*."):
        first, _, rest = host.partition(".")
        return bool(first) and rest == pattern[2:]
    return pattern == host


def check_material(settings: Settings, files: FileContents, now: datetime.datetime) -> TlsMaterial:
    """Check the TLS inputs against the mode.

    Returns the TlsMaterial (with warnings); raises InputError listing every problem.
    """
    bad = Collector()
    warnings: list = []
    password = settings.key_password.encode() if settings.key_password is not None else None
    cas: list = []
    ca_pem = None

    wants_pair = settings.server_ssl or settings.cert_explicit or settings.key_explicit
    if settings.mode in ("allow", "prefer") and not settings.cert_present:
        warnings.append(f"PGSSLMODE={settings.mode} but no certificate at {settings.cert_file}: "
                        "PostgreSQL runs without TLS and internal links fall back to plaintext")
    server = _check_pair(bad, files, settings.cert_file, "PGSSLCERT", settings.key_file, "PGSSLKEY",
                         password, "PGSSLKEY_PASSWORD") if wants_pair else None

    ca_data = files.get(settings.ca_file)
    ca_needed = settings.verifies_ca or settings.client_cert_auth
    if ca_needed or (settings.tls_wanted and settings.ca_explicit) or isinstance(ca_data, bytes):
        cas = _load_cas(bad, ca_data, settings.ca_file, required=ca_needed or settings.ca_explicit)
        ca_pem = ca_data if cas else None

    client = None
    if settings.client_cert_file and settings.client_key_file:
        client = _check_pair(bad, files, settings.client_cert_file, "PCK_CLIENT_CERT",
                             settings.client_key_file, "PCK_CLIENT_KEY", password, "PGSSLKEY_PASSWORD")

    for label, pair, var in (("server", server, "PGSSLCERT"), ("client", client, "PCK_CLIENT_CERT")):
        if pair is None:
            continue
        path = settings.cert_file if label == "server" else settings.client_cert_file
        _check_dates(bad, warnings, pair.leaf, var, path, now, settings.expiry_warn_days)
        if cas and (settings.verifies_ca or settings.client_cert_auth) and not chains_to(list(pair.chain), cas):
            bad.add(var, f"{path} was not signed by any CA in {settings.ca_file} (issuer: {pair.leaf.issuer.rfc4514_string()})",
                    "mount the CA that signed this certificate as ca.crt, or re-issue the certificate from that CA "
                    "(patroni-citus-k8s certs generate --renew)")
    for ca in cas:
        _check_dates(bad, warnings, ca, "PGSSLROOTCERT", settings.ca_file, now, settings.expiry_warn_days,
                     subject=True)

    if server is not None and settings.mode == "verify-full":
        for var, address in (("PATRONI_POSTGRESQL_CONNECT_ADDRESS", settings.connect),
                             ("PATRONI_RESTAPI_CONNECT_ADDRESS", settings.restapi_connect)):
            if not name_covered(server.leaf, address.host):
                dns, ips = san_names(server.leaf)
                how = "derived from the pod name" if settings.connect_derived else "as configured"
                bad.add(settings.cert_file,
                        f"does not cover {address.host!r}, the name peers use to reach this node ({var}, {how}); "
                        f"its SANs are {', '.join(dns + ips) or 'none'}",
                        f"re-issue the certificate with {address.host!r} or a wildcard for its domain in the SANs "
                        f"(patroni-citus-k8s certs generate), or set {var} to a covered name")

    extra = {}
    for var, path in settings.patroni_tls_files.items():
        data = files.get(path)
        if isinstance(data, bytes):
            extra[var] = data
        else:
            bad.add(var, f"cannot read {path}: {_why(data)}", "mount the file, or unset the variable")

    bad.raise_if_any()
    return TlsMaterial(server=server, client=client, cas=tuple(cas), ca_pem=ca_pem,
                       extra_files=extra, warnings=tuple(warnings))


def _why(data) -> str:
    if isinstance(data, OSError):
        return data.strerror or str(data)
    return "not read"


def _read_or_complain(bad: Collector, files: FileContents, path: str, var: str, what: str) -> Optional[bytes]:
    data = files.get(path)
    if isinstance(data, OSError) or data is None:
        if isinstance(data, PermissionError):
            fix = ("the container user cannot read it: give the pod an fsGroup that owns the Secret mount "
                   "(defaultMode 0640/0600 with fsGroup), or start the container as root so the entrypoint stages a copy")
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
                    bad.add(password_var, f"does not decrypt {key_path}", "give the passphrase the key was encrypted with")
                else:
                    bad.add(key_var, f"{key_path} is not a PEM private key ({exc.__class__.__name__})",
                            "the file must hold a -----BEGIN PRIVATE KEY----- (or RSA/EC PRIVATE KEY) block")
            else:
                if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey,
                                        ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
                    bad.add(key_var, f"{key_path} holds an unsupported key type", "use an RSA or ECDSA key")
                    key = None
    if chain is not None and not all(_fully_parsed(cert) for cert in chain):
        bad.add(cert_var, f"{cert_path} holds a damaged certificate (its fields do not parse)",
                "issue the certificate again and update the Secret")
        chain = None
    if chain is None or key is None:
        return None
    if not key_matches(key, chain[0]):
        bad.add(key_var, f"{key_path} does not belong to the certificate {cert_path}",
                "mount the key that was generated with this certificate (both from the same Secret)")
        return None
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return KeyPair(chain=tuple(chain), key=key, key_pem=key_pem)


def _fully_parsed(cert: x509.Certificate) -> bool:
    """cryptography parses lazily: touch every field the checks use, so damage shows here, not later."""
    try:
        cert.public_key()
        cert.not_valid_before_utc, cert.not_valid_after_utc  # noqa: B018
        cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()  # noqa: B018
        list(cert.extensions)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


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
    if not cas or not all(_fully_parsed(ca) for ca in cas):
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
        warnings.append(f"{var}: {name} expires in {days} day{'s' if days != 1 else ''} ({end:%Y-%m-%d} UTC); rotate it soon")
