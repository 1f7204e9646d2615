"""Check the TLS inputs the way the mode needs: key/cert match, chain, dates, names. Pure over bytes but `read_files`.

What passes is held as parsed objects; staging writes them re-encoded, so nothing that was
not checked (a CA key inside ca.crt, garbage after a certificate) reaches the run user.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional

from entrypoint.boot.patroni_files import StagedFile, check_patroni_files
from entrypoint.boot.pem import FileContents, KeyPair, check_dates, load_cas, load_pair, readable
from entrypoint.boot.settings import PATRONI_TLS_FILES, Settings
from entrypoint.errors import Collector
from entrypoint.pki import reader
from entrypoint.pki.crl import crl_pem, judge, load_crls, revocation
from entrypoint.pki.load import chain_pem
from entrypoint.pki.names import name_covered, san_names
from entrypoint.pki.verify import chain_problem, file_problem

__all__ = ["FileContents", "KeyPair", "StagedFile", "TlsMaterial", "check_material", "files_to_read", "read_files"]

_PATRONI_KINDS = {"ca": reader.CA_BUNDLE, "cert": reader.CERTIFICATE, "key": reader.PRIVATE_KEY}


@dataclass(frozen=True)
class TlsMaterial:
    """Everything checked and ready to stage. Absent parts are None."""

    server: Optional[KeyPair]
    client: Optional[KeyPair]  # separate client pair for mutual TLS; None means the server pair
    cas: tuple
    extra_files: Mapping[str, StagedFile]  # Patroni's own TLS file variables -> what to stage
    warnings: tuple
    crls: tuple = ()  # PGSSLCRL's CRLs, each signed by a CA of the bundle and not past its nextUpdate

    @property
    def ca_pem(self) -> Optional[bytes]:
        """The CA bundle as staged: only its certificates, re-encoded."""
        return chain_pem(self.cas) if self.cas else None

    @property
    def crl_pem(self) -> Optional[bytes]:
        """The CRLs as staged, re-encoded."""
        return crl_pem(self.crls) if self.crls else None


def files_to_read(settings: Settings) -> Dict[str, reader.Kind]:
    """Every file the checks look at, in a stable order, with what it must hold (and so how large it may be).

    With PGSSLMODE=disable no PGSSL* file is read at all: a stale PGSSLCERT in a pod spec
    must not stop the seed's "disable SSL to recover" path.
    """
    wanted: Dict[str, reader.Kind] = {}

    def want(path: Optional[str], kind: reader.Kind) -> None:
        if path:
            old = wanted.get(path)
            wanted[path] = kind if old is None or kind.limit > old.limit else old

    if settings.mode.uses_tls:
        if settings.server_ssl or settings.tls.cert_explicit or settings.tls.key_explicit:
            want(settings.tls.cert_file, reader.CERTIFICATE)
            want(settings.tls.key_file, reader.PRIVATE_KEY)
        want(settings.tls.ca_file, reader.CA_BUNDLE)
        want(settings.mtls.cert_file, reader.CERTIFICATE)
        want(settings.mtls.key_file, reader.PRIVATE_KEY)
        want(settings.tls.crl_file, reader.CRL)
        if settings.key_password is not None:  # PGSSLKEY_PASSWORD_FILE: a rotated key may come with a new one
            want(settings.tls.key_password_file, reader.SECRET_TEXT)
    for spec in PATRONI_TLS_FILES:
        want(settings.tls.patroni_files.get(spec.var), _PATRONI_KINDS[spec.role])
    return wanted


def read_files(paths: Mapping[str, reader.Kind]) -> dict:
    """Read each path through the one safe reader; returns {path: bytes or the OSError}. The only I/O here."""
    out: dict = {}
    for path, kind in paths.items():
        try:
            out[path] = reader.read_file(path, kind)
        except OSError as exc:
            out[path] = exc
    return out


def check_material(settings: Settings, files: FileContents, now: datetime.datetime,
                   running: bool = False) -> TlsMaterial:
    """Check the TLS inputs against the mode.

    Returns the TlsMaterial (with warnings); raises InputError listing every problem.
    `running` is the watcher's view: a CRL that revokes this member's own certificate is
    then staged with a warning (the rest of the cluster must see the revocation too)
    rather than refused as it is at start-up.
    """
    bad = Collector()
    warnings: List[str] = []
    server = client = None
    cas: list = []
    crls: list = []
    if settings.mode.uses_tls:
        server, client, cas = _check_pgssl(bad, warnings, settings, files, now)
        crls = _check_crls(bad, warnings, settings, files, cas, (server, client), now, running)
    else:
        ignored = [v for v, given in (("PGSSLCERT", settings.tls.cert_explicit),
                                      ("PGSSLKEY", settings.tls.key_explicit),
                                      ("PGSSLROOTCERT", settings.tls.ca_explicit)) if given]
        ignored += settings.tls.key_password_vars
        if ignored:
            warnings.append(f"PGSSLMODE=disable: {', '.join(ignored)} ignored (no certificate is read or served)")
    extra = check_patroni_files(bad, warnings, settings, files, cas, now)
    bad.raise_if_any()
    return TlsMaterial(server=server, client=client, cas=tuple(cas), extra_files=extra, warnings=tuple(warnings),
                       crls=tuple(crls))


def _check_crls(bad: Collector, warnings: List[str], settings: Settings, files: FileContents, cas: list,
                pairs: tuple, now: datetime.datetime, running: bool) -> list:
    """PGSSLCRL: every CRL signed by a CA of the bundle and current (OpenSSL refuses every certificate of a CA
    whose CRL is past nextUpdate), and this member's own certificates not revoked."""
    path = settings.tls.crl_file
    if not path:
        return []
    data = readable(bad, files, path, "PGSSLCRL", "CRL")
    if data is None:
        return []
    try:
        crls = load_crls(data)
    except ValueError as exc:
        bad.add("PGSSLCRL", f"{path} is not a PEM CRL bundle ({exc})",
                "put the CRLs certs revoke writes (-----BEGIN X509 CRL-----) in it, or leave ca.crl out of the Secret")
        return []
    if not cas:
        bad.add("PGSSLCRL", f"{path} cannot be checked: there is no CA bundle (PGSSLROOTCERT)",
                "mount ca.crt with the CA that signs the CRL")
        return []
    intermediates = [c for pair in pairs if pair is not None for c in pair.chain[1:] if c not in cas]
    verdict = judge(crls, list(cas) + intermediates, now, settings.tuning.expiry_warn_days)
    for problem in verdict.problems:
        bad.add("PGSSLCRL", f"{path}: {problem}", "give it one current CRL per CA, each signed by that CA (certs "
                                                 "generate writes an empty one, certs revoke --out-dir DIR --refresh "
                                                 "re-signs it), and update the Secret")
    warnings += [f"PGSSLCRL: {w}" for w in verdict.warnings]
    for pair, var in zip(pairs, ("PGSSLCERT", "PCK_CLIENT_CERT")):
        entry = revocation(pair.leaf, crls) if pair is not None else None
        if entry is not None:
            what = f"this member's certificate (serial {pair.leaf.serial_number:x}) is revoked by {path}"
            if running:
                warnings.append(f"{var}: {what}: peers refuse it; give this member a new certificate")
            else:
                bad.add(var, what, "issue this member a new certificate (certs generate --renew or --per-member) "
                                   "and update the Secret; peers refuse a revoked one")
    return crls


