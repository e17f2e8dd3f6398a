"""``wsolbench list [KIND]``: registered components by kind, with the plugin providing each."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from wsolbench.cli.plugins_cmd import format_problems
from wsolbench.registry import KINDS, Registry, default_registry


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("list", help="list registered backbones, heads, methods, datasets, hierarchies")
    parser.add_argument("kind", nargs="?", choices=KINDS, help="only this kind (default: all)")
    parser.set_defaults(handler=run)


def format_kind(kind: str, registry: Registry | None = None) -> str:
    """A table of one kind's components: name, plugin, distribution, summary (a duplicated name once per plugin)."""
    components = (registry or default_registry(warn=False)).components(kind)
    if not components:
        return f"{kind}: the registry is empty (no installed plugin registers {kind})"
    rows = [(c.name, c.plugin.name, f"{c.plugin.distribution} {c.plugin.version}", c.summary) for c in components]
    return f"{kind}:\n" + tabulate(rows, headers=["name", "plugin", "distribution", "description"], tablefmt="simple")


def run(args: argparse.Namespace) -> int:
    registry = default_registry(warn=False)
    kinds = [args.kind] if args.kind else list(KINDS)
    problems = format_problems(registry)
    print("\n\n".join([*(format_kind(kind, registry) for kind in kinds), *([problems] if problems else [])]))
    return 0
