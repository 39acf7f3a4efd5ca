"""Deep runs side by side: each run's linear readout per layer (``logs/<name>_results.json``) in one table
with a row per random initialisation, one figure, verdict sentences (ties within the tolerance) and a CSV.

``lpl compare`` and ``lpl report`` show deep runs of output folders with it; ``lpl reproduce`` shows its
variants with it, adding the pixel readout, the variants not run yet and the published values (``Extras``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lpl.analysis.document import Block, Bullets, Figure, Heading, Paragraph, Table
from lpl.analysis.figures import plot_layer_comparison
from lpl.analysis.verdicts import deep_sentences, join_names, pct, tolerance
from lpl.config import PLACEMENT, RUN_CONTROL
from lpl.io import read_json
from lpl.layout import RunLayout

RESULTS_SUFFIX = "_results.json"
TIMING_FILE = "reproduce_timing.json"  # lpl reproduce: wall time of a variant, next to its logs/
NETWORK_KEYS = ("dataset", "image_size", "seed", "channels", "pool_after")  # these fix the initial network
READOUT_KEYS = ("num_export", "eval_train", "eval_epochs")  # these fix how its readout is measured
# Settings that may differ between runs of a fair comparison (besides what is compared) or do not change results.
NOT_COMPARED = RUN_CONTROL | PLACEMENT | {"objective", "end_to_end", "name"}  # the last three: in each run's label
STATUS = {"nonfinite": "stopped: non-finite", "interrupted": "interrupted"}  # of a run's TIMING_FILE


# ---------------------------------------------------------------- reading run files

def log_records(layout: RunLayout) -> list[dict[str, Any]]:
    """The records of a run's ``logs/<name>_log.jsonl`` (diagnostics and events); none without a log."""
    if not layout.log_file.is_file():
        return []
    return [json.loads(line) for line in layout.log_file.read_text().splitlines() if line.strip()]


def run_labels(paths: Sequence[Path], names: Sequence[str]) -> list[str]:
    """``<output folder>/<run name>``, with as many parent folders as it takes to tell the runs apart."""
    folders = [p.resolve().parent.parent.parts for p in paths]
    depth = 1
    while True:
        labels = ["/".join((*f[-depth:], n)) for f, n in zip(folders, names)]
        if len(set(labels)) == len(labels) or depth >= max(len(f) for f in folders):
            return labels
        depth += 1


def duration(seconds: float) -> str:
    """``75 s``, ``5.2 min`` or ``3.1 h``."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 \
        else f"{seconds / 3600:.1f} h"


# ---------------------------------------------------------------- runs and their initialisations

@dataclass(frozen=True)
class DeepRun:
    """A deep run's per-layer readouts (``logs/<name>_results.json``), its config and how long it took."""

    label: str
    name: str
    root: Path
    config: Mapping[str, Any]
    trained: tuple[Mapping[str, Any], ...]
    initialisation: tuple[Mapping[str, Any], ...] = ()
    wall_s: float | None = None
    device: str = ""
    stopped: str = ""  # ", stopped at step N of M" for a run that did not finish

    @property
    def layout(self) -> RunLayout:
        return _layout(self.root, self.name)

    @property
    def objective(self) -> str:
        return str(self.config.get("objective") or ("lpl" if "channels" in self.config else "unknown"))

    @property
    def training(self) -> str:
        return "end-to-end" if self.config.get("end_to_end") else "layer-local"

    @property
    def length(self) -> str:
        """``800`` (epochs), or ``5000 steps`` for a run set by --steps."""
        steps = self.config.get("steps")
        return (f"{steps} steps" if steps else str(self.config.get("epochs", "?"))) + self.stopped

    def per_layer(self, key: str, initialisation: bool = False) -> list[float]:
        """``key`` (``readout``, ``participation_ratio``) per layer, trained or at initialisation (NaN: missing)."""
        return [float(r.get(key, math.nan)) for r in (self.initialisation if initialisation else self.trained)]

    @property
    def readout(self) -> list[float]:
        return self.per_layer("readout")


