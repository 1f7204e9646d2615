"""What one verify run was asked for, checked before anything connects or listens."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

from entrypoint import layout
from entrypoint.errors import Problem

DEFAULT_EXPIRY_DAYS = 30
DEFAULT_TIMEOUT = 5.0
DEFAULT_INTERVAL = 30.0
MAX_INTERVAL = 86400.0
# Without --serve one observation may take this many --timeout's (60 s by default) before
# the members still unanswered are reported as timed out; with --serve it is --interval.
BUDGET_TIMEOUTS = 12
EXAMPLE_LISTEN = "0.0.0.0:9810"

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]{2,45}$")


def parse_listen(value: str) -> Optional[Tuple[str, int]]:
    """(host, port) from `HOST:PORT` or `[IPv6]:PORT`; None when it is neither."""
    match = re.fullmatch(r"\[([^\]]*)\]:([0-9]{1,5})|([^:\[\]]+):([0-9]{1,5})", value)
    if not match:
        return None
    v6, v6_port, host, port = match.groups()
    name, number = (v6, v6_port) if v6 is not None else (host, port)
    if not (_IPV6.match(name) if v6 is not None else _HOSTNAME.match(name)):
        return None
    return (name, int(number)) if 0 < int(number) < 65536 else None


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
    output: str = "table"  # table | json | prometheus | serve
    install_view: bool = False
    serve: Optional[str] = None  # HOST:PORT to serve /metrics and /healthz on
    interval: Optional[float] = None  # seconds between observations with --serve (None: not given)
    secret_dir: Optional[str] = None  # where the certificate Secret is mounted (None: not given)
    crl: Optional[str] = None  # --crl: the CRL file to judge revocation against (None: not given)
    poolers: tuple = ()  # HOST:PORT of each pooler to audit too (--pooler)

    @property
    def listen(self) -> Tuple[str, int]:
        """The parsed --serve address; only valid when problems() found none."""
        parsed = parse_listen(self.serve or "")
        assert parsed is not None
        return parsed

    @property
    def every(self) -> float:
        """Seconds between two observations with --serve."""
        return DEFAULT_INTERVAL if self.interval is None else self.interval

    @property
    def budget(self) -> float:
        """Seconds one whole observation may take."""
        return self.every if self.serve is not None else BUDGET_TIMEOUTS * self.timeout

    @property
    def secret_directory(self) -> str:
        """--secret-dir, else the directory the entrypoint reads the Secret from."""
        return self.secret_dir if self.secret_dir is not None else layout.CERT_DIR

    def problems(self) -> List[Problem]:
        """One Problem per flag out of range or flags that do not go together."""
        found = []
        if self.expiry_days < 0:
            found.append(Problem("--expiry-days", f"{self.expiry_days} is negative",
                                 "give the days before expiry to report, 0 or more"))
        if not self.timeout > 0:
            found.append(Problem("--timeout", f"{self.timeout:g} is not more than 0 seconds",
                                 "give the seconds each connection and handshake may take, e.g. 5"))
        elif not self.timeout <= MAX_INTERVAL:
            found.append(Problem("--timeout", f"{self.timeout:g} is more than {MAX_INTERVAL:g} seconds",
                                 "give the seconds each connection and handshake may take, e.g. 5"))
        if not 0 < self.api_port < 65536:
            found.append(Problem("--api-port", f"{self.api_port} is not a TCP port",
                                 "give 1 to 65535 (Patroni's default is 8008)"))
        if self.crl is not None and not self.crl.strip():
            found.append(Problem("--crl", "is empty", "give the PEM file with the CRLs (the Secret's ca.crl)"))
        for pooler in self.poolers:
            if parse_listen(pooler) is None:
                found.append(Problem("--pooler", f"{pooler!r} is not HOST:PORT",
                                     "give the name clients reach the pooler by and its port, e.g. "
                                     "citusdemo-pooler.default.svc.cluster.local:6432"))
        if self.secret_dir is not None and not self.secret_dir.strip():
            found.append(Problem("--secret-dir", "is empty", "give the directory the certificate Secret is "
                                                             f"mounted at (default {layout.CERT_DIR})"))
        return found + self._serve_problems()

    def _serve_problems(self) -> List[Problem]:
        found = []
        if self.serve is None:
            if self.interval is not None:
                found.append(Problem("--interval", "only means something with --serve",
                                     f"add --serve HOST:PORT (e.g. {EXAMPLE_LISTEN}), or drop --interval"))
            return found
        if parse_listen(self.serve) is None:
            found.append(Problem("--serve", f"{self.serve!r} is not HOST:PORT",
                                 f"give an address and a port 1-65535, e.g. {EXAMPLE_LISTEN}, 127.0.0.1:9810 "
                                 "or [::]:9810"))
        if self.interval is not None and not 1 <= self.interval <= MAX_INTERVAL:
            found.append(Problem("--interval", f"{self.interval:g} is not between 1 and {MAX_INTERVAL:g} seconds",
                                 "give the seconds between observations, e.g. 30 (the default)"))
        if self.install_view:
            found.append(Problem("--install-view", "is a one-time change and does not go with --serve",
                                 "run verify --install-view once, then start verify --serve"))
        return found
