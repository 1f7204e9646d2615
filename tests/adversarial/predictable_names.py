"""`python -m tests.adversarial.predictable_names run ...`: the real entrypoint, with temporary names made predictable.

fsops picks temporary names with secrets.token_hex, which no one can guess. To plant something
at exactly the names the watcher will try (the worst case: an attacker who could guess them),
this wrapper makes them a counter, tls.000000000000, .link-000000000001, ..., shared by the
process and the watcher it forks. Nothing else changes.
"""

from __future__ import annotations

import itertools
import secrets
import sys

from entrypoint import cli

_counter = itertools.count()


def _token_hex(nbytes: int = 32) -> str:
    return f"{next(_counter):0{2 * nbytes}x}"


secrets.token_hex = _token_hex

if __name__ == "__main__":
    sys.exit(cli.main())
