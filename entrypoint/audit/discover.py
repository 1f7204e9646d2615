"""Find a cluster's members: Patroni's REST `/cluster` for the seed's group, and pg_dist_node for every Citus group."""

from __future__ import annotations

from typing import List, Optional, Tuple

from entrypoint.audit import sql
from entrypoint.audit.model import Member
from entrypoint.audit.probes import ClientCert


class Unreachable(Exception):
    """A REST API did not answer; the message says which and why."""


def discover(seed, api_host: str, api_port: int, client: Optional[ClientCert],
             timeout: float) -> Tuple[bool, List[Member], List[str]]:
    """Return (citus, members, errors): Patroni's members of the seed's group, and for Citus every group's."""
    errors: List[str] = []
    members: List[Member] = []
    try:
        members = cluster_members(api_host, api_port, client, timeout, group=None)
    except Unreachable as exc:
        errors.append(str(exc))
    if not seed.execute(sql.IS_CITUS).fetchone()[0]:
        return False, members, errors
    seed_group = list(members)  # /cluster lists one group: every member of the seed's shares its group
    for group, host, port in seed.execute(sql.PRIMARY_NODES).fetchall():
        if any((m.host, m.port) == (host, port) for m in members):
            for member in seed_group:
                member.group = group if member.group is None else member.group
            continue
        try:
            members += cluster_members(host, api_port, client, timeout, group=group)
        except Unreachable as exc:
            errors.append(str(exc))
            members.append(Member(name=f"{host}:{port}", host=host, port=port, group=group))
    return True, sorted(members, key=lambda m: (-1 if m.group is None else m.group, m.name)), errors


def cluster_members(host: str, port: int, client: Optional[ClientCert], timeout: float,
                    group: Optional[int]) -> List[Member]:
    """The members Patroni's `/cluster` endpoint on host:port lists; raises Unreachable."""
    import urllib.parse

    body = api_get(host, port, "/cluster", client, timeout)
    members = []
    for item in body.get("members", []):
        api_url = item.get("api_url")
        member_host = item.get("host") or (urllib.parse.urlsplit(api_url).hostname if api_url else None)
        if not member_host:
            continue
        members.append(Member(name=item.get("name") or member_host, host=member_host,
                              port=int(item.get("port") or 5432), api_url=api_url, role=item.get("role"),
                              state=item.get("state"), group=group))
    return members


def api_get(host: str, port: int, path: str, client: Optional[ClientCert], timeout: float) -> dict:
    """GET a Patroni REST API path over HTTPS, else HTTP; returns the JSON body, raises Unreachable.

    The chain is not checked here: this only finds the members, whose certificates the
    probes then judge one by one.
    """
    import json
    import ssl
    import urllib.error
    import urllib.request

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if client is not None:
        ctx.load_cert_chain(client.cert_file, client.key_file)
    last: Optional[BaseException] = None
    for scheme in ("https", "http"):
        url = f"{scheme}://{url_host(host)}:{port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=ctx if scheme == "https" else None) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = exc
    reason = getattr(last, "reason", last)
    raise Unreachable(f"Patroni REST API at {host}:{port} did not answer {path} ({reason})")


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
