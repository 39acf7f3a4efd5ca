"""Reports a scientist can read: a setup paragraph, findings in sentences, short tables with a glossary,
and figures per run; written as ``report.md`` and one self-contained ``report.html``. Several deep runs
in one folder are also shown side by side (``deep_report``).
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

import torch

from lpl.analysis.deep_report import (
    deep_comparison,
    deep_results_files,
    load_deep_runs,
    log_records,
    run_labels,
)
from lpl.analysis.document import Block, Bullets, Figure, Heading, Paragraph, Table, to_html, to_markdown
from lpl.analysis.evaluate import Evaluation, analyze_file, inputs_of, load_representations
from lpl.analysis.figures import (
    plot_embedding,
    plot_histograms,
    plot_layer_profile,
    plot_receptive_fields,
    plot_training_curves,
    split_key,
    term,
)
from lpl.analysis.verdicts import (
    Row,
    baseline_sentences,
    best_sentences,
    collapse_sentences,
    duplicate_sentences,
    merge_duplicates,
    tolerance,
    training_sentences,
)
from lpl.io import atomic_write_text, read_json
from lpl.layout import RunLayout, before_after, run_stem, saved_run
from lpl.validation import LPLError

# ---------------------------------------------------------------- runs

@dataclass
class Run:
    """One run's exports (before/after), what its saved config says, and its evaluated rows."""

    label: str
    name: str  # the run's name: prefix of its log, config and weight files
    stem: str
    files: dict[str, Path]
    saved: dict[str, Any] | None
    labels: torch.Tensor
    classes: tuple[str, ...]
    frames: int
    shape: tuple[int, ...] | None
    evaluations: list[Evaluation] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    @property
    def config(self) -> dict[str, Any]:
        return (self.saved or {}).get("config", {})

    @property
    def root(self) -> Path:
        """The output folder: the parent of ``activations/``."""
        return next(iter(self.files.values())).parent.parent

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.root, self.name, self.stem)

    @property
    def data(self) -> str:
        return f"{self.config.get('dataset', 'unknown data')}, {len(self.labels)} test images"

    @property
    def num_classes(self) -> int:
        return len(self.classes) or len(torch.unique(self.labels))


def _baseline(name: str) -> tuple[str, str]:
    """(kind, label) of a baseline evaluation: ``random128`` -> ('random', 'random projection, 128 units')."""
    for kind, text in (("random", "random projection, {} units"), ("pca", "PCA, {} components")):
        if name.startswith(kind) and name[len(kind):].isdigit():
            return kind, text.format(name[len(kind):])
    return name, name


def _rows(run: Run) -> list[Row]:
    rows = []
    for e in run.evaluations:
        parts = e.name.removeprefix(f"{run.stem}/").split("/")
        if parts[0] == "baseline":
            kind, label = _baseline(parts[1])
            rows.append(Row(label, "baseline", e.values, data=run.data, kind=kind, runs=(run.label,)))
        else:
            rows.append(Row(run.label, parts[-1], e.values, layer=parts[0] if len(parts) > 1 else "", data=run.data))
    return rows


def load_runs(paths: Sequence[str | Path], with_baselines: bool = True, qualify: bool = False) -> list[Run]:
    """Evaluate every distinct run among ``paths``; ``qualify`` labels runs ``<folder>/<name>`` (compare)."""
    runs: list[Run] = []
    seen: set[Path] = set()
    cache: dict[tuple, list[Evaluation]] = {}
    inputs_cache: dict[str, Any] = {}
    for path in map(Path, paths):
        files = before_after(path)
        if (key := min(files.values())) in seen:
            continue
        seen.add(key)
        reference = files.get("after", key)
        name, saved = saved_run(reference) or (run_stem(reference), None)
        config = (saved or {}).get("config")
        data_key = json.dumps([config.get(k) for k in ("dataset", "data_dir", "num_export")]) if config else ""
        if data_key not in inputs_cache:
            inputs_cache[data_key] = inputs_of(config)
        inputs = inputs_cache[data_key]
        labels = load_representations(reference).labels
        run = Run(name, name, run_stem(reference), files, saved, labels,
                  inputs.classes if inputs is not None else (), inputs.frames if inputs is not None else 1,
                  inputs.shape if inputs is not None else None)
        run.evaluations = analyze_file(reference, with_baselines, cache=cache)
        runs.append(run)
    names = [r.name for r in runs]
    if qualify or len(set(names)) < len(names):  # runs of one name in several folders
        names = run_labels([r.files.get("after", min(r.files.values())) for r in runs], names)
    for run, label in zip(runs, names):
        run.label = label
        run.rows = _rows(run)
    return runs


