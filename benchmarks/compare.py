"""Compare the benchmark ratios of this checkout with the committed baseline.

Usage (from anywhere; paths are relative to the repository root)::

    python benchmarks/compare.py                       # run pytest benchmarks/, compare, exit 1 on a regression
    python benchmarks/compare.py --json run.json       # compare an existing pytest-benchmark JSON
    python benchmarks/compare.py --update              # run and rewrite benchmarks/baseline.json
    python benchmarks/compare.py -k training           # extra arguments go to pytest (partial run)

Every benchmark stores its ratios in ``benchmark.extra_info``; the key names decide how a key
is compared (:data:`RULES`). Keys no rule matches (times in ms, counts) are context only:
shown by ``--all``, never compared, never stored in the baseline.

Exit status: 0 no regression; 1 a ratio regressed, a benchmark failed, or a baseline
benchmark did not run (full runs only); 2 usage error (no baseline, unreadable JSON).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
DEFAULT_BASELINE = BENCH_DIR / "baseline.json"
BASELINE_FORMAT = 1


@dataclass(frozen=True)
class Rule:
    """How one kind of ``extra_info`` key is compared with its baseline value."""

    kind: str
    matches: Callable[[str], bool]
    higher_is_better: bool
    describe: str
    limit: Callable[[float], float]  # baseline value -> worst acceptable current value
    improved: Callable[[float, float], bool] = lambda base, now: False  # worth a --update?


#: Tolerances: generous, because the suite runs on shared, loaded machines (see README).
SPEEDUP_MAX_DROP = 0.40  # a speedup may drop by at most 40% of its baseline
OVERHEAD_MAX_RISE = 0.10  # an overhead may rise by at most 10 points above max(baseline, 0)
TIME_RATIO_MAX_GROWTH = 0.50  # a "<x>_ratio" (time of the library / time of a baseline) may grow by 50%
BYTES_MAX_GROWTH = 0.10  # a "bytes_per_<x>" may grow by 10%

RULES: tuple[Rule, ...] = (
    Rule(
        "speedup",
        lambda k: k == "speedup" or k.startswith("speedup_") or k.endswith("_speedup"),
        True,
        f"speedup (higher is better): may drop by at most {SPEEDUP_MAX_DROP:.0%}",
        lambda base: base * (1 - SPEEDUP_MAX_DROP),
        lambda base, now: now > base * 1.5,
    ),
    Rule(
        "overhead",
        lambda k: k == "overhead" or k.endswith("_overhead"),
        False,
        f"overhead (library / plain - 1, lower is better): at most max(baseline, 0) + {OVERHEAD_MAX_RISE:.2f}",
        lambda base: max(base, 0.0) + OVERHEAD_MAX_RISE,
    ),
    Rule(
        "time ratio",
        lambda k: k.endswith("_ratio"),
        False,
        f"*_ratio (library time / baseline time, lower is better): may grow by at most {TIME_RATIO_MAX_GROWTH:.0%}",
        lambda base: base * (1 + TIME_RATIO_MAX_GROWTH),
        lambda base, now: now < base / 1.5,
    ),
    Rule(
        "bytes",
        lambda k: k.startswith("bytes_per_"),
        False,
        f"bytes_per_* (lower is better): may grow by at most {BYTES_MAX_GROWTH:.0%}",
        lambda base: base * (1 + BYTES_MAX_GROWTH),
        lambda base, now: now < base * 0.9,
    ),
)


def rule_for(key: str) -> Rule | None:
    return next((rule for rule in RULES if rule.matches(key)), None)


def die(message: str) -> None:
    """A usage problem (no baseline, unreadable file): one line on stderr, exit status 2."""
    print(f"compare.py: {message}", file=sys.stderr)
    raise SystemExit(2)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------- reading results


def benchmark_id(entry: dict[str, Any]) -> str:
    """``test_file.py::test_name[params]``, the same whatever directory pytest ran from."""
    fullname = entry.get("fullname") or entry["name"]
    path, sep, rest = fullname.partition("::")
    return f"{Path(path).name}{sep}{rest}" if sep else fullname


def load_run(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        benchmarks = data["benchmarks"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        die(f"cannot read pytest-benchmark JSON {path}: {error}")
    return data | {"benchmarks": benchmarks}


def ratios_of(run: dict[str, Any]) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]]]:
    """``(compared, context)``: per benchmark, the ``extra_info`` keys a rule compares / all others."""
    compared: dict[str, dict[str, float]] = {}
    context: dict[str, dict[str, Any]] = {}
    for entry in run["benchmarks"]:
        name = benchmark_id(entry)
        info = entry.get("extra_info") or {}
        compared[name] = {k: v for k, v in info.items() if is_number(v) and rule_for(k)}
        context[name] = {k: v for k, v in info.items() if k not in compared[name]}
    return compared, context


def run_pytest(pytest_args: list[str], save_json: Path | None = None) -> tuple[dict[str, Any] | None, int]:
    """Run ``pytest benchmarks/`` (or the test paths among the arguments); ``(its JSON, exit code)``."""
    names_paths = any(not a.startswith("-") and (ROOT / a.split("::")[0]).exists() for a in pytest_args)
    with tempfile.TemporaryDirectory(prefix="wsolbench-bench-") as tmp:
        json_path = Path(tmp) / "benchmark.json"
        command = [
            sys.executable, "-m", "pytest",
            *([] if names_paths else ["benchmarks"]),
            "-p", "no:cacheprovider",
            f"--benchmark-json={json_path}",
            "--benchmark-columns=median,rounds",  # the ratios are in the table below; one round per test
            "--benchmark-sort=fullname",
            *pytest_args,
        ]  # fmt: skip
        print("$", " ".join(command), flush=True)
        code = subprocess.call(command, cwd=ROOT)
        if not json_path.exists():
            return None, code
        run = load_run(json_path)
        if save_json:
            save_json.write_text(json_path.read_text())
    run["_load_average"] = [round(v, 2) for v in os.getloadavg()]
    return run, code


def best_of(first: dict[str, dict[str, float]], second: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per benchmark and key, the better of two runs' values (a regression must show in both)."""
    merged = {name: dict(values) for name, values in first.items()}
    for name, values in second.items():
        for key, value in values.items():
            rule, old = rule_for(key), merged.setdefault(name, {}).get(key)
            if old is None or (value > old if rule.higher_is_better else value < old):
                merged[name][key] = value
    return merged


