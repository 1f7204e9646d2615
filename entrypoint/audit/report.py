"""Render verify's observations and findings: a table for people, JSON for programs, Prometheus text."""

from __future__ import annotations

import datetime as dt
import json
from typing import Optional

from entrypoint.audit.findings import connection_counts, exit_status
from entrypoint.audit.model import Observations

METRIC_PREFIX = "patroni_citus_k8s_tls"


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
            "chain ok", "subject")
    rows: list = []
    for member in obs.members:
        group = "-" if member.group is None else str(member.group)
        if not member.served:
            rows.append((member.name, group, member.role or "-") + ("-",) * 9)
        for served in member.served:
            days = _days_left(served.not_after, obs.observed_at)
            plaintext = member.plaintext_accepted if served.service == "postgres" else None
            rows.append((member.name, group, member.role or "-", f"{served.service} {served.port}",
                         "unreachable" if served.error else ("yes" if served.tls else "NO"),
                         "-" if plaintext is None else ("ACCEPTED" if plaintext else "rejected"),
                         served.protocol or "-", served.cipher or "-", "-" if days is None else str(days),
                         _yes_no(served.name_covered), _yes_no(served.chains_to_ca), served.subject or "-"))
    lines += ["", "certificates served"] + _columns(head, rows)

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
        "findings": [dict(vars(f)) for f in findings],
        "exit_status": exit_status(findings),
    }


def render_json(obs: Observations, findings: list) -> str:
    return json.dumps(to_data(obs, findings), indent=2, sort_keys=False) + "\n"


def _label_value(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _sample(name: str, labels: dict, value: float) -> str:
    inner = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())
    number = repr(float(value)) if not float(value).is_integer() else str(int(value))
    return f"{METRIC_PREFIX}_{name}{{{inner}}} {number}"


def render_prometheus(obs: Observations, findings: list) -> str:
    """Return Prometheus text exposition (for node_exporter's textfile collector)."""
    metrics: dict = {
        "certificate_expiry_seconds": ("gauge", "Seconds until the certificate a member serves expires "
                                                "(negative when expired), as seen by the last verify run.", []),
        "certificate_not_after_timestamp_seconds": ("gauge", "Unix time at which the certificate a member "
                                                             "serves expires.", []),
        "port_tls": ("gauge", "1 when the port answered with TLS, 0 when in plaintext or not at all.", []),
        "member_reachable": ("gauge", "1 when verify could query the member's PostgreSQL.", []),
        "plaintext_accepted": ("gauge", "1 when the member's pg_hba lets a plaintext TCP connection reach "
                                        "authentication, 0 when it rejects it.", []),
        "connections": ("gauge", "Network connections a member serves, by link and encryption.", []),
        "findings": ("gauge", "Findings of the last verify run, by severity.", []),
        "verify_timestamp_seconds": ("gauge", "Unix time of the last verify run.", []),
    }
    for member in obs.members:
        base = {"member": member.name, "group": "" if member.group is None else member.group}
        metrics["member_reachable"][2].append(_sample("member_reachable", base, 0 if member.sql_error else 1))
        if member.plaintext_accepted is not None:
            metrics["plaintext_accepted"][2].append(
                _sample("plaintext_accepted", base, 1 if member.plaintext_accepted else 0))
        for served in member.served:
            labels = dict(base, service=served.service, host=served.host, port=served.port)
            metrics["port_tls"][2].append(_sample("port_tls", labels, 1 if served.tls and not served.error else 0))
            if served.not_after is not None:
                left = (served.not_after - obs.observed_at).total_seconds()
                metrics["certificate_expiry_seconds"][2].append(
                    _sample("certificate_expiry_seconds", labels, round(left)))
                metrics["certificate_not_after_timestamp_seconds"][2].append(
                    _sample("certificate_not_after_timestamp_seconds", labels, round(served.not_after.timestamp())))
        for link, (enc, plain) in connection_counts(member).items():
            if link == "citus" and not obs.citus:
                continue
            for encrypted, count in (("true", enc), ("false", plain)):
                metrics["connections"][2].append(
                    _sample("connections", dict(base, link=link, encrypted=encrypted), count))
    for severity in ("error", "warning"):
        count = sum(1 for f in findings if f.severity == severity)
        metrics["findings"][2].append(_sample("findings", {"severity": severity}, count))
    metrics["verify_timestamp_seconds"][2].append(
        f"{METRIC_PREFIX}_verify_timestamp_seconds {round(obs.observed_at.timestamp())}")
    lines = []
    for name, (kind, help_text, samples) in metrics.items():
        if not samples:
            continue
        lines += [f"# HELP {METRIC_PREFIX}_{name} {help_text}", f"# TYPE {METRIC_PREFIX}_{name} {kind}"] + samples
    return "\n".join(lines) + "\n"

