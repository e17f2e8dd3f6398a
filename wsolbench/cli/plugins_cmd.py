"""``wsolbench plugins``: installed plugins, their versions, what each registers, what failed."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from wsolbench.registry import KINDS, SINGULAR, Registry, default_registry


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plugins", help="list installed plugins and what each registers")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    print(format_plugins(default_registry(warn=False)))
    return 0


def format_plugins(registry: Registry) -> str:
    """A table of the plugins (loaded or failed) and what each registers, then any problems."""
    provided: dict[str, list[str]] = {}
    for kind in KINDS:
        duplicated = registry.duplicates(kind)
        for component in registry.components(kind):
            mark = " (duplicate)" if component.name in duplicated else ""
            provided.setdefault(component.plugin.name, []).append(f"{SINGULAR[kind]}:{component.name}{mark}")
    failed_in = {f.plugin.name: f.stage for f in registry.failures if f.stage != "import"}
    rows = [
        (info.name, info.distribution, info.version, _registers(provided.get(info.name, []), failed_in.get(info.name)))
        for info in registry.plugins.info.values()
    ]
    rows += [
        (f.plugin.name, f.plugin.distribution, f.plugin.version, "FAILED (import)") for f in registry.plugins.failures
    ]
    rows.sort(key=lambda row: (row[1], row[0]))
    table = tabulate(rows, headers=["plugin", "distribution", "version", "registers"], tablefmt="simple")
    problems = format_problems(registry)
    return f"{table}\n\n{problems}" if problems else table


def _registers(names: list[str], failed_in: str | None) -> str:
    if failed_in:
        return f"FAILED ({failed_in})"
    return ", ".join(names) or "-"


def format_problems(registry: Registry) -> str:
    """The failed plugins (plugin, distribution, error on one line each) and the duplicated names; ``""`` if none."""
    blocks = []
    if registry.failures:
        rows = [
            (f.plugin.name, f"{f.plugin.distribution} {f.plugin.version}", f.stage, f.error) for f in registry.failures
        ]
        blocks.append(
            "failed plugins (their components are unavailable; fix or uninstall them, or skip them with "
            "WSOLBENCH_DISABLE_PLUGINS=name):\n"
            + tabulate(rows, headers=["plugin", "distribution", "failed in", "error"], tablefmt="simple")
        )
    duplicates = [
        f"{SINGULAR[kind]} {name!r}: "
        + ", ".join(f"plugin {c.plugin.name!r} ({c.plugin.distribution} {c.plugin.version})" for c in found)
        for kind in KINDS
        for name, found in registry.duplicates(kind).items()
    ]
    if duplicates:
        blocks.append(
            "names registered twice (unusable until one plugin is uninstalled or disabled with "
            "WSOLBENCH_DISABLE_PLUGINS=name):\n" + "\n".join(duplicates)
        )
    return "\n\n".join(blocks)
