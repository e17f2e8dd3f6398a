"""The plugin registry: entry-point discovery, provenance, duplicates, broken plugins, unknown names."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pluggy
import pytest

import wsolbench
from wsolbench.cli.list_cmd import format_kind
from wsolbench.cli.plugins_cmd import format_plugins, format_problems
from wsolbench.errors import UsageError
from wsolbench.plugins import PluginFailure, PluginInfo, PluginSet, load_plugins, new_plugin_manager
from wsolbench.registry import KINDS, DuplicateComponentError, Registry, _call_hookimpl, declared_options, own_docstring
from wsolbench.specs import Method

EXAMPLE_PLUGIN = Path(__file__).parent / "example_plugin"


class Toy:
    """A toy method."""

    def __init__(self, *, k: int = 8, lam: float = 0.01):
        self.k, self.lam = k, lam


def make_registry(*plugins: tuple[str, object]) -> Registry:
    """A registry from in-memory plugins (a fresh plugin manager per test)."""
    manager = new_plugin_manager()
    info = {}
    for name, plugin in plugins:
        manager.register(plugin, name=name)
        info[name] = PluginInfo(name, f"dist-{name}", "1.2")
    return Registry(PluginSet(manager, info))


class ToyPlugin:
    @wsolbench.hookimpl
    def register_methods(self, register):
        register("toy", Toy)


def test_lookup_records_provenance_and_options():
    registry = make_registry(("toys", ToyPlugin()))
    component = registry.get("methods", "TOY")
    assert component.factory is Toy
    assert component.plugin == PluginInfo("toys", "dist-toys", "1.2")
    assert component.options == {"k": 8, "lam": 0.01}
    assert component.summary == "A toy method."
    assert registry.build("methods", "toy", k=3).k == 3


def test_unknown_name_is_one_line_with_close_matches():
    registry = make_registry(("toys", ToyPlugin()))
    with pytest.raises(UsageError) as info:
        registry.get("methods", "tyo")
    message = str(info.value)
    assert "\n" not in message
    assert "'tyo'" in message and "did you mean: toy" in message and "wsolbench list methods" in message


def test_empty_kind_says_so():
    registry = make_registry()
    assert registry.names("backbones") == []
    with pytest.raises(UsageError, match="none registered"):
        registry.get("backbones", "vgg16")


class Other:
    @wsolbench.hookimpl
    def register_methods(self, register):
        register("toy", Toy)


def test_duplicate_names_fail_when_used_and_are_listed_under_both_plugins():
    registry = make_registry(("toys", ToyPlugin()), ("others", Other()))
    assert registry.names("methods") == ["toy"]
    assert [c.plugin.name for c in registry.components("methods")] == ["toys", "others"]
    with pytest.raises(DuplicateComponentError) as info:
        registry.get("methods", "toy")
    message = str(info.value)
    assert "\n" not in message
    assert "'toys' (dist-toys 1.2)" in message and "'others' (dist-others 1.2)" in message
    assert "WSOLBENCH_DISABLE_PLUGINS=" in message
    listing = format_plugins(registry)
    assert re.search(r"^toys +dist-toys +1\.2 +method:toy \(duplicate\)$", listing, re.M), listing
    assert re.search(r"^others +dist-others +1\.2 +method:toy \(duplicate\)$", listing, re.M), listing
    assert "method 'toy': plugin 'toys' (dist-toys 1.2), plugin 'others' (dist-others 1.2)" in listing
    assert len(re.findall(r"^toy ", format_kind("methods", registry), re.M)) == 2


class Boom:
    """Registers a backbone, then a method, then raises: none of it may be kept."""

    @wsolbench.hookimpl
    def register_backbones(self, register):
        register("boombone", Toy)

    @wsolbench.hookimpl
    def register_methods(self, register):
        register("partial", Toy)
        raise RuntimeError("boom\nsecond line")


def test_a_plugin_whose_register_hook_raises_is_isolated():
    registry = make_registry(("boom", Boom()), ("toys", ToyPlugin()))
    assert registry.names("methods") == ["toy"]
    assert registry.names("backbones") == []  # the failed plugin keeps nothing, not half its components
    assert registry.failures == [
        PluginFailure(PluginInfo("boom", "dist-boom", "1.2"), "register_methods", "RuntimeError: boom second line")
    ]
    assert registry.failures[0].describe() == (
        "plugin 'boom' (dist-boom 1.2) failed in register_methods (RuntimeError: boom second line)"
    )
    listing = format_plugins(registry)
    assert re.search(r"^boom +dist-boom +1\.2 +FAILED \(register_methods\)$", listing, re.M), listing
    assert re.search(r"^boom +dist-boom 1\.2 +register_methods +RuntimeError: boom second line$", listing, re.M)
    assert "failed plugins" in format_problems(registry)
    with pytest.raises(UsageError, match="unknown method 'partial'"):
        registry.get("methods", "partial")


def test_failures_are_warned_once_on_one_line(caplog):
    registry = make_registry(("boom", Boom()))
    with caplog.at_level("WARNING", logger="wsolbench"):
        registry.warn_failures()
        registry.warn_failures()
    assert [record.getMessage() for record in caplog.records] == [
        "wsolbench: warning: plugin 'boom' (dist-boom 1.2) failed in register_methods (RuntimeError: boom second "
        "line); its components are unavailable (see `wsolbench plugins`)"
    ]


def test_hook_implementations_get_only_the_arguments_they_name():
    class NoArguments:
        @wsolbench.hookimpl
        def register_methods(self):
            """Takes none of the hook's arguments (pluggy allows it)."""

    registry = make_registry(("quiet", NoArguments()), ("toys", ToyPlugin()))
    assert registry.failures == [] and registry.names("methods") == ["toy"]

    # a newer hookspec that gained a keyword argument: old and new implementations both work
    class NewerSpecs:
        @pluggy.HookspecMarker("wsolbench")
        def register_methods(self, register, api_version):
            """Register methods."""

    class Old:
        @wsolbench.hookimpl
        def register_methods(self, register):
            register("old", Toy)

    class New:
        @wsolbench.hookimpl
        def register_methods(self, api_version, register):
            register(f"new{api_version}", Toy)

    manager = pluggy.PluginManager("wsolbench")
    manager.add_hookspecs(NewerSpecs)
    manager.register(Old(), name="old")
    manager.register(New(), name="new")
    seen: list[str] = []
    for impl in manager.hook.register_methods.get_hookimpls():
        _call_hookimpl(impl, register=lambda name, factory: seen.append(name), api_version=2)
    assert sorted(seen) == ["new2", "old"]


