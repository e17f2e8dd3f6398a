"""Name -> component tables, one per kind, filled by the plugins' ``register_*`` hooks."""

from __future__ import annotations

import difflib
import functools
import inspect
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pluggy

from wsolbench.errors import UsageError, WsolbenchError
from wsolbench.plugins import PluginFailure, PluginInfo, PluginSet, load_plugins, one_line_error

KINDS = ("backbones", "heads", "methods", "datasets", "hierarchies", "references")
SINGULAR = {kind: {"hierarchies": "hierarchy", "references": "reference"}.get(kind, kind[:-1]) for kind in KINDS}

logger = logging.getLogger("wsolbench")


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
        """First line of the factory's own docstring, else of its module's, else ``""``."""
        return own_docstring(self.factory).split("\n", 1)[0]


def own_docstring(factory: Any) -> str:
    """The docstring ``factory`` itself declares (cleaned), else its module's, else ``""``.

    Unlike :func:`inspect.getdoc`, a class without a docstring does not inherit its base
    class's: a ``Method`` subclass would otherwise be described as "A WSOL method. This
    base class *is* CAM".
    """
    while isinstance(factory, functools.partial):
        factory = factory.func
    if isinstance(factory, type):
        doc = factory.__dict__.get("__doc__")
    elif inspect.isroutine(factory):
        doc = factory.__doc__
    else:  # a callable instance: its class's own docstring
        doc = type(factory).__dict__.get("__doc__")
    if not isinstance(doc, str) or not doc.strip():
        module = sys.modules.get(getattr(factory, "__module__", None) or "")
        doc = getattr(module, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


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
    """All components of all kinds, collected from a :class:`PluginSet`.

    Each plugin registers in isolation: a plugin whose ``register_*`` hook raises (or that
    registers an invalid name) contributes nothing and is listed in :attr:`failures`; the
    other plugins are unaffected. A name registered by two plugins is kept under both, so
    that ``wsolbench plugins`` can show them; using it raises :class:`DuplicateComponentError`.

    Attributes:
        plugins: The plugin set the components come from.
        failures: The plugins that failed to import or to register, in discovery order.
    """

    def __init__(self, plugins: PluginSet):
        self.plugins = plugins
        self.failures: list[PluginFailure] = list(plugins.failures)
        self._tables: dict[str, dict[str, list[Component]]] = {kind: {} for kind in KINDS}
        self._warned = False
        manager = plugins.manager
        for plugin_name, plugin in manager.list_name_plugin():
            info = plugins.info.get(plugin_name) or PluginInfo(plugin_name, "?", "?")
            collected: list[Component] = []
            for kind in KINDS:
                hook = f"register_{kind}"
                impls = [impl for impl in getattr(manager.hook, hook).get_hookimpls() if impl.plugin is plugin]
                try:
                    for impl in impls:
                        _call_hookimpl(impl, register=functools.partial(_collect, collected, kind, info))
                except Exception as error:  # noqa: BLE001 - one plugin's bug must not take down the others
                    self.failures.append(PluginFailure(info, hook, one_line_error(error)))
                    break
            else:
                for component in collected:
                    self._tables[component.kind].setdefault(component.name, []).append(component)

    def warn_failures(self) -> None:
        """Log one warning line per failed plugin, once per registry (stderr unless logging is set up)."""
        if self._warned:
            return
        self._warned = True
        for failure in self.failures:
            logger.warning(
                "wsolbench: warning: %s; its components are unavailable (see `wsolbench plugins`)", failure.describe()
            )

    def names(self, kind: str) -> list[str]:
        """Sorted names registered for ``kind``."""
        return sorted(self._tables[kind])

    def components(self, kind: str) -> list[Component]:
        """Registered components of ``kind``, sorted by name; a duplicated name appears once per plugin."""
        return [component for name in self.names(kind) for component in self._tables[kind][name]]

    def duplicates(self, kind: str) -> dict[str, list[Component]]:
        """The names of ``kind`` registered by more than one plugin, with every registration."""
        return {name: found for name, found in sorted(self._tables[kind].items()) if len(found) > 1}

    def _only(self, kind: str, found: list[Component]) -> Component:
        if len(found) > 1:
            plugins = " and ".join(
                f"plugin {c.plugin.name!r} ({c.plugin.distribution} {c.plugin.version})" for c in found
            )
            raise DuplicateComponentError(
                f"{SINGULAR[kind]} {found[0].name!r} is registered by {plugins}; uninstall or disable one "
                f"(WSOLBENCH_DISABLE_PLUGINS={found[-1].plugin.name})"
            )
        return found[0]

    def get(self, kind: str, name: str) -> Component:
        """Look up a component.

        Raises:
            UsageError: An unknown kind or name (one line, with close matches).
            DuplicateComponentError: ``name`` is registered by several plugins.
        """
        if kind not in self._tables:
            raise UsageError(f"unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}")
        table = self._tables[kind]
        key = name.lower()
        if key in table:
            return self._only(kind, table[key])
        # Prefixed names such as "timm:resnet18" resolve through their prefix entry ("timm:").
        prefix = key.split(":", 1)[0] + ":"
        if ":" in key and prefix in table:
            return self._only(kind, table[prefix])
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


def _call_hookimpl(impl: pluggy.HookImpl, **hook_arguments: Any) -> Any:
    """Call one hook implementation the way pluggy does: with the arguments it names.

    An implementation may take fewer arguments than its hookspec offers (hooks only gain
    keyword arguments; old plugins must keep working), so it gets only those it asks for.
    """
    if impl.hookwrapper or impl.wrapper:  # wrappers wrap other implementations: nothing to register
        return None
    return impl.function(*(hook_arguments[name] for name in impl.argnames))


def _collect(into: list[Component], kind: str, plugin: PluginInfo, name: str, factory: Callable[..., Any]) -> None:
    """The ``register`` callable a plugin receives: check the entry and keep it."""
    if not isinstance(name, str) or not name or name != name.lower():
        raise WsolbenchError(f"it registered {SINGULAR[kind]} {name!r}: names must be non-empty lowercase strings")
    if not callable(factory):
        raise WsolbenchError(f"it registered {SINGULAR[kind]} {name!r} with {factory!r}, which is not callable")
    into.append(Component(kind, name, factory, plugin))


@functools.cache
def _installed_registry() -> Registry:
    return Registry(load_plugins())


def default_registry(*, warn: bool = True) -> Registry:
    """The registry of every installed plugin (loaded once per process).

    Args:
        warn: Log one warning line per plugin that failed to load or register (the first
            time only). ``wsolbench plugins`` and ``list`` pass False: they show failures
            in their output instead.
    """
    registry = _installed_registry()
    if warn:
        registry.warn_failures()
    return registry