@dataclass(frozen=True)
class InitRow:
    """One random initialisation: the runs that start from it and the readout shown for it (the first run's)."""

    label: str
    runs: tuple[DeepRun, ...]
    same_network: bool  # known from the configs, not only from equal numbers

    def per_layer(self, key: str) -> list[float]:
        return self.runs[0].per_layer(key, initialisation=True)

    @property
    def readout(self) -> list[float]:
        return self.per_layer("readout")

    @property
    def spread(self) -> float:
        """Largest difference between the runs' readouts of this network at initialisation, any layer."""
        rows = [r.per_layer("readout", initialisation=True) for r in self.runs]
        return max((max(col) - min(col) for col in zip(*rows)), default=0.0)


@dataclass(frozen=True)
class InputReadout:
    """The same linear readout on the raw input (``lpl reproduce``: pixels), a fraction."""

    label: str
    readout: float
    wall_s: float | None = None
    device: str = ""


@dataclass(frozen=True)
class Published:
    """A published final-layer readout: the number (%, for the figure; None: none) and how the table shows it."""

    value: float | None
    text: str


@dataclass(frozen=True)
class Extras:
    """What a caller adds to the comparison: its title, readouts of the raw input, labels of runs not run yet,
    published values (by row label) and the settings its runs change on purpose (not listed as differences)."""

    title: str = "Deep runs side by side"
    inputs: tuple[InputReadout, ...] = ()
    missing: tuple[str, ...] = ()
    published: Mapping[str, Published] = field(default_factory=dict)
    varied: tuple[str, ...] = ()


def _layout(root: Path, name: str) -> RunLayout:
    return RunLayout(root, name, f"{name}_activations")  # train-deep's export stem


def deep_results_files(path: str | Path, nested: bool = True) -> list[Path]:
    """The deep runs' results files of ``path``: itself (a ``*_results.json``), ``logs/*_results.json`` of an
    output folder (or of ``path`` when it is a ``logs`` folder), else, with ``nested``, those of its subfolders
    (``lpl reproduce`` keeps a run folder per variant)."""
    path = Path(path)
    if path.is_file():
        return [path] if path.name.endswith(RESULTS_SUFFIX) else []
    logs = path if path.name == "logs" else path / "logs"
    found = sorted(logs.glob(f"*{RESULTS_SUFFIX}"))
    if not found and nested:
        found = sorted(path.glob(f"*/logs/*{RESULTS_SUFFIX}"))
    return found


def _readout_entries(results: Mapping[str, Any], stage: str) -> tuple[Mapping[str, Any], ...] | None:
    entries = results.get(stage)
    if not isinstance(entries, list) or not entries:
        return None
    if not all(isinstance(e, dict) and isinstance(e.get("readout"), int | float) for e in entries):
        return None
    return tuple(sorted(entries, key=lambda e: int(e.get("layer", 0))))


def _deep_run(file: Path, results: Mapping[str, Any], trained: tuple[Mapping[str, Any], ...]) -> DeepRun:
    root = file.parent.parent if file.parent.name == "logs" else file.parent
    layout = _layout(root, file.name.removesuffix(RESULTS_SUFFIX))
    saved = read_json(layout.record_file) or {}
    config = results.get("config") or saved.get("config") or {}
    timing = read_json(root / TIMING_FILE) or {}
    records = [r for r in log_records(layout) if "event" not in r]
    wall = timing.get("wall_s")
    if wall is None and records:
        wall = next((records[-1][k] for k in ("wall_s", "elapsed_s") if k in records[-1]), None)
    planned = (saved.get("schedule") or {}).get("steps")
    last = records[-1].get("step") if records else None
    stopped = f", stopped at step {last} of {planned}" if planned and isinstance(last, int) and last < planned else ""
    if timing.get("status") not in (None, "completed"):
        stopped += f", {STATUS.get(timing['status'], timing['status'])}"
    return DeepRun(layout.name, layout.name, root, config, trained, _readout_entries(results, "initialisation") or (),
                   float(wall) if isinstance(wall, int | float) else None, str(timing.get("device") or ""), stopped)


