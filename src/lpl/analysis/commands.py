"""``lpl analyze``, ``lpl compare``, ``lpl report`` and ``lpl demo``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lpl.analysis.report import analyze_files, collapse_warnings, csv_table, markdown_table, write_report
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


def _print_table(rows) -> None:
    print(markdown_table(rows))
    for warning in collapse_warnings(rows):
        print(f"WARNING {warning}")


def analyze(config: AnalyzeConfig) -> int:
    rows = analyze_files(config.files, config.baselines)
    _print_table(rows)
    if config.csv:
        atomic_write_text(csv_table(rows), Path(config.csv))
    return 0


def compare(config: CompareConfig) -> int:
    rows = analyze_files(config.files, config.baselines)
    _print_table(rows)
    atomic_write_text(markdown_table(rows), Path(f"{config.output}.md"))
    atomic_write_text(csv_table(rows), Path(f"{config.output}.csv"))
    print(f"wrote {config.output}.md and {config.output}.csv")
    return 0


def report(config: ReportConfig) -> int:
    print(f"report: {write_report(config.output_dir, config.baselines)}")
    return 0