# --------------------------------------------------------------------------- baseline


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        die(f"no baseline at {path}: create it with --update")
    except ValueError as error:
        die(f"baseline {path} is not valid JSON: {error}")
    if (
        not isinstance(data, dict)
        or data.get("format") != BASELINE_FORMAT
        or not isinstance(data.get("benchmarks"), dict)
    ):
        die(f"{path} is not a baseline of format {BASELINE_FORMAT}: rewrite it with --update")
    return data


def write_baseline(
    path: Path, run: dict[str, Any], compared: dict[str, dict[str, float]], *, keep: dict[str, Any]
) -> None:
    machine = run.get("machine_info") or {}
    commit = run.get("commit_info") or {}
    benchmarks = {**keep, **{name: dict(sorted(values.items())) for name, values in compared.items() if values}}
    data = {
        "format": BASELINE_FORMAT,
        "about": (
            "Ratios from benchmark.extra_info of `pytest benchmarks/` (see benchmarks/README.md). "
            "Rewrite only deliberately: python benchmarks/compare.py --update"
        ),
        "recorded": {
            "date": run.get("datetime") or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "commit": commit.get("id", ""),
            "dirty": commit.get("dirty", None),
            "cpu": (machine.get("cpu") or {}).get("brand_raw", ""),
            "cpu_count": (machine.get("cpu") or {}).get("count", None),
            "python": machine.get("python_version", ""),
            "load_average": " ".join(str(v) for v in run.get("_load_average") or []),
        },
        "benchmarks": dict(sorted(benchmarks.items())),
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------- comparison


@dataclass
class Row:
    benchmark: str
    key: str
    baseline: float | None
    current: float | None
    limit: float | None
    status: str


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}" if abs(value) < 1 else f"{value:.3f}".rstrip("0").rstrip(".")


def compare(
    compared: dict[str, dict[str, float]], baseline: dict[str, dict[str, float]], *, partial: bool
) -> list[Row]:
    rows: list[Row] = []
    for name in sorted(set(compared) | set(baseline)):
        current, base = compared.get(name), baseline.get(name)
        if current is None:
            status = "not run" if partial else "MISSING"
            rows += [Row(name, key, value, None, None, status) for key, value in sorted(base.items())]
            continue
        for key in sorted(set(current) | set(base or {})):
            now, then = current.get(key), (base or {}).get(key)
            rule = rule_for(key)
            if then is None:
                rows.append(Row(name, key, None, now, None, "new"))
            elif now is None:
                rows.append(Row(name, key, then, None, None, "MISSING"))
            else:
                limit = rule.limit(then)
                worse = now < limit if rule.higher_is_better else now > limit
                status = "REGRESSION" if worse else ("improved" if rule.improved(then, now) else "ok")
                rows.append(Row(name, key, then, now, limit, status))
    return rows


