"""Patroni's own TLS file variables (DCS client, REST API, ctl): checked like PGSSL*, re-encoded for staging.

Root copies these for the run user, so nothing passes through unchecked: a CA file must
hold certificates (only they are staged), a certificate file a chain (and, when no key
variable goes with it, may carry its key), a key file a key that matches its certificate.
`PATRONI_ETCD3_CACERT=/etc/shadow` is refused, not handed to postgres.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Dict, List

from cryptography import x509

from entrypoint.boot.pem import FileContents, check_dates, has_private_key, parse_chain, parse_key, readable
from entrypoint.boot.settings import PATRONI_TLS_FILES, PatroniFile, Settings
from entrypoint.errors import Collector
from entrypoint.pki.keys import key_matches
from entrypoint.pki.load import chain_pem, key_pem
from entrypoint.pki.names import name_covered, san_names
from entrypoint.pki.verify import chain_problem

CERT_MODE = 0o644
KEY_MODE = 0o600


@dataclass(frozen=True)
class StagedFile:
    """What staging writes for one file: bytes re-encoded from checked objects, and the file's mode."""

    data: bytes
    mode: int


@dataclass
class _Parsed:
    chains: Dict[str, List[x509.Certificate]]
    keys: Dict[str, object]
    out: Dict[str, StagedFile]


def check_patroni_files(bad: Collector, warnings: List[str], settings: Settings, files: FileContents,
                        cas: list, now: datetime.datetime) -> Dict[str, StagedFile]:
    """Check every given Patroni TLS file variable; returns {variable: what to stage}."""
    parsed = _Parsed({}, {}, {})
    given = settings.tls.patroni_files
    for spec in PATRONI_TLS_FILES:
        path = given.get(spec.var)
        if path:
            _one(bad, warnings, settings, files, spec, path, now, parsed)
    for spec in PATRONI_TLS_FILES:
        if spec.role == "cert" and spec.var in parsed.chains and spec.partner in parsed.keys:
            if not key_matches(parsed.keys[spec.partner], parsed.chains[spec.var][0]):
                bad.add(spec.partner or spec.var, f"{given[spec.partner or '']} does not belong to the certificate "
                                                  f"{given[spec.var]} ({spec.var})",
                        "mount the key that was generated with this certificate")
    rest = parsed.chains.get("PATRONI_RESTAPI_CERTFILE")
    if rest is not None and settings.server_ssl:
        _check_restapi(bad, settings, rest, parsed.chains.get("PATRONI_CTL_CACERT") or cas)
    return parsed.out


def _one(bad: Collector, warnings: List[str], settings: Settings, files: FileContents, spec: PatroniFile,
         path: str, now: datetime.datetime, parsed: _Parsed) -> None:
    what = {"ca": "CA certificate(s)", "cert": "certificate", "key": "private key"}[spec.role]
    data = readable(bad, files, path, spec.var, what)
    if data is None:
        return
    warn_days = settings.tuning.expiry_warn_days
    if spec.role == "key":
        password = settings.tls.patroni_passwords.get(spec.password_var or "")
        key = parse_key(bad, data, path, spec.var, password.encode() if password else None, spec.password_var)
        if key is not None:
            parsed.keys[spec.var] = key
            parsed.out[spec.var] = StagedFile(key_pem(key), KEY_MODE)
        return
    chain = parse_chain(bad, data, path, spec.var)
    if chain is None:
        return
    for cert in chain if spec.role == "ca" else chain[:1]:
        check_dates(bad, warnings, cert, spec.var, path, now, warn_days, subject=spec.role == "ca")
    parsed.chains[spec.var] = chain
    staged = StagedFile(chain_pem(chain), CERT_MODE)
    if spec.role == "cert" and has_private_key(data) and not settings.tls.patroni_files.get(spec.partner or ""):
        # The key may ride in the certificate file (Python's ssl reads both from one file).
        key = parse_key(bad, data, path, spec.var, None, None)
        if key is not None:
            parsed.keys[spec.partner or spec.var] = key
            staged = StagedFile(chain_pem(chain) + key_pem(key), KEY_MODE)
    elif has_private_key(data):
        warnings.append(f"{spec.var}: {path} also holds a private key; only its certificates were staged")
    parsed.out[spec.var] = staged


def _check_restapi(bad: Collector, settings: Settings, chain: list, cas: list) -> None:
    """The REST API certificate is what members and patronictl check at verify-ca/verify-full."""
    path = settings.tls.patroni_files["PATRONI_RESTAPI_CERTFILE"]
    if settings.mode.verifies_ca and cas:
        problem = chain_problem(chain, cas, "server")
        if problem:
            bad.add("PATRONI_RESTAPI_CERTFILE", f"{path} {problem} (the REST API's CA, PATRONI_CTL_CACERT or "
                                                "PGSSLROOTCERT)",
                    "issue the REST API certificate from the CA members trust, or point PATRONI_CTL_CACERT at its CA")
    host = settings.addresses.restapi_connect.host
    if settings.mode.verifies_host and not name_covered(chain[0], host):
        dns, ips = san_names(chain[0])
        bad.add("PATRONI_RESTAPI_CERTFILE", f"{path} does not cover {host!r}, the REST API's connect address "
                                            f"(its SANs are {', '.join(dns + ips) or 'none'})",
                "re-issue it with that name, or set PATRONI_RESTAPI_CONNECT_ADDRESS to a covered name")


def staged_name(var: str) -> str:
    """The file name a variable's copy gets in the staged directory."""
    return var.lower() + ".pem"
