"""Deep runs, answer first: each run's linear readout per layer (``logs/<name>_results.json``) against the
random initialisation read out the same way, both protocols when the results hold the spatial one; one table
(Markdown, HTML and CSV), one figure and the verdicts. ``lpl reproduce`` adds the pixel readout, variants not
run yet and published values (``Extras``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpl.analysis.document import Block, Bullets, Column, Figure, Heading, Paragraph, Table
from lpl.analysis.figures import plot_layer_comparison
from lpl.analysis.runs import Run, chance_of
from lpl.analysis.verdicts import deep_sentences, join_names, pct, tolerance
from lpl.config import PLACEMENT, RUN_CONTROL

# With the record's network, these fix the network at initialisation and how it is read out.
NETWORK_KEYS = ("dataset", "image_size", "seed", "num_export", "eval_train", "eval_epochs")
# Settings that may differ between runs of a fair comparison (besides what is compared) or do not change results.
NOT_COMPARED = RUN_CONTROL | PLACEMENT | {"objective", "end_to_end", "name"}  # the last three: in each run's label


@dataclass(frozen=True)
class InitRow:
    """One random initialisation: the runs that start from it; its readouts shown are the first run's."""

    label: str
    runs: tuple[Run, ...]
    same_network: bool  # known from the records, not only from equal numbers

    def per_layer(self, key: str = "readout") -> list[float]:
        return self.runs[0].readouts("initialisation", key)

    @property
    def spread(self) -> float:
        """Largest difference between the runs' readouts of this network at initialisation, any layer."""
        return max((max(c) - min(c) for c in zip(*(r.readouts("initialisation") for r in self.runs))), default=0.0)


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
    """What a caller adds: a title, readouts of the raw input, labels of runs not run yet, published values (by
    row label) and the settings its runs change on purpose (not listed as differences)."""

    title: str = "Linear readout per layer"
    inputs: tuple[InputReadout, ...] = ()
    missing: tuple[str, ...] = ()
    published: Mapping[str, Published] = field(default_factory=dict)
    varied: tuple[str, ...] = ()


def init_rows(runs: Sequence[Run]) -> list[InitRow]:
    """One row per random initialisation: runs of the same data, seed and network (as their records say) and
    readout settings start from the same network; runs without a record are grouped by equal numbers."""
    groups: dict[str, list[Run]] = {}
    known: dict[str, bool] = {}
    for run in (r for r in runs if r.readouts("initialisation")):
        network = {k: v for k, v in (run.record or {}).get("network", {}).items() if k != "name"}  # name: a label
        by_record = bool(network) and "seed" in run.config
        key = json.dumps([network, *(run.config.get(k) for k in NETWORK_KEYS)], sort_keys=True) if by_record \
            else json.dumps([round(v, 9) for v in run.readouts("initialisation")])
        groups.setdefault(key, []).append(run)
        known[key] = by_record
    return [InitRow("random initialisation" if len(groups) == 1 else
                    "random initialisation of " + ", ".join(r.label for r in group), tuple(group), known[key])
            for key, group in groups.items()]


def scored_images(runs: Sequence[Run]) -> int | None:
    """The fewest test images any of ``runs`` scored its readouts on (``num_export``), if known."""
    return min((r.config["num_export"] for r in runs if isinstance(r.config.get("num_export"), int)), default=None)


def spatial(run: Run, stage: str) -> list[float]:
    """The spatial readout per layer, then of all blocks concatenated (none without it)."""
    found = run.results.get("spatial", {}).get(stage)
    return [*found["layers"], found["all"]] if isinstance(found, dict) else []


def answer(runs: Sequence[Run], chance: float | None) -> str:
    """The best trained layer of each protocol against the same run's network at initialisation, read out the
    same way, and chance; one answer per data set where the runs use several."""
    by_data: dict[str, list[Run]] = {}
    for run in runs:
        by_data.setdefault(run.dataset, []).append(run)
    if len(by_data) > 1:
        return "**Answer**, per data set. " + " ".join(
            f"On **{data}**: {_best(group, chance_of(group))}" for data, group in by_data.items())
    return "**Answer.** " + _best(runs, chance)


def _best(runs: Sequence[Run], chance: float | None) -> str:
    parts = []
    for protocol, get in (("globally pooled features (the paper's readout)", Run.readouts),
                          ("spatial readout", spatial)):
        if trained := [(run, k, v) for run in runs for k, v in enumerate(get(run, "trained"), 1)]:
            run, layer, value = max(trained, key=lambda e: e[2])
            start = get(run, "initialisation")
            where = "all blocks concatenated" if get is spatial and layer == len(get(run, "trained")) \
                else f"layer {layer}"
            versus = f" against {pct(start[layer - 1])}% for its random initialisation" if len(start) >= layer else ""
            parts.append(f"{protocol}: best is **{run.label}**, {where}, **{pct(value)}%**{versus}")
    text = "; ".join(parts)
    return (f"{text[:1].upper()}{text[1:]}. " if parts else "") + (
        f"Chance is {pct(chance)}%." if chance else
        "Chance cannot be judged (the runs do not share a data set with two or more known classes).")


