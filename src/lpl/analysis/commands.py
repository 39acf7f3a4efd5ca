"""``lpl analyze``, ``lpl compare``, ``lpl report`` and ``lpl demo``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lpl.analysis.document import Heading, to_markdown
from lpl.analysis.report import csv_table, load_runs, markdown_table, results_blocks, rows_csv, write_report
from lpl.config import option
from lpl.io import atomic_write_text


@dataclass
class AnalyzeConfig:
    """Statistics, probes, invariance and baselines of every representation in the files."""

    files: list[str] = option([], "activation or embedding files (*_before.pt / *_after.pt)", positional=True)
    baselines: bool = option(True, "also evaluate pixels, a random projection and PCA of the same width")
    csv: str | None = option(None, "also write the table as CSV to this path")


@dataclass
class CompareConfig:
    """One side-by-side table (Markdown and CSV) of several runs."""

    files: list[str] = option([], "activation or embedding files of the runs to compare", positional=True)
    output: str = option("comparison", "write <output>.md and <output>.csv")
    baselines: bool = option(True, "also evaluate pixels, a random projection and PCA of the same width")


@dataclass
class ReportConfig:
    """A Markdown report with figures of every run in an output folder."""

    output_dir: str = option("outputs", "the training output folder", positional=True)
    baselines: bool = option(True, "include the pixel, random-projection and PCA baselines")


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


def compare(config: CompareConfig) -> int:
    """Runs named ``<output folder>/<run name>``, so two runs of one trainer stay apart."""
    runs = load_runs(config.files, config.baselines, qualify=True)
    blocks, rows = results_blocks(runs)
    text = to_markdown([Heading("Comparison: " + ", ".join(r.label for r in runs), 1), *blocks])
    print(text)
    atomic_write_text(text, Path(f"{config.output}.md"))
    atomic_write_text(rows_csv(rows), Path(f"{config.output}.csv"))
    print(f"wrote {config.output}.md and {config.output}.csv")
    return 0


def report(config: ReportConfig) -> int:
    path = write_report(config.output_dir, config.baselines)
    print(f"report: {path} and {path.with_suffix('.html')}")
    return 0
