"""Shipped taxonomies (CUB, ImageNet), the YAML hierarchy format and its validation errors."""

from __future__ import annotations

import textwrap
from collections import Counter

import numpy as np
import pytest

from wsolbench import hookimpl
from wsolbench.config import dataset_options, resolve, selected_hierarchy
from wsolbench.errors import UsageError, WsolbenchError
from wsolbench.plugins import PluginSet, load_plugins, new_plugin_manager
from wsolbench.registry import Registry
from wsolbench.specs import Hierarchy
from wsolbench.train import build_dataset
from wsolbench_plugins import hierarchies
from wsolbench_plugins.hierarchies import (
    build_hierarchy,
    cub_hierarchy,
    dataset_hierarchy,
    imagenet_class_names,
    imagenet_hierarchy,
    imagenet_wnids,
    load_hierarchy_yaml,
)


def check_consistent(h: Hierarchy) -> None:
    """Shape, last column, every id used, and each coarse class having exactly one parent."""
    assert h.ancestors.shape == (h.num_classes[-1], h.depth)
    np.testing.assert_array_equal(h.ancestors[:, -1], np.arange(h.num_classes[-1]))
    for level in range(h.depth):
        assert set(h.ancestors[:, level]) == set(range(h.num_classes[level]))
        assert len(set(h.class_names[level])) == h.num_classes[level], "names unique within a level"
    for level in range(1, h.depth):
        parents: dict[int, set[int]] = {}
        for row in h.ancestors:
            parents.setdefault(int(row[level]), set()).add(int(row[level - 1]))
        assert all(len(p) == 1 for p in parents.values())


# --------------------------------------------------------------------------- shipped tables


def test_cub_taxonomy_200_37_11():
    h = cub_hierarchy()
    assert h.level_names == ("order", "family", "species")
    assert h.num_classes == (11, 37, 200)
    check_consistent(h)
    names = h.class_names[-1]
    assert names[0] == "001.Black_footed_Albatross" and names[199] == "200.Common_Yellowthroat"
    cardinal = names.index("017.Cardinal")
    order, family, _ = h.ancestors[cardinal]
    assert h.class_names[1][family] == "Cardinalidae" and h.class_names[0][order] == "Passeriformes"
    passeriformes = h.class_names[0].index("Passeriformes")
    assert int((h.ancestors[:, 0] == passeriformes).sum()) > 100


def test_cub_subset_matching_and_levels():
    h = cub_hierarchy(["045.Northern_Fulmar", "Groove_billed_Ani", "001.Black_footed_Albatross"])
    assert h.class_names == (
        ("Procellariiformes", "Cuculiformes"),
        ("Procellariidae", "Cuculidae", "Diomedeidae"),
        ("045.Northern_Fulmar", "Groove_billed_Ani", "001.Black_footed_Albatross"),
    )
    np.testing.assert_array_equal(h.ancestors, [[0, 0, 0], [1, 1, 1], [0, 2, 2]])
    assert cub_hierarchy(levels="family").num_classes == (37, 200)
    assert cub_hierarchy(levels="").depth == 1
    with pytest.raises(
        WsolbenchError, match=r"class '999.Dodo' has no entry in the shipped CUB taxonomy.*hierarchy=flat"
    ):
        cub_hierarchy(["999.Dodo"], where=["classes.txt:3"])
    with pytest.raises(UsageError, match="unknown level column 'genus'"):
        cub_hierarchy(levels="order,genus")
    with pytest.raises(UsageError, match="do not nest"):
        cub_hierarchy(levels="family,order")


def test_imagenet_hierarchy_1000_classes():
    h = imagenet_hierarchy()
    assert h.level_names == ("group_le100", "group_le10", "class")
    assert h.num_classes == (91, 425, 1000)
    check_consistent(h)
    wnids = imagenet_wnids()
    assert len(set(wnids)) == 1000 and wnids == sorted(wnids)
    assert wnids[0] == "n01440764" and h.class_names[-1][0] == "tench"
    names = imagenet_class_names()
    assert names[134] == "crane (n02012849)" and names[517] == "crane (n03126707)"
    assert len(set(names)) == 1000
    # every group holds at most 10 / 100 classes
    assert max(Counter(h.ancestors[:, 1]).values()) <= 10
    assert max(Counter(h.ancestors[:, 0]).values()) <= 100
    # tench and goldfish share their groups
    assert (h.ancestors[0, :2] == h.ancestors[1, :2]).all()


