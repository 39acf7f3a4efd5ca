"""``lpl analyze``, ``lpl compare``, ``lpl report`` and ``lpl demo``."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lpl.analysis.deep_report import deep_comparison, deep_results_files, load_deep_runs
from lpl.analysis.document import Heading, to_markdown
from lpl.analysis.evaluate import Evaluation
from lpl.analysis.readout import deep_runs
from lpl.analysis.report import load_runs, results_blocks, rows_csv, write_report
from lpl.analysis.verdicts import COLLAPSE_FRACTION
from lpl.config import option
from lpl.io import atomic_write_text
from lpl.validation import LPLError


@dataclass
class AnalyzeConfig:
    """Statistics, probes, invariance and baselines of every representation in the files."""

    files: list[str] = option([], "activation or embedding files (*_before.pt / *_after.pt)", positional=True)
    baselines: bool = option(True, "also evaluate pixels, a random projection and PCA of the same width")
    csv: str | None = option(None, "also write the table as CSV to this path")


@dataclass
class CompareConfig:
    """Several runs side by side: deep runs (output folders or results files) in one per-layer readout table
    and figure, or representation files in the probe tables."""

    files: list[str] = option([], "output folders or logs/*_results.json of deep runs, or activation or "
                              "embedding files (*_after.pt) of the runs to compare", positional=True)
    output: str = option("outputs/comparison", "write <output>.md and <output>.csv (and <output>.png for deep runs)")
    baselines: bool = option(True, "representation files: also evaluate pixels, a random projection and PCA of "
                             "the same width")


@dataclass
class ReportConfig:
    """A Markdown report with figures of every run in an output folder."""

    output_dir: str = option("outputs", "the training output folder", positional=True)
    baselines: bool = option(True, "include the pixel, random-projection and PCA baselines")


# ---------------------------------------------------------------- raw tables (lpl analyze)

COLUMNS = ("collapsed_units", "participation_ratio", "mean_abs_correlation", "lifetime_sparsity",
           "linear_probe", "knn20", "knn200", "within_class_similarity", "across_class_similarity",
           "consecutive_similarity", "random_pair_similarity")
COUNTS = ("collapsed_units", "units")


def _cell(column: str, value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.0f}" if column in COUNTS else f"{value:.3f}"


def markdown_table(rows: Sequence[Evaluation], columns: Sequence[str] = COLUMNS) -> str:
    """Every column under its metric name, one row per evaluation (the raw form ``lpl analyze`` prints)."""
    present = [c for c in columns if any(c in r.values for r in rows)]
    lines = ["| representation | " + " | ".join(present) + " |", "|---" * (len(present) + 1) + "|"]
    lines += [f"| {r.name} | " + " | ".join(_cell(c, r.values.get(c)) for c in present) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_table(rows: Sequence[Evaluation]) -> str:
    keys = sorted({k for r in rows for k in r.values})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["representation", *keys])
    writer.writerows([r.name, *(r.values.get(k, "") for k in keys)] for r in rows)
    return buffer.getvalue()


def collapse_warnings(rows: Sequence[Evaluation]) -> list[str]:
    """Raw threshold check of trained rows, not judged against the untrained state (the report uses
    ``verdicts.collapse_sentences``, which is)."""
    return [f"COLLAPSED: {r.name}: {r.values['collapsed_units']:.0f}/{r.values['units']:.0f} units have std < 0.1"
            for r in rows if not r.name.endswith("/before") and "/baseline/" not in r.name
            and r.values.get("collapsed_fraction", 0) > COLLAPSE_FRACTION]


# ---------------------------------------------------------------- commands

def analyze(config: AnalyzeConfig) -> int:
    """The raw table (every metric under its own name), then the findings in sentences."""
    runs = load_runs(config.files, config.baselines)
    evaluations = [e for run in runs for e in run.evaluations]
    blocks, _ = results_blocks(runs)
    print(markdown_table(evaluations))
    print(to_markdown(blocks))
    if config.csv:
        atomic_write_text(csv_table(evaluations), Path(config.csv))
    return 0


def split_inputs(paths: list[str]) -> tuple[list[Path], list[Path]]:
    """(deep runs' results files, representation files) of ``paths``: an output folder gives its
    ``logs/*_results.json`` (or those of its run subfolders), else its ``activations/*_after.pt``."""
    deep: list[Path] = []
    files: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise LPLError(f"{path} does not exist; give output folders, results files or activation files")
        found = deep_results_files(path)
        if found:
            deep += found
        elif path.is_dir():
            pending = [r.name for r in deep_runs(path)]
            if pending:
                raise LPLError(f"{path} holds deep runs without readouts ({', '.join(pending)}); fit them with "
                               f"lpl readout {path}")
            exports = sorted((path / "activations").glob("*_after.pt"))
            if not exports:
                raise LPLError(f"{path} holds no deep results (logs/*_results.json) and no activations/*_after.pt")
            files += exports
        else:
            files.append(path)
    if deep and files:
        raise LPLError("give either deep runs (output folders or *_results.json) or representation files "
                       "(*_after.pt), not both: " + ", ".join(map(str, files[:3])) + " are representation files")
    return deep, files


def compare(config: CompareConfig) -> int:
    """Runs named ``<output folder>/<run name>``, so two runs of one trainer stay apart."""
    if not config.files:
        raise LPLError("lpl compare needs runs: output folders or results files of deep runs, or activation files")
    deep, files = split_inputs(config.files)
    if deep:
        return compare_deep(deep, config.output)
    runs = load_runs(files, config.baselines, qualify=True)
    blocks, rows = results_blocks(runs)
    text = to_markdown([Heading("Comparison: " + ", ".join(r.label for r in runs), 1), *blocks])
    print(text)
    atomic_write_text(text, Path(f"{config.output}.md"))
    atomic_write_text(rows_csv(rows), Path(f"{config.output}.csv"))
    print(f"wrote {config.output}.md and {config.output}.csv")
    return 0


def compare_deep(results: list[Path], output: str) -> int:
    """Deep runs side by side: ``<output>.md`` (table, figure, sentences), ``<output>.csv`` and ``<output>.png``."""
    runs, notes = load_deep_runs(results, qualify=True)
    if not runs:
        raise LPLError("no deep run with trained readouts among " + ", ".join(map(str, results[:5]))
                       + ("" if not notes else "; " + "; ".join(n.replace("`", "") for n in notes)))
    blocks, table = deep_comparison(runs, Path(f"{output}.png"), notes=notes)
    text = to_markdown([Heading("Comparison of deep runs: " + ", ".join(r.label for r in runs), 1), *blocks])
    print(text)
    atomic_write_text(text, Path(f"{output}.md"))
    atomic_write_text(table, Path(f"{output}.csv"))
    print(f"wrote {output}.md, {output}.csv and {output}.png")
    return 0


def report(config: ReportConfig) -> int:
    path = write_report(config.output_dir, config.baselines)
    print(f"report: {path} and {path.with_suffix('.html')}")
    return 0
