"""wsolbench: a plugin-based benchmark for weakly supervised object localization."""

from importlib.metadata import PackageNotFoundError, version

import pluggy

try:
    __version__ = version("wsolbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

#: Marker for plugin hook implementations: ``@wsolbench.hookimpl``.
hookimpl = pluggy.HookimplMarker("wsolbench")

__all__ = ["__version__", "hookimpl"]
