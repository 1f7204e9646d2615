"""Stage private copies of the checked TLS material: readable by the run user, keys by nobody else."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from typing import Mapping, Optional

from entrypoint import layout
from entrypoint.boot.material import TlsMaterial
from entrypoint.boot.settings import Settings
from entrypoint.pki.load import chain_pem

KEY_MODE = 0o600
CERT_MODE = 0o644
DIR_MODE = 0o755


@dataclass(frozen=True)
class StagedPaths:
    """Where the staged copies live. A part the mode does not use is None."""

    server_cert: Optional[str]
    server_key: Optional[str]
    ca: Optional[str]
    client_cert: Optional[str]
    client_key: Optional[str]
    extra: Mapping[str, str] = field(default_factory=dict)  # Patroni TLS file variable -> staged path


def tls_dir(settings: Settings) -> str:
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
        extra={var: os.path.join(base, var.lower() + ".pem") for var in material.extra_files},
    )


def file_contents(material: TlsMaterial, paths: StagedPaths) -> dict:
    """Return {staged path: (bytes, mode)} for every file to write."""
    out: dict = {}
    if material.server is not None:
        out[paths.server_cert] = (chain_pem(material.server.chain), CERT_MODE)
        out[paths.server_key] = (material.server.key_pem, KEY_MODE)
    if material.ca_pem is not None:
        out[paths.ca] = (material.ca_pem, CERT_MODE)
    if material.client is not None and paths.client_cert:
        out[paths.client_cert] = (chain_pem(material.client.chain), CERT_MODE)
        out[paths.client_key] = (material.client.key_pem, KEY_MODE)
    for var, data in material.extra_files.items():
        # Patroni's own TLS files may be keys; keep them all private.
        out[paths.extra[var]] = (data, KEY_MODE)
    return out


def ensure_dir(path: str, uid: int, gid: int, mode: int = DIR_MODE) -> None:
    """Create `path` (and parents) if needed and make it owned by uid:gid with `mode`.

    A directory someone else owns but we may write to (a volume mounted there, say an
    emptyDir) is used as it is: only its owner or root could change its mode.
    """
    if os.path.islink(path):
        if os.geteuid() != 0:
            raise OSError(errno.ELOOP, "is a symbolic link, refusing to follow it", path)
        # Root never follows a link the run user may have planted in its own directory.
        os.unlink(path)
    os.makedirs(path, mode=mode, exist_ok=True)
    if os.geteuid() == 0:
        os.lchown(path, uid, gid)
    elif os.stat(path).st_uid != os.geteuid() and os.access(path, os.W_OK | os.X_OK):
        return
    os.chmod(path, mode)


def write_private_file(path: str, data: bytes, mode: int, uid: int, gid: int) -> None:
    """Atomically replace `path` with `data`.

    The temporary file is created with O_EXCL and its final mode from the first
    instant, so a key is never readable by others, then renamed over the old file, so
    a reader (PostgreSQL on reload) sees either the old or the new file, never half.
    """
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # the umask may have narrowed it; never widened beyond `mode`
            if os.geteuid() == 0:
                os.fchown(handle.fileno(), uid, gid)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def stage_material(settings: Settings, material: TlsMaterial, uid: int, gid: int) -> StagedPaths:
    """Write the private copies; returns their paths. Raises OSError when the runtime dir is not writable."""
    paths = plan_paths(settings, material)
    contents = file_contents(material, paths)
    ensure_dir(settings.paths.runtime_dir, uid, gid)
    if contents:
        ensure_dir(tls_dir(settings), uid, gid)
    for path, (data, mode) in contents.items():
        write_private_file(path, data, mode, uid, gid)
    return paths
