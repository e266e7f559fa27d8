"""The ``payflow`` command.

Each subcommand lives beside the code it drives and registers itself here
through a ``register(subparsers)`` function, so this module stays a dispatcher.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from payflow import __version__

__all__ = ["main"]

# module -> registers one or more subcommands; a module that is not there yet
# (or whose optional dependencies are missing) simply contributes nothing.
_SUBCOMMAND_MODULES = (
    "payflow.provider._cli",
    "payflow.sim._cli",
    "payflow.sim.fit",
    "payflow.sim.tune",
    "payflow.report",
    "payflow.validity",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="payflow",
        description=(
            "Plan payment integrations for failure: simulate slow-provider days, "
            "serve a reference provider, and write a report per strategy."
        ),
    )
    parser.add_argument("--version", action="version", version=f"payflow {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # Only swallow "this subcommand is not installed", never a bug inside it.
            if exc.name is None or not (name.startswith(exc.name) or exc.name in _OPTIONAL):
                raise
            continue
        module.register(subparsers)
    return parser


_OPTIONAL = {"starlette", "uvicorn", "distributed", "dask"}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``payflow`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, LookupError) as exc:
        # Bad input from the command line: one clear line, no traceback.
        print(f"payflow: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
