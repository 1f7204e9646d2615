"""THE table of libpq sslmodes and TLS protocol versions: order, and what each mode asks of servers and clients.

Every other module (the boot pipeline, the audit, the golden cases, the chart's contract
test) reads these rows instead of keeping its own list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class Mode:
    """One sslmode and what it means for every internal link.

    `server_ssl`: "off", "if-certs" (on when a certificate is mounted) or "on".
    `requires_tls`: plaintext is refused (pg_hba `hostnossl ... reject`), certificate and key needed.
    `verifies_ca`: the peer's chain is checked against the root certificate (needs the CA).
    `verifies_host`: the peer's certificate must also cover the host name used.
    `plaintext_first`: libpq tries a plaintext connection before TLS.
    """

    name: str
    rank: int
    server_ssl: str
    requires_tls: bool
    verifies_ca: bool
    verifies_host: bool
    plaintext_first: bool = False

    @property
    def uses_tls(self) -> bool:
        """True when the server must or may serve TLS (every mode but disable)."""
        return self.server_ssl != "off"

    def __str__(self) -> str:
        return self.name


MODES: Tuple[Mode, ...] = (
    Mode("disable", 0, "off", requires_tls=False, verifies_ca=False, verifies_host=False),
    Mode("allow", 1, "if-certs", requires_tls=False, verifies_ca=False, verifies_host=False, plaintext_first=True),
    Mode("prefer", 2, "if-certs", requires_tls=False, verifies_ca=False, verifies_host=False),
    Mode("require", 3, "on", requires_tls=True, verifies_ca=False, verifies_host=False),
    Mode("verify-ca", 4, "on", requires_tls=True, verifies_ca=True, verifies_host=False),
    Mode("verify-full", 5, "on", requires_tls=True, verifies_ca=True, verifies_host=True),
)
NAMES: Tuple[str, ...] = tuple(m.name for m in MODES)
DEFAULT = "prefer"
_BY_NAME = {m.name: m for m in MODES}

# ssl_min_protocol_version values the product offers, and the ones it reports as too old.
TLS_VERSIONS: Tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
DEFAULT_TLS_VERSION = "TLSv1.2"
OLD_PROTOCOLS: Tuple[str, ...] = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1")


def parse(name: str) -> Optional[Mode]:
    """The Mode called `name`, or None when it is not one of NAMES."""
    return _BY_NAME.get(name)


def get(name: str) -> Mode:
    """The Mode called `name`; raises KeyError for an unknown name."""
    return _BY_NAME[name]


def rank(name: str) -> int:
    """Position of `name` from weakest (0) up; an unknown name ranks above every mode."""
    mode = _BY_NAME.get(name)
    return mode.rank if mode else len(MODES)


def with_tls_required() -> Tuple[str, ...]:
    """The names of the modes that refuse plaintext (require and up)."""
    return tuple(m.name for m in MODES if m.requires_tls)
