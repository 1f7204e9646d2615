"""Render verify's observations and findings: a table for people, JSON for programs, Prometheus text (metrics.py)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Optional

from entrypoint.audit.findings import connection_counts, exit_status
from entrypoint.audit.model import CertInfo, MountedSecret, Observations


def _days_left(not_after: Optional[dt.datetime], now: dt.datetime) -> Optional[int]:
    return None if not_after is None else (not_after - now).days


def _yes_no(value: Optional[bool]) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def render_table(obs: Observations, findings: list) -> str:
    """Return the readable report: members and their certificates, links with counts, then findings."""
    lines = [f"verify {obs.target}: judged against sslmode={obs.mode} ({obs.mode_source}); "
             f"CA {obs.ca_file or 'not given'}; expiry warning within {obs.expiry_days} days"
             + ("; Citus" if obs.citus else "")]
    head: tuple = ("member", "group", "role", "port", "tls", "plaintext", "protocol", "cipher", "days left", "name ok",
                   "chain ok", "revoked", "subject")
    rows: list = []
    for member in obs.members:
        group = "-" if member.group is None else str(member.group)
        if not member.served:
            rows.append((member.name, group, member.role or "-") + ("-",) * 10)
        for served in member.served:
            days = _days_left(served.not_after, obs.observed_at)
            plaintext = member.plaintext_accepted if served.service in ("postgres", "pooler") else None
            rows.append((member.name, group, member.role or "-", f"{served.service} {served.port}",
                         "unreachable" if served.error else ("yes" if served.tls else "NO"),
                         "-" if plaintext is None else ("ACCEPTED" if plaintext else "rejected"),
                         served.protocol or "-", served.cipher or "-", "-" if days is None else str(days),
                         _yes_no(served.name_covered), _yes_no(served.chains_to_ca),
                         "-" if served.revoked is None else ("REVOKED" if served.revoked else "no"),
                         served.subject or "-"))
    lines += ["", "certificates served"] + _columns(head, rows)
    lines += _crl_lines(obs)

    head = ("member", "link", "encrypted", "plaintext", "sslmode in force")
    link_rows = []
    for member in obs.members:
        for link, (enc, plain) in connection_counts(member).items():
            if link == "citus" and not obs.citus:
                continue
            mode = member.link_modes.get(link) or "-"
            link_rows.append((member.name, link, str(enc), str(plain), mode))
    lines += ["", "connections each member serves, by link"] + _columns(head, link_rows)

    lines.append("")
    if findings:
        lines.append(f"{len(findings)} finding{'s' if len(findings) != 1 else ''}:")
        for f in findings:
            who = f"{f.member} " if f.member else ""
            lines.append(f"  {f.severity.upper():<7} [{f.code}] {who}{f.where}: {f.what}")
            lines.append(f"          fix: {f.fix}")
    else:
        lines.append("no findings: every member and link is as the mode requires")
    return "\n".join(lines) + "\n"


def _crl_lines(obs: Observations) -> list:
    if obs.crl_file is None:
        return ["", "revocation: no CRL (give --crl FILE, or mount the Secret's ca.crl at --secret-dir)"]
    if not obs.crls:
        return ["", f"revocation: {obs.crl_file} cannot be used ({obs.crl_error})"]
    rows = [(info.issuer, f"{info.next_update:%Y-%m-%d %H:%M} UTC" if info.next_update else "-",
             "-" if info.next_update is None else str(_days_left(info.next_update, obs.observed_at)),
             str(len(info.revoked))) for info in obs.crls]
    return ["", f"revocation lists ({obs.crl_file})"] + _columns(("issuer", "next update", "days left", "revoked"),
                                                                   rows)


def _columns(head: tuple, rows: list) -> list:
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*head).rstrip()] + [fmt.format(*row).rstrip() for row in rows]


def to_data(obs: Observations, findings: list) -> dict:
    """Return the whole report as JSON-ready data (dates in ISO 8601 UTC)."""
    members = []
    for member in obs.members:
        data = {k: v for k, v in vars(member).items() if k not in ("served", "connections")}
        data["served"] = []
        for served in member.served:
            item = dict(vars(served))
            item["not_after"] = served.not_after.isoformat() if served.not_after else None
            item["days_left"] = _days_left(served.not_after, obs.observed_at)
            data["served"].append(item)
        data["connections"] = [dict(vars(c)) for c in member.connections]
        data["connection_counts"] = {link: {"encrypted": enc, "plaintext": plain}
                                     for link, (enc, plain) in connection_counts(member).items()}
        members.append(data)
    from entrypoint.audit.metrics import rotation

    return {
        "observed_at": obs.observed_at.isoformat(),
        "target": obs.target,
        "mode": obs.mode,
        "mode_source": obs.mode_source,
        "ca_file": obs.ca_file,
        "expiry_days": obs.expiry_days,
        "citus": obs.citus,
        "members": members,
        "discovery_errors": list(obs.discovery_errors),
        "cas": [_cert_data(c) for c in obs.cas],
        "secret": _secret_data(obs.secret),
        "crl_file": obs.crl_file,
        "crls": [dict(vars(c), next_update=c.next_update.isoformat() if c.next_update else None,
                      revoked=list(c.revoked)) for c in obs.crls],
        "crl_error": obs.crl_error,
        "rotation": [dict(vars(r)) for r in rotation(obs, {})[0]],
        "findings": [dict(vars(f)) for f in findings],
        "exit_status": exit_status(findings),
    }


def _cert_data(info: CertInfo) -> dict:
    return dict(vars(info), not_after=info.not_after.isoformat())


def _secret_data(secret: Optional[MountedSecret]) -> Optional[dict]:
    if secret is None:
        return None
    return {"directory": secret.directory, "cert_file": secret.cert_file,
            "cert": _cert_data(secret.cert) if secret.cert else None,
            "changed_at": secret.changed_at.isoformat() if secret.changed_at else None,
            "cas": [_cert_data(c) for c in secret.cas], "error": secret.error}


def render_json(obs: Observations, findings: list) -> str:
    return json.dumps(to_data(obs, findings), indent=2, sort_keys=False) + "\n"


def render_prometheus(obs: Observations, findings: list) -> str:
    """Return Prometheus text exposition (for node_exporter's textfile collector), written by prometheus_client."""
    from entrypoint.audit.metrics import Snapshot, exposition, rotation

    rows, _ = rotation(obs, {})
    return exposition(Snapshot(mode=obs.mode, obs=obs, findings=findings, rotation=rows, duration=obs.duration,
                               success=True, last_success=obs.observed_at.timestamp()))
