"""verify's observations as Prometheus metrics, built with prometheus_client (never hand-written exposition text).

`families` is pure over a Snapshot: `--prometheus` renders one snapshot once, `--serve`
renders the latest on every scrape. Label values come from the cluster (member names,
ports, subjects, ciphers) or from fixed vocabularies (reasons, codes), never from
connection strings or messages, so no password can reach a label.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from entrypoint import __version__
from entrypoint.audit.findings import CODES, forbids_plaintext, links_of
from entrypoint.audit.model import Member, Observations

PREFIX = "pck_tls_"
# Why an observation failed, as the `reason` label of pck_tls_observation_errors_total.
REASONS = ("cannot_run", "timeout", "internal")


@dataclass(frozen=True)
class Rotation:
    """Whether one port serves the certificate mounted in the Secret now, and for how long it has not."""

    member: str
    group: str
    service: str
    port: int
    current: bool
    pending_seconds: float


@dataclass
class Snapshot:
    """Everything one exposition shows: the last observation (None before the first, or after a failure) and
    the loop's counts."""

    mode: Optional[str]
    obs: Optional[Observations] = None
    findings: list = field(default_factory=list)
    rotation: list = field(default_factory=list)
    duration: Optional[float] = None  # seconds the last observation took
    success: Optional[bool] = None  # whether the last observation succeeded (None before the first)
    last_success: Optional[float] = None  # Unix time of the last successful observation
    observations: Optional[int] = None  # --serve only: observations so far
    errors: Optional[Dict[str, int]] = None  # --serve only: failed observations by reason


def _group(member: Member) -> str:
    return "" if member.group is None else str(member.group)


def rotation(obs: Observations, since: Dict[tuple, dt.datetime]) -> Tuple[List[Rotation], Dict[tuple, dt.datetime]]:
    """Compare every port's certificate with the mounted Secret's; returns the rows and the new `since`.

    `since` maps (member, service, port) to when this process first saw the port serve
    something else (empty for a single run). A port is pending since the earlier of that
    and the time the Secret's certificate file last changed: from then on it should have
    served it. Without a readable Secret certificate there is nothing to compare: no rows.
    """
    secret = obs.secret
    if secret is None or secret.cert is None:
        return [], {}
    now = obs.observed_at
    rows, still = [], {}
    for member in obs.members:
        for served in member.served:
            if not served.tls or served.sha256 is None:
                continue
            key = (member.name, served.service, served.port)
            current = served.sha256 == secret.cert.sha256
            pending = 0.0
            if not current:
                first = still[key] = since.get(key, now)
                start = min(first, secret.changed_at or first)
                pending = max(0.0, (now - start).total_seconds())
            rows.append(Rotation(member.name, _group(member), served.service, served.port, current, pending))
    return rows, still


def _gauge(name: str, doc: str, labels: Iterable[str] = ()):
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))


def _port_families(obs: Observations) -> list:
    port = ("member", "group", "service", "port")
    tls = _gauge("port_tls", "1 when the port answered with TLS, 0 when in plaintext or not at all.", port)
    expiry = _gauge("certificate_expiry_seconds", "Seconds until the certificate the port serves expires "
                    "(negative once expired), at the last observation.", port)
    not_after = _gauge("certificate_not_after_timestamp_seconds", "Unix time the certificate the port serves "
                       "expires.", port)
    handshake = _gauge("handshake_info", "1 for the protocol and cipher verify's own handshake with the port "
                       "negotiated.", port + ("protocol", "cipher"))
    for member in obs.members:
        for served in member.served:
            values = [member.name, _group(member), served.service, str(served.port)]
            tls.add_metric(values, 1 if served.tls and not served.error else 0)
            if served.not_after is not None:
                expiry.add_metric(values, round((served.not_after - obs.observed_at).total_seconds()))
                not_after.add_metric(values, round(served.not_after.timestamp()))
            if served.tls and served.protocol:
                handshake.add_metric(values + [served.protocol, served.cipher or ""], 1)
    return [tls, expiry, not_after, handshake]