def ordered_rows(runs: Sequence[Run]) -> list[Row]:
    """Runs first (per layer: untrained, trained), then each baseline once."""
    rows: list[Row] = []
    baselines: dict[tuple[str, str], Row] = {}
    for run in runs:
        own = [r for r in run.rows if r.stage != "baseline"]
        rows += sorted(own, key=lambda r: (_layer_number(r.layer), r.trained))
        for b in (r for r in run.rows if r.stage == "baseline"):
            kept = baselines.setdefault((b.label, b.data), b)
            if kept is not b:
                baselines[(b.label, b.data)] = replace(kept, runs=(*kept.runs, *b.runs))
    return rows + list(baselines.values())


def _layer_title(layer: str) -> str:
    """``layer 2`` for ``layer2``; '' for the single representation of a one-layer export."""
    return f"layer {_layer_number(layer)}" if layer.startswith("layer") else ""


def _layer_number(layer: str) -> int:
    digits = layer.removeprefix("layer")
    return int(digits) if digits.isdigit() else 0


# ---------------------------------------------------------------- tables and glossary

@dataclass(frozen=True)
class Column:
    header: str
    fmt: str
    meaning: str


COLUMN_INFO = {
    "units": Column("units", ".0f", "width of the representation (units, or embedding dimensions)."),
    "linear_probe": Column("linear probe", ".3f",
                           "accuracy of a logistic regression on standardised responses, fitted on the first 70% "
                           "of the evaluated test images and scored on the other 30%."),
    "knn20": Column("kNN-20", ".3f", "accuracy of a vote among the 20 most cosine-similar fitting images: are "
                                      "images of one class neighbours?"),
    "knn200": Column("kNN-200", ".3f", "the same vote among 200 neighbours: coarser, class-level structure."),
    "collapsed_units": Column("collapsed units", ".0f",
                              "units whose standard deviation over the test images is below 0.1, i.e. that answer "
                              "every image alike (for L2-normalised embeddings the std is multiplied by "
                              "sqrt(width) first)."),
    "participation_ratio": Column("participation ratio", ".1f",
                                  "effective number of dimensions the responses use, (sum of eigenvalues)^2 / sum "
                                  "of squared eigenvalues of their covariance: 1 = one direction, width = all "
                                  "directions equally."),
    "mean_abs_correlation": Column("mean abs. correlation", ".3f",
                                   "average absolute correlation between two units: 0 = decorrelated, 1 = redundant."),
    "lifetime_sparsity": Column("lifetime sparsity", ".3f",
                                "Treves-Rolls sparsity of each unit over the images, averaged: 0 = a unit answers "
                                "all images equally, 1 = only one."),
    "within_class_similarity": Column("same class", ".3f",
                                      "mean cosine similarity (mean response subtracted) of two different images "
                                      "of the same class."),
    "across_class_similarity": Column("other class", ".3f",
                                      "the same for images of different classes; the gap to 'same class' measures "
                                      "how much the classes cluster."),
    "consecutive_similarity": Column("consecutive frames", ".3f",
                                     "mean cosine similarity of consecutive frames of one sequence: high = the "
                                     "responses change slowly as the object moves."),
    "random_pair_similarity": Column("random pairs", ".3f", "the same for random pairs of images, the reference "
                                                            "for 'consecutive frames'."),
}
TABLES = {
    "Probe accuracy": ("units", "linear_probe", "knn20", "knn200"),
    "Unit statistics": ("collapsed_units", "participation_ratio", "mean_abs_correlation", "lifetime_sparsity"),
    "Similarity of responses (cosine)": ("within_class_similarity", "across_class_similarity",
                                         "consecutive_similarity", "random_pair_similarity"),
}


