"""Every extension point of wsolbench, one hook per component kind.

A plugin is a module (or object) with functions decorated by ``@wsolbench.hookimpl``
whose names are the hooks below. Each hook receives a ``register`` callable; the
plugin calls ``register(name, factory)`` once per component it provides. ``name`` is the
lowercase string users type (``wsolbench run --method danet``). The factory's
keyword-only parameters with defaults are the component's declared options: they are
what ``--set method.k=4`` or a YAML config may set, and nothing else is accepted.

Plugins are discovered through the package entry-point group ``wsolbench``::

    [project.entry-points.wsolbench]
    my_plugin = "my_package.my_module"

Hooks only ever gain keyword arguments, so old plugins keep working.
"""

import pluggy

hookspec = pluggy.HookspecMarker("wsolbench")


@hookspec
def register_backbones(register):
    """Register backbones: ``register(name, factory)``.

    ``factory(*, pretrained=False, **options)`` returns a :class:`wsolbench.specs.Backbone`,
    an ``nn.Module`` whose forward gives one feature map per level (shallow to deep) and
    whose ``feature_info`` lists those levels' names, channels and strides.
    """


@hookspec
def register_heads(register):
    """Register heads: ``register(name, factory)``.

    ``factory(in_channels, num_classes, k, **options)`` returns an ``nn.Module`` mapping a
    feature map ``(B, in_channels, h, w)`` to raw maps ``(B, num_classes, k, h, w)``.
    """


@hookspec
def register_methods(register):
    """Register WSOL methods: ``register(name, method_class)``.

    The class subclasses :class:`wsolbench.specs.Method`: it chooses which feature levels
    get heads and with which label level, its training losses (the regularizers), and how
    the per-level maps are fused into one localization map at test time.
    """


@hookspec
def register_datasets(register):
    """Register datasets: ``register(name, factory)``.

    ``factory(*, split, root=None, **options)`` returns a :class:`wsolbench.specs.WSOLDataset`
    with images, class labels, boxes (and masks where known) and its class hierarchy.
    The factory may carry a ``train_preset`` attribute: a config mapping (sections ``train``,
    ``eval``, ``dataset``) merged over the defaults and under the user's settings.
    """


@hookspec
def register_hierarchies(register):
    """Register class hierarchies: ``register(name, factory)``.

    ``factory(**options)`` returns a :class:`wsolbench.specs.Hierarchy` mapping every fine
    class to its ancestor at each coarser level (for example CUB species -> family -> order).
    """


@hookspec
def register_references(register):
    """Register published results shown as reference rows (``wsolbench table --paper``): ``register(name, factory)``.

    ``name`` names the source (e.g. ``"danet-iccv2019"``); ``factory()`` returns a list of rows,
    each a dict with ``method``, ``backbone``, ``dataset`` (registry names), metric keys as
    :func:`wsolbench.evaluate.evaluate_cache` names them (percent), ``label`` (the method's name
    in the paper) and ``source`` (short citation with the table, e.g. ``"Xue et al. 2019, T1"``).
    A table shows the rows of the methods it has runs of.
    """
