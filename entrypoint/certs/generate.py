"""What one `certs generate` produces: the request, its checks, and the files (pure; files.py writes them)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

from cryptography import x509

from entrypoint import layout
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
from entrypoint.certs.names import ClusterNames, check_client_name, check_cluster_names, server_names
from entrypoint.errors import InputError, Problem
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
    if request.secret_type is not None and request.secret_type not in SECRET_TYPES:
        problems.append(Problem("--k8s-secret", f"{request.secret_type!r} is not a Secret layout",
                                "choose 'opaque' (ca.crt, server.crt, server.key) or 'tls' (kubernetes.io/tls)"))
    return problems


def output_names(request: GenerateRequest) -> List[str]:
    """Return the names of the files `request` writes, in writing order."""
    out = [] if request.renew else [layout.CA_FILE, layout.CA_KEY_FILE]
    out += [layout.CERT_FILE, layout.KEY_FILE]
    for user in request.clients:
        out += [f"client-{user}.crt", f"client-{user}.key"]
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


def build_outputs(request: GenerateRequest, now: dt.datetime,
                  ca: Optional[Tuple[x509.Certificate, Any]] = None) -> List[OutputFile]:
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
        files += [OutputFile(layout.CA_FILE, cert_pem(ca_cert), 0o644),
                  OutputFile(layout.CA_KEY_FILE, key_pem(ca_key), 0o600)]
    else:
        ca_cert, ca_key = ca
    server_key = new_private_key(request.key_type)
    server_cert = issue_server_cert(ca_cert, ca_key, server_key, server_names(request.names),
                                    request.names.cluster, request.server_days, now)
    files += [OutputFile(layout.CERT_FILE, cert_pem(server_cert), 0o644),
              OutputFile(layout.KEY_FILE, key_pem(server_key), 0o600)]
    for user in request.clients:
        client_key = new_private_key(request.key_type)
        client_cert = issue_client_cert(ca_cert, ca_key, client_key, user, request.server_days, now)
        files += [OutputFile(f"client-{user}.crt", cert_pem(client_cert), 0o644),
                  OutputFile(f"client-{user}.key", key_pem(client_key), 0o600)]
    if request.secret_type:
        manifest = secret_manifest(request.names.cluster, request.names.namespace, cert_pem(ca_cert),
                                   cert_pem(server_cert), key_pem(server_key), request.secret_type)
        files.append(OutputFile(SECRET_FILE, manifest.encode(), 0o600))
    if request.cert_manager:
        manifest = cert_manager_manifests(request.names, request.key_type, request.server_days)
        files.append(OutputFile(CERT_MANAGER_FILE, manifest.encode(), 0o644))
    return files