def tables(rows: Sequence[Row]) -> tuple[list[Block], list[str]]:
    """The short tables of ``rows`` and the keys of the columns they show."""
    blocks: list[Block] = []
    shown: list[str] = []
    for title, keys in TABLES.items():
        present = [k for k in keys if any(k in r.values for r in rows)]
        if not present:
            continue
        shown += present
        cells = tuple((r.full_label, *(format(r.values[k], COLUMN_INFO[k].fmt) if k in r.values else ""
                                       for k in present)) for r in rows)
        blocks += [Heading(title, 3),
                   Table(("representation", *(COLUMN_INFO[k].header for k in present)), cells,
                         (False, *(True for _ in present)))]
    return blocks, shown


def glossary(keys: Sequence[str]) -> Bullets:
    return Bullets(tuple(f"**{COLUMN_INFO[k].header}**: {COLUMN_INFO[k].meaning}" for k in keys))


def rows_csv(rows: Sequence[Row]) -> str:
    """Every value of every row, the representation named by its label."""
    keys = sorted({k for r in rows for k in r.values})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["representation", "run", "layer", "stage", *keys])
    writer.writerows([r.label, r.source if r.stage != "baseline" else "", r.layer, r.stage,
                      *(r.values.get(k, "") for k in keys)] for r in rows)
    return buffer.getvalue()


# ---------------------------------------------------------------- setup and findings

def _test_split(count: int) -> tuple[int, int]:
    fit = int(round(count * 0.7))  # metrics.probe_split: first 70% fit, the rest scores
    return fit, count - fit


def _describe_method(config: Mapping[str, Any]) -> str:
    if "dims" in config:
        depth = "single-layer" if len(config["dims"]) == 2 else f"{len(config['dims']) - 1}-layer"
        return f"{depth} LPL {' → '.join(map(str, config['dims']))}"
    if "channels" in config:
        return f"deep LPL, {len(config['channels'])} conv blocks"
    if "tau" in config:
        return "BYOL (first convolution trained)"
    return "trained"


def _describe_run(run: Run) -> str:
    config, saved = run.config, run.saved or {}
    if not config:
        return f"**{run.label}**: no saved config found"
    steps = (saved.get("schedule") or {}).get("steps") or config.get("steps")
    epochs = None if config.get("steps") else config.get("epochs")  # deep runs: --steps 0 means by epochs
    length = f"{steps} steps" if steps else f"{epochs} epochs"
    length += f" ({epochs} epochs)" if steps and epochs else ""
    records = [r for r in log_records(run.layout) if "event" not in r]
    if records and steps and records[-1].get("step", steps) < steps:
        length += f", stopped at step {records[-1]['step']}"
    unit = "images" if "tau" in config else "pairs"
    mode = config.get("pairs") or config.get("views")
    if mode == "auto":  # PairStream: consecutive frames when the data has sequences, else augmented views
        mode = "temporal" if run.frames > 1 else "augment"
    extra = f", {mode} views" if mode else ""
    return (f"**{run.label}**: {_describe_method(config)}, {length} of {config.get('batch_size')} {unit}{extra}, "
            f"seed {config.get('seed')}")


def _describe_data(run: Run) -> str:
    dataset = run.config.get("dataset", "unknown data")
    if run.shape is None:
        return f"**{dataset}** ({run.num_classes} classes)"
    c, h, w = run.shape
    frames = f", sequences of {run.frames} frames" if run.frames > 1 else ""
    return (f"**{dataset}** ({h}×{w} pixels, {c} channel{'s' if c > 1 else ''}, {run.num_classes} classes{frames})")


def _revision(run: Run) -> str:
    revision = str((run.saved or {}).get("run", {}).get("git_revision", "unknown"))
    return revision[:12] + ("-dirty" if revision.endswith("-dirty") else "")


