"""Reports a scientist can read, built from what the runs say about themselves (``runs``): the deep runs'
readouts first (``deep_report``), then every export's representations beside baselines of the same width, per
data set (setup paragraph, findings in sentences, short tables with a glossary, view invariance for sequences),
then each run's figures; written as ``report.md`` and one self-contained ``report.html``, numbers as CSV.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from lpl.analysis.deep_report import deep_comparison
from lpl.analysis.document import (
    Block,
    Bullets,
    Column,
    Figure,
    Heading,
    Paragraph,
    Table,
    to_csv,
    to_html,
    to_markdown,
)
from lpl.analysis.evaluate import Evaluation, Views, analyze_file, load_representations
from lpl.analysis.figures import (
    plot_embedding,
    plot_histograms,
    plot_receptive_fields,
    plot_similarity_curves,
    plot_training_curves,
    split_key,
    term_group,
)
from lpl.analysis.probes import probe_split
from lpl.analysis.runs import Run, describe_data, find_runs
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
from lpl.io import atomic_write_text
from lpl.validation import LPLError

# ---------------------------------------------------------------- rows

def _baseline(name: str) -> tuple[str, str]:
    """(kind, label) of a baseline evaluation: ``random128`` -> ('random', 'random projection, 128 units')."""
    for kind, text in (("random", "random projection, {} units"), ("pca", "PCA, {} components")):
        if name.startswith(kind) and name[len(kind):].isdigit():
            return kind, text.format(name[len(kind):])
    return name, name


def _layer_number(layer: str) -> int:
    digits = layer.removeprefix("layer")
    return int(digits) if digits.isdigit() else 0


def evaluate_runs(runs: Sequence[Run], with_baselines: bool = True, views: Views = Views(),
                  asked: bool = False) -> list[Row]:
    """Rows of the runs' exports: each run's layers (untrained, trained), then each baseline once per data set,
    labelled by its data set when there are several. ``asked``: an invariance measure was asked for, so
    exports without sequences are an error."""
    rows: list[Row] = []
    baselines: dict[tuple[str, str], Row] = {}
    cache: dict[tuple, list[Evaluation]] = {}
    for run in runs:
        if not run.exports:
            continue
        evaluations = analyze_file(run.exports.get("after", min(run.exports.values())), run.config or None,
                                   with_baselines, views=views, cache=cache)
        data = f"{run.dataset}, {evaluations[0].values['samples']:.0f} test images"
        own = []
        for e in evaluations:
            parts = e.name.split("/")[1:]
            if parts[0] == "baseline":
                kind, label = _baseline(parts[1])
                kept = baselines.setdefault((label, data), Row(label, "baseline", e.values, data=data, kind=kind))
                baselines[(label, data)] = replace(kept, runs=(*kept.runs, run.label))
            else:
                own.append(Row(run.label, parts[-1], e.values, layer=parts[0] if len(parts) > 1 else "", data=data))
        rows += sorted(own, key=lambda r: (_layer_number(r.layer), r.trained))
    if asked and not any("unit_invariance" in r.values for r in rows):
        raise LPLError("--cyclic, --objects and --gaps set the view-invariance measures, but no export here has "
                       "sequences (no 'sequence' and 'frame' keys); leave them out")
    several = len({r.data for r in rows}) > 1
    return rows + [replace(b, source=f"{b.source} ({b.data.rsplit(', ', 1)[0]})") if several else b
                   for b in baselines.values()]


# ---------------------------------------------------------------- tables and glossary

# key: (header, format, meaning)
COLUMNS: dict[str, tuple[str, str, str]] = {
    "units": ("units", ".0f", "width of the representation (units, or embedding dimensions); baselines are judged "
                              "only against layers of their width."),
    "linear_probe": ("linear probe", ".3f", "accuracy of a logistic regression on standardised responses, fitted on "
                                            "the first 70% of the evaluated test images and scored on the other 30%."),
    "knn20": ("kNN-20", ".3f", "accuracy of a vote among the 20 most cosine-similar fitting images: are images of "
                               "one class neighbours? Shown only with more than 20 fitting images."),
    "knn200": ("kNN-200", ".3f", "the same vote among 200 neighbours: coarser, class-level structure. Shown only "
                                 "with more than 200 fitting images."),
    "collapsed_units": ("collapsed units", ".0f", "units whose standard deviation over the test images is below 0.1, "
                        "i.e. that answer every image alike (for L2-normalised embeddings the std is multiplied by "
                        "sqrt(width) first)."),
    "participation_ratio": ("participation ratio", ".1f", "effective number of dimensions the responses use, (sum of "
                            "eigenvalues)^2 / sum of squared eigenvalues of their covariance: 1 = one direction, "
                            "width = all directions equally."),
    "mean_abs_correlation": ("mean abs. correlation", ".3f", "average absolute correlation between two units: 0 = "
                             "decorrelated, 1 = redundant."),
    "lifetime_sparsity": ("lifetime sparsity", ".3f", "Treves-Rolls sparsity of each unit over the images, averaged: "
                          "0 = a unit answers all images equally, 1 = only one."),
    "within_class_similarity": ("same class", ".3f", "mean cosine similarity (mean response subtracted) of two "
                                "different images of the same class."),
    "across_class_similarity": ("other class", ".3f", "the same for images of different classes; the gap to 'same "
                                "class' measures how much the classes cluster."),
    "consecutive_similarity": ("consecutive frames", ".3f", "mean cosine similarity of consecutive frames of one "
                               "sequence: high = the responses change slowly as the object moves."),
    "random_pair_similarity": ("random pairs", ".3f", "the same for random pairs of images, the reference for "
                               "'consecutive frames'."),
    "view_identification": ("identification ≥{} frames", ".3f", "the fraction of views whose nearest neighbour "
                            "(centred cosine) among every view of the other sequences and the views of its own "
                            "sequence at least G frames away is of its own sequence (or object, with --objects): "
                            "view-invariant identification. Chance (a random candidate): {}."),
    "unit_selectivity": ("unit selectivity", ".3f", "per unit, the range of its mean responses to the objects over "
                         "the range of its responses, averaged over units: 1 = the objects drive it apart."),
    "unit_invariance": ("unit invariance", ".3f", "per unit, 1 minus its response range over one sequence's views "
                        "over its whole range, averaged over sequences and units: 1 = every view of an object "
                        "drives it alike."),
    "similarity_across": ("other sequences", ".3f", "mean cosine similarity of two views of different sequences, "
                          "the reference for the similarity-by-distance figure."),
}
TABLES = {
    "Probe accuracy": ("units", "linear_probe", "knn20", "knn200"),
    "Unit statistics": ("collapsed_units", "participation_ratio", "mean_abs_correlation", "lifetime_sparsity"),
    "Similarity of responses (cosine)": ("within_class_similarity", "across_class_similarity",
                                         "consecutive_similarity", "random_pair_similarity"),
    "View invariance": ("view_identification", "unit_selectivity", "unit_invariance", "similarity_across"),
}


def _gaps(rows: Sequence[Row]) -> list[int]:
    return sorted({int(k.rsplit("_", 1)[1]) for r in rows for k in r.values if k.startswith("view_identification_")})


def _columns(keys: Sequence[str], rows: Sequence[Row]) -> tuple[list[Column], list[str]]:
    """The columns of ``keys`` present in ``rows`` (``view_identification``: one per frame gap) and their
    glossary entries."""
    columns, glossary = [], []
    for key in keys:
        header, fmt, meaning = COLUMNS[key]
        if key == "view_identification" and (gaps := _gaps(rows)):
            chance = [next(r.values[f"view_chance_{g}"] for r in rows if f"view_chance_{g}" in r.values) for g in gaps]
            columns += [Column(f"{key}_{g}", header.format(g), fmt) for g in gaps]
            glossary.append(f"**{header.format('G')}**: " + meaning.format(
                ", ".join(f"{c:.3f} at G = {g}" for g, c in zip(gaps, chance))))
        elif any(key in r.values for r in rows):
            columns.append(Column(key, header, fmt))
            glossary.append(f"**{header}**: {meaning}")
    return columns, glossary


def tables(rows: Sequence[Row]) -> tuple[list[Block], list[str]]:
    """The short tables of ``rows`` and the glossary entries of the columns they show."""
    blocks: list[Block] = []
    glossary: list[str] = []
    cells = tuple({"representation": r.full_label, **r.values} for r in rows)
    for title, keys in TABLES.items():
        columns, entries = _columns(keys, rows)
        if columns:
            glossary += entries
            blocks += [Heading(title, 3), Table((Column("representation"), *columns), cells)]
    return blocks, glossary


def rows_table(rows: Sequence[Row]) -> Table:
    """Every value of every row (for the CSV), the representation named by its label."""
    keys = sorted({k for r in rows for k in r.values})
    return Table(tuple(Column(k) for k in ("representation", "run", "layer", "stage", *keys)),
                 tuple({"representation": r.label, "run": r.source if r.stage != "baseline" else "",
                        "layer": r.layer, "stage": r.stage, **r.values} for r in rows))


# ---------------------------------------------------------------- setup and findings

def _chance(runs: Sequence[Run], rows: Sequence[Row]) -> float | None:
    """1 / classes (from the record, else the exported labels); None for a single class."""
    classes = runs[0].classes if runs and runs[0].classes else int(rows[0].values.get("classes", 0)) if rows else 0
    return 1 / classes if classes > 1 else None


def setup_paragraph(runs: Sequence[Run], rows: Sequence[Row]) -> str:
    """What the runs on one data set are, sample counts, the probe split, chance and the tie tolerance."""
    count = int(rows[0].values["samples"])
    fit = len(probe_split(count)[0])
    chance = _chance(runs, rows)
    described = "; ".join(f"**{r.label}**: {r.method()}; {r.network()}; {r.schedule()}" if r.record else
                          f"**{r.label}**: {r.method()}" for r in runs)
    text = (f"{len(runs)} run{'s' if len(runs) > 1 else ''} on {describe_data(runs[0])}: {described}. Every "
            f"representation was measured on the first {count} test images, the same for every run and baseline; "
            f"probes were fitted on the first {fit} and scored on the other {count - fit}. ")
    if any(r.deep for r in runs):
        text += ("This probe protocol differs from the readout above (fitted on training images and scored on every "
                 "exported test image), so its numbers differ too. ")
    text += (f"Chance level is 1/{1 / chance:.0f} = {chance:.3f}. " if chance else
             "With a single class, chance (and so any accuracy) cannot be judged. ")
    return text + (f"Accuracy differences up to {tolerance(count - fit):.3f} (0.5/√{count - fit}, the largest standard "
                   f"error of an accuracy on {count - fit} images) are called ties.")


def findings(rows: Sequence[Row], runs: Sequence[Run]) -> list[Block]:
    """Verdict sentences on the rows of one data set: best per probe, training, baselines of the same width,
    collapse, identical rows."""
    merged = merge_duplicates(rows)
    score = int(rows[0].values["samples"]) - len(probe_split(int(rows[0].values["samples"]))[0])
    tol = tolerance(score)
    # every baseline, even one merged into an identical untrained row, is a reference for trained rows
    versus = [*(r for r in merged if r.stage != "baseline"), *(r for r in rows if r.stage == "baseline")]
    identification = {f"view_identification_{g}": f"identification ≥{g} frames" for g in _gaps(rows)}
    sections = (("Best representation per probe", best_sentences(merged, tol, _chance(runs, rows))),
                ("View invariance", best_sentences(merged, tolerance(int(rows[0].values["samples"])), None,
                                                   identification)),
                ("Training: after vs before", training_sentences(merged, tol)),
                ("Trained representations vs baselines of the same width", baseline_sentences(versus, tol)),
                ("Collapse", collapse_sentences(rows)),
                ("Identical rows", duplicate_sentences(rows)))
    blocks: list[Block] = []
    for title, sentences in sections:
        if sentences:
            blocks += [Paragraph(f"**{title}.**"), Bullets(tuple(sentences))]
    widths = {r.values.get("units") for r in rows if r.stage != "baseline"}
    unmatched = [r.label for r in rows if r.stage == "baseline" and r.values.get("units") not in widths]
    if unmatched:
        blocks.append(Paragraph(f"Not judged against any layer, as no layer has their width: {', '.join(unmatched)} "
                                f"(shown for reference). PCA has at most as many components as images or pixels."))
    return blocks


def results_blocks(runs: Sequence[Run], rows: Sequence[Row], figures: Path | None = None) -> tuple[list[Block],
                                                                                                   list[Row]]:
    """Per data set: setup paragraph, findings, tables (and, into ``figures``, the similarity of views against
    their frame distance); then the glossary. Returns the blocks and the rows shown."""
    blocks: list[Block] = []
    glossary: list[str] = []
    datas = list(dict.fromkeys(r.data for r in rows))
    shown = []
    for data in datas:
        own = [r for r in rows if r.data == data]
        merged = merge_duplicates(own)
        shown += merged
        members = [run for run in runs if any(r.source == run.label for r in own)]
        table_blocks, entries = tables(merged)
        glossary += [e for e in entries if e not in glossary]
        blocks += [*([Heading(data)] if len(datas) > 1 else []), Paragraph(setup_paragraph(members, own)),
                   Heading("Findings", 3), *findings(own, members), *table_blocks]
        curves = {}
        for r in (r for r in merged if "similarity_across" in r.values):
            points = sorted((int(k[14:]), v) for k, v in r.values.items() if k.startswith("similarity_at_"))
            curves[r.full_label] = ([d for d, _ in points], [v for _, v in points], r.values["similarity_across"])
        if curves and figures is not None:
            name = f"similarity_by_distance_{datas.index(data) + 1}.png"
            png = plot_similarity_curves(curves, figures / name, f"Two views of one sequence ({data})")
            blocks.append(Figure(png, "Mean cosine similarity of two views of one sequence against their frame "
                                      "distance, a line per representation; dotted: two views of different "
                                      "sequences, the reference."))
    if rows:
        blocks += [Paragraph("Identical rows are shown once, their labels joined by '='. 'untrained' is the network "
                             "before its first update."), Heading("What the columns mean", 3),
                   Bullets(tuple(glossary))]
    return blocks, shown


# ---------------------------------------------------------------- report

def write_report(output_dir: str | Path, with_baselines: bool = True, views: Views = Views(),
                 asked: bool = False) -> Path:
    """``<output_dir>/report/report.md`` and ``report.html`` (figures embedded) for every run in ``output_dir``,
    with ``deep_runs.csv`` and ``comparison.csv``."""
    root = Path(output_dir)
    report = root / "report"
    if not root.is_dir():
        raise LPLError(f"{root} is not a folder; pass the --output-dir of a training run")
    if root.name == "activations" and not (root / "activations").is_dir():
        raise LPLError(f"{root} is a run's activations folder; pass the run's output folder, {root.parent}")
    runs = find_runs([root])
    if not any(r.deep or r.exports for r in runs):
        raise LPLError(f"the runs in {root} have neither readouts (logs/*_results.json) nor exports "
                       f"(activations/*_after.pt); let a training run finish first")
    blocks: list[Block] = [Heading(f"LPL report: `{root}`", 1)]
    deep = [r for r in runs if r.deep]
    if deep:
        deep_blocks, table = deep_comparison(deep, report / "deep_runs_readout.png")
        blocks += deep_blocks
        atomic_write_text(to_csv(table), report / "deep_runs.csv")
    rows = evaluate_runs(runs, with_baselines, views, asked)
    if rows:
        results, _ = results_blocks(runs, rows, report)
        blocks += [Heading("Representations on the exported test images"), *results]
        atomic_write_text(to_csv(rows_table(rows)), report / "comparison.csv")
    for run in runs:
        blocks += _run_section(run, report)
    atomic_write_text(to_markdown(blocks), report / "report.md")
    atomic_write_text(to_html(blocks, f"LPL report: {root}"), report / "report.html")
    return report / "report.md"


def _run_section(run: Run, report: Path) -> list[Block]:
    """What the run is, its training curves with what each term should do, histograms, PCA of every layer and
    receptive fields."""
    text = f"{run.method()}."
    if run.record:
        revision = str(run.record.get("run", {}).get("git_revision", "unknown"))
        text += (f" Network: {run.network()}; {run.schedule()}; data: {describe_data(run)}. Written by "
                 f"{run.record.get('writer', 'lpl')} at git revision {revision[:12]}"
                 f"{'-dirty' if revision.endswith('-dirty') else ''}.")
    out: list[Block] = [Heading(f"Run {run.label}"), Paragraph(text)]
    if run.log:
        out += _curves(run, report)
    reps = {tag: load_representations(p) for tag, p in run.exports.items()}
    if not reps:
        return out
    stage_names = {"before": "untrained", "after": "trained"}
    layers = {(f"layer {_layer_number(layer)}" if layer.startswith("layer") else ""):
              {stage_names[t]: r.layers[layer] for t, r in reps.items()} for layer in next(iter(reps.values())).layers}
    final = reps.get("after") or next(iter(reps.values()))
    png = plot_histograms(layers, report / f"{run.layout.stem}_histograms.png", f"{run.label}: activation values")
    out.append(Figure(png, f"{run.label}: distribution of all response values on the {len(final.labels)} test "
                           f"images, untrained vs trained, per layer."))
    for layer, x in final.layers.items():
        who = f"{run.label} {f'layer {_layer_number(layer)}' if layer.startswith('layer') else ''}".strip()
        png = plot_embedding(x, final.labels, run.data.get("classes", []), f"{who}: first two principal components",
                             report / f"{run.layout.stem}_{layer}_pca.png")
        out.append(Figure(png, f"{who} (trained): test images on the first two principal components of the "
                               f"responses, coloured by class."))
    weights, shape = run.layout.weights_file, run.data.get("shape")
    if weights.is_file() and shape:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        first = state.get("state_dict", state).get("layers.0.weight") if isinstance(state, dict) else None
        if first is not None and first.shape[1] == math.prod(shape):
            png = plot_receptive_fields(first, tuple(shape), report / f"{run.name}_receptive_fields.png")
            out.append(Figure(png, f"{run.label}: receptive fields (rows of the first weight matrix) after training."))
    return out


def _curves(run: Run, report: Path) -> list[Block]:
    """Training curves (two or more log records) or a table of the one record, with what each logged term means
    and should do, in the words of the run record."""
    terms: Mapping[str, Mapping[str, Any]] = (run.record or {}).get("terms", {})
    logged = [r for r in run.log if "event" not in r]
    events = [f"{r['event']} at step {r.get('step')}" for r in run.log if "event" in r]
    speeds = [r["samples_per_s"] for r in logged if isinstance(r.get("samples_per_s"), int | float)]
    text = f"{len(logged)} log record{'s' if len(logged) != 1 else ''}"
    if logged:
        text += f", the last at step {logged[-1].get('step')}"
    if len(logged) == 1:
        text += " (too few for a learning curve: log more often with --log-every)"
    if speeds:
        text += f"; throughput {sum(speeds) / len(speeds):,.0f} samples/s on average (a speed, so not plotted)"
    out: list[Block] = [Paragraph(f"Training log: {text}" + (f"; events: {', '.join(events)}" if events else "") + ".")]
    names: list[str] = []
    if len(logged) == 1:
        table, names = _record_table(logged[0], terms)
        out += [table] if names else []
    elif drawn := plot_training_curves(logged, report / f"{run.name}_curves.png", f"{run.label}: training curves",
                                       terms):
        png, groups = drawn
        names = [n for group in groups.values() for n in group]
        layers = "; one line per layer" if any(split_key(k)[0] for r in logged for k in r) else ""
        out.append(Figure(png, f"{run.label}: logged quantities against the training step, grouped as the run "
                               f"record groups them{layers}."))
    notes = [f"**{n}**: {terms[n]['meaning']}" + (f"; it {terms[n]['should']}" if terms[n].get("should") else "")
             if n in terms else f"**{n}**: not described by the run record" for n in names]
    if notes:
        out += [Paragraph("What each quantity is and should do during training (from the run record):"),
                Bullets(tuple(notes))]
    return out


def _record_table(record: Mapping[str, Any], terms: Mapping[str, Mapping[str, Any]]) -> tuple[Table, list[str]]:
    """One log record as a table: a row per objective term or statistic, a column per layer."""
    values: dict[str, dict[str, float]] = {}
    for key, value in record.items():
        layer, name = split_key(key)
        if (key != "step" and term_group(name, terms) in ("objective", "statistics", "undescribed")
                and isinstance(value, int | float) and not isinstance(value, bool)):
            values.setdefault(name, {})[layer] = value
    names = sorted(values, key=lambda n: term_group(n, terms) != "objective")
    layers = sorted({layer for v in values.values() for layer in v}, key=lambda x: int(x or 0))
    columns = (Column("quantity"), *(Column(x or "value", f"layer {x}" if x else f"value at step {record.get('step')}",
                                            ".4g") for x in layers))
    return Table(columns, tuple({"quantity": n, **{x or "value": values[n].get(x) for x in layers}}
                                for n in names)), names
