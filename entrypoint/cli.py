"""The one command-line front door: each product registers its commands; every outcome becomes an exit status."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable, Optional, Sequence

from entrypoint.errors import EXIT_BAD_INPUT, EXIT_BUG, InputError, printable

# Each product registers its own subcommands. A module exposes `register(subparsers) ->
# None`, which adds its parser and sets `func` to a callable taking the parsed args and
# returning the exit status. Modules keep their heavy imports (psycopg, cryptography)
# inside functions so `run` stays cheap to start.
COMMAND_MODULES: tuple[str, ...] = (
    "entrypoint.boot.commands",
    "entrypoint.certs.commands",
    "entrypoint.audit.commands",
    "entrypoint.pooler.commands",
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse argv, run the chosen command and return its exit status.

    Bad input ends in exit 2 with every problem listed; anything else unexpected is a
    bug: one line and exit 1 (PCK_DEBUG=1 shows the traceback), never a traceback for users.
    """
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.func(args) or 0)
    except InputError as err:
        print(err.report(), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug is reported, not dumped
        if os.environ.get("PCK_DEBUG") == "1":
            raise
        print(f"patroni-citus-k8s: internal error: {type(exc).__name__}: {printable(exc)}\n"
              "    this is a bug; run again with PCK_DEBUG=1 for the traceback and report it", file=sys.stderr)
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
