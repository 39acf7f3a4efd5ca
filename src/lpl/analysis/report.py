"""Reports built from what runs say about themselves (``runs``): deep runs' readouts first (``deep_report``),
then, per data set, every export's representations beside baselines of their width (setup, findings in
sentences, short tables with a glossary, view invariance of sequences), then each run's figures; written as
``report.md``, one self-contained ``report.html`` and the numbers as CSV."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from lpl.analysis import document, figures, verdicts
from lpl.analysis.deep_report import deep_comparison
from lpl.analysis.document import Block, Bullets, Column, Figure, Heading, Paragraph, Table
from lpl.analysis.evaluate import Evaluation, Views, analyze_file, load_representations
from lpl.analysis.probes import probe_split
from lpl.analysis.runs import Run, chance_of, find_runs
from lpl.analysis.verdicts import Row, merge_duplicates, tolerance
from lpl.io import atomic_write_text
from lpl.validation import LPLError


def _layer_number(layer: str) -> int:
    digits = layer.removeprefix("layer")
    return int(digits) if digits.isdigit() else 0


def evaluate_runs(runs: Sequence[Run], with_baselines: bool = True, views: Views = Views(),
                  asked: bool = False) -> list[Row]:
    """Rows of the runs' exports: each run's layers (untrained, trained), then each baseline once per data set,
    named with its data set when there are several. ``asked``: an invariance measure was asked for, so
    exports without sequences are an error."""
    rows: list[Row] = []
    baselines: dict[tuple[str, str], Row] = {}
    cache: dict[tuple, list[Evaluation]] = {}
    for run in (r for r in runs if r.exports):
        evaluations = analyze_file(run.exports.get("after", min(run.exports.values())), run.config or None,
                                   with_baselines, views=views, cache=cache)
        data, own = f"{run.dataset}, {evaluations[0].values['samples']:.0f} test images", []
        for e in evaluations:
            parts = e.name.split("/")[1:]
            if parts[0] != "baseline":
                own.append(Row(run.label, parts[-1], e.values, layer=parts[0] if len(parts) > 1 else "", data=data))
                continue
            kind, width = next(((k, parts[1][len(k):]) for k in ("random", "pca") if parts[1].startswith(k)),
                               (parts[1], ""))
            label = {"random": f"random projection, {width} units", "pca": f"PCA, {width} components"}.get(kind, kind)
            kept = baselines.setdefault((label, data), Row(label, "baseline", e.values, data=data, kind=kind))
            baselines[(label, data)] = replace(kept, runs=(*kept.runs, run.label))
        rows += sorted(own, key=lambda r: (_layer_number(r.layer), r.trained))
    if asked and not any("unit_invariance" in r.values for r in rows):
        raise LPLError("--cyclic, --objects and --gaps set the view-invariance measures, but no export here has "
                       "sequences (no 'sequence' and 'frame' keys); leave them out")
    several = len({r.data for r in rows}) > 1
    return rows + [replace(b, source=f"{b.source} ({b.data.rsplit(', ', 1)[0]})") if several else b
                   for b in baselines.values()]


# key: (header, format, meaning)
COLUMNS: dict[str, tuple[str, str, str]] = {
    "units": ("units", ".0f", "width of the representation; baselines are judged only against layers of their width."),
    "linear_probe": ("linear probe", ".3f", "accuracy of a logistic regression on standardised responses, fitted on "
                     "the first 70% of the evaluated test images and scored on the other 30%."),
    "knn20": ("kNN-20", ".3f", "accuracy of a vote among the 20 most cosine-similar fitting images (shown with more "
              "than 20 of them): are images of one class neighbours?"),
    "knn200": ("kNN-200", ".3f", "the same among 200 neighbours (shown with more than 200 fitting images)."),
    "collapsed_units": ("collapsed units", ".0f", "units whose std over the test images is below 0.1: they answer "
                        "every image alike (for L2-normalised embeddings, std x sqrt(width))."),
    "participation_ratio": ("participation ratio", ".1f", "effective number of dimensions of the responses, (sum of "
                            "eigenvalues)^2 / sum of squared eigenvalues of their covariance."),
    "mean_abs_correlation": ("mean abs. correlation", ".3f", "average |correlation| of two units: 0 = decorrelated."),
    "lifetime_sparsity": ("lifetime sparsity", ".3f", "Treves-Rolls sparsity of each unit over the images, averaged: "
                          "0 = a unit answers all images equally, 1 = only one."),
    "within_class_similarity": ("same class", ".3f", "mean cosine similarity (mean response subtracted) of two "
                                "images of one class."),
    "across_class_similarity": ("other class", ".3f", "the same for two classes; the gap to 'same class' measures "
                                "how much the classes cluster."),
    "consecutive_similarity": ("consecutive frames", ".3f", "the same for consecutive frames of one sequence."),
    "random_pair_similarity": ("random pairs", ".3f", "the same for random pairs, the reference for 'consecutive "
                               "frames'."),
    "view_identification": ("identification ≥{} frames", ".3f", "how often a view's nearest neighbour (centred "
                            "cosine) among all views of other sequences and its own sequence's views at least G "
                            "frames away is of its own sequence (object, with --objects). Chance: {}."),
    "unit_selectivity": ("unit selectivity", ".3f", "range of a unit's mean responses to the objects over the range "
                         "of its responses, averaged over units."),
    "unit_invariance": ("unit invariance", ".3f", "1 - a unit's response range over one sequence's views over its "
                        "whole range, averaged over sequences and units: 1 = every view of an object drives it alike."),
    "similarity_across": ("other sequences", ".3f", "mean cosine similarity of two views of different sequences."),
}
TABLES = {"Probe accuracy": ("units", "linear_probe", "knn20", "knn200"),
          "Unit statistics": ("collapsed_units", "participation_ratio", "mean_abs_correlation", "lifetime_sparsity"),
          "Similarity of responses (cosine)": ("within_class_similarity", "across_class_similarity",
                                               "consecutive_similarity", "random_pair_similarity"),
          "View invariance": ("view_identification", "unit_selectivity", "unit_invariance", "similarity_across")}


def _gaps(rows: Sequence[Row]) -> list[int]:
    return sorted({int(k.rsplit("_", 1)[1]) for r in rows for k in r.values if k.startswith("view_identification_")})


def tables(rows: Sequence[Row]) -> tuple[list[Block], list[str]]:
    """The short tables of ``rows`` (``view_identification``: a column per frame gap) and the glossary entries
    of their columns."""
    blocks: list[Block] = []
    glossary: list[str] = []
    for title, keys in TABLES.items():
        columns = []
        for key in keys:
            header, fmt, meaning = COLUMNS[key]
            if key == "view_identification" and (gaps := _gaps(rows)):
                chance = [next(r.values[f"view_chance_{g}"] for r in rows if f"view_chance_{g}" in r.values)
                          for g in gaps]
                columns += [Column(f"{key}_{g}", header.format(g), fmt) for g in gaps]
                glossary.append(f"**{header.format('G')}**: " + meaning.format(
                    ", ".join(f"{c:.3f} at G = {g}" for g, c in zip(gaps, chance))))
            elif any(key in r.values for r in rows):
                columns.append(Column(key, header, fmt))
                glossary.append(f"**{header}**: {meaning}")
        if columns:
            blocks += [Heading(title, 3), Table((Column("representation"), *columns),
                                                tuple({"representation": r.full_label, **r.values} for r in rows))]
    return blocks, glossary


def rows_table(rows: Sequence[Row]) -> Table:
    """Every value of every row (for the CSV), the representation named by its label."""
    keys = sorted({k for r in rows for k in r.values})
    return Table(tuple(Column(k) for k in ("representation", "run", "layer", "stage", *keys)),
                 tuple({"representation": r.label, "run": r.source if r.stage != "baseline" else "",
                        "layer": r.layer, "stage": r.stage, **r.values} for r in rows))


def _chance(runs: Sequence[Run], rows: Sequence[Row]) -> float | None:
    """``chance_of`` the runs' records, else 1 / the exported labels' classes; None for a single class."""
    if (chance := chance_of(runs)) is not None:
        return chance
    classes = int(rows[0].values.get("classes", 0))
    return 1 / classes if classes > 1 else None


def setup_paragraph(runs: Sequence[Run], rows: Sequence[Row]) -> str:
    """What the runs on one data set are, sample counts, the probe split, chance and the tie tolerance."""
    count = int(rows[0].values["samples"])
    fit, chance = len(probe_split(count)[0]), _chance(runs, rows)
    described = "; ".join(f"**{r.label}**: {r.method()}" + (f"; {r.network()}; {r.schedule()}" if r.record else "")
                          for r in runs)
    text = (f"{len(runs)} run{'s' * (len(runs) > 1)} on {runs[0].data_summary()}: {described}. Every "
            f"representation was measured on the first {count} test images, the same for every run and baseline; "
            f"probes were fitted on the first {fit} and scored on the other {count - fit}. ")
    if any(r.deep for r in runs):
        text += ("This probe protocol differs from the readout above (fitted on training images and scored on every "
                 "exported test image), so its numbers differ too. ")
    text += f"Chance level is 1/{1 / chance:.0f} = {chance:.3f}. " if chance else \
        "With a single class, chance (and so any accuracy) cannot be judged. "
    return text + (f"Accuracy differences up to {tolerance(count - fit):.3f} (0.5/√{count - fit}, the largest standard "
                   f"error of an accuracy on {count - fit} images) are called ties.")


def findings(rows: Sequence[Row], runs: Sequence[Run]) -> list[Block]:
    """Verdicts on the rows of one data set: best per probe and view identification, training, baselines of
    the same width, collapse, identical rows."""
    merged, count = merge_duplicates(rows), int(rows[0].values["samples"])
    tol = tolerance(count - len(probe_split(count)[0]))
    # every baseline, even one merged into an identical untrained row, is a reference for trained rows
    versus = [*(r for r in merged if r.stage != "baseline"), *(r for r in rows if r.stage == "baseline")]
    identification = {f"view_identification_{g}": f"identification ≥{g} frames" for g in _gaps(rows)}
    widths = {r.values.get("units") for r in rows if r.stage != "baseline"}
    unmatched = [r.label for r in rows if r.stage == "baseline" and r.values.get("units") not in widths]
    sections = {"Best representation per probe": verdicts.best_sentences(merged, tol, _chance(runs, rows)),
                "View invariance": verdicts.best_sentences(merged, tolerance(count), None, identification),
                "Training: after vs before": verdicts.training_sentences(merged, tol),
                "Trained representations vs baselines of the same width": verdicts.baseline_sentences(versus, tol),
                "Collapse": verdicts.collapse_sentences(rows), "Identical rows": verdicts.duplicate_sentences(rows),
                "Not judged against any layer (no layer has their width; PCA has at most as many components as "
                "images or pixels)": [", ".join(unmatched)] if unmatched else []}
    return [b for title, found in sections.items() if found
            for b in (Paragraph(f"**{title}.**"), Bullets(tuple(found)))]


def results_blocks(runs: Sequence[Run], rows: Sequence[Row], folder: Path | None = None) -> list[Block]:
    """Per data set: setup paragraph, findings, tables and (into ``folder``) the similarity of two views against
    their frame distance; then the glossary."""
    blocks: list[Block] = []
    glossary: list[str] = []
    datas = list(dict.fromkeys(r.data for r in rows))
    for number, data in enumerate(datas, 1):
        own = [r for r in rows if r.data == data]
        merged, members = merge_duplicates(own), [run for run in runs if any(r.source == run.label for r in own)]
        table_blocks, entries = tables(merged)
        glossary += [e for e in entries if e not in glossary]
        blocks += [*([Heading(data)] if len(datas) > 1 else []), Paragraph(setup_paragraph(members, own)),
                   Heading("Findings", 3), *findings(own, members), *table_blocks]
        curves = {r.full_label: ([int(k[14:]) for k in r.values if k.startswith("similarity_at_")],
                                 [v for k, v in r.values.items() if k.startswith("similarity_at_")],
                                 r.values["similarity_across"]) for r in merged if "similarity_across" in r.values}
        if curves and folder is not None:
            png = figures.plot_similarity_curves(curves, folder / f"similarity_by_distance_{number}.png",
                                                 f"Two views of one sequence ({data})")
            blocks.append(Figure(png, "Mean cosine similarity of two views of one sequence against their frame "
                                      "distance, a line per representation; dotted: views of different sequences."))
    return blocks + [Paragraph("Identical rows are shown once, their labels joined by '='. 'untrained' is the network "
                               "before its first update."), Heading("What the columns mean", 3),
                     Bullets(tuple(glossary))] if rows else blocks


def write_report(output_dir: str | Path, with_baselines: bool = True, views: Views = Views(),
                 asked: bool = False) -> Path:
    """``<output_dir>/report/report.md`` and ``report.html`` (figures embedded) of every run in ``output_dir``,
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
    if deep := [r for r in runs if r.deep]:
        deep_blocks, table = deep_comparison(deep, report / "deep_runs_readout.png")
        blocks += deep_blocks
        atomic_write_text(document.to_csv(table), report / "deep_runs.csv")
    if rows := evaluate_runs(runs, with_baselines, views, asked):
        blocks += [Heading("Representations on the exported test images"), *results_blocks(runs, rows, report)]
        atomic_write_text(document.to_csv(rows_table(rows)), report / "comparison.csv")
    for run in runs:
        blocks += _run_section(run, report)
    atomic_write_text(document.to_markdown(blocks), report / "report.md")
    atomic_write_text(document.to_html(blocks, f"LPL report: {root}"), report / "report.html")
    return report / "report.md"