def _setup(runs: Sequence[Run], tol: float, varied: Sequence[str]) -> str:
    config, count, datasets = runs[0].config, scored_images(runs), sorted({r.dataset for r in runs})
    text = (f"Each layer's pooled features are frozen and read out by a logistic regression "
            f"({config.get('eval_epochs', 20)} epochs) fitted on {config.get('eval_train', 'the exported')} training "
            f"images and scored on the first {config.get('num_export', '?')} test images; accuracies in %. "
            f"Differences up to {100 * tol:.1f} points (0.5/√{count or 'n'}, the largest standard error of an "
            f"accuracy) are called ties.")
    if len(datasets) > 1:
        text += f" The runs use different data sets ({', '.join(datasets)}): their numbers are not comparable."
    differing = [f"{key} (" + ", ".join(f"{r.label} {json.dumps(r.config.get(key))}" for r in runs) + ")"
                 for key in sorted({k for r in runs for k in r.config} - NOT_COMPARED - set(varied))
                 if len({json.dumps(r.config.get(key)) for r in runs}) > 1]
    if differing:
        text += (f" Settings that differ between the runs besides "
                 f"{join_names(['the objective', 'end-to-end', *varied])}: {'; '.join(differing)}.")
    return text


def _init_notes(runs: Sequence[Run], inits: Sequence[InitRow]) -> list[str]:
    notes = []
    for init in inits:
        who = "all runs start" if len(init.runs) == len(runs) > 1 else \
            "the run starts" if len(init.runs) == 1 else f"{join_names([r.label for r in init.runs])} start"
        first = init.runs[0]
        blocks = len((first.record or {}).get("network", {}).get("channels", []))
        why = f"seed {first.config.get('seed')}, {blocks} conv blocks on {first.dataset}" if init.same_network \
            else "identical readouts"
        text = f"**{init.label}**: the network before training; {who} from it ({why})"
        text += ", so it is shown once" if len(init.runs) > 1 else ""
        if init.spread >= 0.0005:  # shows as 0.1 points or more
            text += (f". Their readouts of it differ by up to {100 * init.spread:.1f} points (each run fits its "
                     f"own readout); the row shows those of {first.label}")
        notes.append(text + ".")
    if missing := [r.label for r in runs if not r.readouts("initialisation")]:
        notes.append(f"No readout at initialisation for {join_names(missing)}.")
    return notes


def readout_tables(runs: Sequence[Run], inits: Sequence[InitRow], extras: Extras = Extras()) -> list[Table]:
    """The readout table: a row per run, run not run yet, random initialisation and input readout, a column per
    layer (%), its CSV with wall time, device and participation ratios (fractions); and, where any run has
    it, the spatial readout's table of the same rows."""
    layers = max((len(r.readouts()) for r in runs), default=0)
    width = max((len(spatial(r, stage)) - 1 for r in runs for stage in ("trained", "initialisation")),
                default=0)  # blocks read out spatially

    def wall(seconds: float | None, device: str | None) -> dict[str, Any]:
        return {"wall_s": seconds, "device": device or None,
                "wall": None if seconds is None else duration(seconds) + (f" ({device})" if device else "")}

    def stage(group: Sequence[Run], name: str) -> dict[str, Any]:
        """The readouts of the first run of ``group``, the spatial ones of the first that has them."""
        values = {f"layer{k}_{key}": v for key in ("readout", "participation_ratio")
                  for k, v in enumerate(group[0].readouts(name, key), 1)}
        *layers, everything = next(filter(None, (spatial(r, name) for r in group)), [None])
        return values | {f"spatial{k}": v for k, v in enumerate(layers, 1)} | (
            {"spatial_all": everything} if layers else {})

    rows: list[dict[str, Any]] = [
        {"row": r.label, "folder": str(r.layout.root), "run": r.name, "objective": r.objective_name,
         "training": r.training, "epochs": r.length, **wall(r.wall_s, r.timing.get("device")), **stage([r], "trained")}
        for r in runs]
    rows += [{"row": label, "objective": "", "training": "not run", "epochs": ""} for label in extras.missing]
    rows += [{"row": i.label, "training": "untrained", "epochs": "0", **stage(i.runs, "initialisation")}
             for i in inits]
    rows += [{"row": x.label, "input_readout": x.readout, **wall(x.wall_s, x.device)} for x in extras.inputs]
    for row in rows:
        row["published"] = extras.published[row["row"]].text if row["row"] in extras.published else None
    columns = (Column("row", "run"), Column("folder", show=False), Column("run", show=False),
               *(Column(k, missing="—") for k in ("objective", "training", "epochs")),
               Column("input_readout", "input", "pct", show=bool(extras.inputs)),
               *(Column(f"layer{k}_readout", f"layer {k}", "pct") for k in range(1, layers + 1)),
               Column("published", "published (final layer)", show=bool(extras.published), csv=False),
               Column("wall", "wall time", show=any(r.get("wall") for r in rows), csv=False),
               Column("wall_s", show=False), Column("device", show=False),
               *(Column(f"layer{k}_participation_ratio", show=False) for k in range(1, layers + 1)),
               *(Column(f"spatial{k}", show=False) for k in range(1, width + 1)),
               *([Column("spatial_all", show=False)] if width > 0 else []))
    spatial_columns = (Column("row", "run"), *(Column(f"spatial{k}", f"layer {k}", "pct") for k in range(1, width + 1)),
                       Column("spatial_all", "all blocks", "pct"))
    return [Table(columns, tuple(rows))] + ([Table(spatial_columns, tuple(r for r in rows if "spatial1" in r))]
                                            if width > 0 else [])