def test_bad_registrations_fail_only_their_plugin():
    class Shouty:
        @wsolbench.hookimpl
        def register_methods(self, register):
            register("CAM", Toy)

    class NotCallable:
        @wsolbench.hookimpl
        def register_heads(self, register):
            register("head", 3)

    class WrongCall:
        @wsolbench.hookimpl
        def register_heads(self, register):
            register("head")

    registry = make_registry(("shouty", Shouty()), ("notcallable", NotCallable()), ("wrong", WrongCall()))
    errors = {failure.plugin.name: failure.error for failure in registry.failures}
    assert "registered method 'CAM': names must be non-empty lowercase strings" in errors["shouty"]
    assert "registered head 'head' with 3, which is not callable" in errors["notcallable"]
    assert errors["wrong"].startswith("TypeError: ")
    assert registry.names("methods") == [] and registry.names("heads") == []


class Undocumented(Method):
    def loss(self, outputs, labels):  # pragma: no cover - never called
        return {}


class Documented(Undocumented):
    """An own docstring.

    More text.
    """


def test_summary_is_the_own_docstring_else_the_module_docstring_else_nothing():
    module_first_line = sys.modules[__name__].__doc__.strip().splitlines()[0]
    assert own_docstring(Documented) == "An own docstring.\n\nMore text."
    assert own_docstring(Undocumented).splitlines()[0] == module_first_line  # not Method's "A WSOL method..."
    assert own_docstring(functools.partial(Documented, k=1)).startswith("An own docstring.")
    assert own_docstring(make_registry) == "A registry from in-memory plugins (a fresh plugin manager per test)."
    orphan = type("Orphan", (Method,), {"__module__": "no_such_module_anywhere"})
    assert own_docstring(orphan) == ""

    class Plugin:
        @wsolbench.hookimpl
        def register_methods(self, register):
            register("undocumented", Undocumented)
            register("orphan", orphan)

    registry = make_registry(("p", Plugin()))
    assert registry.get("methods", "undocumented").summary == module_first_line
    assert registry.get("methods", "orphan").summary == ""


def test_prefix_entry_receives_the_rest_of_the_name():
    class Prefix:
        @wsolbench.hookimpl
        def register_backbones(self, register):
            register("timm:", lambda model_name, *, pretrained=False: (model_name, pretrained))

    registry = make_registry(("prefix", Prefix()))
    assert registry.build("backbones", "timm:resnet18", pretrained=True) == ("resnet18", True)


def test_declared_options_are_keyword_only_with_defaults():
    def factory(in_channels, num_classes, k, *, channels=1024, required):
        return None

    assert declared_options(factory) == {"channels": 1024}


def test_broken_plugin_is_reported_and_others_still_load(monkeypatch, tmp_path):
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('no such thing')\n")
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[wsolbench]\nbroken = broken_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins = load_plugins()
    assert plugins.failures == [
        PluginFailure(PluginInfo("broken", "broken-plugin", "0.1"), "import", "ImportError: no such thing")
    ]
    assert "cam" in Registry(plugins).names("methods")


