"""During a rolling change to TLS (PCK_TLS_UPGRADE): whom this member's client links reach, and whether each serves TLS.

A member restarted with a mode that refuses plaintext may find its primary (or, for
Citus, another group's primary) still running without TLS: a verify-ca replica would
never stream and the rollout would stall. So it starts its own client links at `prefer`
and the watcher asks here, every few seconds, whether every peer now serves TLS the mode
accepts (the chain against the CA, the name at verify-full). Only then are the links
tightened. Peers come from the local Patroni REST API (`/cluster`, this group) and, for
Citus, from the local pg_dist_node (every group's primary).
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from typing import List, Optional, Tuple

from entrypoint import pgwire
from entrypoint.boot.settings import Settings
from entrypoint.boot.stage import StagedPaths

Peer = Tuple[str, int]  # host, port


def local_api(settings: Settings, paths: StagedPaths) -> Tuple[str, Optional[ssl.SSLContext]]:
    """The local REST API's base URL and the TLS context to call it with: a local call by address, so the chain
    is checked and the name cannot be; the member's client certificate where the REST API asks for one."""
    host, _, port = settings.addresses.restapi_listen.rpartition(":")
    host = host.strip("[]")
    host = "127.0.0.1" if host in ("", "*", "0.0.0.0", "::") else host
    if not (settings.server_ssl and paths.server_cert):
        return f"http://{host}:{port}", None
    context = ssl.create_default_context(cafile=paths.ca) if paths.ca else ssl.create_default_context()
    context.check_hostname = False
    if not paths.ca:
        context.verify_mode = ssl.CERT_NONE
    cert, key = paths.client_cert or paths.server_cert, paths.client_key or paths.server_key
    if cert and key and (settings.mtls.enabled or settings.mtls.restapi_verify_client in ("optional", "required")):
        context.load_cert_chain(cert, key)
    return f"https://{host}:{port}", context


def group_peers(settings: Settings, paths: StagedPaths, timeout: float) -> List[Peer]:
    """The other members of this group as Patroni's DCS knows them; raises OSError/ValueError when it cannot say."""
    base, context = local_api(settings, paths)
    with urllib.request.urlopen(f"{base}/cluster", timeout=timeout, context=context) as response:
        body = json.loads(response.read())
    return [(m["host"], int(m.get("port") or 5432)) for m in body.get("members", [])
            if m.get("name") != settings.identity.name and m.get("host")]


def citus_peers(settings: Settings, timeout: float) -> List[Peer]:
    """Every group's primary this node's Citus connects to (pg_dist_node); raises an Exception when it cannot say."""
    import psycopg

    if settings.citus is None:
        return []
    own = settings.addresses.connect
    with psycopg.connect(host=own.host, port=own.port, dbname=settings.citus.database,
                         user=settings.users.superuser.username, password=settings.users.superuser.password,
                         sslmode="require", connect_timeout=max(1, int(timeout))) as conn:
        rows = conn.execute("SELECT nodename, nodeport FROM pg_catalog.pg_dist_node "
                            "WHERE noderole = 'primary' AND isactive").fetchall()
    return [(host, int(port)) for host, port in rows if (host, int(port)) != (own.host, own.port)]


def tls_problem(peer: Peer, settings: Settings, paths: StagedPaths, timeout: float) -> Optional[str]:
    """None when `peer` serves TLS that this member's mode accepts; else why not, for the log."""
    from cryptography import x509

    from entrypoint.pki.names import name_covered

    host, port = peer
    sock = pgwire.ssl_request(host, port, timeout)
    if sock is None:
        return f"{host}:{port} serves no TLS yet"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # the name is judged with libpq's rules below
    if settings.mode.verifies_ca and paths.ca:
        context.load_verify_locations(cafile=paths.ca)
    else:
        context.verify_mode = ssl.CERT_NONE
    try:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLError as exc:
        return f"{host}:{port}: its certificate is not accepted yet ({exc.reason or exc})"
    finally:
        sock.close()
    if settings.mode.verifies_host and der and not name_covered(x509.load_der_x509_certificate(der), host):
        return f"{host}:{port}: its certificate does not cover {host!r} yet"
    return None


def all_serve_tls(settings: Settings, paths: StagedPaths, timeout: float = 3.0) -> Tuple[bool, str]:
    """(True, summary) once every peer serves acceptable TLS; (False, the first reason) until then."""
    try:
        peers = group_peers(settings, paths, timeout)
    except (OSError, ValueError) as exc:
        return False, f"the local Patroni REST API does not answer yet ({exc})"
    try:
        peers += citus_peers(settings, timeout)
    except Exception as exc:  # noqa: BLE001 - psycopg's errors, a node not up yet: ask again next time
        return False, f"the local Citus metadata cannot be read yet ({str(exc).splitlines()[0] if str(exc) else exc})"
    for peer in dict.fromkeys(peers):
        try:
            problem = tls_problem(peer, settings, paths, timeout)
        except OSError as exc:
            problem = f"{peer[0]}:{peer[1]} does not answer ({exc.strerror or exc})"
        if problem:
            return False, problem
    return True, f"{len(set(peers))} peer(s) serve TLS"
