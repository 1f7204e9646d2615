"""The pure rules that turn verify's observations into findings."""

from __future__ import annotations

import datetime as dt

from entrypoint import sslmode
from entrypoint.audit.model import Finding, Member, Observations, ServedCert

LINKS = ("client", "replication", "citus")
# A pooler (verify --pooler) is reported as a member with role "pooler" and these two links:
# its clients' sessions (SHOW CLIENTS) and its sessions to PostgreSQL (SHOW SERVERS).
POOLER = "pooler"
POOLER_LINKS = ("pooler_client", "pooler_server")
ERROR = "error"
WARNING = "warning"
# Every finding code and the severities it can carry (docs/verify.md lists them; the
# metrics export a zero for each pair, so an alert sees a count go up, not a series appear).
CODES = {
    "unreachable": (ERROR,),
    "plaintext_connection": (ERROR,),
    "plaintext_accepted": (ERROR,),
    "plaintext_port": (ERROR, WARNING),
    "ssl_off": (ERROR,),
    "tls_too_old": (ERROR,),
    "cert_expiring": (WARNING,),
    "cert_expired": (ERROR,),
    "name_not_covered": (ERROR,),
    "not_chained": (ERROR,),
    "different_cas": (ERROR,),
    "link_mode_weaker": (ERROR,),
    "revoked_cert_served": (ERROR,),
    "revoked_session": (ERROR,),
    "crl_unusable": (ERROR,),
    "crl_expiring": (WARNING,),
}


def find(obs: Observations) -> list:
    """Return the findings for `obs`, errors first, in member order."""
    out: list = [Finding(ERROR, "unreachable", None, "discovery", error,
                         "check that the REST API and PostgreSQL are reachable from here, and --api-port")
                 for error in obs.discovery_errors]
    for member in obs.members:
        out += _member_findings(obs, member)
    out += _ca_findings(obs) + _crl_findings(obs)
    return sorted(out, key=lambda f: (f.severity != ERROR))


def links_of(member: Member) -> tuple:
    """The links a member (or a pooler) serves."""
    return POOLER_LINKS if member.role == POOLER else LINKS


def _pooler_findings(obs: Observations, member: Member) -> list:
    where = f"pooler {member.host}:{member.port}"
    out: list = []
    if member.sql_error is not None:
        out.append(Finding(ERROR, "unreachable", member.name, where,
                           f"cannot read PgBouncer's admin console (SHOW CLIENTS/SERVERS): {member.sql_error}",
                           "check the pooler is running, and give verify PCK_POOLER_AUTH_PASSWORD (or _FILE) of "
                           "the auth_user, which the pooler lists in stats_users"))
    if member.plaintext_accepted and forbids_plaintext(obs.mode):
        out.append(Finding(ERROR, "plaintext_accepted", member.name, where,
                           f"accepts plaintext client connections, but PGSSLMODE={obs.mode} forbids plaintext",
                           f"restart the pooler with PGSSLMODE={obs.mode}: `pooler run` then renders "
                           "client_tls_sslmode=require"))
    return out


def _member_findings(obs: Observations, member: Member) -> list:
    out: list = []
    forbids = forbids_plaintext(obs.mode)
    if member.role == POOLER:
        out += _pooler_findings(obs, member)
        for served in member.served:
            out += _served_findings(obs, member, served)
        return out + _connection_findings(obs, member) + _link_mode_findings(obs, member)
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
    if member.ssl_min_protocol_version in sslmode.OLD_PROTOCOLS:
        out.append(Finding(ERROR, "tls_too_old", member.name, f"postgres {member.host}:{member.port}",
                           f"ssl_min_protocol_version is {member.ssl_min_protocol_version}, below TLSv1.2",
                           "set PCK_TLS_MIN_VERSION=TLSv1.2 (the default) or TLSv1.3"))
    for served in member.served:
        out += _served_findings(obs, member, served)
    return out + _connection_findings(obs, member) + _link_mode_findings(obs, member)


def _link_mode_findings(obs: Observations, member: Member) -> list:
    out: list = []
    for link, link_mode in sorted(member.link_modes.items()):
        if link_mode is not None and _rank(link_mode) < _rank(obs.mode):
            who = "pooler" if member.role == POOLER else "member"
            out.append(Finding(ERROR, "link_mode_weaker", member.name, link,
                               f"{link} connections from this {who} use sslmode={link_mode}, weaker than {obs.mode}",
                               f"set PGSSLMODE={obs.mode} on every member and pooler and restart them"))
    return out


