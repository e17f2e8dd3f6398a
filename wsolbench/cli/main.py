"""Entry point of the ``wsolbench`` command: parses arguments and dispatches to a command."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

from wsolbench import __version__
from wsolbench.errors import WsolbenchError

COMMANDS = ("list", "plugins", "run", "eval", "table", "show", "sweep", "search")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="wsolbench",
        description="Weakly supervised object localization benchmark: train, evaluate and compare WSOL methods.",
    )
    parser.add_argument("--version", action="version", version=f"wsolbench {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"wsolbench.cli.{name}_cmd")
        module.add_parser(subparsers)
    return parser


def one_line_warnings(command: str):
    """A ``warnings.showwarning`` that prints ``wsolbench <command>: warning: <message>`` on one line."""

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001 - showwarning's signature
        text = " ".join(str(message).split())
        print(f"wsolbench {command}: warning: {text}", file=file or sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; user errors print one line and exit non-zero (2 for usage), warnings one line."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line_warnings(args.command)
            return args.handler(args) or 0
    except WsolbenchError as error:
        print(f"wsolbench {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"wsolbench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
