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
    """

    fields: dict[str, Any]
    seeds: list[Any] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)

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


def config_variant(config: Mapping[str, Any]) -> str:
    """Short hash of a run's config without its seed: runs sharing it differ only in seed.

    Put it in a row as ``"variant"`` so :func:`build_table` keeps differently configured
    runs of one method/backbone/dataset apart (rows without it group by those names).
    """
    from wsolbench.cache import NON_RESULT_KEYS, config_hash

    return config_hash(config, exclude=(*NON_RESULT_KEYS, "seed"))[:8]


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
        if not group_seeds and not is_paper:
            fields["seed"] = r.get("seed")
        key = tuple(fields.values()) + ((index,) if is_paper or not group_seeds else ())
        group = groups.get(key)
        if group is None:
            group = groups[key] = TableRow(fields=fields)
        if not is_paper:
            group.seeds.append(r.get("seed"))
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
) -> tuple[list[str], list[list[str]]]:
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

    Returns:
        ``(headers, rows)`` of strings. Metric cells are :class:`Stat` (a ``str``
        carrying ``mean``, ``std``, ``n``), metric headers :class:`Header`; a missing
        metric (PxAP without masks, a paper row's unreported number) is ``""``.
    """
    columns = list(columns)
    table = aggregate(
        rows, columns=columns, filters=filters, group_seeds=group_seeds, include_paper=include_paper, sort_by=sort_by
    )
    show_variant, show_source = _layout(table)
    headers: list[str] = ["method", "backbone", "dataset"]
    if show_variant:
        headers.append("variant")
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
        if paper:
            line.append("")
        else:
            line.append(str(len(g.seeds)) if group_seeds else _text(g.fields.get("seed")))
        line += [_cell(g, c, precision) for c in columns]
        if show_source:
            line.append(str(g.fields["source"]))
        body.append(line)
    return headers, body


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
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown table format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    headers, body = list(table[0]), [list(line) for line in table[1]]
    if fmt == "csv":
        return _render_csv(headers, body)
    if fmt == "latex":
        headers = [_latex_escape(h) for h in headers]
        body = [[_latex_escape(str(c)).replace(" ± ", r" $\pm$ ") for c in line] for line in body]
        return tabulate(body, headers=headers, tablefmt="latex_raw", disable_numparse=True) + "\n"
    tablefmt = "github" if fmt == "github" else "pipe"
    return tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True) + "\n"


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