def test_imagenet_levels_option_and_subset():
    assert imagenet_hierarchy(levels="grandparent_2up,parent_1up").num_classes == (296, 548, 1000)
    with pytest.raises(UsageError, match=r"levels='group_le10,parent_1up' do not nest"):
        imagenet_hierarchy(levels="group_le10,parent_1up")
    with pytest.raises(UsageError, match="unknown level column"):
        imagenet_hierarchy(levels="genus")
    sub = imagenet_hierarchy([0, 1, 2])
    assert sub.num_classes[-1] == 3 and sub.class_names[-1] == ("tench", "goldfish", "great white shark")
    check_consistent(sub)
    with pytest.raises(WsolbenchError, match="not an ImageNet-1k class"):
        imagenet_hierarchy([1000])


def test_registered_hierarchies():
    manager = new_plugin_manager()
    manager.register(hierarchies, name="hierarchies")
    registry = Registry(PluginSet(manager))
    assert registry.names("hierarchies") == ["cub", "imagenet", "yaml"]
    assert registry.build("hierarchies", "cub").num_classes == (11, 37, 200)
    assert registry.build("hierarchies", "imagenet", levels="group_le10").num_classes == (425, 1000)
    assert registry.get("hierarchies", "yaml").options == {"path": ""}
    with pytest.raises(UsageError, match="path=PATH"):
        registry.build("hierarchies", "yaml")


# --------------------------------------------------------------------------- YAML format