def duration(seconds: float) -> str:
    """``75 s``, ``5.2 min`` or ``3.1 h``."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 \
        else f"{seconds / 3600:.1f} h"


def readout_figure(runs: Sequence[Run], inits: Sequence[InitRow], path: Path, chance: float | None = None,
                   extras: Extras = Extras(), key: str = "readout") -> Path:
    """``key`` (the readout, or the participation ratio) per layer of every run and initialisation, with the
    input readouts and the published values of those drawn."""
    readout = key == "readout"
    lines = {r.label: f"{r.label} ({r.objective_name}, {r.training})" for r in runs}
    published = {lines.get(label, label): p.value for label, p in extras.published.items()
                 if p.value is not None and label in lines.keys() | {x.label for x in extras.inputs}}
    title = f"{'Linear readout' if readout else 'Participation ratio'} per layer " \
            f"({', '.join(sorted({r.dataset for r in runs}))})"
    return plot_layer_comparison(
        {lines[r.label]: r.readouts("trained", key) for r in runs}, {i.label: i.per_layer(key) for i in inits}, path,
        title, "linear readout accuracy (%)" if readout else "participation ratio of the test features", readout,
        chance if readout else None, {x.label: x.readout for x in extras.inputs}, published)


def deep_comparison(runs: Sequence[Run], figure: Path, notes: Sequence[str] = (),
                    extras: Extras = Extras()) -> tuple[list[Block], Table]:
    """The answer, the readout tables, what the runs are, one figure and the verdicts of deep runs side by
    side; and the table whose CSV holds every number (fractions)."""
    inits = init_rows(runs)
    tol, chance = tolerance(scored_images(runs)), chance_of(runs)
    tables = readout_tables(runs, inits, extras)
    png = readout_figure(runs, inits, figure, chance, extras)
    caption = ("Linear readout accuracy per layer: one line per run, the random initialisation dashed"
               + (", chance dotted" if chance is not None else "")
               + (", the input readout dash-dotted" if extras.inputs else "")
               + (", published values as stars" if extras.published else "") + ".")
    grid = next((r.results["spatial"].get("grid") for r in runs if "spatial" in r.results), None)
    init_of = {r.label: i for i in inits for r in i.runs}
    verdicts = deep_sentences({r.label: r.readouts() for r in runs}, {k: i.per_layer() for k, i in init_of.items()},
                              tol, {k: "the random initialisation" if len(inits) == 1 else "its random initialisation"
                                    for k in init_of}) or ["No trained run to compare yet."]
    notes = [*_init_notes(runs, inits), *notes]
    spatial_blocks: list[Block] = [Paragraph(
        f"Spatial readout: every block's output average-pooled to at most {grid}×{grid} positions and flattened, "
        f"each block alone and all blocks concatenated, fitted and scored as above."),
        *tables[1:]] if len(tables) > 1 else []
    return [Heading(extras.title), Paragraph(answer(runs, chance)),
            Paragraph("Globally pooled features (the paper's readout), % correct, trained and at initialisation:"),
            tables[0], *spatial_blocks,
            Paragraph(_setup(runs, tol, extras.varied)), *([Bullets(tuple(notes))] if notes else []),
            Paragraph("**What the runs are** (from their run records):"),
            Bullets(tuple(f"**{r.label}**: {r.method()}; {r.network()}; {r.data_summary()}; {r.schedule()}"
                          for r in runs)),
            Figure(png, caption), Paragraph("**Findings.**"), Bullets(tuple(verdicts))], tables[0]
