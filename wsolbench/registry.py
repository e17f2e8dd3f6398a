"""Name -> component tables, one per kind, filled by the plugins' ``register_*`` hooks."""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wsolbench.errors import UsageError, WsolbenchError
from wsolbench.plugins import PluginInfo, PluginSet, load_plugins

KINDS = ("backbones", "heads", "methods", "datasets", "hierarchies")
SINGULAR = {kind: kind[:-1] if kind != "hierarchies" else "hierarchy" for kind in KINDS}


class DuplicateComponentError(WsolbenchError):
    """Two plugins registered the same name for the same kind."""


@dataclass(frozen=True)
class Component:
    """A registered component and its provenance."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: PluginInfo

    @property
    def options(self) -> dict[str, Any]:
        """Declared options: the factory's keyword-only parameters and their defaults."""
        return declared_options(self.factory)

    @property
    def option_types(self) -> dict[str, Any]:
        """Declared options' type annotations (evaluated), where the factory gives them."""
        return declared_option_types(self.factory)

    @property
    def summary(self) -> str:
        """First line of the factory's docstring."""
        return (inspect.getdoc(self.factory) or "").split("\n", 1)[0]


def declared_options(factory: Callable[..., Any]) -> dict[str, Any]:
    """The keyword-only parameters (with defaults) of a factory or of a class's ``__init__``."""
    signature = inspect.signature(factory)
    return {
        name: param.default
        for name, param in signature.parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is not inspect.Parameter.empty
    }


def declared_option_types(factory: Callable[..., Any]) -> dict[str, Any]:
    """The annotations of the declared options (missing or unresolvable ones are left out)."""
    try:
        signature = inspect.signature(factory, eval_str=True)
    except (NameError, TypeError):
        return {}
    return {
        name: param.annotation
        for name, param in signature.parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY and param.annotation is not inspect.Parameter.empty
    }


class Registry:
    """All components of all kinds, collected from a :class:`PluginSet`."""

    def __init__(self, plugins: PluginSet):
        self.plugins = plugins
        self._tables: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
        for kind in KINDS:
            hook = getattr(plugins.manager.hook, f"register_{kind}")
            for impl in hook.get_hookimpls():
                info = plugins.info.get(impl.plugin_name) or PluginInfo(impl.plugin_name, "?", "?")
                impl.function(register=functools.partial(self._add, kind, info))

    def _add(self, kind: str, plugin: PluginInfo, name: str, factory: Callable[..., Any]) -> None:
        if name != name.lower() or not name:
            raise WsolbenchError(
                f"plugin {plugin.name!r} registered {SINGULAR[kind]} {name!r}: names must be lowercase"
            )
        table = self._tables[kind]
        if name in table:
            other = table[name].plugin
            raise DuplicateComponentError(
                f"{SINGULAR[kind]} {name!r} is registered twice: by plugin {other.name!r} "
                f"({other.distribution} {other.version}) and by plugin {plugin.name!r} "
                f"({plugin.distribution} {plugin.version}); uninstall or disable one "
                "(WSOLBENCH_DISABLE_PLUGINS=name)"
            )
        table[name] = Component(kind, name, factory, plugin)

    def names(self, kind: str) -> list[str]:
        """Sorted names registered for ``kind``."""
        return sorted(self._tables[kind])

    def components(self, kind: str) -> list[Component]:
        """Registered components of ``kind``, sorted by name."""
        return [self._tables[kind][name] for name in self.names(kind)]

    def get(self, kind: str, name: str) -> Component:
        """Look up a component; an unknown name raises a one-line :class:`UsageError`."""
        if kind not in self._tables:
            raise UsageError(f"unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}")
        table = self._tables[kind]
        key = name.lower()
        if key in table:
            return table[key]
        # Prefixed names such as "timm:resnet18" resolve through their prefix entry ("timm:").
        prefix = key.split(":", 1)[0] + ":"
        if ":" in key and prefix in table:
            return table[prefix]
        close = difflib.get_close_matches(key, table, n=3, cutoff=0.5)
        hint = f" did you mean: {', '.join(close)}?" if close else ""
        available = ", ".join(sorted(table)) or "none registered"
        raise UsageError(
            f"unknown {SINGULAR[kind]} {name!r};{hint} available: {available} (see `wsolbench list {kind}`)"
        )

    def build(self, kind: str, name: str, **options: Any) -> Any:
        """Look up ``name`` and call its factory with ``options``.

        A prefix entry (registered as ``"timm:"``) receives the rest of the name as its
        first argument: ``build("backbones", "timm:resnet18")`` calls ``factory("resnet18")``.
        """
        component = self.get(kind, name)
        if component.name.endswith(":"):
            return component.factory(name.split(":", 1)[1], **options)
        return component.factory(**options)


@functools.cache
def default_registry() -> Registry:
    """The registry of every installed plugin (loaded once per process)."""
    return Registry(load_plugins())