def write(tmp_path, text: str, name: str = "h.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


CLASSES = """
levels: [order, family, species]
classes:
  cardinal: [Passeriformes, Cardinalidae]
  blue_jay: [Passeriformes, Corvidae]
  crow: [Passeriformes, Corvidae]
  gull: [Charadriiformes, Laridae]
"""

PARENTS = """
levels: [order, family, species]
parents:
  cardinal: Cardinalidae
  blue_jay: Corvidae
  crow: Corvidae
  gull: Laridae
  Cardinalidae: Passeriformes
  Corvidae: Passeriformes
  Laridae: Charadriiformes
"""


def test_yaml_classes_and_parents_forms_agree(tmp_path):
    a = load_hierarchy_yaml(write(tmp_path, CLASSES, "a.yaml"))
    b = load_hierarchy_yaml(write(tmp_path, PARENTS, "b.yaml"))
    for h in (a, b):
        assert h.level_names == ("order", "family", "species")
        assert h.class_names == (
            ("Passeriformes", "Charadriiformes"),
            ("Cardinalidae", "Corvidae", "Laridae"),
            ("cardinal", "blue_jay", "crow", "gull"),
        )
        np.testing.assert_array_equal(h.ancestors, [[0, 0, 0], [0, 1, 1], [0, 1, 2], [1, 2, 3]])


def test_yaml_with_dataset_classes_order_subset_and_keys(tmp_path):
    path = write(tmp_path, CLASSES)
    h = load_hierarchy_yaml(path, ["gull", "crow"])
    assert h.class_names == (("Charadriiformes", "Passeriformes"), ("Laridae", "Corvidae"), ("gull", "crow"))
    h = load_hierarchy_yaml(path, ["Gull bird"], keys=[("n0000", "gull")])
    assert h.class_names[-1] == ("Gull bird",)
    parents = load_hierarchy_yaml(write(tmp_path, PARENTS, "p.yaml"), ["crow", "cardinal"])
    assert parents.num_classes == (1, 2, 2)


def test_yaml_two_levels_scalar_parent_and_numbers(tmp_path):
    path = write(
        tmp_path,
        """
        levels: [family, species]
        classes:
          1: Corvidae
          2: Laridae
        """,
    )
    h = load_hierarchy_yaml(path, ["1", "2"])
    assert h.class_names == (("Corvidae", "Laridae"), ("1", "2"))


def test_dataset_hierarchy_option(tmp_path):
    flat = dataset_hierarchy("flat", ["a", "b"], lambda: None)
    assert flat.depth == 1 and flat.class_names == (("a", "b"),)
    assert dataset_hierarchy(None, ["a"], lambda: "default") == "default"
    with pytest.raises(UsageError, match=r"hierarchy='nope.yaml': no such file.*'flat'"):
        dataset_hierarchy("nope.yaml", ["a"], lambda: None)
    path = write(tmp_path, CLASSES)
    assert dataset_hierarchy(str(path), ["crow"], lambda: None).num_classes == (1, 1, 1)


BAD_YAMLS = [
    (  # a family under two orders
        """
        levels: [order, family, species]
        classes:
          crow: [Passeriformes, Corvidae]
          raven: [Charadriiformes, Corvidae]
        """,
        r"h\.yaml:4: family 'Corvidae' has two parents at level 'order': 'Passeriformes' \(class 'crow', .*h\.yaml:3\)"
        r" and 'Charadriiformes' \(class 'raven'\); a class must have exactly one parent",
    ),
    (
        """
        levels: [order, family, species]
        parents:
          crow: Corvidae
          Corvidae: Passeriformes
          Passeriformes: Corvidae
        """,
        r"h\.yaml:\d: cycle in parents: (Corvidae -> Passeriformes -> Corvidae|Passeriformes -> Corvidae -> "
        r"Passeriformes)",
    ),
    (
        """
        levels: [order, family, species]
        parents:
          crow: Corvidae
          gull: Laridae
          Corvidae: Passeriformes
        """,
        r"h\.yaml:4: class 'gull' has 1 ancestors \(gull -> Laridae\) but levels .* need 2",
    ),
    (
        """
        levels: [order, family, species]
        classes:
          crow: [Corvidae]
        """,
        r"h\.yaml:3: class 'crow' lists 1 ancestors but levels \['order', 'family', 'species'\] need 2",
    ),
    (
        """
        levels: [order, family, species]
        classes:
          crow: [Passeriformes, Corvidae]
          crow: [Passeriformes, Corvidae]
        """,
        r"h\.yaml:4: duplicate key 'crow' \(first at line 3\)",
    ),
    (
        """
        levels: []
        classes: {crow: []}
        """,
        r"h\.yaml:1: 'levels' must list the level names coarse to fine",
    ),
    (
        """
        levels: [order, order]
        classes: {crow: [Passeriformes]}
        """,
        r"level 'order' is listed twice",
    ),
    (
        """
        levels: [order, species]
        classes: {}
        """,
        r"h\.yaml:2: 'classes' must map each fine class to its ancestors",
    ),
    (
        """
        levels: [order, species]
        classes:
          crow: ['']
        """,
        r"h\.yaml:3: order of class 'crow' is empty",
    ),
    (
        """
        levels: [order, species]
        classes:
          yes: [Passeriformes]
        """,
        r"h\.yaml:3: class True is not a name; write names as strings",
    ),
    (
        """
        levels: [order, species]
        class:
          crow: [Passeriformes]
        """,
        r"h\.yaml:2: unknown key 'class'; allowed keys: levels, classes, parents",
    ),
    (
        """
        levels: [order, species]
        classes: {crow: [Passeriformes]}
        parents: {crow: Passeriformes}
        """,
        r"give exactly one of 'classes' .* or 'parents'",
    ),
    (
        """
        levels: [order, species]
        classes:
          crow: [Passeriformes
        """,
        r"h\.yaml:\d: invalid YAML \(.*\); fix the syntax",
    ),
    (
        """
        levels: [order, species]
        parents:
          crow: [Passeriformes, Corvidae]
        """,
        r"h\.yaml:3: 'crow' has several parents",
    ),
    ("- just a list\n", r"a hierarchy file is a mapping with keys 'levels' and 'classes'"),
]


@pytest.mark.parametrize(("text", "message"), BAD_YAMLS)
def test_bad_yaml_hierarchies(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(WsolbenchError, match=message) as info:
        load_hierarchy_yaml(path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_yaml_class_not_covered(tmp_path):
    path = write(tmp_path, CLASSES)
    with pytest.raises(
        WsolbenchError, match=r"h\.yaml:2: class 'owl' of the dataset has no entry; add it under 'classes'"
    ):
        load_hierarchy_yaml(path, ["crow", "owl"])
    with pytest.raises(WsolbenchError, match=r"missing\.yaml: hierarchy file not found"):
        load_hierarchy_yaml(tmp_path / "missing.yaml")


def test_build_hierarchy_errors():
    where = ["f:1", "f:2"]
    with pytest.raises(WsolbenchError, match=r"f:2: class 'a' is listed twice \(also at f:1\)"):
        build_hierarchy(("c", "f"), ["a", "a"], [("x",), ("x",)], where=where, source="f")
    with pytest.raises(WsolbenchError, match="has no classes"):
        build_hierarchy(("f",), [], [], where=[], source="f")
    with pytest.raises(WsolbenchError, match="has no levels"):
        build_hierarchy((), ["a"], [()], where=["f:1"], source="f")
    with pytest.raises(WsolbenchError, match=r"f:1: class 'a' has an empty 'c'"):
        build_hierarchy(("c", "f"), ["a"], [(None,)], where=["f:1"], source="f")


# --------------------------------------------------------------------------- selecting a hierarchy by name


class Halves:
    """A plugin registering ``halves``: the fine classes of a dataset of ``n`` classes in two groups."""

    @hookimpl
    def register_hierarchies(self, register):
        def halves(*, classes: int = 36) -> Hierarchy:
            fine = [f"c{i}" for i in range(classes)]
            return build_hierarchy(
                ("half", "class"), fine, [(i * 2 // classes,) for i in range(classes)], where=fine, source="halves"
            )

        register("halves", halves)


@pytest.fixture(scope="module")
def with_halves() -> Registry:
    """The installed plugins plus the inline ``halves`` hierarchy plugin."""
    plugins = load_plugins()
    plugins.manager.register(Halves(), name="halves")
    return Registry(plugins)


TINY_SYNTHETIC = ["dataset.num_train=4", "dataset.num_test=4", "dataset.image_size=32"]


def test_dataset_hierarchy_selects_a_registered_hierarchy(with_halves):
    config = resolve(with_halves, sets=[*TINY_SYNTHETIC, "dataset.hierarchy=halves"])
    own = build_dataset(resolve(with_halves, sets=TINY_SYNTHETIC), with_halves, "test")
    dataset = build_dataset(config, with_halves, "test")
    assert own.hierarchy.num_classes == (4, 12, 36)
    assert dataset.hierarchy.level_names == ("half", "class")
    assert dataset.hierarchy.num_classes == (2, 36)
    np.testing.assert_array_equal(dataset.hierarchy.ancestors[:, 0], np.arange(36) // 18)
    assert [dataset[i].label for i in range(4)] == [own[i].label for i in range(4)]
    # options: the mapping form, validated against the hierarchy's own options
    mapping = resolve(
        with_halves, sets=[*TINY_SYNTHETIC, "dataset.hierarchy.name=halves", "dataset.hierarchy.classes=36"]
    )
    assert build_dataset(mapping, with_halves, "train").hierarchy.num_classes == (2, 36)


def test_the_selected_hierarchy_sizes_the_model(with_halves):
    from wsolbench.train import build_parts

    sets = [*TINY_SYNTHETIC, "dataset.hierarchy=halves", "method.name=hda", "backbone.name=tinycnn", "backbone.width=8"]
    parts = build_parts(resolve(with_halves, sets=sets), with_halves)
    assert parts.model.hierarchy.num_classes == (2, 36)
    assert {parts.model.hierarchy.num_classes[spec.label_level] for spec in parts.model.head_specs} == {2, 36}


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["dataset.hierarchy=halfs"], r"dataset.hierarchy: unknown hierarchy 'halfs'; did you mean: halves\?"),
        (["dataset.hierarchy.name=nosuch"], r"dataset.hierarchy: unknown hierarchy 'nosuch'"),
        (["dataset.hierarchy.name=halves", "dataset.hierarchy.size=3"], r"unknown config key 'dataset.hierarchy.size'"),
        (
            ["dataset.hierarchy.name=halves", "dataset.hierarchy.classes=x"],
            r"'dataset.hierarchy.classes' must be of type int",
        ),
    ],
)
def test_bad_hierarchy_selections_are_one_line_errors(with_halves, sets, message):
    with pytest.raises(UsageError, match=message) as info:
        resolve(with_halves, sets=[*TINY_SYNTHETIC, *sets])
    assert "\n" not in str(info.value)


def test_a_hierarchy_of_other_classes_is_refused_when_the_dataset_is_built(with_halves):
    for sets, fine in (
        (["dataset.hierarchy=cub"], 200),
        (["dataset.hierarchy.name=halves", "dataset.hierarchy.classes=10"], 10),
    ):
        config = resolve(with_halves, sets=[*TINY_SYNTHETIC, *sets])
        with pytest.raises(UsageError) as info:
            build_dataset(config, with_halves, "train")
        message = str(info.value)
        assert f"has {fine} fine classes" in message and "dataset 'synthetic' has 36" in message and "\n" not in message


def test_a_dataset_keeps_its_own_hierarchy_option(with_halves):
    config = resolve(with_halves, sets=["dataset.name=cub", "dataset.root=/data/cub", "dataset.hierarchy=flat"])
    assert selected_hierarchy(config["dataset"], with_halves) is None
    assert dataset_options(config, with_halves)["hierarchy"] == "flat"
    chosen = resolve(with_halves, sets=["dataset.name=cub", "dataset.root=/data/cub", "dataset.hierarchy=cub"])
    assert selected_hierarchy(chosen["dataset"], with_halves) == ("cub", {})
    assert "hierarchy" not in dataset_options(chosen, with_halves)
