"""``lpl analyze``, ``lpl compare``, ``lpl report`` and ``lpl readout``: their configs and what they run."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lpl.analysis.deep_report import deep_comparison
from lpl.analysis.document import Heading, to_csv, to_markdown
from lpl.analysis.evaluate import GAPS, Views
from lpl.analysis.readout import write_readouts
from lpl.analysis.report import evaluate_runs, results_blocks, rows_table, write_report
from lpl.analysis.runs import find_runs
from lpl.analysis.verdicts import pct
from lpl.config import check_device, check_fields, option
from lpl.io import atomic_write_text
from lpl.validation import LPLError


@dataclass
class ViewOptions:
    """Settings of the view-invariance measures, for exports of sequences."""

    gaps: list[int] = option(list(GAPS), "view identification from views at least G frames away, for each G "
                             "(those that fit the sequences)")
    cyclic: bool = option(False, "sequences are rings (turntable views): the last frame neighbours the first")
    objects: str | None = option(None, "regular expression whose first group, searched in a sequence's name, names "
                                 "its object: sequences of one object are then neither targets nor distractors "
                                 "(ETH-80: '(.*)_elev')")

    def views(self) -> tuple[Views, bool]:
        """The measures' settings and whether any was asked for (then exports need sequences)."""
        views = Views(tuple(self.gaps), self.cyclic, self.objects)
        return views, views != Views()


@dataclass
class AnalyzeConfig(ViewOptions):
    """Statistics, probes, invariance and baselines of every representation in the files."""

    files: list[str] = option([], "activation or embedding files (*_before.pt / *_after.pt)", positional=True)
    baselines: bool = option(True, "also evaluate pixels, and a random projection and PCA of each layer's width")
    csv: str | None = option(None, "also write every number as CSV to this path")


@dataclass
class CompareConfig:
    """Several runs side by side: deep runs (output folders or results files) in one per-layer readout table
    and figure, or representation files in the probe tables."""

    files: list[str] = option([], "output folders or logs/*_results.json of deep runs, or activation or "
                              "embedding files (*_after.pt) of the runs to compare", positional=True)
    output: str = option("outputs/comparison", "write <output>.md and <output>.csv (and <output>.png for deep runs)")
    baselines: bool = option(True, "representation files: also evaluate pixels, and a random projection and PCA of "
                             "each layer's width")


@dataclass
class ReportConfig(ViewOptions):
    """A Markdown and HTML report with figures of every run in an output folder."""

    output_dir: str = option("outputs", "the training output folder", positional=True)
    baselines: bool = option(True, "include the pixel, random-projection and PCA baselines")


@dataclass
class ReadoutConfig:
    """Fit the per-layer readouts of the deep runs in an output folder (``logs/<name>_results.json``)."""

    output_dir: str = option("outputs", "the training output folder", positional=True)
    name: list[str] = option([], "run names (default: every deep run in the folder)")
    epochs: int = option(20, "epochs of each readout (Adam, batch 512, lr 1e-3)")
    grid: int = option(4, "spatial protocol: every block average-pooled to at most g x g, alone and all "
                       "concatenated; 0 = the paper's protocol only")
    device: str = option("cpu", "torch device for the readouts")

    def __post_init__(self) -> None:
        check_fields(self)
        check_device(self.device)


def analyze(config: AnalyzeConfig) -> int:
    """The findings in sentences and the tables of every representation (``--csv``: every number)."""
    if not config.files:
        raise LPLError("lpl analyze needs export files (activations/*_after.pt)")
    runs = find_runs(config.files)
    rows = evaluate_runs(runs, config.baselines, *config.views())
    print(to_markdown(results_blocks(runs, rows)))
    if config.csv:
        atomic_write_text(to_csv(rows_table(rows)), Path(config.csv))
    return 0


def compare(config: CompareConfig) -> int:
    """Runs named ``<output folder>/<run name>``, so two runs of one trainer stay apart: deep runs' readouts
    (``<output>.md``, ``.csv``, ``.png``) or, for export files, their representations."""
    if not config.files:
        raise LPLError("lpl compare needs runs: output folders or results files of deep runs, or activation files")
    exports = [f for f in config.files if f.endswith(".pt")]
    if exports and len(exports) < len(config.files):
        raise LPLError("give either deep runs (output folders or *_results.json) or representation files "
                       "(*_after.pt), not both: " + ", ".join(exports[:3]) + " are representation files")
    runs = find_runs(config.files, qualify=True)
    deep = [r for r in runs if r.deep and not exports]
    pending = [r.label for r in runs if not r.deep and "eval_train" in r.config and "note" not in r.results]
    if not exports and pending and not deep:
        raise LPLError(f"{', '.join(pending)} are deep runs without readouts; fit them with lpl readout <folder>")
    if deep:
        unread = "no readouts of a trained network (an unfinished run, or not a deep run)"
        notes = [f"`{r.label}`: {r.results.get('note', unread)}; left out" for r in runs if not r.deep]
        blocks, table = deep_comparison(deep, Path(f"{config.output}.png"), notes)
        title = "Comparison of deep runs: "
    elif rows := evaluate_runs(runs, config.baselines):
        blocks = results_blocks(runs, rows)
        table, title = rows_table(rows), "Comparison: "
    else:
        raise LPLError(f"{', '.join(config.files)}: no deep results (logs/*_results.json) and no exports "
                       f"(activations/*_after.pt) to compare")
    text = to_markdown([Heading(title + ", ".join(r.label for r in runs if r.deep or not deep), 1), *blocks])
    print(text)
    atomic_write_text(text, Path(f"{config.output}.md"))
    atomic_write_text(to_csv(table), Path(f"{config.output}.csv"))
    print(f"wrote {config.output}.md, {config.output}.csv" + (f" and {config.output}.png" if deep else ""))
    return 0


def report(config: ReportConfig) -> int:
    """``report/report.md`` and ``report.html`` of an output folder."""
    path = write_report(config.output_dir, config.baselines, *config.views())
    print(f"report: {path} and {path.with_suffix('.html')}")
    return 0


def readout(config: ReadoutConfig) -> int:
    """Fit the readouts of the deep runs (those whose exports carry training features) of an output folder."""
    runs = [r for r in find_runs([config.output_dir]) if "eval_train" in r.config and r.exports
            and (not config.name or r.name in config.name)]
    if not runs:
        raise LPLError(f"no deep runs in {config.output_dir}/logs; train one with lpl train-deep first")
    for run in runs:
        path = write_readouts(run.layout, config.epochs, config.device, config.grid)
        print(f"{run.name}: {path}", *readout_lines(json.loads(path.read_text())), sep="\n  ")
    return 0


def readout_lines(results: dict[str, Any]) -> list[str]:
    """The readouts of one results file in a few lines of % correct: per layer, then (spatial) all blocks."""
    lines = [f"paper's readout, {stage} (layer 1 ..): {' '.join(pct(e.get('readout', math.nan)) for e in entries)}"
             for stage in ("trained", "initialisation") if (entries := results.get(stage))]
    spatial = results.get("spatial", {})
    lines += [f"spatial readout ({spatial['grid']}x{spatial['grid']}), {stage}: "
              f"{' '.join(map(pct, spatial[stage]['layers']))}; all blocks {pct(spatial[stage]['all'])}"
              for stage in ("trained", "initialisation") if stage in spatial]
    return lines or [results.get("note", "no readout")]