def _member_families(obs: Observations) -> list:
    up = _gauge("member_up", "1 when verify could query the member's PostgreSQL.", ("member", "group"))
    accepted = _gauge("plaintext_accepted", "1 when the member's pg_hba lets a plaintext TCP connection reach "
                      "authentication, 0 when it rejects it.", ("member", "group"))
    link = ("member", "group", "link")
    sessions = _gauge("sessions", "Network sessions the member serves, by link and encryption (tls or plaintext).",
                      link + ("encryption",))
    ciphers = _gauge("session_ciphers", "Encrypted sessions the member serves, by link, TLS protocol and cipher.",
                     link + ("protocol", "cipher"))
    allowed = _gauge("link_plaintext_allowed", "1 when the expected mode (--mode) allows plaintext sessions on the "
                     "link, 0 when it forbids them.", link)
    revoked = _gauge("revoked_sessions", "Sessions the member serves that a revoked client certificate authenticated, "
                     "by link (only with a CRL).", link)
    plaintext_ok = 0 if forbids_plaintext(obs.mode) else 1
    for member in obs.members:
        base = [member.name, _group(member)]
        up.add_metric(base, 0 if member.sql_error else 1)
        if member.plaintext_accepted is not None:
            accepted.add_metric(base, 1 if member.plaintext_accepted else 0)
        for name in links_of(member):
            if name == "citus" and not obs.citus:
                continue
            conns = [c for c in member.connections if c.link == name]
            encrypted = [c for c in conns if c.encrypted]
            sessions.add_metric(base + [name, "tls"], len(encrypted))
            sessions.add_metric(base + [name, "plaintext"], len(conns) - len(encrypted))
            allowed.add_metric(base + [name], plaintext_ok)
            if obs.crls:
                revoked.add_metric(base + [name], sum(1 for c in conns if c.revoked))
            counts: Dict[Tuple[str, str], int] = {}
            for conn in encrypted:
                pair = (conn.protocol or "", conn.cipher or "")
                counts[pair] = counts.get(pair, 0) + 1
            for (protocol, cipher), count in sorted(counts.items()):
                ciphers.add_metric(base + [name, protocol, cipher], count)
    return [up, accepted, sessions, ciphers, allowed, revoked]


def _certificate_families(obs: Observations, rows: List[Rotation]) -> list:
    ca = _gauge("ca_expiry_seconds", "Seconds until each CA certificate of the bundle expires (the CA file verify "
                "judges against and the Secret's ca.crt).", ("subject", "sha256"))
    seen = set()
    for info in list(obs.cas) + (list(obs.secret.cas) if obs.secret else []):
        if info.sha256 not in seen:
            seen.add(info.sha256)
            ca.add_metric([info.subject, info.sha256], round((info.not_after - obs.observed_at).total_seconds()))
    crl = _gauge("crl_next_update_seconds", "Seconds until the CRL's nextUpdate, per issuer (the CRL file verify "
                 "judges against: --crl, sslcrl or the Secret's ca.crl; none without one).", ("issuer",))
    for issuer, next_update in crl_next_updates(obs):
        crl.add_metric([issuer], round((next_update - obs.observed_at).total_seconds()))
    revoked = _gauge("serving_revoked_certificate", "1 when the port serves a certificate the CRL revokes, 0 when "
                     "not (only with a CRL).", ("member", "group", "service", "port"))
    for member in obs.members:
        for served in member.served:
            if served.revoked is not None:
                revoked.add_metric([member.name, _group(member), served.service, str(served.port)],
                                   1 if served.revoked else 0)
    port = ("member", "group", "service", "port")
    mounted = _gauge("serving_mounted_certificate", "1 when the port serves the certificate mounted in the Secret "
                     "now (--secret-dir), 0 when it serves another.", port)
    pending = _gauge("rotation_pending_seconds", "Seconds the port has not served the certificate mounted in the "
                     "Secret now; 0 when it does.", port)
    for row in rows:
        values = [row.member, row.group, row.service, str(row.port)]
        mounted.add_metric(values, 1 if row.current else 0)
        pending.add_metric(values, round(row.pending_seconds, 3))
    secret = _gauge("secret_certificate_expiry_seconds", "Seconds until the certificate mounted in the Secret "
                    "expires.")
    if obs.secret is not None and obs.secret.cert is not None:
        secret.add_metric([], round((obs.secret.cert.not_after - obs.observed_at).total_seconds()))
    return [ca, crl, revoked, mounted, pending, secret]


