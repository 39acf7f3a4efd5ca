"""Deep runs' answer first: each run's linear readout per layer (``logs/<name>_results.json``) against the
random initialisation read out the same way, with both protocols when the results hold the spatial one; one
table (Markdown, HTML and CSV), one figure and the verdict sentences. ``lpl report``, ``lpl compare`` and
``lpl reproduce`` (which adds the pixel readout, variants not run yet and published values: ``Extras``) use it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpl.analysis.document import Block, Bullets, Column, Figure, Heading, Paragraph, Table
from lpl.analysis.figures import plot_layer_comparison
from lpl.analysis.runs import Run, describe_data
from lpl.analysis.verdicts import deep_sentences, join_names, pct, tolerance
from lpl.config import PLACEMENT, RUN_CONTROL

# These fix the initial network (with the record's network) and how its readout is measured.
NETWORK_KEYS = ("dataset", "image_size", "seed", "num_export", "eval_train", "eval_epochs")
# Settings that may differ between runs of a fair comparison (besides what is compared) or do not change results.
NOT_COMPARED = RUN_CONTROL | PLACEMENT | {"objective", "end_to_end", "name"}  # the last three: in each run's label


def duration(seconds: float) -> str:
    """``75 s``, ``5.2 min`` or ``3.1 h``."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 \
        else f"{seconds / 3600:.1f} h"


def chance_of(runs: Sequence[Run]) -> float | None:
    """1 / classes of the runs' data set, if every record says and there are two or more classes."""
    classes = {r.classes for r in runs}
    count = classes.pop() if len(classes) == 1 else None
    return 1 / count if count and count > 1 else None


@dataclass(frozen=True)
class InitRow:
    """One random initialisation: the runs that start from it and the readout shown for it (the first run's)."""

    label: str
    runs: tuple[Run, ...]
    same_network: bool  # known from the configs, not only from equal numbers

    def per_layer(self, key: str = "readout") -> list[float]:
        return self.runs[0].readouts("initialisation", key)

    @property
    def spread(self) -> float:
        """Largest difference between the runs' readouts of this network at initialisation, any layer."""
        rows = [r.readouts("initialisation") for r in self.runs]
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

    title: str = "Linear readout per layer"
    inputs: tuple[InputReadout, ...] = ()
    missing: tuple[str, ...] = ()
    published: Mapping[str, Published] = field(default_factory=dict)
    varied: tuple[str, ...] = ()


def init_rows(runs: Sequence[Run]) -> list[InitRow]:
    """One row per distinct random initialisation: runs of the same data, seed and network (as their records
    describe it; and readout settings) start from the same network; runs without a record are grouped by equal
    numbers."""
    groups: dict[str, list[Run]] = {}
    known: dict[str, bool] = {}
    for run in runs:
        if not run.readouts("initialisation"):
            continue
        network = (run.record or {}).get("network")
        by_config = network is not None and "seed" in run.config
        key = json.dumps([network, *(run.config.get(k) for k in NETWORK_KEYS)], sort_keys=True) if by_config \
            else json.dumps([round(v, 9) for v in run.readouts("initialisation")])
        groups.setdefault(key, []).append(run)
        known[key] = by_config
    single = len(groups) == 1
    return [InitRow("random initialisation" if single else
                    "random initialisation of " + ", ".join(r.label for r in group), tuple(group), known[key])
            for key, group in groups.items()]


def scored_images(runs: Sequence[Run]) -> int | None:
    """The fewest test images any of ``runs`` scored its readouts on (``num_export``), if known."""
    return min((r.config["num_export"] for r in runs if isinstance(r.config.get("num_export"), int)), default=None)


# ---------------------------------------------------------------- text

def answer(runs: Sequence[Run], chance: float | None) -> str:
    """The headline: the best trained layer of each protocol against the same run's network at initialisation,
    read out the same way, and chance."""
    parts = []
    for protocol, get in (("globally pooled features (the paper's readout)", Run.readouts),
                          ("spatial readout", _spatial)):
        trained = [(run, k, v) for run in runs for k, v in enumerate(get(run, "trained"), 1)]
        if not trained:
            continue
        run, layer, value = max(trained, key=lambda e: e[2])
        start = get(run, "initialisation")
        versus = f" against {pct(start[layer - 1])}% for its random initialisation" if len(start) >= layer else ""
        last = get is _spatial and layer == len(get(run, "trained"))
        parts.append(f"{protocol}: best is **{run.label}**, {'all blocks concatenated' if last else f'layer {layer}'}, "
                     f"**{pct(value)}%**{versus}")
    text = "; ".join(parts)
    return (f"**Answer.** {text[0].upper()}{text[1:]}. " if parts else "") + (
        f"Chance is {pct(chance)}%." if chance is not None else "Chance cannot be judged (the runs do not share a "
                                                                  "data set with two or more known classes).")


def _spatial(run: Run, stage: str) -> list[float]:
    """The spatial readout per layer, then all blocks concatenated; none without it."""
    found = run.results.get("spatial", {}).get(stage)
    return [*found["layers"], found["all"]] if isinstance(found, dict) else []