def test_builtin_components_come_from_entry_points():
    plugins = load_plugins()
    registry = Registry(plugins)
    assert {"cam", "multiloss", "hda", "dda", "danet"} <= set(registry.names("methods"))
    assert {"vgg16", "googlenet", "resnet50"} <= set(registry.names("backbones"))
    assert {"synthetic", "cub", "ilsvrc", "folder"} <= set(registry.names("datasets"))
    assert registry.get("methods", "danet").plugin.distribution == "wsolbench"
    assert plugins.failures == [] and registry.failures == []


def test_disable_switch_skips_a_plugin(monkeypatch):
    monkeypatch.setenv("WSOLBENCH_DISABLE_PLUGINS", "danet")
    assert "danet" not in Registry(load_plugins()).names("methods")


@pytest.fixture(scope="module")
def installed_example_plugin(tmp_path_factory) -> Path:
    """The example plugin distribution installed (real metadata) into a private folder."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(EXAMPLE_PLUGIN),
        ],
        check=True,
    )
    return target


def run_cli(*args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {**__import__("os").environ}
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath) + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run([sys.executable, "-m", "wsolbench.cli.main", *args], capture_output=True, text=True, env=env)


def test_third_party_plugin_is_discovered_through_its_entry_point(installed_example_plugin):
    result = run_cli("list", "methods", pythonpath=installed_example_plugin)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("hideandseek"))
    assert "wsolbench-hideandseek 0.3.0" in line
    plugins = run_cli("plugins", pythonpath=installed_example_plugin)
    assert "method:hideandseek" in plugins.stdout


def test_without_the_installed_plugin_it_is_absent():
    result = run_cli("list", "methods")
    assert result.returncode == 0
    assert "hideandseek" not in result.stdout


def test_cli_unknown_method_exits_2_with_one_line():
    result = run_cli("run", "--method", "nosuch", "--backbone", "vgg16")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "'nosuch'" in lines[0] and "wsolbench list methods" in lines[0]


@pytest.mark.parametrize("command", ["list", "plugins", "run", "eval", "table", "show", "sweep"])
def test_every_command_has_help(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0 and "usage: wsolbench" in result.stdout


def test_version():
    result = run_cli("--version")
    assert result.stdout.strip() == f"wsolbench {wsolbench.__version__}"


def test_hookspecs_document_every_hook():
    from wsolbench import hookspecs

    hooks = [name for name in dir(hookspecs) if name.startswith("register_")]
    assert sorted(hooks) == sorted(f"register_{kind}" for kind in KINDS)  # every hook fills one registry table
    for name in hooks:
        assert getattr(hookspecs, name).__doc__.strip(), name


def test_example_plugin_source_is_the_documented_one():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    source = (EXAMPLE_PLUGIN / "wsolbench_hideandseek" / "__init__.py").read_text()
    assert textwrap.dedent(source.split('"""\n\n', 1)[1]).strip() in readme


def write_distribution(folder: Path, module: str, source: str) -> None:
    """A one-module distribution ``broken-plugin 0.1`` with entry point ``broken`` (importable from ``folder``)."""
    (folder / f"{module}.py").write_text(source)
    dist = folder / f"{module}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[wsolbench]\nbroken = {module}\n")


def test_cli_list_shows_a_plugin_that_fails_to_import_and_lists_the_rest(tmp_path):
    write_distribution(tmp_path, "broken_plugin", "raise ImportError('no such thing')\n")
    result = run_cli("list", "methods", pythonpath=tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    assert "danet" in result.stdout
    assert re.search(r"^broken +broken-plugin 0\.1 +import +ImportError: no such thing$", result.stdout, re.M)


RAISING_PLUGIN = """
import wsolbench

@wsolbench.hookimpl
def register_methods(register):
    raise RuntimeError("register_methods is broken")
"""


def test_cli_a_plugin_whose_register_hook_raises(tmp_path):
    write_distribution(tmp_path, "raising_plugin", RAISING_PLUGIN)
    plugins = run_cli("plugins", pythonpath=tmp_path)
    assert plugins.returncode == 0 and plugins.stderr == ""
    assert re.search(r"^broken +broken-plugin +0\.1 +FAILED \(register_methods\)$", plugins.stdout, re.M)
    assert re.search(
        r"^broken +broken-plugin 0\.1 +register_methods +RuntimeError: register_methods is broken$",
        plugins.stdout,
        re.M,
    )
    assert "method:danet" in plugins.stdout
    listing = run_cli("list", "methods", pythonpath=tmp_path)
    assert (
        listing.returncode == 0
        and "danet" in listing.stdout
        and "RuntimeError: register_methods is broken" in listing.stdout
    )
    # another command: one warning line, then the command goes on (here to its own one-line error)
    other = run_cli("run", "--method", "nosuch", pythonpath=tmp_path)
    lines = other.stderr.strip().splitlines()
    assert other.returncode == 2 and len(lines) == 2, other.stderr
    assert lines[0] == (
        "wsolbench: warning: plugin 'broken' (broken-plugin 0.1) failed in register_methods (RuntimeError: "
        "register_methods is broken); its components are unavailable (see `wsolbench plugins`)"
    )
    assert "unknown method 'nosuch'" in lines[1]
