"""Problems with the inputs: what is wrong, where, and how to fix it, reported all at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the inputs.

    `where` names the variable or file, `what` says what is wrong with it and `fix`
    says what the operator should change.
    """

    where: str
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}\n    fix: {self.fix}"


class InputError(Exception):
    """Bad input: the process must stop before anything is written or started (exit 2)."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__(self.report())

    def report(self) -> str:
        """Return every problem, one block each, ready for stderr."""
        count = len(self.problems)
        head = f"patroni-citus-k8s: {count} problem{'s' if count != 1 else ''} with the inputs, nothing was started:"
        return "\n".join([head] + [f"  - {p}" for p in self.problems])


class Collector:
    """Gathers problems so a stage can report all of them together, not one per run."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, where: str, what: str, fix: str) -> None:
        self.problems.append(Problem(where, what, fix))

    def raise_if_any(self) -> None:
        if self.problems:
            raise InputError(self.problems)