def print_table(rows: list[Row], context: dict[str, dict[str, Any]] | None) -> None:
    header = ("benchmark", "ratio", "baseline", "current", "limit", "status")
    cells = [(r.benchmark, r.key, fmt(r.baseline), fmt(r.current), fmt(r.limit), r.status) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)]
    right = {2, 3, 4}

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    print(line(header))
    print(line(tuple("-" * w for w in widths)))
    for c in cells:
        print(line(c))
    if context:
        print("\ncontext (extra_info not compared):")
        for name in sorted(context):
            if context[name]:
                print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in context[name].items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the benchmarks and compare their extra_info ratios with benchmarks/baseline.json.",
        epilog="Any other argument is passed to pytest (e.g. -k training); the run then counts as partial. "
        "Tolerances: " + "; ".join(rule.describe for rule in RULES) + ".",
        allow_abbrev=False,
    )
    parser.add_argument("--json", type=Path, help="compare this pytest-benchmark JSON instead of running pytest")
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, help="baseline file (default: %(default)s)")
    parser.add_argument("--update", action="store_true", help="rewrite the baseline with this run's ratios")
    parser.add_argument(
        "--prune", action="store_true", help="with --update: drop baseline benchmarks this run did not produce"
    )
    parser.add_argument("--save-json", type=Path, help="keep the raw pytest-benchmark JSON of the run here")
    parser.add_argument("--all", action="store_true", help="also print the context keys of extra_info")
    parser.add_argument(
        "--no-rerun", action="store_true", help="do not re-run a regressed benchmark to confirm the regression"
    )
    parser.add_argument(
        "--allow-missing", action="store_true", help="baseline benchmarks absent from the run are not failures"
    )
    args, pytest_args = parser.parse_known_args(argv)
    if args.prune and not args.update:
        parser.error("--prune only goes with --update")
    if args.json and pytest_args:
        parser.error(f"arguments for pytest make no sense with --json: {' '.join(pytest_args)}")
    partial = bool(pytest_args) or args.allow_missing

    baseline = None if args.update else load_baseline(args.baseline)  # fail before a 3-minute run
    tests_failed = False
    started = time.monotonic()
    if args.json:
        run = load_run(args.json)
    else:
        run, code = run_pytest(pytest_args, args.save_json)
        if run is None:
            print(f"compare.py: pytest exited with {code} and wrote no benchmark JSON", file=sys.stderr)
            return 1
        tests_failed = code != 0
        print(f"\nbenchmark suite: {time.monotonic() - started:.0f} s wall, load average now {run['_load_average']}")

    compared, context = ratios_of(run)
    if not compared:
        print("compare.py: the run holds no benchmark", file=sys.stderr)
        return 1

    if args.update:
        if tests_failed:
            print("compare.py: not updating the baseline from a run with failing benchmarks", file=sys.stderr)
            return 1
        old = load_baseline(args.baseline)["benchmarks"] if args.baseline.exists() else {}
        keep = {} if args.prune else {k: v for k, v in old.items() if k not in compared}
        write_baseline(args.baseline, run, compared, keep=keep)
        print("this run against the baseline it replaces:")
        print_table(compare(compared, old, partial=True), context if args.all else None)
        print(f"\nbaseline written: {args.baseline} ({len(compared)} benchmarks from this run, {len(keep)} kept)")
        return 0

    assert baseline is not None
    rows = compare(compared, baseline["benchmarks"], partial=partial)
    regressed = sorted({r.benchmark for r in rows if r.status == "REGRESSION"})
    if regressed and not args.json and not args.no_rerun:
        # A loaded machine can make one measurement look bad: a regression counts only if a
        # second run of that benchmark shows it too (the better value of the two is compared).
        fullnames = {benchmark_id(entry): entry.get("fullname") or entry["name"] for entry in run["benchmarks"]}
        print(f"\nre-running {len(regressed)} benchmark(s) with a regression to confirm it:", flush=True)
        again, _ = run_pytest([fullnames[name] for name in regressed])
        if again is not None:
            compared = best_of(compared, ratios_of(again)[0])
            rows = compare(compared, baseline["benchmarks"], partial=partial)
            for r in rows:
                if r.benchmark in regressed and r.status != "REGRESSION":
                    r.status += " (rerun)"
        print(f"benchmarks and re-runs: {time.monotonic() - started:.0f} s wall")
    recorded = baseline.get("recorded", {})
    commit = str(recorded.get("commit", ""))[:10]
    print(f"baseline: {args.baseline} (recorded {recorded.get('date', '?')}, commit {commit})")
    print_table(rows, context if args.all else None)

    failures = [r for r in rows if r.status in ("REGRESSION", "MISSING")]
    if failures or tests_failed:
        print()
    for r in failures:
        if r.status == "MISSING":
            print(f"MISSING {r.benchmark} {r.key}: in the baseline but not produced by this run")
        else:
            rule = rule_for(r.key)
            print(
                f"REGRESSION {r.benchmark} {r.key}: {fmt(r.current)} vs baseline {fmt(r.baseline)}, "
                f"limit {fmt(r.limit)} ({rule.describe})"
            )
    if tests_failed:
        print("FAILED some benchmarks failed their own assertions (see the pytest output above)")
    new = sum(r.status == "new" for r in rows)
    if new:
        print(f"\n{new} ratio(s) without a baseline: add them with --update once reviewed")
    if failures or tests_failed:
        return 1
    print(f"\nOK: {sum(r.status.startswith(('ok', 'improved')) for r in rows)} ratios within tolerance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