def load_deep_runs(files: Sequence[str | Path], qualify: bool = True) -> tuple[list[DeepRun], list[str]]:
    """The deep runs of ``files`` (results files; each once), labelled ``<folder>/<run name>`` (with
    ``qualify``, or when names repeat), and a note per file that holds no trained readouts."""
    runs: list[DeepRun] = []
    notes: list[str] = []
    seen: set[Path] = set()
    for file in map(Path, files):
        if file.resolve() in seen:
            continue
        seen.add(file.resolve())
        results = read_json(file)
        if results is None:
            notes.append(f"`{file}` is not a readable results file (JSON; rerun lpl readout on its folder); left out")
            continue
        trained = _readout_entries(results, "trained")
        if trained is None:
            notes.append(f"`{file}` holds no readouts of a trained network (an unfinished run, or not a deep run); "
                         "left out")
            continue
        runs.append(_deep_run(file, results, trained))
    labels = [r.name for r in runs]
    if runs and (qualify or len(set(labels)) < len(labels)):
        labels = run_labels([r.layout.results_file for r in runs], labels)
    return [replace(r, label=label) for r, label in zip(runs, labels)], notes


def init_rows(runs: Sequence[DeepRun]) -> list[InitRow]:
    """One row per distinct random initialisation: runs of the same data, seed and architecture (and readout
    settings) start from the same network; runs without a config are grouped by equal numbers."""
    groups: dict[str, list[DeepRun]] = {}
    known: dict[str, bool] = {}
    for run in runs:
        if not run.initialisation:
            continue
        by_config = all(k in run.config for k in ("seed", "channels"))
        key = json.dumps([run.config.get(k) for k in (*NETWORK_KEYS, *READOUT_KEYS)]) if by_config \
            else json.dumps([round(v, 9) for v in run.per_layer("readout", initialisation=True)])
        groups.setdefault(key, []).append(run)
        known[key] = by_config
    single = len(groups) == 1
    return [InitRow("random initialisation" if single else
                    "random initialisation of " + ", ".join(r.label for r in group), tuple(group), known[key])
            for key, group in groups.items()]


def scored_images(runs: Sequence[DeepRun]) -> int | None:
    """The fewest test images any of ``runs`` scored its readouts on (``num_export``), if known."""
    return min((r.config["num_export"] for r in runs if isinstance(r.config.get("num_export"), int)), default=None)


# ---------------------------------------------------------------- text

def _setup(runs: Sequence[DeepRun], tol: float, varied: Sequence[str]) -> str:
    if not runs:
        return "No deep run has trained readouts yet."
    config, count = runs[0].config, scored_images(runs)
    datasets = sorted({str(r.config.get("dataset", "unknown data")) for r in runs})
    text = (f"{len(runs)} deep run{'s' if len(runs) > 1 else ''} on **{', '.join(datasets)}**. Each layer's "
            f"pooled features are frozen and read out by a logistic regression ({config.get('eval_epochs', 20)} "
            f"epochs) fitted on {config.get('eval_train', 'the exported')} training images and scored on the "
            f"first {config.get('num_export', '?')} test images; accuracies in %. Differences up to "
            f"{100 * tol:.1f} points (0.5/√{count or 'n'}, the largest standard error of an accuracy) are called ties.")
    if len(datasets) > 1:
        text += " The runs use different data sets: their numbers are not comparable."
    if differing := _differences(runs, varied):
        text += (f" Settings that differ between the runs besides "
                 f"{join_names(['the objective', 'end-to-end', *varied])}: {differing}.")
    return text


def _differences(runs: Sequence[DeepRun], varied: Sequence[str]) -> str:
    """``epochs (deep_lpl 800, deep_byol 100)``: settings that differ between runs besides what is compared."""
    keys = sorted({k for r in runs for k in r.config} - NOT_COMPARED - set(varied))
    out = []
    for key in keys:
        values = [json.dumps(r.config.get(key)) for r in runs]
        if len(set(values)) > 1:
            out.append(f"{key} (" + ", ".join(f"{r.label} {v}" for r, v in zip(runs, values)) + ")")
    return "; ".join(out)


