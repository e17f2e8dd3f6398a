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
from wsolbench.errors import WsolbenchError

ENTRY_POINT_GROUP = "wsolbench"


@dataclass(frozen=True)
class PluginInfo:
    """Where a loaded plugin comes from."""

    name: str
    distribution: str
    version: str


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that cannot be used, where it failed and why.

    Attributes:
        plugin: The plugin (entry point name, distribution, version).
        stage: ``"import"`` (loading its module) or the hook that raised (``"register_methods"``).
        error: One line: the exception's type and message.
    """

    plugin: PluginInfo
    stage: str
    error: str

    def describe(self) -> str:
        """One line naming the plugin, its distribution, where it failed and the error."""
        where = "failed to load" if self.stage == "import" else f"failed in {self.stage}"
        return f"plugin {self.plugin.name!r} ({self.plugin.distribution} {self.plugin.version}) {where} ({self.error})"


def one_line_error(error: BaseException) -> str:
    """``"Type: message"`` on one line (a :class:`WsolbenchError` is its message alone)."""
    message = " ".join(str(error).split())
    if isinstance(error, WsolbenchError):
        return message
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


@dataclass
class PluginSet:
    """A plugin manager with every loaded plugin registered, and the plugins that failed to load.

    Attributes:
        manager: The plugin manager; each plugin is registered under its entry point name.
        info: Entry point name -> provenance, for every plugin the manager holds.
        failures: Plugins that could not be imported (they are not in the manager).
    """

    manager: pluggy.PluginManager
    info: dict[str, PluginInfo] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)


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
        if not _selected(entry_point):
            continue
        dist = entry_point.dist
        info = PluginInfo(entry_point.name, dist.name if dist else "?", dist.version if dist else "?")
        if entry_point.name in plugins.info:
            other = plugins.info[entry_point.name]
            plugins.failures.append(
                PluginFailure(
                    info,
                    "import",
                    f"entry point name {entry_point.name!r} is already taken by {other.distribution} "
                    f"{other.version}; uninstall one of the two distributions",
                )
            )
            continue
        try:
            plugins.manager.register(entry_point.load(), name=entry_point.name)
        except Exception as error:  # noqa: BLE001 - any import error of a plugin is reported, not raised
            plugins.failures.append(PluginFailure(info, "import", one_line_error(error)))
            continue
        plugins.info[entry_point.name] = info
    return plugins