def _run_section(run: Run, report: Path) -> list[Block]:
    """What the run is (unless the readouts above said), its training curves with what each term is and should
    do (from its record), histograms, PCA of every layer and receptive fields; nothing for a run without any."""
    out: list[Block] = []
    if run.record and not run.deep:
        revision = str(run.record.get("run", {}).get("git_revision", "unknown"))
        out.append(Paragraph(f"{run.method()}. Network: {run.network()}; {run.schedule()}; data: {run.data_summary()}. "
                             f"Written by {run.record.get('writer', 'lpl')} at git revision {revision[:12]}"
                             f"{'-dirty' * revision.endswith('-dirty')}."))
    if note := run.results.get("note"):
        out.append(Paragraph(f"Readouts: {note}."))
    if run.log:
        out += _curves(run, report)
    reps = {tag: load_representations(p) for tag, p in run.exports.items()}
    final = reps.get("after") or next(iter(reps.values()), None)
    titles = {layer: f"{run.label} layer {_layer_number(layer)}" if layer.startswith("layer") else run.label
              for layer in (final.layers if final else [])}
    if final:
        png = figures.plot_histograms({t[len(run.label) + 1:]: {"untrained" if tag == "before" else "trained":
                                                                r.layers[layer] for tag, r in reps.items()}
                                       for layer, t in titles.items()}, report / f"{run.layout.stem}_histograms.png",
                                      f"{run.label}: activation values")
        out.append(Figure(png, f"{run.label}: distribution of all response values on the {len(final.labels)} test "
                               f"images, untrained vs trained, per layer."))
    for layer, title in titles.items():
        png = figures.plot_embedding(final.layers[layer], final.labels, run.data.get("classes", []),  # type: ignore
                                     f"{title}: first two principal components",
                                     report / f"{run.layout.stem}_{layer}_pca.png")
        out.append(Figure(png, f"{title} (trained): test images on the first two principal components of the "
                               f"responses, coloured by class."))
    weights, shape = run.layout.weights_file, run.data.get("shape")
    if weights.is_file() and shape:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        first = state.get("state_dict", state).get("layers.0.weight") if isinstance(state, dict) else None
        if first is not None and first.shape[1] == math.prod(shape):
            png = figures.plot_receptive_fields(first, tuple(shape), report / f"{run.name}_receptive_fields.png")
            out.append(Figure(png, f"{run.label}: receptive fields (rows of the first weight matrix) after training."))
    return [Heading(f"Run {run.label}"), *out] if out else []