def _served_findings(obs: Observations, member: Member, served: ServedCert) -> list:
    where = f"{served.service} {served.host}:{served.port}"
    if served.error is not None:
        return [Finding(ERROR, "unreachable", member.name, where, served.error,
                        "check the member is running and the port is reachable from here")]
    if not served.tls:
        if obs.mode == "disable":
            return []
        severity = ERROR if forbids_plaintext(obs.mode) else WARNING
        what = "serves plain HTTP" if served.service == "restapi" else "serves no TLS"
        return [Finding(severity, "plaintext_port", member.name, where,
                        f"{what}, so links to it are plaintext (PGSSLMODE={obs.mode})",
                        "mount the certificate Secret and restart the member")]
    out: list = []
    if served.protocol in sslmode.OLD_PROTOCOLS:
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
    if _verifies_host(obs.mode) and served.name_covered is False:
        names = ", ".join(served.dns_names + served.ip_addresses) or "none"
        out.append(Finding(ERROR, "name_not_covered", member.name, where,
                           f"name not covered: the certificate does not cover {served.host!r}, the name peers "
                           f"use (its SANs: {names}), so verify-full connections to it fail",
                           f"re-issue the certificate with {served.host!r} or a wildcard for its domain "
                           f"(patroni-citus-k8s certs generate --san), or use a covered connect address"))
    if served.revoked:
        fix = ("issue this member a new certificate and update its Secret (the watcher serves it without a "
               "restart)")
        if served.service == "restapi":
            fix += "; Patroni's REST API has no CRL setting, so until then its peers and patronictl still accept it"
        out.append(Finding(ERROR, "revoked_cert_served", member.name, where,
                           f"serves certificate serial {served.serial} ({served.subject}), which {obs.crl_file} "
                           "revokes", fix))
    if _verifies_ca(obs.mode) and served.chains_to_ca is False:
        out.append(Finding(ERROR, "not_chained", member.name, where,
                           f"certificate issued by {served.issuer} does not chain to {obs.ca_file}",
                           "give every member a certificate from the cluster's CA, or check --ca"))
    return out


def _connection_findings(obs: Observations, member: Member) -> list:
    out: list = []
    for link in links_of(member):
        conns = [c for c in member.connections if c.link == link]
        plain = [c for c in conns if not c.encrypted]
        if plain and forbids_plaintext(obs.mode):
            peers = ", ".join(sorted({c.peer for c in plain}))
            out.append(Finding(ERROR, "plaintext_connection", member.name, link,
                               f"{len(plain)} plaintext {link} connection{'s' if len(plain) != 1 else ''} "
                               f"(from {peers}) where PGSSLMODE={obs.mode} forbids plaintext",
                               "restart the member with PGSSLMODE set to that mode so pg_hba rejects "
                               "plaintext, and give the clients sslmode=" + obs.mode))
        revoked = [c for c in conns if c.revoked]
        if revoked:
            serials = ", ".join(sorted({c.client_serial or "?" for c in revoked}))
            out.append(Finding(ERROR, "revoked_session", member.name, link,
                               f"{len(revoked)} {link} session{'s' if len(revoked) != 1 else ''} authenticated "
                               f"with a revoked client certificate (serial {serials})",
                               "the member's watcher ends them once it has staged the CRL: check the member has "
                               "the CRL (ca.crl in its Secret since its start) and its log; or "
                               "pg_terminate_backend() them"))
        old = sorted({c.protocol for c in conns if c.encrypted and c.protocol in sslmode.OLD_PROTOCOLS})
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


def _crl_findings(obs: Observations) -> list:
    fix = ("give the CRL file one current CRL per CA of the bundle, each signed by that CA (certs revoke "
           "--out-dir DIR --refresh re-signs it), and update the Secret")
    out = [Finding(ERROR, "crl_unusable", None, f"crl {obs.crl_file}", problem, fix) for problem in obs.crl_problems]
    if obs.crl_error is not None:
        out.append(Finding(ERROR, "crl_unusable", None, f"crl {obs.crl_file}", obs.crl_error,
                           "put the CRLs certs revoke writes in the Secret's ca.crl, or give --crl FILE"))
    out += [Finding(WARNING, "crl_expiring", None, f"crl {obs.crl_file}", warning,
                    "publish a re-signed CRL before then: past its nextUpdate OpenSSL refuses every certificate "
                    "of that CA") for warning in obs.crl_warnings]
    return out


def _rank(mode: str) -> int:
    return sslmode.rank(mode)


def forbids_plaintext(mode: str) -> bool:
    """Whether judging at `mode` forbids plaintext on every link (require and up)."""
    m = sslmode.parse(mode)
    return bool(m and m.requires_tls)


def _verifies_ca(mode: str) -> bool:
    m = sslmode.parse(mode)
    return bool(m and m.verifies_ca)


def _verifies_host(mode: str) -> bool:
    m = sslmode.parse(mode)
    return bool(m and m.verifies_host)


def connection_counts(member: Member) -> dict:
    """Return {link: (encrypted, plaintext)} for every link, zeros included."""
    counts = {link: [0, 0] for link in links_of(member)}
    for conn in member.connections:
        counts.setdefault(conn.link, [0, 0])[0 if conn.encrypted else 1] += 1
    return {link: (enc, plain) for link, (enc, plain) in counts.items()}


def exit_status(findings: list) -> int:
    """0 when there is nothing to report, 1 when there are findings."""
    return 1 if findings else 0
