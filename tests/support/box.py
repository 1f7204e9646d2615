"""A throwaway world for one entrypoint command: a Secret-like cert dir, runtime/socket/data dirs, a stub Patroni.

Shared by the CLI error tests (tests/unit/boot/test_cli_errors.py) and the adversarial suite
(tests/adversarial), which adds a kubelet-like mount on top.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Dict, Optional, Tuple

REPO = Path(__file__).resolve().parents[2]
NODE = "demo-0-0.demo.ns.svc.cluster.local"


@dataclass
class CommandBox:
    root: Path

    # Where the stub Patroni leaves its mark, under root; the passwords the environment carries
    # (each suite its own, so a leak names the suite); variables a suite adds to every command.
    MARKER: ClassVar[str] = "exec-marker"
    PASSWORDS: ClassVar[Tuple[str, str]] = ("su-Box-Secret-1", "repl-Box-Secret-2")
    EXTRA_ENV: ClassVar[Dict[str, str]] = {}

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def runtime(self) -> Path:
        return self.root / "run"

    @property
    def data(self) -> Path:
        return self.root / "data" / "pgdata"

    @property
    def sock(self) -> Path:
        return self.root / "sock"

    @property
    def marker(self) -> Path:
        return self.root / self.MARKER

    @property
    def stub(self) -> Path:
        return self.root / "bin" / "stub-patroni"

    def env(self, **changes: Optional[str]) -> dict:
        """A member's environment at verify-full pointing into the box; a change of None unsets the variable."""
        env = {
            "PATH": f"{self.root / 'bin'}:/usr/bin:/bin",
            "PYTHONPATH": str(REPO),
            **self.EXTRA_ENV,
            "PGSSLMODE": "verify-full",
            "PCK_CERT_DIR": str(self.certs),
            "PCK_RUNTIME_DIR": str(self.runtime),
            "PCK_SOCKET_DIR": str(self.sock),
            "PATRONI_POSTGRESQL_DATA_DIR": str(self.data),
            "PATRONI_SCOPE": "demo",
            "PATRONI_NAME": "demo-0-0",
            "PATRONI_POSTGRESQL_CONNECT_ADDRESS": f"{NODE}:5432",
            "PATRONI_SUPERUSER_PASSWORD": self.PASSWORDS[0],
            "PATRONI_REPLICATION_PASSWORD": self.PASSWORDS[1],
        }
        env.update(changes)
        return {k: v for k, v in env.items() if v is not None}

    def traces(self) -> list:
        """Whatever a command left behind: runtime dir, data dir (or its parent), socket dir, the exec marker.

        A dangling link counts too (os.path.lexists): a command must not leave one either.
        """
        return [p.name for p in (self.runtime, self.data.parent, self.sock, self.marker) if os.path.lexists(p)]
