"""``wsolbench plugins``: installed plugins, their versions, what each registers, what failed."""

from __future__ import annotations

import argparse
import sys

from tabulate import tabulate

from wsolbench.registry import KINDS, SINGULAR, Registry, default_registry


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plugins", help="list installed plugins and what each registers")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    registry = default_registry()
    provided: dict[str, list[str]] = {}
    for kind in KINDS:
        for component in registry.components(kind):
            provided.setdefault(component.plugin.name, []).append(f"{SINGULAR[kind]}:{component.name}")
    rows = [
        (info.name, info.distribution, info.version, ", ".join(provided.get(info.name, [])) or "-")
        for info in sorted(registry.plugins.info.values(), key=lambda i: (i.distribution, i.name))
    ]
    print(tabulate(rows, headers=["plugin", "distribution", "version", "registers"], tablefmt="simple"))
    report_failures(registry)
    return 0


def report_failures(registry: Registry) -> None:
    """One stderr line per plugin that failed to import (the others still work)."""
    for name, error in sorted(registry.plugins.failures.items()):
        print(
            f"wsolbench: warning: plugin {name!r} failed to load ({error}); its components are unavailable",
            file=sys.stderr,
        )