def _setup(runs: Sequence[Run], tol: float, varied: Sequence[str]) -> str:
    if not runs:
        return "No deep run has trained readouts yet."
    config, count = runs[0].config, scored_images(runs)
    datasets = sorted({r.dataset for r in runs})
    text = (f"Each layer's pooled features are frozen and read out by a logistic regression "
            f"({config.get('eval_epochs', 20)} epochs) fitted on {config.get('eval_train', 'the exported')} training "
            f"images and scored on the first {config.get('num_export', '?')} test images; accuracies in %. "
            f"Differences up to {100 * tol:.1f} points (0.5/√{count or 'n'}, the largest standard error of an "
            f"accuracy) are called ties.")
    if len(datasets) > 1:
        text += f" The runs use different data sets ({', '.join(datasets)}): their numbers are not comparable."
    if differing := _differences(runs, varied):
        text += (f" Settings that differ between the runs besides "
                 f"{join_names(['the objective', 'end-to-end', *varied])}: {differing}.")
    return text


def _differences(runs: Sequence[Run], varied: Sequence[str]) -> str:
    """``epochs (deep_lpl 800, deep_byol 100)``: settings that differ between runs besides what is compared."""
    keys = sorted({k for r in runs for k in r.config} - NOT_COMPARED - set(varied))
    out = []
    for key in keys:
        values = [json.dumps(r.config.get(key)) for r in runs]
        if len(set(values)) > 1:
            out.append(f"{key} (" + ", ".join(f"{r.label} {v}" for r, v in zip(runs, values)) + ")")
    return "; ".join(out)


def _init_notes(runs: Sequence[Run], inits: Sequence[InitRow]) -> list[str]:
    notes = []
    for init in inits:
        who = "all runs start" if len(init.runs) == len(runs) and len(runs) > 1 else \
            "the run starts" if len(init.runs) == 1 else f"{join_names([r.label for r in init.runs])} start"
        first = init.runs[0]
        blocks = len((first.record or {}).get("network", {}).get("channels", []))
        why = f"seed {first.config.get('seed')}, {blocks} conv blocks on {first.dataset}" if init.same_network \
            else "identical readouts"
        text = f"**{init.label}**: the network before training; {who} from it ({why})"
        if len(init.runs) > 1:
            text += ", so it is shown once"
        if init.spread >= 0.0005:  # shows as 0.1 points or more
            text += (f". Their readouts of it differ by up to {100 * init.spread:.1f} points (each run fits its "
                     f"own readout); the row shows those of {init.runs[0].label}")
        notes.append(text + ".")
    missing = [r.label for r in runs if not r.readouts("initialisation")]
    if missing:
        notes.append(f"No readout at initialisation for {join_names(missing)}.")
    return notes


def verdict_sentences(runs: Sequence[Run], inits: Sequence[InitRow], tol: float) -> list[str]:
    """The verdicts of ``verdicts.deep_sentences`` on ``runs``, each run against its own initialisation."""
    init_of = {r.label: i for i in inits for r in i.runs}
    return deep_sentences({r.label: r.readouts() for r in runs}, {k: i.per_layer() for k, i in init_of.items()},
                          tol, {k: "the random initialisation" if len(inits) == 1 else "its random initialisation"
                                for k in init_of})


# ---------------------------------------------------------------- table, figure

