"""After the watcher staged new material: have every server use it now, and end sessions a new CRL revokes.

- PostgreSQL reloads its SSL files on SIGHUP at once (the watcher sends it).
- Patroni takes a new REST API certificate only on its next HA cycle (up to loop_wait,
  10 s by default). Patroni 4's `PATCH /config` wakes that loop even when the patch
  changes nothing (api.py do_PATCH_config calls ha.wakeup(); utils.patch_config reports
  no change for `{"postgresql": {}}` when that key holds an object, so nothing is written
  to the DCS): `wake_patroni` sends such a patch, for a key GET /config shows holding an
  object, with the REST API's credentials and, where it asks for one, the member's client
  certificate. On any failure the HA cycle picks the change up anyway.
- A CRL stops new connections with a revoked certificate, not ones already open:
  `end_revoked_sessions` terminates the sessions (client backends and walsenders alike)
  whose client certificate (pg_stat_ssl.client_serial and issuer_dn) the CRLs revoke.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from typing import Any, Callable, Dict, List, Optional, Sequence

from cryptography import x509

from entrypoint.boot.peers import local_api
from entrypoint.boot.settings import Settings
from entrypoint.boot.stage import StagedPaths
from entrypoint.errors import printable
from entrypoint.pki.crl import is_revoked, revoked_pairs


def _noop_patch(config: object) -> Optional[bytes]:
    """`{key: {}}` for a key whose value is an object: patch_config finds nothing to change, so nothing is written."""
    if not isinstance(config, dict):
        return None
    keys = sorted(key for key, value in config.items() if isinstance(value, dict))
    if not keys:
        return None
    return json.dumps({"postgresql" if "postgresql" in keys else keys[0]: {}}).encode()


def wake_patroni(settings: Settings, paths: StagedPaths, timeout: float = 3.0) -> bool:
    """A no-op PATCH /config on the local REST API, so Patroni's HA loop runs now; False when there is none to send.

    Raises OSError/ValueError when the REST API cannot be reached or refuses.
    """
    base, context = local_api(settings, paths)
    with urllib.request.urlopen(f"{base}/config", timeout=timeout, context=context) as response:
        body = _noop_patch(json.loads(response.read(1 << 20) or b"null"))
    if body is None:  # no object-valued key: any patch would change the DCS config, which this must never do
        return False
    request = urllib.request.Request(f"{base}/config", data=body, method="PATCH",
                                     headers={"Content-Type": "application/json"})
    auth = settings.users.restapi
    if auth is not None and auth.password:
        token = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        response.read(1 << 20)
    return True


def _superuser_connection(settings: Settings, paths: StagedPaths, timeout: float) -> Any:
    """This member's PostgreSQL as the superuser: the local socket first (peer or password), then TCP.

    TCP alone would fail exactly when it matters on a member whose own certificate was just
    revoked: under mutual TLS its own server refuses that certificate.
    """
    import psycopg

    superuser = settings.users.superuser
    common: Dict[str, Any] = dict(dbname="postgres", user=superuser.username, password=superuser.password,
                                  connect_timeout=max(1, int(timeout)), application_name="patroni-citus-k8s watch",
                                  autocommit=True)
    own = settings.addresses.connect
    cert, key = paths.client_cert or paths.server_cert, paths.client_key or paths.server_key
    tcp: Dict[str, Any] = dict(host=own.host, port=own.port, sslmode="require")
    if settings.mtls.enabled and cert and key:
        tcp.update(sslcert=cert, sslkey=key)
    attempts = [dict(host=settings.paths.socket_dir, port=settings.addresses.listen.port), tcp]
    for number, where in enumerate(attempts):
        try:
            return psycopg.connect(**common, **where)
        except psycopg.OperationalError:
            if number == len(attempts) - 1:
                raise
    raise AssertionError("unreachable")


def end_revoked_sessions(settings: Settings, paths: StagedPaths, crls: Sequence[x509.CertificateRevocationList],
                         timeout: float = 5.0) -> List[str]:
    """Terminate this server's sessions whose client certificate is revoked; returns who they were."""
    revoked = revoked_pairs(crls)
    if not revoked:
        return []
    ended = []
    with _superuser_connection(settings, paths, timeout) as conn:
        rows = conn.execute("SELECT s.pid, s.client_serial::text, s.issuer_dn, a.usename, a.backend_type "
                            "FROM pg_catalog.pg_stat_ssl s JOIN pg_catalog.pg_stat_activity a ON a.pid = s.pid "
                            "WHERE s.client_serial IS NOT NULL AND s.pid <> pg_backend_pid()").fetchall()
        for pid, serial, issuer, user, kind in rows:
            if is_revoked(revoked, issuer or "", int(serial)):
                conn.execute("SELECT pg_catalog.pg_terminate_backend(%s)", (pid,))
                ended.append(f"pid {pid} ({kind}, user {user}, certificate serial {int(serial):x})")
    return ended


def after_reload(settings: Settings, paths: StagedPaths, material: Any, log: Callable[[str], None]) -> None:
    """The watcher's steps after a restage: Patroni's REST API now rather than on its next HA cycle, and the
    sessions a new CRL revokes ended. Never raises: either failure leaves a safe state and a line in the log."""
    try:
        wake_patroni(settings, paths)
    except Exception as exc:  # noqa: BLE001 - Patroni's HA cycle picks the change up anyway
        log(f"could not wake Patroni through its REST API ({type(exc).__name__}); it reloads on its next HA cycle")
    if not material.crls:
        return
    try:
        for who in end_revoked_sessions(settings, paths, material.crls):
            log(f"ended a session with a revoked client certificate: {printable(who)}")
    except Exception as exc:  # noqa: BLE001 - new connections are refused either way; retried on the next CRL
        first = str(exc).splitlines()[0] if str(exc) else ""
        log(f"could not end sessions with revoked certificates: {type(exc).__name__}: {printable(first)}")