def setup_paragraph(runs: Sequence[Run]) -> str:
    """Data set, sample counts, steps, seeds, git revision, chance level and the tie tolerance."""
    by_data: dict[str, list[Run]] = {}
    for run in runs:
        by_data.setdefault(run.data, []).append(run)
    parts = []
    for group in by_data.values():
        first = group[0]
        count = len(first.labels)
        fit, score = _test_split(count)
        k = first.num_classes
        parts.append(f"{len(group)} run{'s' if len(group) > 1 else ''} on {_describe_data(first)}: "
                     + "; ".join(_describe_run(r) for r in group) + ". "
                     f"Every representation was measured on the first {count} test images, the same for every "
                     f"run and baseline; probes were fitted on the first {fit} and scored on the other {score}. "
                     f"Chance level is 1/{k} = {1 / k:.3f}. Accuracy differences up to {tolerance(score):.3f} "
                     f"(0.5/√{score}, the largest standard error of an accuracy on {score} images) are called ties.")
    revisions = sorted({_revision(r) for r in runs})
    parts.append(f"Code: git revision {', '.join(revisions)}.")
    return " ".join(parts)


def findings(rows: Sequence[Row], runs: Sequence[Run]) -> list[Block]:
    """Verdict sentences per data set: best per probe, training, baselines, collapse, identical rows."""
    blocks: list[Block] = []
    datas = list(dict.fromkeys(r.data for r in rows))
    for data in datas:
        own = [r for r in rows if r.data == data]
        merged = merge_duplicates(own)
        run = next((r for r in runs if r.data == data), None)
        tol = tolerance(_test_split(len(run.labels))[1]) if run else tolerance(None)
        chance = 1 / run.num_classes if run else None
        if len(datas) > 1:
            blocks.append(Heading(data, 3))
        # every baseline, even one merged into an identical untrained row, is a reference for trained rows
        versus = [*(r for r in merged if r.stage != "baseline"), *(r for r in own if r.stage == "baseline")]
        sections = (("Best representation per probe", best_sentences(merged, tol, chance)),
                    ("Training: after vs before", training_sentences(merged, tol)),
                    ("Trained representations vs baselines", baseline_sentences(versus, tol)),
                    ("Collapse", collapse_sentences(own)),
                    ("Identical rows", duplicate_sentences(own)))
        for title, sentences in sections:
            if sentences:
                blocks += [Paragraph(f"**{title}.**"), Bullets(tuple(sentences))]
    return blocks


def results_blocks(runs: Sequence[Run]) -> tuple[list[Block], list[Row]]:
    """Setup paragraph, findings, tables and glossary of ``runs`` (what ``compare`` writes)."""
    rows = ordered_rows(runs)
    datas = dict.fromkeys(r.data for r in rows)
    merged = [m for data in datas for m in merge_duplicates([r for r in rows if r.data == data])]
    table_blocks, shown = tables(merged)
    blocks: list[Block] = [Paragraph(setup_paragraph(runs)), Heading("Findings"), *findings(rows, runs),
                           Heading("Tables"),
                           Paragraph("Identical rows are shown once, their labels joined by '='. "
                                     "'untrained' is the network before its first update."),
                           *table_blocks, Heading("What the columns mean", 3), glossary(shown)]
    return blocks, rows


# ---------------------------------------------------------------- report

