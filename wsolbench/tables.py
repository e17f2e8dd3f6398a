"""Result tables: one row per (method, backbone, dataset) configuration, seeds grouped.

Input rows are plain dicts, one per evaluated run, as :func:`run_row` builds them from a
run's cache (its metadata plus the metrics of :func:`wsolbench.evaluate.evaluate_cache`).
Runs that differ only in their seed are grouped into one row showing ``mean ± std``
(sample standard deviation, ``ddof=1``) and the number of seeds. Runs of the same
method/backbone/dataset whose configs differ otherwise (say ``method.k``) stay separate
rows, told apart by a ``variant`` column (a short hash of the config without its seed).

Published numbers that plugins register (``register_references``) can be added as
reference rows for the methods in the table; their ``source`` column cites the paper and
table, runs read ``ours``. Methods are ordered by their ``table_rank`` (then by name).

Rows also say how their numbers were computed (:data:`PROTOCOL_FIELDS`: the evaluated
split, how the operating CAM threshold was chosen, the threshold grid); rows that differ
in it never share a group. When every row was evaluated the same way, one note under the
table says how; otherwise a column per differing field marks the rows. Notes travel with
the table (:class:`Table`) and are printed under it (LaTeX: as comments; not in CSV).
"""

from __future__ import annotations

import csv
import functools
import io
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate

from wsolbench.errors import UsageError

#: Metric key -> column header, in the default column order.
METRIC_COLUMNS: dict[str, str] = {
    "cls_err_top1": "Top-1 Cls Err",
    "cls_err_top5": "Top-5 Cls Err",
    "loc_err_top1": "Top-1 Loc Err",
    "loc_err_top5": "Top-5 Loc Err",
    "gt_known_loc": "GT-known Loc",
    "maxboxacc": "MaxBoxAcc",
    "maxboxacc_v2": "MaxBoxAccV2",
    "pxap": "PxAP",
}
DEFAULT_COLUMNS: tuple[str, ...] = tuple(METRIC_COLUMNS)

#: Fields that identify a table row (besides the seed).
KEY_FIELDS: tuple[str, ...] = ("method", "backbone", "dataset")

FORMATS: tuple[str, ...] = ("github", "markdown", "latex", "csv")

_RUN_SOURCE = "ours"


