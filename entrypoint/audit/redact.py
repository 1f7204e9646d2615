"""Keep passwords out of verify's output: masked where connection strings carry them, and as known values."""

from __future__ import annotations

import re
from typing import Iterable, Set

REDACTED = "<redacted>"

# `password=secret` / `password='se cret'` in a conninfo string, and `user:secret@` in a URI.
_CONNINFO_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']+)", re.IGNORECASE)
_URI_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)", re.IGNORECASE)


class Redactor:
    """Knows the secrets of one run and the values shown on purpose (user, database, host names).

    `scrub` masks every password keyword value and URI password, then each known secret
    value that is not also a value shown on purpose: a password `postgres` must not blank
    `user=postgres` in the report.
    """

    def __init__(self) -> None:
        self.secrets: Set[str] = set()
        self.public: Set[str] = set()

    def secret(self, value: object) -> None:
        if value:
            self.secrets.add(str(value))

    def shown(self, values: Iterable[object]) -> None:
        self.public.update(str(v) for v in values if v)

    def scrub(self, text: str) -> str:
        text = _CONNINFO_PASSWORD.sub(lambda m: m.group(1) + REDACTED, text)
        text = _URI_PASSWORD.sub(lambda m: m.group(1) + REDACTED + m.group(3), text)
        for secret in sorted(self.secrets - self.public, key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text
