"""What `verify` observed on a running cluster, and the pure rules that turn observations into findings."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from entrypoint.probe_tls import ServedCert

# libpq's sslmodes, weakest first: a link is weaker than the mode when it ranks lower.
MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
PLAINTEXT_FORBIDDEN = ("require", "verify-ca", "verify-full")
CA_VERIFIED = ("verify-ca", "verify-full")
OLD_PROTOCOLS = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1")
LINKS = ("client", "replication", "citus")
ERROR = "error"
WARNING = "warning"


@dataclass
class Connection:
    """One network connection a member serves, as pg_stat_ssl saw it."""

    link: str  # client | replication | citus
    peer: str  # client address, and the application name for replication
    encrypted: bool
    protocol: Optional[str] = None
    cipher: Optional[str] = None


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


@dataclass(frozen=True)
class Finding:
    """One thing wrong: how bad, a stable code, where, what, and how to fix it."""

    severity: str
    code: str
    member: Optional[str]
    where: str
    what: str
    fix: str


def find(obs: Observations) -> list:
    """Return the findings for `obs`, errors first, in member order."""
    out: list = [Finding(ERROR, "unreachable", None, "discovery", error,
                         "check that the REST API and PostgreSQL are reachable from here, and --api-port")
                 for error in obs.discovery_errors]
    for member in obs.members:
        out += _member_findings(obs, member)
    out += _ca_findings(obs)
    return sorted(out, key=lambda f: (f.severity != ERROR))


def _member_findings(obs: Observations, member: Member) -> list:
    out: list = []
    forbids = obs.mode in PLAINTEXT_FORBIDDEN
    if member.sql_error is not None:
        out.append(Finding(ERROR, "unreachable", member.name, f"postgres {member.host}:{member.port}",
                           f"cannot query PostgreSQL: {member.sql_error}",
                           "check the member is running and that this connection's credentials and TLS "
                           "settings are accepted there"))
    if member.ssl == "off" and forbids:
        out.append(Finding(ERROR, "ssl_off", member.name, f"postgres {member.host}:{member.port}",
                           f"ssl is off, but PGSSLMODE={obs.mode} forbids plaintext",
                           "mount the certificate Secret and restart the member (the entrypoint turns ssl on)"))
    if member.plaintext_accepted and forbids:
        out.append(Finding(ERROR, "plaintext_accepted", member.name, f"postgres {member.host}:{member.port}",
                           f"accepts plaintext TCP connections (pg_hba let a non-TLS startup reach "
                           f"authentication), but PGSSLMODE={obs.mode} forbids plaintext",
                           f"restart the member with PGSSLMODE={obs.mode}: the entrypoint then puts "
                           "'hostnossl ... reject' lines before every line that could accept plaintext"))
    if member.ssl_min_protocol_version in OLD_PROTOCOLS:
        out.append(Finding(ERROR, "tls_too_old", member.name, f"postgres {member.host}:{member.port}",
                           f"ssl_min_protocol_version is {member.ssl_min_protocol_version}, below TLSv1.2",
                           "set PCK_TLS_MIN_VERSION=TLSv1.2 (the default) or TLSv1.3"))
    for served in member.served:
        out += _served_findings(obs, member, served)
    out += _connection_findings(obs, member)
    for link, sslmode in sorted(member.link_modes.items()):
        if sslmode is not None and _rank(sslmode) < _rank(obs.mode):
            out.append(Finding(ERROR, "link_mode_weaker", member.name, link,
                               f"{link} connections from this member use sslmode={sslmode}, weaker than {obs.mode}",
                               f"set PGSSLMODE={obs.mode} on every member and restart them"))
    return out


def _served_findings(obs: Observations, member: Member, served: ServedCert) -> list:
    where = f"{served.service} {served.host}:{served.port}"
    if served.error is not None:
        return [Finding(ERROR, "unreachable", member.name, where, served.error,
                        "check the member is running and the port is reachable from here")]
    if not served.tls:
        if obs.mode == "disable":
            return []
        severity = ERROR if obs.mode in PLAINTEXT_FORBIDDEN else WARNING
        what = "serves no TLS" if served.service == "postgres" else "serves plain HTTP"
        return [Finding(severity, "plaintext_port", member.name, where,
                        f"{what}, so links to it are plaintext (PGSSLMODE={obs.mode})",
                        "mount the certificate Secret and restart the member")]
    out: list = []
    if served.protocol in OLD_PROTOCOLS:
        out.append(Finding(ERROR, "tls_too_old", member.name, where, f"negotiated {served.protocol}, below TLSv1.2",
                           "set PCK_TLS_MIN_VERSION=TLSv1.2 (the default) or TLSv1.3"))
    if served.not_after is not None:
        left = served.not_after - obs.observed_at
        if left <= dt.timedelta(0):
            out.append(Finding(ERROR, "cert_expired", member.name, where,
                               f"certificate {served.subject} expired on {served.not_after:%Y-%m-%d %H:%M} UTC",
                               "issue a new certificate (patroni-citus-k8s certs generate --renew), update the "
                               "Secret and restart the member"))
        elif left < dt.timedelta(days=obs.expiry_days):
            out.append(Finding(WARNING, "cert_expiring", member.name, where,
                               f"certificate {served.subject} expires in {left.days} days "
                               f"({served.not_after:%Y-%m-%d} UTC), within {obs.expiry_days}",
                               "renew it now (patroni-citus-k8s certs generate --renew), update the Secret "
                               "and restart the member"))
    if obs.mode == "verify-full" and served.name_covered is False:
        names = ", ".join(served.dns_names + served.ip_addresses) or "none"
        out.append(Finding(ERROR, "name_not_covered", member.name, where,
                           f"name not covered: the certificate does not cover {served.host!r}, the name peers "
                           f"use (its SANs: {names}), so verify-full connections to it fail",
                           f"re-issue the certificate with {served.host!r} or a wildcard for its domain "
                           f"(patroni-citus-k8s certs generate --san), or use a covered connect address"))
    if obs.mode in CA_VERIFIED and served.chains_to_ca is False:
        out.append(Finding(ERROR, "not_chained", member.name, where,
                           f"certificate issued by {served.issuer} does not chain to {obs.ca_file}",
                           "give every member a certificate from the cluster's CA, or check --ca"))
    return out


def _connection_findings(obs: Observations, member: Member) -> list:
    out: list = []
    for link in LINKS:
        conns = [c for c in member.connections if c.link == link]
        plain = [c for c in conns if not c.encrypted]
        if plain and obs.mode in PLAINTEXT_FORBIDDEN:
            peers = ", ".join(sorted({c.peer for c in plain}))
            out.append(Finding(ERROR, "plaintext_connection", member.name, link,
                               f"{len(plain)} plaintext {link} connection{'s' if len(plain) != 1 else ''} "
                               f"(from {peers}) where PGSSLMODE={obs.mode} forbids plaintext",
                               "restart the member with PGSSLMODE set to that mode so pg_hba rejects "
                               "plaintext, and give the clients sslmode=" + obs.mode))
        old = sorted({c.protocol for c in conns if c.encrypted and c.protocol in OLD_PROTOCOLS})
        if old:
            out.append(Finding(ERROR, "tls_too_old", member.name, link,
                               f"{link} connections use {', '.join(old)}, below TLSv1.2",
                               "set PCK_TLS_MIN_VERSION=TLSv1.2 (the default) or TLSv1.3 and restart"))
    return out


def _ca_findings(obs: Observations) -> list:
    issuers: dict = {}
    for member in obs.members:
        for served in member.served:
            if served.tls and served.issuer_id:
                issuers.setdefault(served.issuer_id, (served.issuer, []))[1].append(f"{member.name} {served.service}")
    if len(issuers) < 2:
        return []
    parts = [f"{issuer} ({', '.join(where)})" for issuer, where in issuers.values()]
    return [Finding(ERROR, "different_cas", None, "cluster",
                    f"members' certificates come from {len(issuers)} different CAs: " + "; ".join(parts),
                    "issue every member's certificate from one CA (one Secret, or one cert-manager Issuer)")]


def _rank(mode: str) -> int:
    return MODES.index(mode) if mode in MODES else len(MODES)


def connection_counts(member: Member) -> dict:
    """Return {link: (encrypted, plaintext)} for every link, zeros included."""
    counts = {link: [0, 0] for link in LINKS}
    for conn in member.connections:
        counts.setdefault(conn.link, [0, 0])[0 if conn.encrypted else 1] += 1
    return {link: (enc, plain) for link, (enc, plain) in counts.items()}


def exit_status(findings: list) -> int:
    """0 when there is nothing to report, 1 when there are findings."""
    return 1 if findings else 0