def crl_next_updates(obs: Observations) -> List[Tuple[str, dt.datetime]]:
    """(issuer, nextUpdate) of every CRL verify judged against; a CRL without nextUpdate counts as due now."""
    return [(info.issuer, info.next_update or obs.observed_at) for info in obs.crls]


def _findings_family(findings: list):
    family = _gauge("findings", "Findings of the last observation, by code and severity (docs/verify.md, "
                    "Findings).", ("code", "severity"))
    counts = {(code, severity): 0 for code, severities in CODES.items() for severity in severities}
    for finding in findings:
        key = (finding.code, finding.severity)
        counts[key] = counts.get(key, 0) + 1
    for (code, severity), count in sorted(counts.items()):
        family.add_metric([code, severity], count)
    return family


def _run_families(snap: Snapshot) -> list:
    from prometheus_client.core import CounterMetricFamily

    info = _gauge("exporter_info", "1, labelled with the version of patroni-citus-k8s and the sslmode the cluster "
                  "is judged against (--mode, else the connection's).", ("version", "mode"))
    info.add_metric([__version__, snap.mode or ""], 1)
    out = [info]
    if snap.success is not None:
        success = _gauge("observation_success", "1 when the last observation succeeded, 0 when it failed (the "
                         "reason is counted in pck_tls_observation_errors_total and logged).")
        success.add_metric([], 1 if snap.success else 0)
        out.append(success)
    if snap.duration is not None:
        duration = _gauge("observation_duration_seconds", "Seconds the last observation took.")
        duration.add_metric([], round(snap.duration, 3))
        out.append(duration)
    if snap.last_success is not None:
        last = _gauge("last_success_timestamp_seconds", "Unix time of the last successful observation.")
        last.add_metric([], round(snap.last_success, 3))
        out.append(last)
    if snap.observations is not None:
        total = CounterMetricFamily(PREFIX + "observations", "Observations since the exporter started.")
        total.add_metric([], snap.observations)
        errors = CounterMetricFamily(PREFIX + "observation_errors", "Failed observations since the exporter "
                                     "started, by reason: cannot_run (bad input, the first connection failed, no "
                                     "member answered), timeout, internal (a bug: see the log).", labels=["reason"])
        for reason in REASONS:
            errors.add_metric([reason], (snap.errors or {}).get(reason, 0))
        out += [total, errors]
    return out


def families(snap: Snapshot) -> list:
    """Every metric family of `snap`, in a stable order."""
    out = _run_families(snap)
    if snap.obs is not None:
        out += _port_families(snap.obs) + _member_families(snap.obs)
        out += _certificate_families(snap.obs, snap.rotation) + [_findings_family(snap.findings)]
    return out


class SnapshotCollector:
    """A prometheus_client collector over a callable that returns the Snapshot to show."""

    def __init__(self, current) -> None:
        self.current = current

    def collect(self):
        return iter(families(self.current()))

    def describe(self):
        return []  # families vary with the cluster; nothing to check at registration


def registry_for(current):
    """A registry holding only verify's metrics (no process or platform collectors)."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(current))
    return registry


def exposition(snap: Snapshot) -> str:
    """Prometheus text exposition of one snapshot (the textfile of --prometheus)."""
    from prometheus_client import generate_latest

    return generate_latest(registry_for(lambda: snap)).decode()
