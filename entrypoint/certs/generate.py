"""What one `certs generate` produces: the request, its checks, and the files (pure; files.py writes them)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

from cryptography import x509

from entrypoint import layout
from entrypoint.certs.crls import DEFAULT_CRL_DAYS, MAX_CRL_DAYS, issue_crl
from entrypoint.certs.files import OutputFile
from entrypoint.certs.issue import (
    DEFAULT_CA_DAYS,
    DEFAULT_SERVER_DAYS,
    MAX_DAYS,
    issue_ca,
    issue_client_cert,
    issue_server_cert,
    new_private_key,
)
from entrypoint.certs.manifests import SECRET_TYPES, cert_manager_manifests, secret_manifest
from entrypoint.certs.names import ClusterNames, check_client_name, check_cluster_names, member_names, server_names
from entrypoint.errors import InputError, Problem
from entrypoint.pki.crl import crl_pem
from entrypoint.pki.keys import DEFAULT_KEY_TYPE, KEY_TYPE_NAMES, key_type
from entrypoint.pki.load import cert_pem, key_pem

SECRET_FILE = "secret.yaml"
CERT_MANAGER_FILE = "cert-manager.yaml"
COMMAND = "patroni-citus-k8s certs generate"
NOTHING_WRITTEN = "nothing was written"


@dataclass(frozen=True)
class GenerateRequest:
    """Everything `certs generate` was asked for, already parsed."""

    names: ClusterNames = field(default_factory=ClusterNames)
    key_type: str = DEFAULT_KEY_TYPE
    ca_days: int = DEFAULT_CA_DAYS
    server_days: int = DEFAULT_SERVER_DAYS
    clients: Tuple[str, ...] = ()
    renew: bool = False
    secret_type: Optional[str] = None
    cert_manager: bool = False
    per_member: bool = False  # one SAN-exact pair per pod instead of the shared server pair
    crl_days: int = DEFAULT_CRL_DAYS


def check_request(request: GenerateRequest) -> List[Problem]:
    """Return one Problem per thing wrong with `request` (empty when it can be generated)."""
    problems = check_cluster_names(request.names)
    if key_type(request.key_type) is None:
        problems.append(Problem("--key-type", f"{request.key_type!r} is not supported",
                                f"choose one of {', '.join(KEY_TYPE_NAMES)} (default {DEFAULT_KEY_TYPE})"))
    for flag, days in (("--ca-days", request.ca_days), ("--server-days", request.server_days)):
        if not 1 <= days <= MAX_DAYS:
            problems.append(Problem(flag, f"{days} is out of range", f"give a number of days between 1 and {MAX_DAYS}"))
    if not request.renew and request.server_days > request.ca_days:
        problems.append(Problem("--server-days", f"{request.server_days} is longer than --ca-days {request.ca_days}: "
                                                 "a certificate cannot outlive the CA that signed it",
                                "shorten --server-days or lengthen --ca-days"))
    problems += [p for p in (check_client_name(user) for user in request.clients) if p]
    if request.per_member and (request.secret_type or request.cert_manager):
        problems.append(Problem("--per-member", "cannot go with --k8s-secret or --cert-manager: one Secret mounted in "
                                                "every pod would carry every member's key",
                                "on Kubernetes use cert-manager's CSI driver (chart value ssl.certManager.csi.enabled) "
                                "for per-pod certificates; --per-member is for compose and hand-made setups"))
    if not 1 <= request.crl_days <= MAX_CRL_DAYS:
        problems.append(Problem("--crl-days", f"{request.crl_days} is out of range",
                                f"give the days until the CRL's nextUpdate, 1 to {MAX_CRL_DAYS}"))
    if request.secret_type is not None and request.secret_type not in SECRET_TYPES:
        problems.append(Problem("--k8s-secret", f"{request.secret_type!r} is not a Secret layout",
                                "choose 'opaque' (ca.crt, server.crt, server.key) or 'tls' (kubernetes.io/tls)"))
    return problems


def output_names(request: GenerateRequest) -> List[str]:
    """Return the names of the files `request` writes, in writing order."""
    out = [] if request.renew else [layout.CA_FILE, layout.CA_KEY_FILE, layout.CRL_FILE]
    if request.per_member:
        out += [name for _, pod in request.names.pods() for name in (f"{pod}.crt", f"{pod}.key")]
    else:
        out += [layout.CERT_FILE, layout.KEY_FILE]
    out += [name for user in request.clients for name in (f"client-{user}.crt", f"client-{user}.key")]
    if request.secret_type:
        out.append(SECRET_FILE)
    if request.cert_manager:
        out.append(CERT_MANAGER_FILE)
    return out


def _outlives_ca(request: GenerateRequest, ca_cert: x509.Certificate, now: dt.datetime) -> List[Problem]:
    remaining = ca_cert.not_valid_after_utc - now
    if dt.timedelta(days=request.server_days) <= remaining:
        return []
    return [Problem("--server-days", f"{request.server_days} is longer than the {max(remaining.days, 0)} days the "
                                     f"existing CA has left (it expires {ca_cert.not_valid_after_utc:%Y-%m-%d})",
                    "shorten --server-days, or make a new CA with --force (every node and client must then "
                    "trust the new ca.crt)")]


def build_outputs(request: GenerateRequest, now: dt.datetime, ca: Optional[Tuple[x509.Certificate, Any]] = None,
                  existing_crl: Optional[bytes] = None) -> List[OutputFile]:
    """Return the files for `request`: a new CA unless `ca` is given (renewal), then the leaves.

    Raises InputError when the request is invalid or a leaf would outlive the CA.
    """
    problems = check_request(request) + (_outlives_ca(request, ca[0], now) if ca is not None else [])
    if problems:
        raise InputError(problems, COMMAND, NOTHING_WRITTEN)
    files: List[OutputFile] = []
    if ca is None:
        ca_key = new_private_key(request.key_type)
        ca_cert = issue_ca(ca_key, f"{request.names.cluster}-ca", request.ca_days, now)
        crl = issue_crl(ca_cert, ca_key, [], 1, now, request.crl_days)
        files += [OutputFile(layout.CA_FILE, cert_pem(ca_cert), 0o644),
                  OutputFile(layout.CA_KEY_FILE, key_pem(ca_key), 0o600),
                  OutputFile(layout.CRL_FILE, crl_pem([crl]), 0o644)]
    else:
        ca_cert, ca_key = ca
    if request.per_member:
        files += _member_pairs(request, ca_cert, ca_key, now)
        return files + _clients(request, ca_cert, ca_key, now)
    server_key = new_private_key(request.key_type)
    server_cert = issue_server_cert(ca_cert, ca_key, server_key, server_names(request.names),
                                    request.names.cluster, request.server_days, now)
    files += [OutputFile(layout.CERT_FILE, cert_pem(server_cert), 0o644),
              OutputFile(layout.KEY_FILE, key_pem(server_key), 0o600)]
    files += _clients(request, ca_cert, ca_key, now)
    if request.secret_type:
        crl_bytes = next((f.content for f in files if f.name == layout.CRL_FILE), existing_crl)
        manifest = secret_manifest(request.names.cluster, request.names.namespace, cert_pem(ca_cert),
                                   cert_pem(server_cert), key_pem(server_key), request.secret_type, crl_bytes)
        files.append(OutputFile(SECRET_FILE, manifest.encode(), 0o600))
    if request.cert_manager:
        manifest = cert_manager_manifests(request.names, request.key_type, request.server_days)
        files.append(OutputFile(CERT_MANAGER_FILE, manifest.encode(), 0o644))
    return files


def _member_pairs(request: GenerateRequest, ca_cert: x509.Certificate, ca_key: Any,
                  now: dt.datetime) -> List[OutputFile]:
    files = []
    for group, pod in request.names.pods():
        key = new_private_key(request.key_type)
        cert = issue_server_cert(ca_cert, ca_key, key, member_names(request.names, group, pod), pod,
                                 request.server_days, now)
        files += [OutputFile(f"{pod}.crt", cert_pem(cert), 0o644), OutputFile(f"{pod}.key", key_pem(key), 0o600)]
    return files


def _clients(request: GenerateRequest, ca_cert: x509.Certificate, ca_key: Any, now: dt.datetime) -> List[OutputFile]:
    files = []
    for user in request.clients:
        client_key = new_private_key(request.key_type)
        client_cert = issue_client_cert(ca_cert, ca_key, client_key, user, request.server_days, now)
        files += [OutputFile(f"client-{user}.crt", cert_pem(client_cert), 0o644),
                  OutputFile(f"client-{user}.key", key_pem(client_key), 0o600)]
    return files
