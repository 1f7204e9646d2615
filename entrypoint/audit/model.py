"""What verify observed on a running cluster (members, ports, connections) and what it found."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class ServedCert:
    """The certificate one port served, and what the checks found. Fields are None where unknown."""

    service: str  # "postgres" or "restapi"
    port: int
    host: str  # the name peers use to reach this port
    tls: bool = False
    protocol: Optional[str] = None
    cipher: Optional[str] = None
    subject: Optional[str] = None
    issuer: Optional[str] = None
    issuer_id: Optional[str] = None  # authority key identifier (hex), else the issuer name
    dns_names: list = field(default_factory=list)
    ip_addresses: list = field(default_factory=list)
    not_after: Optional[dt.datetime] = None
    name_covered: Optional[bool] = None
    chains_to_ca: Optional[bool] = None
    error: Optional[str] = None  # the port could not be reached or the handshake failed
    sha256: Optional[str] = None  # SHA-256 fingerprint of the leaf (hex), to compare with the mounted Secret
    serial: Optional[str] = None  # serial number (hex)
    revoked: Optional[bool] = None  # whether the CRLs verify reads revoke it (None: no CRL)


@dataclass
class Connection:
    """One network connection a member serves, as pg_stat_ssl saw it."""

    link: str  # client | replication | citus
    peer: str  # client address, and the application name for replication
    encrypted: bool
    protocol: Optional[str] = None
    cipher: Optional[str] = None
    client_serial: Optional[str] = None  # the client certificate's serial (hex), when one was presented
    client_issuer: Optional[str] = None  # its issuer as pg_stat_ssl prints it (/CN=...)
    revoked: Optional[bool] = None  # whether the CRLs verify reads revoke that certificate (None: no CRL or none)


@dataclass
class Member:
    """One member: where it is, what it serves, and the connections it holds.

    `sql_error` is None when verify could query the member. `link_modes` holds the
    sslmode this member uses as a client on an internal link (replication from
    pg_stat_wal_receiver, citus from citus.node_conninfo).
    """

    name: str
    host: str
    port: int = 5432
    api_url: Optional[str] = None
    role: Optional[str] = None
    state: Optional[str] = None
    group: Optional[int] = None
    sql_error: Optional[str] = None
    ssl: Optional[str] = None
    ssl_min_protocol_version: Optional[str] = None
    plaintext_accepted: Optional[bool] = None  # pg_hba lets a plaintext TCP connection reach authentication
    served: list = field(default_factory=list)  # ServedCert, one per port
    connections: list = field(default_factory=list)
    link_modes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CertInfo:
    """One certificate read from a file (a CA of the bundle, the Secret's certificate): enough to name and date it."""

    subject: str
    sha256: str  # fingerprint of the DER (hex)
    serial: str  # hex
    not_after: dt.datetime


@dataclass(frozen=True)
class CrlInfo:
    """One CRL verify judged against: whose it is, until when it is current, what it revokes."""

    issuer: str
    next_update: Optional[dt.datetime]
    revoked: tuple  # the serials it lists (hex)
    pg_issuer: str  # the issuer as pg_stat_ssl prints it, to match sessions


@dataclass
class MountedSecret:
    """The certificate Secret as this command sees it mounted (--secret-dir): what every port should serve now.

    `changed_at` is when the certificate file last changed (its mtime: the kubelet writes a
    new file on every Secret update). `error` says why nothing could be read.
    """

    directory: str
    cert_file: Optional[str] = None
    cert: Optional[CertInfo] = None
    changed_at: Optional[dt.datetime] = None
    cas: list = field(default_factory=list)  # CertInfo of the Secret's ca.crt
    error: Optional[str] = None


@dataclass
class Observations:
    """Everything one run of verify saw. `mode` is the sslmode the cluster is judged against."""

    observed_at: dt.datetime
    mode: str
    mode_source: str
    expiry_days: int
    target: str  # the connection verify started from, password redacted
    ca_file: Optional[str] = None
    citus: bool = False
    members: list = field(default_factory=list)
    discovery_errors: list = field(default_factory=list)
    cas: list = field(default_factory=list)  # CertInfo of the CA bundle the members are judged against
    secret: Optional[MountedSecret] = None  # None when no Secret is mounted where verify looks
    crl_file: Optional[str] = None  # the CRLs revocation is judged against (--crl, sslcrl, the Secret's ca.crl)
    crls: list = field(default_factory=list)  # CrlInfo of that file
    crl_error: Optional[str] = None  # why the Secret's ca.crl could not be used
    crl_problems: list = field(default_factory=list)  # what makes OpenSSL refuse with these CRLs (pki.crl.judge)
    crl_warnings: list = field(default_factory=list)  # CRLs near their nextUpdate
    duration: Optional[float] = None  # seconds the observation took


@dataclass(frozen=True)
class Finding:
    """One thing wrong: how bad, a stable code, where, what, and how to fix it."""

    severity: str
    code: str
    member: Optional[str]
    where: str
    what: str
    fix: str
