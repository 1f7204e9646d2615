"""The one error vocabulary: a Problem says where, what and the fix; InputError carries them all; exit codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List

EXIT_OK = 0
EXIT_FINDINGS = 1  # verify found something; also the status of a bug (an internal error)
EXIT_BUG = 1
EXIT_BAD_INPUT = 2

# C0 controls (but tab), DEL and C1 controls: a certificate field or a file name holding
# them could forge log lines or drive a terminal, so messages show them escaped.
_CONTROL = {c: f"\\x{c:02x}" for c in list(range(0x00, 0x09)) + list(range(0x0a, 0x20)) + list(range(0x7f, 0xa0))}
_CONTROL.update({0x0a: "\\n", 0x0d: "\\r"})
_CONTROL.update({c: f"\\u{c:04x}" for c in (0x2028, 0x2029, 0x202e)})
# Lone surrogates: os.environ and os.listdir turn bytes that are not UTF-8 into U+DC80..U+DCFF.
# A strict UTF-8 stream cannot encode them (printing one was an internal error): show the byte.
_CONTROL.update({c: f"\\u{c:04x}" for c in range(0xD800, 0xE000)})
_CONTROL.update({0xDC00 + b: f"\\x{b:02x}" for b in range(0x80, 0x100)})


def printable(text: object) -> str:
    """`text` with control characters escaped (\\n, \\x1b, ...), undecodable bytes as \\xNN: one safe log line."""
    return str(text).translate(_CONTROL)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the inputs.

    `where` names the variable, option or file, `what` says what is wrong with it and
    `fix` says what the operator should change.
    """

    where: str
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{printable(self.where)}: {printable(self.what)}\n    fix: {printable(self.fix)}"


class InputError(Exception):
    """Bad input: the command stops before anything is written or started (exit 2).

    `outcome` finishes the headline: what did not happen because of the problems.
    """

    def __init__(self, problems: Iterable[Problem], command: str = "patroni-citus-k8s",
                 outcome: str = "nothing was started") -> None:
        self.problems = tuple(problems)
        self.command = command
        self.outcome = outcome
        super().__init__(self.report())

    def report(self) -> str:
        """Return every problem, one block each, ready for stderr."""
        count = len(self.problems)
        head = (f"{self.command}: {count} problem{'s' if count != 1 else ''} with the inputs, "
                f"{self.outcome}:")
        return "\n".join([head] + [f"  - {p}" for p in self.problems])


class Collector:
    """Gathers problems so a stage can report all of them together, not one per run."""

    def __init__(self) -> None:
        self.problems: List[Problem] = []

    def add(self, where: str, what: str, fix: str) -> None:
        self.problems.append(Problem(where, what, fix))

    def has(self, where: str) -> bool:
        """Whether a problem about `where` was recorded already (so a second, derived one is not)."""
        return any(p.where == where for p in self.problems)

    def extend(self, problems: Iterable[Problem]) -> None:
        self.problems.extend(problems)

    def raise_if_any(self, command: str = "patroni-citus-k8s", outcome: str = "nothing was started") -> None:
        if self.problems:
            raise InputError(self.problems, command, outcome)
