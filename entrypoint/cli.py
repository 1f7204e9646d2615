"""The command-line entry: builds the parser from the command modules and returns their exit status."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

# Subcommands that live in their own modules. Each module exposes
# `register(subparsers) -> None`, which adds its parser and sets `func` to a callable
# taking the parsed args and returning the exit status. Modules keep their heavy imports
# (psycopg, cryptography) inside functions so `run` stays cheap to start.
COMMAND_MODULES: tuple[str, ...] = (
    "entrypoint.commands",
    "entrypoint.certtool",
    "entrypoint.verify",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="patroni-citus-k8s",
        description="TLS-correct bootstrap for Patroni + Citus on Kubernetes.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        register: Callable[[argparse._SubParsersAction], None] = importlib.import_module(name).register
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse argv, run the chosen command and return its exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(args_list)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
