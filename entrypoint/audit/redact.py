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
            text = self._replace_outside_shown(text, secret)
        return text

    def _replace_outside_shown(self, text: str, secret: str) -> str:
        """Replace `secret` wherever it is not part of a value shown on purpose (`gres` inside `postgres`)."""
        shown = [(m.start(), m.end()) for value in self.public if secret in value
                 for m in re.finditer(re.escape(value), text)]
        out, start = [], 0
        for m in re.finditer(re.escape(secret), text):
            if any(a <= m.start() and m.end() <= b for a, b in shown):
                continue
            out += [text[start:m.start()], REDACTED]
            start = m.end()
        return "".join(out) + text[start:]