def _init_notes(runs: Sequence[DeepRun], inits: Sequence[InitRow]) -> list[str]:
    notes = []
    for init in inits:
        who = "all runs start" if len(init.runs) == len(runs) and len(runs) > 1 else \
            "the run starts" if len(init.runs) == 1 else f"{join_names([r.label for r in init.runs])} start"
        config = init.runs[0].config
        why = (f"seed {config.get('seed')}, {len(config.get('channels', []))} conv blocks on "
               f"{config.get('dataset', 'the same data')}" if init.same_network else "identical readouts")
        text = f"**{init.label}**: the network before training; {who} from it ({why})"
        if len(init.runs) > 1:
            text += ", so it is shown once"
        if init.spread > 1e-9:
            text += (f". Their readouts of it differ by up to {100 * init.spread:.1f} points (each run fits its "
                     f"own readout); the row shows those of {init.runs[0].label}")
        notes.append(text + ".")
    missing = [r.label for r in runs if not r.initialisation]
    if missing:
        notes.append(f"No readout at initialisation for {join_names(missing)}.")
    return notes


def verdict_sentences(runs: Sequence[DeepRun], inits: Sequence[InitRow], tol: float) -> list[str]:
    """The verdicts of ``verdicts.deep_sentences`` on ``runs``, each run against its own initialisation."""
    init_of = {r.label: i for i in inits for r in i.runs}
    return deep_sentences({r.label: r.readout for r in runs}, {label: i.readout for label, i in init_of.items()}, tol,
                          {label: "the random initialisation" if len(inits) == 1 else "its random initialisation"
                           for label in init_of})


# ---------------------------------------------------------------- table, figure, CSV

def readout_table(runs: Sequence[DeepRun], inits: Sequence[InitRow], extras: Extras = Extras()) -> Table:
    """A row per run, run not run yet, random initialisation and input readout; a column per layer (%), and
    the input, published and wall-time columns where there is something to show in them."""
    layers = max((len(r.readout) for r in runs), default=0)
    timed = any(r.wall_s is not None for r in runs) or any(x.wall_s is not None for x in extras.inputs)

    def row(label: str, objective: str, training: str, epochs: str, values: Sequence[float] = (),
            given: float | None = None, wall_s: float | None = None, device: str = "") -> tuple[str, ...]:
        cells = [label, objective, training, epochs]
        if extras.inputs:
            cells.append("" if given is None else pct(given))
        cells += [pct(values[i]) if i < len(values) else "" for i in range(layers)]
        if extras.published:
            cells.append(extras.published[label].text if label in extras.published else "")
        if timed:
            cells.append("" if wall_s is None else duration(wall_s) + (f" ({device})" if device else ""))
        return tuple(cells)

    headers = ("run", "objective", "training", "epochs", *(("input",) if extras.inputs else ()),
               *(f"layer {k}" for k in range(1, layers + 1)),
               *(("published (final layer)",) if extras.published else ()), *(("wall time",) if timed else ()))
    rows = [row(r.label, r.objective, r.training, r.length, r.readout, None, r.wall_s, r.device) for r in runs]
    rows += [row(label, "", "not run", "") for label in extras.missing]
    rows += [row(i.label, "—", "untrained", "0", i.readout) for i in inits]
    rows += [row(x.label, "—", "—", "—", (), x.readout, x.wall_s, x.device) for x in extras.inputs]
    return Table(headers, tuple(rows), tuple(h in ("epochs", "input") or h.startswith("layer ") for h in headers))


def _title(runs: Sequence[DeepRun], measure: str) -> str:
    datasets = sorted({str(r.config.get("dataset", "unknown data")) for r in runs})
    return f"{measure} per layer" + (f" ({', '.join(datasets)})" if datasets else "")


def _line_label(run: DeepRun) -> str:
    return f"{run.label} ({run.objective}, {run.training})"


