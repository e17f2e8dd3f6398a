"""Plugin discovery: every plugin, built-in or third-party, comes from the entry-point group.

``WSOLBENCH_DISABLE_PLUGINS=a,b`` skips the named entry points (to bisect a broken
install); ``WSOLBENCH_LOAD_PLUGINS=a,b`` loads only those.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

import pluggy

from wsolbench import hookspecs

ENTRY_POINT_GROUP = "wsolbench"


@dataclass(frozen=True)
class PluginInfo:
    """Where a loaded plugin comes from."""

    name: str
    distribution: str
    version: str


@dataclass
class PluginSet:
    """A plugin manager with every discovered plugin registered, and what failed to load."""

    manager: pluggy.PluginManager
    info: dict[str, PluginInfo] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def new_plugin_manager() -> pluggy.PluginManager:
    """An empty plugin manager that knows wsolbench's hooks."""
    manager = pluggy.PluginManager("wsolbench")
    manager.add_hookspecs(hookspecs)
    return manager


def _selected(entry_point: EntryPoint) -> bool:
    only = os.environ.get("WSOLBENCH_LOAD_PLUGINS")
    if only is not None:
        return entry_point.name in only.split(",")
    return entry_point.name not in os.environ.get("WSOLBENCH_DISABLE_PLUGINS", "").split(",")


def load_plugins() -> PluginSet:
    """Load every entry point of group ``wsolbench``; a plugin that fails is recorded, not fatal."""
    plugins = PluginSet(new_plugin_manager())
    for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        if not _selected(entry_point) or entry_point.name in plugins.info:
            continue
        dist = entry_point.dist
        info = PluginInfo(entry_point.name, dist.name if dist else "?", dist.version if dist else "?")
        try:
            plugins.manager.register(entry_point.load(), name=entry_point.name)
        except Exception as error:  # noqa: BLE001 - any import error of a plugin is reported, not raised
            plugins.failures[entry_point.name] = f"{type(error).__name__}: {error}"
            continue
        plugins.info[entry_point.name] = info
    return plugins
