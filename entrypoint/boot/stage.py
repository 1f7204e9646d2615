"""Stage private copies of the checked TLS material: readable by the run user, keys by nobody else, as one set.

The files are re-encoded from the checked objects (never copied byte for byte) into a new
generation directory, then `tls` is switched to it with one rename (boot.fsops), so
PostgreSQL, Patroni and libpq see the old set or the new one, never half of each.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

from entrypoint import layout
from entrypoint.boot import fsops
from entrypoint.boot.material import TlsMaterial
from entrypoint.boot.patroni_files import staged_name
from entrypoint.boot.settings import Settings
from entrypoint.pki.load import chain_pem

KEY_MODE = 0o600
CERT_MODE = 0o644


@dataclass(frozen=True)
class StagedPaths:
    """Where the staged copies live. A part the mode does not use is None."""

    server_cert: Optional[str]
    server_key: Optional[str]
    ca: Optional[str]
    client_cert: Optional[str]
    client_key: Optional[str]
    extra: Mapping[str, str] = field(default_factory=dict)  # Patroni TLS file variable -> staged path
    crl: Optional[str] = None


def tls_dir(settings: Settings) -> str:
    """The stable path every configuration names: a link to the current generation."""
    return os.path.join(settings.paths.runtime_dir, layout.STAGED_TLS_DIR)


def plan_paths(settings: Settings, material: TlsMaterial) -> StagedPaths:
    """Return where `stage_material` will put each file. Pure: `render` and `check` use it too."""
    base = tls_dir(settings)
    has_server = material.server is not None
    client_separate = material.client is not None
    mtls = settings.mtls.enabled and has_server
    return StagedPaths(
        server_cert=os.path.join(base, "server.crt") if has_server else None,
        server_key=os.path.join(base, "server.key") if has_server else None,
        ca=os.path.join(base, "ca.crt") if material.ca_pem is not None else None,
        client_cert=(os.path.join(base, "client.crt") if client_separate else os.path.join(base, "server.crt"))
        if mtls else None,
        client_key=(os.path.join(base, "client.key") if client_separate else os.path.join(base, "server.key"))
        if mtls else None,
        extra={var: os.path.join(base, staged_name(var)) for var in material.extra_files},
        crl=os.path.join(base, layout.CRL_FILE) if material.crls else None,
    )


def file_contents(material: TlsMaterial, paths: StagedPaths) -> Dict[str, Tuple[bytes, int]]:
    """Return {staged path: (bytes, mode)} for every file to write, each re-encoded from checked objects."""
    out: Dict[str, Tuple[bytes, int]] = {}
    if material.server is not None and paths.server_cert and paths.server_key:
        out[paths.server_cert] = (chain_pem(material.server.chain), CERT_MODE)
        out[paths.server_key] = (material.server.key_pem, KEY_MODE)
    ca_pem = material.ca_pem
    if ca_pem is not None and paths.ca:
        out[paths.ca] = (ca_pem, CERT_MODE)
    if material.client is not None and paths.client_cert and paths.client_key:
        out[paths.client_cert] = (chain_pem(material.client.chain), CERT_MODE)
        out[paths.client_key] = (material.client.key_pem, KEY_MODE)
    crl = material.crl_pem
    if crl is not None and paths.crl:
        out[paths.crl] = (crl, CERT_MODE)
    for var, staged in material.extra_files.items():
        out[paths.extra[var]] = (staged.data, staged.mode)
    return out


def stage_material(settings: Settings, material: TlsMaterial, uid: int, gid: int) -> StagedPaths:
    """Publish the private copies as one new set; returns their paths. Raises OSError (nothing half-written).

    The runtime directory must exist (boot.dirs makes it).
    """
    paths = plan_paths(settings, material)
    contents = file_contents(material, paths)
    if contents:
        owner = (uid, gid) if os.geteuid() == 0 else None
        files = {os.path.basename(path): entry for path, entry in contents.items()}
        fsops.publish_set(settings.paths.runtime_dir, layout.STAGED_TLS_DIR, files, owner)
    return paths