def readout_figure(runs: Sequence[DeepRun], inits: Sequence[InitRow], path: Path, chance: float | None = None,
                   extras: Extras = Extras()) -> Path:
    """The readout per layer of every run and initialisation, with the input readouts and the published values
    of those drawn."""
    lines = {r.label: _line_label(r) for r in runs} | {x.label: x.label for x in extras.inputs}
    published = {lines[label]: p.value for label, p in extras.published.items()
                 if p.value is not None and label in lines}
    return plot_layer_comparison({_line_label(r): r.readout for r in runs}, {i.label: i.readout for i in inits},
                                 path, _title(runs, "Linear readout"), chance=chance,
                                 inputs={x.label: x.readout for x in extras.inputs}, published=published)


def participation_figure(runs: Sequence[DeepRun], path: Path) -> Path:
    """The participation ratio per layer of every run and random initialisation."""
    key = "participation_ratio"
    return plot_layer_comparison({_line_label(r): r.per_layer(key) for r in runs},
                                 {i.label: i.per_layer(key) for i in init_rows(runs)}, path,
                                 _title(runs, "Participation ratio"), "participation ratio of the test features",
                                 percent=False)


def deep_csv(runs: Sequence[DeepRun], inits: Sequence[InitRow], inputs: Sequence[InputReadout] = ()) -> str:
    """A row per run, random initialisation and input readout: settings, wall time, device, readout (fraction)
    and participation ratio per layer."""
    layers = max((len(r.trained) for r in runs), default=0)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row", "folder", "run", "objective", "training", "epochs", "steps", "seed", "wall_s", "device",
                     "input_readout", *(f"layer{k}_readout" for k in range(1, layers + 1)),
                     *(f"layer{k}_participation_ratio" for k in range(1, layers + 1))])

    def values(entries: Sequence[Mapping[str, Any]], key: str) -> list[Any]:
        return [entries[i].get(key, "") if i < len(entries) else "" for i in range(layers)]

    for r in runs:
        writer.writerow([r.label, str(r.root), r.name, r.objective, r.training, r.config.get("epochs", ""),
                         r.config.get("steps") or "", r.config.get("seed", ""), "" if r.wall_s is None else r.wall_s,
                         r.device, "", *values(r.trained, "readout"), *values(r.trained, "participation_ratio")])
    for i in inits:
        first = i.runs[0]
        writer.writerow([i.label, "", "", "", "random initialisation", 0, 0, first.config.get("seed", ""), "", "", "",
                         *values(first.initialisation, "readout"),
                         *values(first.initialisation, "participation_ratio")])
    for x in inputs:
        writer.writerow([x.label, "", "", "", "", "", "", "", "" if x.wall_s is None else x.wall_s, x.device,
                         x.readout, *[""] * (2 * layers)])
    return buffer.getvalue()


def deep_comparison(runs: Sequence[DeepRun], figure: Path, chance: float | None = None, notes: Sequence[str] = (),
                    extras: Extras = Extras()) -> tuple[list[Block], str]:
    """One table (a row per run and per random initialisation, a column per layer), one figure and the
    verdict sentences of deep runs side by side; and the same numbers as CSV (fractions)."""
    inits = init_rows(runs)
    tol = tolerance(scored_images(runs))
    png = readout_figure(runs, inits, figure, chance, extras)
    caption = ("Linear readout accuracy per layer: one line per run, the random initialisation dashed"
               + (", chance dotted" if chance is not None else "")
               + (", the input readout dash-dotted" if extras.inputs else "")
               + (", published values as stars" if extras.published else "") + ".")
    bullets = [*_init_notes(runs, inits), *notes]
    verdicts = verdict_sentences(runs, inits, tol) or ["No trained run to compare yet."]
    blocks: list[Block] = [
        Heading(extras.title), Paragraph(_setup(runs, tol, extras.varied)), readout_table(runs, inits, extras),
        *([Bullets(tuple(bullets))] if bullets else []), Figure(png, caption),
        Paragraph("**Findings.**"), Bullets(tuple(verdicts))]
    return blocks, deep_csv(runs, inits, extras.inputs)