def _check_pgssl(bad: Collector, warnings: List[str], settings: Settings, files: FileContents,
                 now: datetime.datetime) -> tuple:
    """Returns (server pair, client pair, CA certificates) for the PGSSL* and PCK_CLIENT_* files."""
    password = _password(bad, settings, files)
    if settings.mode.server_ssl == "if-certs" and not settings.tls.cert_present:
        warnings.append(f"PGSSLMODE={settings.mode} but no certificate at {settings.tls.cert_file}: "
                        "PostgreSQL runs without TLS and internal links fall back to plaintext")
    server = None
    if settings.server_ssl or settings.tls.cert_explicit or settings.tls.key_explicit:
        server = load_pair(bad, files, settings.tls.cert_file, "PGSSLCERT", settings.tls.key_file, "PGSSLKEY",
                           password, "PGSSLKEY_PASSWORD")
    ca_needed = settings.mode.verifies_ca or settings.mtls.enabled
    cas = load_cas(bad, files, settings.tls.ca_file, "PGSSLROOTCERT", ca_needed or settings.tls.ca_explicit,
                   warnings)
    client = None
    if settings.mtls.cert_file and settings.mtls.key_file:
        client = load_pair(bad, files, settings.mtls.cert_file, "PCK_CLIENT_CERT", settings.mtls.key_file,
                           "PCK_CLIENT_KEY", password, "PGSSLKEY_PASSWORD")
    for path, keypair, var in ((settings.tls.cert_file, server, "PGSSLCERT"),
                               (settings.mtls.cert_file, client, "PCK_CLIENT_CERT")):
        if keypair is not None and path is not None:
            _check_leaf(bad, warnings, settings, keypair, path, var, cas, now)
    for ca in cas:
        # A CA out of date is fatal only on a path (chain_problem says so): libpq never looks at the others,
        # and the old copy of a renewed CA often stays in the bundle.
        ca_problems = Collector()
        check_dates(ca_problems, warnings, ca, "PGSSLROOTCERT", settings.tls.ca_file, now,
                    settings.tuning.expiry_warn_days, subject=True)
        warnings += [f"PGSSLROOTCERT: {p.what}: a certificate that chains to it is refused"
                     for p in ca_problems.problems]
    if server is not None and settings.mode.verifies_host:
        _check_names(bad, settings, server)
    return server, client, cas