def write_report(output_dir: str | Path, with_baselines: bool = True) -> Path:
    """``<output_dir>/report/report.md`` and ``report.html`` (figures embedded) for every run in ``output_dir``."""
    root = Path(output_dir)
    report = root / "report"
    if not root.is_dir():
        raise LPLError(f"{root} is not a folder; pass the --output-dir of a training run")
    if root.name == "activations" and not (root / "activations").is_dir():
        raise LPLError(f"{root} is a run's activations folder; pass the run's output folder, {root.parent}")
    files = sorted((root / "activations").glob("*_after.pt"))
    if not files:
        raise LPLError(f"no *_after.pt files in {root / 'activations'}; train something first")
    runs = load_runs(files, with_baselines)
    blocks, rows = results_blocks(runs)
    blocks = [Heading(f"LPL report: `{root}`", 1), *blocks]
    deep, notes = load_deep_runs(deep_results_files(root, nested=False), qualify=False)
    if len(deep) > 1:  # several deep runs in one folder: side by side
        deep_blocks, deep_table = deep_comparison(deep, report / "deep_runs_readout.png",
                                                  1 / runs[0].num_classes, notes)
        blocks += deep_blocks
        atomic_write_text(deep_table, report / "deep_runs.csv")
    for run in runs:
        blocks += _layer_readouts(run, report)
    for run in runs:
        blocks += _run_section(run, report)
    atomic_write_text(to_markdown(blocks), report / "report.md")
    atomic_write_text(to_html(blocks, f"LPL report: {root}"), report / "report.html")
    atomic_write_text(rows_csv(rows), report / "comparison.csv")
    return report / "report.md"


def _layer_readouts(run: Run, report: Path) -> list[Block]:
    """Per-layer readout of a deep run (``logs/<name>_results.json``) and probes per layer of any multi-layer run."""
    out: list[Block] = []
    chance = 1 / run.num_classes
    results = read_json(run.layout.results_file) or {}
    stages = {s: results[s] for s in ("initialisation", "trained") if isinstance(results.get(s), list)}
    if len(stages) == 2:
        init, trained = stages["initialisation"], stages["trained"]
        out += [Heading(f"{run.name}: linear readout per layer"),
                Table(("layer", "readout at initialisation", "readout trained", "participation ratio (init → trained)"),
                      tuple((str(a["layer"]), f"{a['readout']:.3f}", f"{b['readout']:.3f}",
                             f"{a['participation_ratio']:.1f} → {b['participation_ratio']:.1f}")
                            for a, b in zip(init, trained)), (False, True, True, True))]
        best = max(trained, key=lambda r: r["readout"])
        start = next(a for a in init if a["layer"] == best["layer"])
        out.append(Paragraph(f"The best trained layer is layer {best['layer']} ({best['readout']:.3f}; "
                             f"{start['readout']:.3f} at initialisation; chance {chance:.3f}). Readouts are fitted "
                             f"on training images and scored on the test images."))
        profile = {"readout accuracy": {s: [r["readout"] for r in v] for s, v in stages.items()},
                   "participation ratio": {s: [r["participation_ratio"] for r in v] for s, v in stages.items()}}
        png = plot_layer_profile(profile, report / f"{run.name}_readout.png", f"{run.name}: per-layer readout", chance)
        out.append(Figure(png, f"{run.name}: linear readout accuracy and participation ratio per layer, at "
                               f"initialisation and trained (dashed: chance)."))
    layered = [r for r in run.rows if r.layer and r.stage != "baseline"]
    if len({r.layer for r in layered}) > 1:
        stage_names = {"before": "untrained", "after": "trained"}
        profile = {}
        for key, measure in (("linear_probe", "linear probe accuracy"), ("knn20", "kNN-20 accuracy"),
                             ("participation_ratio", "participation ratio")):
            lines = {stage_names[s]: [r.values[key] for r in sorted(layered, key=lambda r: _layer_number(r.layer))
                                      if r.stage == s and key in r.values] for s in stage_names}
            if any(lines.values()):
                profile[measure] = {s: v for s, v in lines.items() if v}
        if profile:
            png = plot_layer_profile(profile, report / f"{run.name}_layers.png", f"{run.label}: probes per layer",
                                     chance)
            out += [Heading(f"{run.label}: probes per layer"),
                    Figure(png, f"{run.label}: probes and participation ratio per layer, untrained and trained, on "
                                f"the evaluated test images (dashed: chance {chance:.3f}).")]
    return out