def _curves(run: Run, report: Path) -> list[Block]:
    """The training log: its length, throughput and events, the curves of every term grouped as the run record
    groups them, and what each is and should do in the record's words."""
    terms = (run.record or {}).get("terms", {})
    logged = [r for r in run.log if "event" not in r]
    speeds = [r["samples_per_s"] for r in logged if isinstance(r.get("samples_per_s"), int | float)]
    events = [f"{r['event']} at step {r.get('step')}" for r in run.log if "event" in r]
    text = f"{len(logged)} log record{'s' * (len(logged) != 1)}" + (
        f", the last at step {logged[-1].get('step')}" if logged else "") + (
        " (too few for a learning curve: log more often with --log-every)" if len(logged) == 1 else "") + (
        f"; throughput {sum(speeds) / len(speeds):,.0f} samples/s on average (a speed, so not plotted)"
        if speeds else "") + (f"; events: {', '.join(events)}" if events else "")
    out: list[Block] = [Paragraph(f"Training log: {text}.")]
    if drawn := figures.plot_training_curves(logged, report / f"{run.name}_curves.png",
                                             f"{run.label}: training curves", terms):
        notes = [f"**{n}**: " + (terms[n]["meaning"] + (f"; it {terms[n]['should']}" if terms[n].get("should") else "")
                                 if n in terms else "not described by the run record")
                 for group in drawn[1].values() for n in group]
        out += [Figure(drawn[0], f"{run.label}: logged quantities against the training step, grouped as the run "
                                 "record groups them, a line per layer for terms logged per layer."),
                Paragraph("What each quantity is and should do during training (from the run record):"),
                Bullets(tuple(notes))]
    return out