@dataclass
class TableRow:
    """One line of a table: a group of runs (or one paper row) and its statistics.

    Attributes:
        fields: ``method``, ``backbone``, ``dataset``, ``variant``, ``source`` (and
            ``seed`` when seeds are not grouped).
        seeds: Seeds of the grouped runs.
        values: Per metric key, the values of the runs that have it.
        notes: The runs' ``notes`` (lines for under the table), each once.
    """

    fields: dict[str, Any]
    seeds: list[Any] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Number of runs (1 for a paper row)."""
        return max(1, len(self.seeds))

    def mean(self, key: str) -> float | None:
        vals = self.values.get(key) or []
        return math.fsum(vals) / len(vals) if vals else None

    def std(self, key: str) -> float | None:
        """Sample standard deviation (``ddof=1``); None with fewer than two values."""
        vals = self.values.get(key) or []
        if len(vals) < 2:
            return None
        mu = math.fsum(vals) / len(vals)
        return math.sqrt(math.fsum((v - mu) ** 2 for v in vals) / (len(vals) - 1))


def config_variant(config: Mapping[str, Any], *, dataset_fingerprint: str | None = None) -> str:
    """Short hash of what a run's model depends on, without its seed: runs sharing it
    differ only in seed (evaluation settings are not part of it; :data:`PROTOCOL_FIELDS`
    keep rows evaluated differently apart).

    Put it in a row as ``"variant"`` so :func:`build_table` keeps differently configured
    runs of one method/backbone/dataset apart (rows without it group by those names).
    ``dataset_fingerprint``: the training split's, as the run's hash includes it.
    """
    from wsolbench.cache import NON_RESULT_KEYS, config_hash

    return config_hash(config, exclude=(*NON_RESULT_KEYS, "seed"), dataset_fingerprint=dataset_fingerprint)[:8]


# --------------------------------------------------------------------------------------
# How a row was evaluated
# --------------------------------------------------------------------------------------

#: Row keys (as :func:`wsolbench.evaluate.evaluate_run` writes them) that say how a row's
#: numbers were computed.
PROTOCOL_FIELDS: tuple[str, ...] = ("split", "cam_threshold_from", "cam_curve_interval")

#: Column header of each part of a row's protocol (:func:`protocol`).
PROTOCOL_COLUMNS: dict[str, str] = {"split": "split", "threshold": "CAM threshold", "grid": "grid"}


def protocol(row: Mapping[str, Any]) -> dict[str, str]:
    """How a run row was evaluated, as short labels (``""`` where the row does not say).

    ``split``: the evaluated split; ``threshold``: how the operating threshold of Top-1/Top-5
    Loc Err and GT-known Loc was chosen: ``"best on test"`` (on the evaluated split itself,
    what older papers report), ``"chosen on val"`` (Choe et al.'s protocol), ``"fixed 0.2"``;
    ``grid``: the step of the CAM threshold grid.
    """
    split = str(row.get("split") or "")
    origin = str(row.get("cam_threshold_from") or "")
    if origin == "fixed":
        value = _value(row, "cam_threshold")
        threshold = "fixed" if value is None else f"fixed {value:g}"
    elif origin:
        threshold = f"best on {origin}" if origin == split else f"chosen on {origin}"
    else:
        threshold = ""
    step = _value(row, "cam_curve_interval")
    return {"split": split, "threshold": threshold, "grid": "" if step is None else f"{step:g}"}


def _threshold_phrase(label: str) -> str:
    kind, _, where = label.partition(" on ")
    if label.startswith("fixed"):
        return f"{label.removeprefix('fixed').strip() or 'given'} (fixed)"
    if kind == "best":
        extra = (
            " (the older papers' protocol; --set eval.cam_threshold=val chooses it on val)" if where == "test" else ""
        )
        return f"with the lowest Top-1 Loc Err on the {where} split itself{extra}"
    return f"with the lowest Top-1 Loc Err on the {where} split (Choe et al., CVPR 2020)"


def protocol_note(label: Mapping[str, str]) -> str:
    """One line saying how every row of a table was evaluated (``label``: :func:`protocol`)."""
    where = f"{label['split'].capitalize()} split. " if label["split"] else ""
    threshold = (
        f"Top-1/Top-5 Loc Err and GT-known Loc at the CAM threshold {_threshold_phrase(label['threshold'])}; "
        if label["threshold"]
        else ""
    )
    grid = f"a threshold grid of step {label['grid']}" if label["grid"] else "the threshold grid"
    return f"{where}{threshold}MaxBoxAcc and MaxBoxAccV2 at their own best thresholds, PxAP over all, on {grid}."


class Table(tuple):
    """What :func:`build_table` returns: the pair ``(headers, rows)``, plus :attr:`notes`.

    Unpacks like the pair (``headers, rows = build_table(...)``); ``notes`` are lines to
    print under the table (how the rows were evaluated, what short CPU runs mean).
    """

    notes: list[str]

    def __new__(cls, headers: list[str], body: list[list[str]], notes: Iterable[str] = ()) -> Table:
        table = super().__new__(cls, (headers, body))
        table.notes = list(notes)
        return table


# --------------------------------------------------------------------------------------
# Filtering, grouping, sorting
# --------------------------------------------------------------------------------------


def parse_filters(filters: Mapping[str, Any] | Sequence[str] | None) -> dict[str, set[str]]:
    """``["method=danet,cam", "backbone=vgg16"]`` or ``{"method": "danet"}`` ->
    ``{"method": {"danet", "cam"}, ...}`` (lowercased). Values of one key are alternatives."""
    if not filters:
        return {}
    items: list[tuple[str, Any]]
    if isinstance(filters, Mapping):
        items = list(filters.items())
    else:
        items = []
        for text in filters:
            key, sep, value = str(text).partition("=")
            if not sep or not key.strip():
                raise UsageError(f"filter {text!r}: expected KEY=VALUE, e.g. method=danet or backbone=vgg16,resnet50")
            items.append((key.strip(), value))
    out: dict[str, set[str]] = {}
    for key, value in items:
        values = value if isinstance(value, (list, tuple, set)) else str(value).split(",")
        out.setdefault(key, set()).update(str(v).strip().lower() for v in values if str(v).strip())
    return out


def _matches(row: Mapping[str, Any], filters: Mapping[str, set[str]]) -> bool:
    return all(str(row.get(key, "")).lower() in allowed for key, allowed in filters.items())


def _value(row: Mapping[str, Any], key: str) -> float | None:
    value = row.get(key)
    if value is None or isinstance(value, (str, bool)):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def aggregate(
    rows: Iterable[Mapping[str, Any]],
    *,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    filters: Mapping[str, Any] | Sequence[str] | None = None,
    group_seeds: bool = True,
    include_paper: bool = False,
    sort_by: str | Sequence[str] | None = None,
) -> list[TableRow]:
    """Filter, group (runs differing only in seed) and sort rows; see :func:`build_table`."""
    rows = [dict(r) for r in rows]
    for r in rows:
        r.setdefault("source", _RUN_SOURCE)
    if include_paper:
        rows.extend(reference_rows({str(r.get("method", "")) for r in rows}))
    wanted = parse_filters(filters)
    known = set().union(*(r.keys() for r in rows)) if rows else set()
    unknown = [key for key in wanted if key not in known]
    if unknown and rows:
        raise UsageError(
            f"unknown filter key {unknown[0]!r}; rows have: {', '.join(sorted(k for k in known if k not in columns))}"
        )
    rows = [r for r in rows if _matches(r, wanted)]

    groups: dict[tuple[Any, ...], TableRow] = {}
    for index, r in enumerate(rows):
        fields = {key: r.get(key, "") for key in (*KEY_FIELDS, "variant", "source")}
        is_paper = r["source"] != _RUN_SOURCE
        if is_paper:
            fields["paper_label"] = r.get("paper_label", "")
        else:
            fields.update(protocol(r))
        if not group_seeds and not is_paper:
            fields["seed"] = r.get("seed")
        key = tuple(fields.values()) + ((index,) if is_paper or not group_seeds else ())
        group = groups.get(key)
        if group is None:
            group = groups[key] = TableRow(fields=fields)
        if not is_paper:
            group.seeds.append(r.get("seed"))
            group.notes.extend(note for note in r.get("notes") or () if note not in group.notes)
        for column in columns:
            value = _value(r, column)
            if value is not None:
                group.values.setdefault(column, []).append(value)
    table = list(groups.values())
    for group in table:
        if group_seeds and len(set(map(str, group.seeds))) < len(group.seeds):
            dupes = sorted({str(s) for s in group.seeds if group.seeds.count(s) > 1})
            f = group.fields
            variant = f" (variant {f['variant']})" if f.get("variant") else ""
            raise UsageError(
                f"{f['method']}/{f['backbone']}/{f['dataset']}{variant} has several runs with seed "
                f"{', '.join(dupes)}: pass each run once, put tables.config_variant(config) in the rows as "
                "'variant' to keep differently configured runs apart, or turn seed grouping off"
            )
    return _sort(table, sort_by)


def reference_rows(methods: Iterable[str], registry: Any = None) -> list[dict[str, Any]]:
    """The registered published rows (``register_references``) of ``methods``, as table rows.

    Each row gets ``paper_label`` (its ``label``); a source whose factory raises is skipped
    with a warning, so one broken plugin does not take the table down.
    """
    from wsolbench.registry import default_registry

    registry = registry or default_registry()
    wanted = set(methods)
    rows: list[dict[str, Any]] = []
    for component in registry.components("references"):
        try:
            published = [dict(row) for row in component.factory()]
        except Exception as error:  # noqa: BLE001 - a broken reference plugin is reported, not fatal
            warnings.warn(f"reference rows {component.name!r} failed: {type(error).__name__}: {error}", stacklevel=2)
            continue
        for row in published:
            if row.get("method") in wanted:
                row["paper_label"] = row.pop("label", "")
                row.setdefault("source", component.name)
                rows.append(row)
    return rows


@functools.cache
def _method_ranks() -> dict[str, float]:
    from wsolbench.registry import default_registry

    return {c.name: float(getattr(c.factory, "table_rank", math.inf)) for c in default_registry().components("methods")}


def _method_rank(name: str) -> tuple[float, str]:
    """Table order of a method: its class's ``table_rank``, then its name; unregistered methods last."""
    return (_method_ranks().get(str(name), math.inf), str(name))


def _sort(table: list[TableRow], sort_by: str | Sequence[str] | None) -> list[TableRow]:
    table = sorted(
        table,
        key=lambda g: (
            str(g.fields["dataset"]),
            str(g.fields["backbone"]),
            _method_rank(str(g.fields["method"])),
            g.fields["source"] != _RUN_SOURCE,
            str(g.fields.get("variant", "")),
            str(g.fields.get("seed", "")),
        ),
    )
    keys = [sort_by] if isinstance(sort_by, str) else list(sort_by or [])
    for spec in reversed(keys):  # stable sorts: the first key ends up the primary one
        descending = spec.startswith("-")
        key = spec.lstrip("-+")
        if key in KEY_FIELDS or key in ("variant", "source", "seed"):
            table.sort(key=lambda g: str(g.fields.get(key, "")), reverse=descending)
            continue
        present = [g for g in table if g.mean(key) is not None]
        missing = [g for g in table if g.mean(key) is None]
        if not present and key not in METRIC_COLUMNS:
            raise UsageError(
                f"cannot sort by {key!r}: use a metric ({', '.join(METRIC_COLUMNS)}) or one of {', '.join(KEY_FIELDS)}"
            )
        present.sort(key=lambda g: g.mean(key), reverse=descending)  # type: ignore[arg-type,return-value]
        table = present + missing  # rows without the value go last
    return table


# --------------------------------------------------------------------------------------
# Building and rendering
# --------------------------------------------------------------------------------------


class Stat(str):
    """A metric cell: displays as ``"mean ± std"`` (or ``"mean"`` for one value) and keeps
    the unrounded numbers for machine-readable output."""

    mean: float
    std: float | None
    n: int

    def __new__(cls, mean: float, std: float | None, n: int, precision: int = 2) -> Stat:
        text = f"{mean:.{precision}f}" if std is None else f"{mean:.{precision}f} ± {std:.{precision}f}"
        cell = super().__new__(cls, text)
        cell.mean, cell.std, cell.n = mean, std, n
        return cell


class Header(str):
    """A header of a metric column; ``key`` is the metric key (``"loc_err_top1"``)."""

    key: str

    def __new__(cls, text: str, key: str) -> Header:
        header = super().__new__(cls, text)
        header.key = key
        return header


def _cell(group: TableRow, key: str, precision: int) -> str:
    mean = group.mean(key)
    if mean is None:
        return ""
    return Stat(mean, group.std(key), len(group.values.get(key, [])), precision)


def _protocol_layout(table: list[TableRow], always: bool) -> tuple[list[str], list[str]]:
    """The protocol parts shown as columns (those that differ between run rows, or every
    known one with ``always``) and the note lines saying how the rows were evaluated."""
    runs = [g for g in table if g.fields["source"] == _RUN_SOURCE]
    seen = {part: {g.fields.get(part, "") for g in runs} for part in PROTOCOL_COLUMNS}
    differ = [part for part, values in seen.items() if len(values) > 1]
    known = [part for part, values in seen.items() if values - {""}]
    columns = known if always else differ
    if not runs or not known:
        return columns, []
    if not differ:
        return columns, [protocol_note({part: next(iter(values)) for part, values in seen.items()})]
    shown = ", ".join(PROTOCOL_COLUMNS[part] for part in differ)
    return columns, [
        f"Rows were evaluated differently (column{'s' if len(differ) > 1 else ''} {shown}): compare rows with equal "
        "settings. CAM threshold: 'best on test' = lowest Top-1 Loc Err on the test split itself (older papers), "
        "'chosen on val' = the val split's, applied to test (Choe et al., CVPR 2020)."
    ]


def _layout(table: list[TableRow]) -> tuple[bool, bool]:
    """Whether to show the variant and the source columns."""
    variants: dict[tuple[Any, ...], set[Any]] = {}
    for g in table:
        if g.fields["source"] == _RUN_SOURCE:
            variants.setdefault(tuple(g.fields[k] for k in KEY_FIELDS), set()).add(g.fields.get("variant", ""))
    show_variant = any(len(v) > 1 for v in variants.values())
    show_source = any(g.fields["source"] != _RUN_SOURCE for g in table)
    return show_variant, show_source


def build_table(
    rows: Iterable[Mapping[str, Any]],
    *,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    sort_by: str | Sequence[str] | None = None,
    filters: Mapping[str, Any] | Sequence[str] | None = None,
    group_seeds: bool = True,
    include_paper: bool = False,
    precision: int = 2,
    protocol_columns: bool = False,
) -> Table:
    """Headers and cells of a results table (pass the pair to :func:`render_table`).

    Args:
        rows: One dict per run: ``method``, ``backbone``, ``dataset``, ``seed``, metric
            keys (as :func:`wsolbench.evaluate.evaluate_cache` returns them), optionally
            ``variant`` (:func:`config_variant`; runs group only with equal variants) and
            ``source``.
        columns: Metric keys to show (default: every key of :data:`METRIC_COLUMNS`); a
            metric no row has is shown as an empty column.
        sort_by: A metric key or field, or several (first = primary); prefix ``-`` for
            descending. Default: dataset, backbone, method (by the methods' ``table_rank``:
            CAM, HaS, ... DANet, then others), runs before paper rows. Rows lacking the value go last.
        filters: ``{"method": "danet"}`` or ``["method=danet,cam", "backbone=vgg16"]``
            (comma = alternatives); applied before grouping, to paper rows too.
        group_seeds: Group runs that differ only in seed into one row, ``mean ± std``
            (sample std) with the number of runs in ``seeds``; False: one row per run
            with its ``seed``.
        include_paper: Add the published rows plugins register for the methods in ``rows``
            (:func:`reference_rows`; ``source`` cites paper and table).
        precision: Decimals shown.
        protocol_columns: Show the :func:`protocol` columns (split, CAM threshold, grid)
            for every row; default only those in which rows differ (the others are said
            once in a note).

    Returns:
        A :class:`Table`: ``(headers, rows)`` of strings plus ``notes``. Metric cells are
        :class:`Stat` (a ``str`` carrying ``mean``, ``std``, ``n``), metric headers
        :class:`Header`; a missing metric (PxAP without masks, a paper row's unreported
        number) is ``""``.
    """
    columns = list(columns)
    table = aggregate(
        rows, columns=columns, filters=filters, group_seeds=group_seeds, include_paper=include_paper, sort_by=sort_by
    )
    show_variant, show_source = _layout(table)
    shown_protocol, notes = _protocol_layout(table, protocol_columns)
    headers: list[str] = ["method", "backbone", "dataset"]
    if show_variant:
        headers.append("variant")
    headers += [PROTOCOL_COLUMNS[part] for part in shown_protocol]
    headers.append("seeds" if group_seeds else "seed")
    headers += [Header(METRIC_COLUMNS.get(c, c), c) for c in columns]
    if show_source:
        headers.append("source")
    body = []
    for g in table:
        paper = g.fields["source"] != _RUN_SOURCE
        label = g.fields.get("paper_label")
        line = [
            f"{g.fields['method']} ({label})" if paper and label else str(g.fields["method"]),
            str(g.fields["backbone"]),
            str(g.fields["dataset"]),
        ]
        if show_variant:
            line.append("" if paper else str(g.fields.get("variant", "")))
        line += ["" if paper else str(g.fields.get(part, "")) for part in shown_protocol]
        if paper:
            line.append("")
        else:
            line.append(str(len(g.seeds)) if group_seeds else _text(g.fields.get("seed")))
        line += [_cell(g, c, precision) for c in columns]
        if show_source:
            line.append(str(g.fields["source"]))
        body.append(line)
    for g in table:
        notes.extend(note for note in g.notes if note not in notes)
    return Table(headers, body, notes)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def render_table(table: tuple[Sequence[str], Sequence[Sequence[str]]], *, fmt: str = "github") -> str:
    """Text of a :func:`build_table` result in ``fmt``.

    * ``github``: pipe table (``tabulate``'s github format);
    * ``markdown``: pipe table with alignment colons;
    * ``latex``: a ``tabular`` (booktabs-free), special characters escaped, ``$\\pm$``;
    * ``csv`` (``csv`` module): machine-readable, each metric as two columns, ``<key>``
      (mean) and ``<key>_std``, unrounded; other columns as shown.

    The :attr:`Table.notes` follow the table after a blank line (LaTeX: as ``%`` comment
    lines after the ``tabular``; CSV: left out, pass ``protocol_columns=True`` to
    :func:`build_table` to keep the evaluation settings in columns instead).
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown table format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    headers, body = list(table[0]), [list(line) for line in table[1]]
    notes = list(getattr(table, "notes", []))
    if fmt == "csv":
        return _render_csv(headers, body)
    if fmt == "latex":
        headers = [_latex_escape(h) for h in headers]
        body = [[_latex_escape(str(c)).replace(" ± ", r" $\pm$ ") for c in line] for line in body]
        text = tabulate(body, headers=headers, tablefmt="latex_raw", disable_numparse=True) + "\n"
        return text + "".join(f"% {note}\n" for note in notes)
    tablefmt = "github" if fmt == "github" else "pipe"
    text = tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True) + "\n"
    return text + ("\n" + "".join(f"{note}\n" for note in notes) if notes else "")


def _render_csv(headers: list[str], body: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names: list[str] = []
    for h in headers:
        names += [h.key, f"{h.key}_std"] if isinstance(h, Header) else [str(h)]
    writer.writerow(names)
    for line in body:
        cells: list[Any] = []
        for h, c in zip(headers, line, strict=False):
            if isinstance(h, Header):
                if isinstance(c, Stat):
                    cells += [repr(c.mean), "" if c.std is None else repr(c.std)]
                else:
                    cells += ["", ""]
            else:
                cells.append(str(c))
        writer.writerow(cells)
    return out.getvalue()