def _run_section(run: Run, report: Path) -> list[Block]:
    """Training curves with notes, histograms, PCA of every layer and receptive fields of one run."""
    out: list[Block] = [Heading(f"Run {run.label}")]
    records = log_records(run.layout)
    if records:
        out += _curves(run, records, report)
    reps = {tag: load_representations(p) for tag, p in run.files.items()}
    stage_names = {"before": "untrained", "after": "trained"}
    layers = {_layer_title(layer): {stage_names[t]: r.layers[layer] for t, r in reps.items()}
              for layer in next(iter(reps.values())).layers}
    png = plot_histograms(layers, report / f"{run.stem}_histograms.png", f"{run.label}: activation values")
    out.append(Figure(png, f"{run.label}: distribution of all response values on the {len(run.labels)} test images, "
                           f"untrained vs trained, per layer."))
    final = reps.get("after") or next(iter(reps.values()))
    for layer, x in final.layers.items():
        who = f"{run.label} {_layer_title(layer)}".strip()
        png = plot_embedding(x, final.labels, run.classes, f"{who}: first two principal components",
                             report / f"{run.stem}_{layer}_pca.png")
        out.append(Figure(png, f"{who} (trained): test images on the first two principal components of the "
                               f"responses, coloured by class."))
    weights = run.layout.weights_file
    if weights.is_file() and run.shape is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        first = state.get("state_dict", state).get("layers.0.weight") if isinstance(state, dict) else None
        if first is not None and first.shape[1] == math.prod(run.shape):
            png = plot_receptive_fields(first, run.shape, report / f"{run.name}_receptive_fields.png")
            out.append(Figure(png, f"{run.label}: receptive fields (rows of the first weight matrix) after training."))
    return out


def _curves(run: Run, records: list[dict[str, Any]], report: Path) -> list[Block]:
    """Training curves (two or more log records) or a table of the one record, with what each term should do."""
    out: list[Block] = []
    logged = [r for r in records if "event" not in r]
    events = [f"{r['event']} at step {r.get('step')}" for r in records if "event" in r]
    speeds = [r["samples_per_s"] for r in logged if isinstance(r.get("samples_per_s"), int | float)]
    text = f"{len(logged)} log record{'s' if len(logged) != 1 else ''}"
    if logged:
        text += f", the last at step {logged[-1].get('step')}"
    if len(logged) == 1:
        text += " (too few for a learning curve: log more often with --log-every)"
    if speeds:
        text += f"; throughput {sum(speeds) / len(speeds):,.0f} samples/s on average (a speed, so not plotted)"
    if events:
        text += f"; events: {', '.join(events)}"
    out.append(Paragraph(f"Training log: {text}."))
    names: list[str] = []
    if len(logged) == 1:
        table, names = _record_table(logged[0])
        out += [table] if names else []
    elif drawn := plot_training_curves(logged, report / f"{run.name}_curves.png", f"{run.label}: training curves"):
        png, names = drawn
        layers = "; one line per layer" if any(split_key(k)[0] for r in logged for k in r) else ""
        out.append(Figure(png, f"{run.label}: logged quantities against the training step{layers}."))
    notes = [f"**{term(n).title}**: {term(n).note}" for n in names if term(n).note]
    if notes:
        out += [Paragraph("What each quantity should do during training:"), Bullets(tuple(notes))]
    return out


def _record_table(record: Mapping[str, Any]) -> tuple[Table, list[str]]:
    """One log record as a table: a row per quantity, a column per layer."""
    values: dict[str, dict[str, float]] = {}
    for key, value in record.items():
        layer, name = split_key(key)
        if (key != "step" and term(name).group in ("objective", "statistics") and isinstance(value, int | float)
                and not isinstance(value, bool)):
            values.setdefault(name, {})[layer] = value
    names = sorted(values, key=lambda n: term(n).group != "objective")
    layers = sorted({layer for v in values.values() for layer in v}, key=lambda x: int(x or 0))
    headers = tuple(f"layer {x}" if x else f"value at step {record.get('step')}" for x in layers)
    rows = tuple((term(n).title, *(f"{values[n][x]:.4g}" if x in values[n] else "" for x in layers)) for n in names)
    return Table(("quantity", *headers), rows, (False, *(True for _ in layers))), names


__all__ = ["Run", "load_runs", "results_blocks", "rows_csv", "write_report"]
