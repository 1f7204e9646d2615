"""What one verify run was asked for, checked before anything connects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from entrypoint import layout
from entrypoint.errors import Problem

DEFAULT_EXPIRY_DAYS = 30
DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class VerifyOptions:
    """verify's flags, parsed: where to start, what to judge against, how to report."""

    conninfo: str = ""
    mode: Optional[str] = None
    ca: Optional[str] = None
    api_port: int = layout.RESTAPI_PORT
    api_host: Optional[str] = None
    expiry_days: int = DEFAULT_EXPIRY_DAYS
    timeout: float = DEFAULT_TIMEOUT
    output: str = "table"  # table | json | prometheus
    install_view: bool = False

    def problems(self) -> List[Problem]:
        """One Problem per flag out of range."""
        found = []
        if self.expiry_days < 0:
            found.append(Problem("--expiry-days", f"{self.expiry_days} is negative",
                                 "give the days before expiry to report, 0 or more"))
        if self.timeout <= 0:
            found.append(Problem("--timeout", f"{self.timeout:g} is not more than 0 seconds",
                                 "give the seconds each connection and handshake may take, e.g. 5"))
        if not 0 < self.api_port < 65536:
            found.append(Problem("--api-port", f"{self.api_port} is not a TCP port",
                                 "give 1 to 65535 (Patroni's default is 8008)"))
        return found