def _password(bad: Collector, settings: Settings, files: FileContents) -> Optional[bytes]:
    if settings.key_password is None:
        return None
    current = files.get(settings.tls.key_password_file or "")
    if isinstance(current, bytes):  # the file as read with the key, not as it was at start
        return current.rstrip(b"\r\n")
    try:
        return settings.key_password.encode("utf-8")
    except UnicodeEncodeError:
        bad.add("PGSSLKEY_PASSWORD", "holds bytes that are not valid UTF-8", "give the passphrase as UTF-8 text")
        return None


def _check_leaf(bad: Collector, warnings: List[str], settings: Settings, pair: KeyPair, path: str, var: str,
                cas: list, now: datetime.datetime) -> None:
    check_dates(bad, warnings, pair.leaf, var, path, now, settings.tuning.expiry_warn_days)
    weak = file_problem(pair.chain)  # what PostgreSQL refuses to load, at any sslmode
    if weak:
        bad.add(var, f"{path} {weak}", "issue the certificate again with an ECDSA P-256 or RSA-2048+ key and SHA-256 "
                                        "(patroni-citus-k8s certs generate)")
    if not (cas and (settings.mode.verifies_ca or settings.mtls.enabled)):
        return
    # Members check servers with it; with mutual TLS they present the same pair as clients.
    for purpose in ("server",) + (("client",) if settings.mtls.enabled else ()):
        problem = chain_problem(pair.chain, cas, purpose, now)
        if problem:
            bad.add(var, f"{path} {problem} {settings.tls.ca_file} "
                         f"(issuer: {pair.leaf.issuer.rfc4514_string()}, checked as a {purpose} certificate)",
                    "mount the CA that signed this certificate as ca.crt, or re-issue the certificate from that CA "
                    "with the usages a member needs (serverAuth and clientAuth; patroni-citus-k8s certs generate)")
            return


def _check_names(bad: Collector, settings: Settings, server: KeyPair) -> None:
    """verify-full: the certificate covers every name peers use to reach this node."""
    names = settings.served_names or (("PATRONI_POSTGRESQL_CONNECT_ADDRESS", settings.addresses.connect),
                                      ("PATRONI_RESTAPI_CONNECT_ADDRESS", settings.addresses.restapi_connect))
    for var, address in names:
        if address is None or name_covered(server.leaf, address.host):  # None: the name is not known
            continue
        dns, ips = san_names(server.leaf)
        how = "derived from the pod name" if settings.addresses.connect_derived and not settings.served_names \
            else "as configured"
        bad.add(settings.tls.cert_file,
                f"does not cover {address.host!r}, the name peers use to reach this node ({var}, {how}); "
                f"its SANs are {', '.join(dns + ips) or 'none'}",
                f"re-issue the certificate with {address.host!r} or a wildcard for its domain in the SANs "
                f"(patroni-citus-k8s certs generate), or set {var} to a covered name")
