"""The end of a rolling change to TLS: once every peer serves TLS, tighten this member's client links, no restart.

Run by the watcher while `Settings.transitional` (PCK_TLS_UPGRADE with a mode that refuses
plaintext). When boot.peers says every peer serves TLS the mode accepts, the configuration
is rendered again with the links at the mode itself, written atomically, and Patroni gets
SIGHUP: it rewrites primary_conninfo (PostgreSQL 13+ reloads it) and citus.node_conninfo,
both reloadable, so nothing restarts and no connection is dropped but the replication
stream, which reconnects at the new mode.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

from entrypoint.boot import fsops, peers
from entrypoint.boot.render import build_config, render_yaml
from entrypoint.boot.settings import Settings
from entrypoint.boot.stage import StagedPaths

CONFIG_MODE = 0o600
EVERY_SECONDS = 2.0


class Tightener:
    """Asks at most every EVERY_SECONDS whether the transition may end, and ends it once. `step` never raises."""

    def __init__(self, settings: Settings, paths: StagedPaths, uid: int, gid: int,
                 reload: Callable[[], None], log: Callable[[str], None]) -> None:
        self.settings, self.paths = settings, paths
        self.owner = (uid, gid) if os.geteuid() == 0 else None
        self.reload, self.log = reload, log
        self.done = not settings.transitional
        self.last_reason: Optional[str] = None
        self.next_look = 0.0

    def step(self) -> bool:
        """Returns True once tightened."""
        if self.done or time.monotonic() < self.next_look:
            return self.done
        self.next_look = time.monotonic() + EVERY_SECONDS
        try:
            ready, reason = peers.all_serve_tls(self.settings, self.paths)
            if not ready:
                if reason != self.last_reason:
                    self.log(f"transitional: client links stay at sslmode=prefer: {reason}")
                    self.last_reason = reason
                return False
            strict = self.settings.tightened()
            text = render_yaml(build_config(strict, self.paths), strict)
            fsops.write_file(self.settings.paths.config_file, text.encode(), CONFIG_MODE, self.owner)
        except Exception as exc:  # noqa: BLE001 - the transition keeps going; the next look tries again
            self.log(f"transitional: could not tighten yet: {type(exc).__name__}: {exc}")
            return False
        self.done = True
        self.log(f"{reason}: client links tightened to sslmode={self.settings.mode} (configuration reloaded)")
        self.reload()
        return True