def readout_tables(runs: Sequence[Run], inits: Sequence[InitRow], extras: Extras = Extras()) -> list[Table]:
    """The readout table (a row per run, run not run yet, random initialisation and input readout; a column per
    layer, %; the CSV also has settings, wall time, device and participation ratios, as fractions) and, when
    any run has them, the spatial readouts' table on the same rows."""
    layers = max((len(r.readouts()) for r in runs), default=0)
    spatial = max((len(_spatial(r, "trained")) for r in runs), default=0)
    timed = any(r.wall_s is not None for r in runs) or any(x.wall_s is not None for x in extras.inputs)

    def wall(seconds: float | None, device: str | None) -> str | None:
        return None if seconds is None else duration(seconds) + (f" ({device})" if device else "")

    def stage(group: Sequence[Run], name: str) -> dict[str, Any]:
        """The readouts of the first run of ``group``, the spatial ones of the first that has them."""
        values = {f"layer{k}_readout": v for k, v in enumerate(group[0].readouts(name), 1)}
        values |= {f"layer{k}_participation_ratio": v
                   for k, v in enumerate(group[0].readouts(name, "participation_ratio"), 1)}
        spatial = next((found for r in group if (found := _spatial(r, name))), [])
        return values | {f"spatial{k}": v for k, v in enumerate(spatial, 1)}

    rows: list[dict[str, Any]] = [
        {"row": r.label, "folder": str(r.layout.root), "run": r.name, "objective": r.objective.get("name") or
         r.config.get("objective"), "training": r.objective.get("training") or
         ("end-to-end" if r.config.get("end_to_end") else "layer-local"), "epochs": r.length,
         "steps": r.config.get("steps"), "seed": r.config.get("seed"), "wall_s": r.wall_s,
         "wall": wall(r.wall_s, r.timing.get("device")), "device": r.timing.get("device"), **stage([r], "trained")}
        for r in runs]
    rows += [{"row": label, "objective": "", "training": "not run", "epochs": ""} for label in extras.missing]
    rows += [{"row": i.label, "training": "untrained", "epochs": "0", "steps": 0, "seed": i.runs[0].config.get("seed"),
              **stage(i.runs, "initialisation")} for i in inits]
    rows += [{"row": x.label, "input_readout": x.readout, "wall_s": x.wall_s, "device": x.device or None,
              "wall": wall(x.wall_s, x.device)} for x in extras.inputs]
    for row in rows:
        row["published"] = extras.published[row["row"]].text if row["row"] in extras.published else None
    columns = (Column("row", "run"), Column("folder", show=False), Column("run", show=False),
               *(Column(k, missing="—") for k in ("objective", "training", "epochs")),
               *(Column(k, show=False) for k in ("steps", "seed")),
               Column("input_readout", "input", "pct", show=bool(extras.inputs)),
               *(Column(f"layer{k}_readout", f"layer {k}", "pct") for k in range(1, layers + 1)),
               Column("published", "published (final layer)", show=bool(extras.published), csv=False),
               Column("wall", "wall time", show=timed, csv=False), Column("wall_s", show=False),
               Column("device", show=False),
               *(Column(f"layer{k}_participation_ratio", show=False) for k in range(1, layers + 1)),
               *(Column(f"spatial{k}", show=False) for k in range(1, spatial + 1)))
    tables = [Table(columns, tuple(rows))]
    if spatial:
        shown = [r for r in rows if "spatial1" in r]
        tables.append(Table((Column("row", "run"), *(Column(f"spatial{k}", f"layer {k}" if k < spatial else
                                                            "all blocks", "pct") for k in range(1, spatial + 1))),
                            tuple(shown)))
    return tables


def _line_label(run: Run) -> str:
    return f"{run.label} ({run.objective.get('name') or run.config.get('objective')}, " \
           f"{run.objective.get('training', '')})"


def readout_figure(runs: Sequence[Run], inits: Sequence[InitRow], path: Path, chance: float | None = None,
                   extras: Extras = Extras(), key: str = "readout") -> Path:
    """``key`` (the readout, or the participation ratio) per layer of every run and initialisation, with the
    input readouts and the published values of those drawn."""
    readout = key == "readout"
    lines = {r.label: _line_label(r) for r in runs} | {x.label: x.label for x in extras.inputs}
    published = {lines[label]: p.value for label, p in extras.published.items()
                 if p.value is not None and label in lines}
    title = (f"{'Linear readout' if readout else 'Participation ratio'} per layer "
             f"({', '.join(sorted({r.dataset for r in runs}))})")
    axis = "linear readout accuracy (%)" if readout else "participation ratio of the test features"
    return plot_layer_comparison({_line_label(r): r.readouts("trained", key) for r in runs},
                                 {i.label: i.per_layer(key) for i in inits}, path, title, axis, readout,
                                 chance if readout else None, {x.label: x.readout for x in extras.inputs}, published)


def deep_comparison(runs: Sequence[Run], figure: Path, notes: Sequence[str] = (),
                    extras: Extras = Extras()) -> tuple[list[Block], Table]:
    """The answer, the readout tables, what the runs are, one figure and the verdict sentences of deep runs side
    by side; and the table whose CSV holds every number (fractions)."""
    inits = init_rows(runs)
    tol, chance = tolerance(scored_images(runs)), chance_of(runs)
    tables = readout_tables(runs, inits, extras)
    png = readout_figure(runs, inits, figure, chance, extras)
    caption = ("Linear readout accuracy per layer: one line per run, the random initialisation dashed"
               + (", chance dotted" if chance is not None else "")
               + (", the input readout dash-dotted" if extras.inputs else "")
               + (", published values as stars" if extras.published else "") + ".")
    grid = next((r.results["spatial"].get("grid") for r in runs if "spatial" in r.results), None)
    spatial: list[Block] = [Paragraph(
        f"Spatial readout: every block's output average-pooled to at most {grid}×{grid} positions and flattened, each "
        f"block alone and all blocks concatenated, fitted and scored as above."), tables[1]] if len(tables) > 1 else []
    described = [f"**{r.label}**: {r.method()}; {r.network()}; {describe_data(r)}; {r.schedule()}" for r in runs]
    notes = [*_init_notes(runs, inits), *notes]
    verdicts = verdict_sentences(runs, inits, tol) or ["No trained run to compare yet."]
    blocks: list[Block] = [
        Heading(extras.title), Paragraph(answer(runs, chance)),
        Paragraph("Globally pooled features (the paper's readout), % correct, trained and at initialisation:"),
        tables[0], *spatial,
        Paragraph(_setup(runs, tol, extras.varied)), *([Bullets(tuple(notes))] if notes else []),
        Paragraph("**What the runs are** (from their run records):"), Bullets(tuple(described)),
        Figure(png, caption), Paragraph("**Findings.**"), Bullets(tuple(verdicts))]
    return blocks, tables[0]
