"""The plugin registry: entry-point discovery, provenance, duplicates, broken plugins, unknown names."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import wsolbench
from wsolbench.errors import UsageError
from wsolbench.plugins import PluginInfo, PluginSet, load_plugins, new_plugin_manager
from wsolbench.registry import DuplicateComponentError, Registry, declared_options

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


def test_duplicate_names_name_both_plugins():
    class Other:
        @wsolbench.hookimpl
        def register_methods(self, register):
            register("toy", Toy)

    with pytest.raises(DuplicateComponentError) as info:
        make_registry(("toys", ToyPlugin()), ("others", Other()))
    assert "'toys'" in str(info.value) and "'others'" in str(info.value)


def test_uppercase_names_are_refused():
    class Shouty:
        @wsolbench.hookimpl
        def register_methods(self, register):
            register("CAM", Toy)

    with pytest.raises(wsolbench.errors.WsolbenchError, match="lowercase"):
        make_registry(("shouty", Shouty()))


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
    assert "ImportError: no such thing" in plugins.failures["broken"]
    assert "cam" in Registry(plugins).names("methods")


def test_builtin_components_come_from_entry_points():
    plugins = load_plugins()
    registry = Registry(plugins)
    assert {"cam", "multiloss", "hda", "dda", "danet"} <= set(registry.names("methods"))
    assert {"vgg16", "googlenet", "resnet50"} <= set(registry.names("backbones"))
    assert {"synthetic", "cub", "ilsvrc", "folder"} <= set(registry.names("datasets"))
    assert registry.get("methods", "danet").plugin.distribution == "wsolbench"
    assert plugins.failures == {}


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
    assert sorted(hooks) == sorted(
        f"register_{kind}" for kind in ("backbones", "heads", "methods", "datasets", "hierarchies")
    )
    for name in hooks:
        assert getattr(hookspecs, name).__doc__.strip(), name


def test_example_plugin_source_is_the_documented_one():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    source = (EXAMPLE_PLUGIN / "wsolbench_hideandseek" / "__init__.py").read_text()
    assert textwrap.dedent(source.split('"""\n\n', 1)[1]).strip() in readme


def test_cli_list_warns_about_a_broken_plugin_and_lists_the_rest(tmp_path):
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('no such thing')\n")
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[wsolbench]\nbroken = broken_plugin\n")
    result = run_cli("list", "methods", pythonpath=tmp_path)
    assert result.returncode == 0
    assert "danet" in result.stdout
    assert "plugin 'broken' failed to load (ImportError: no such thing)" in result.stderr
