"""Sentences computed from a table of numbers: best per probe, before vs after training, trained vs
baselines, identical rows and collapse. Pure functions over ``Row`` lists, so hand-made tables test them."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

# Probe accuracies the sentences judge, with their names in prose and table headers.
PROBES = {"linear_probe": "linear probe", "knn20": "kNN-20", "knn200": "kNN-200"}
# Differences of accuracy smaller than this are never called better or worse.
MIN_TOLERANCE = 0.005
# A trained representation is flagged when training pushed more than this fraction of units below std 0.1.
COLLAPSE_FRACTION = 0.5
# Differences of exactly the tolerance are ties: 0.620 - 0.615 must not come out as 0.005000000000000004.
ROUNDING = 1e-12


def tolerance(test_samples: int | None) -> float:
    """Ties below ``max(0.005, 0.5 / sqrt(n))``: the largest standard error of an accuracy on n test samples."""
    return max(MIN_TOLERANCE, 0.5 / math.sqrt(test_samples)) if test_samples else MIN_TOLERANCE


@dataclass(frozen=True)
class Row:
    """One representation of a results table: a layer of a run, before or after training, or a baseline.

    ``source`` is the run's label (``lpl``, ``outA/lpl``) or, for a baseline, its name; ``kind`` of a
    baseline is ``pixels``, ``random`` or ``pca``; ``runs`` names the runs a baseline belongs to (empty:
    all runs on the same ``data``); ``aliases`` are labels of identical rows merged into this one.
    """

    source: str
    stage: str  # "before", "after" or "baseline"
    values: Mapping[str, float]
    layer: str = ""
    data: str = ""
    kind: str = ""
    runs: tuple[str, ...] = ()
    aliases: tuple[str, ...] = field(default=(), compare=False)

    @property
    def trained(self) -> bool:
        return self.stage == "after"

    @property
    def unit(self) -> str:
        """``lpl`` or ``hierarchical_lpl layer 2``: the run and layer, without the stage."""
        return f"{self.source} layer {self.layer.removeprefix('layer')}" if self.layer else self.source

    @property
    def label(self) -> str:
        return self.source if self.stage == "baseline" else f"{self.unit}, {'trained' if self.trained else 'untrained'}"

    @property
    def full_label(self) -> str:
        """The label with the labels of merged identical rows."""
        return " = ".join((self.label, *self.aliases))


def judge(a: float, b: float, tol: float) -> str:
    """``better``, ``worse`` or ``tie`` (within ``tol``): a against b."""
    return "tie" if abs(a - b) <= tol + ROUNDING else "better" if a > b else "worse"


def join_names(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def pct(x: float) -> str:
    """A fraction as a percentage with one decimal, without the sign: ``53.5`` for 0.535."""
    return f"{100 * x:.1f}"


def _probes(rows: Sequence[Row], probes: Mapping[str, str]) -> list[str]:
    return [p for p in probes if any(p in r.values for r in rows)]


# ---------------------------------------------------------------- identical rows

def identical(a: Row, b: Row) -> bool:
    """Same data, the same columns and every value equal (to 1e-9)."""
    return (a.data == b.data and set(a.values) == set(b.values) and len(a.values) > 0
            and all(math.isclose(a.values[k], b.values[k], rel_tol=1e-9, abs_tol=1e-12) for k in a.values))


def _groups(rows: Sequence[Row]) -> list[list[Row]]:
    """Rows with identical numbers together, in table order; each label once."""
    groups: list[list[Row]] = []
    for row in rows:
        group = next((g for g in groups if identical(g[0], row)), None)
        if group is None:
            groups.append([row])
        elif row.label not in [r.label for r in group]:
            group.append(row)
    return groups


def duplicate_groups(rows: Sequence[Row]) -> list[list[Row]]:
    """Groups (two or more rows, in table order) of rows with identical numbers."""
    return [g for g in _groups(rows) if len(g) > 1]


def duplicate_reason(group: Sequence[Row]) -> str:
    """Why the rows of ``group`` have the same numbers, as far as their kinds tell."""
    reasons = []
    if any(r.kind == "random" for r in group) and any(r.stage == "before" for r in group):
        reasons.append("the random-projection baseline is built exactly like an untrained layer (same random "
                       "weights, same squashing), so an untrained layer of that width is that baseline")
    runs = [r for r in group if r.stage != "baseline"]
    if len({r.source for r in runs}) > 1 and any(r.layer for r in runs):
        reasons.append("learning is local: layer 1 of a stack starts from the same seed as a single-layer run and "
                       "learns only from its own input and output, nothing flows back from the layers above, "
                       "so with the same data and steps it is the same layer")
    if not reasons and len({r.source for r in runs}) > 1 and not any(r.layer for r in runs):
        reasons.append("training is deterministic, so runs with the same settings, data and seed end in the "
                       "same place")
    return "; ".join(reasons) or "the representations are the same numbers, column by column"


def duplicate_sentences(rows: Sequence[Row]) -> list[str]:
    return [f"Identical rows, shown once: {' = '.join(r.label for r in g)}. Why: {duplicate_reason(g)}."
            for g in duplicate_groups(rows)]


def merge_duplicates(rows: Sequence[Row]) -> list[Row]:
    """One row per group of identical rows (the first), carrying the others' labels as aliases."""
    return [replace(g[0], aliases=tuple(r.label for r in g[1:]),
                    runs=tuple(dict.fromkeys(x for r in g for x in r.runs))) for g in _groups(rows)]


# ---------------------------------------------------------------- verdicts

def _ranked(what: str, entries: Sequence[tuple[str, float, str]], tol: float, gap: Callable[[float], str],
            cap: int = 0) -> str:
    """``<what> best is A (shown), <gap> ahead of B (shown)``, ties within ``tol`` named together (beyond ``cap``
    of them counted); ``entries`` are (label, value, how the value is shown)."""
    ranked = sorted(entries, key=lambda e: -e[1])
    best = [e for e in ranked if judge(ranked[0][1], e[1], tol) == "tie"]
    names = [f"{label} ({shown})" for label, _, shown in best[:cap or None]]
    names += [f"{len(best) - cap} others"] if cap and len(best) > cap else []
    text = f"{what} best is {names[0]}" if len(best) == 1 else \
        f"{what} {join_names(names)} are best, within {gap(tol)} of each other"
    rest = ranked[len(best):]
    return text + (f", {gap(ranked[0][1] - rest[0][1])} ahead of {rest[0][0]} ({rest[0][2]})" if rest else "")


def best_sentences(rows: Sequence[Row], tol: float = MIN_TOLERANCE, chance: float | None = None,
                   probes: Mapping[str, str] = PROBES) -> list[str]:
    """Per probe: the best representation and its margin over the next (ties within ``tol`` named together)."""
    out = []
    for probe in _probes(rows, probes):
        entries = [(r.label, r.values[probe], f"{r.values[probe]:.3f}") for r in rows if probe in r.values]
        top = max(v for _, v, _ in entries)
        out.append(_ranked(f"{probes[probe]}:", entries, tol, lambda d: f"{d:.3f}", cap=4)
                   + (f"; no representation is above chance ({chance:.3f})." if chance is not None and
                      top - chance <= tol else "."))
    return out


def _untrained(rows: Sequence[Row]) -> dict[tuple[str, str, str], Row]:
    """The untrained row of each run, layer and data set."""
    return {(r.source, r.layer, r.data): r for r in rows if r.stage == "before"}


def _versus(a: Row, b: Row, tol: float, probes: Mapping[str, str]) -> str:
    """``better on kNN-20 (0.334 vs 0.266); tie on ...; worse on ...``: a judged against b."""
    found: dict[str, list[str]] = {"better": [], "tie": [], "worse": []}
    for probe in _probes([a, b], probes):
        if probe in a.values and probe in b.values:
            x, y = a.values[probe], b.values[probe]
            found[judge(x, y, tol)].append(f"{probes[probe]} ({x:.3f} vs {y:.3f})")
    return "; ".join(f"{v} on {join_names(items)}" for v, items in found.items() if items) or "no common probe"


def training_sentences(rows: Sequence[Row], tol: float = MIN_TOLERANCE,
                       probes: Mapping[str, str] = PROBES) -> list[str]:
    """Per trained row with an untrained twin: on which probes training made it better, worse or no different."""
    out = []
    untrained = _untrained(rows)
    for after in (r for r in rows if r.trained and (r.source, r.layer, r.data) in untrained):
        before = untrained[(after.source, after.layer, after.data)]
        extra = [f"{name} {before.values[k]:{fmt}} → {after.values[k]:{fmt}}"
                 for k, name, fmt in (("participation_ratio", "participation ratio", ".1f"),
                                      ("collapsed_units", "collapsed units", ".0f"))
                 if k in before.values and k in after.values]
        out.append(f"{after.unit} after vs before training: {_versus(after, before, tol, probes)}"
                   + (f"; {', '.join(extra)}" if extra else "") + ".")
    return out


def versus_sentence(row: Row, base: Row, tol: float = MIN_TOLERANCE, probes: Mapping[str, str] = PROBES) -> str:
    """``X vs Y: better on kNN-20 (0.334 vs 0.266); tie on ...; worse on ...``."""
    return f"{row.label} vs {base.label}: {_versus(row, base, tol, probes)}."


def baseline_sentences(rows: Sequence[Row], tol: float = MIN_TOLERANCE,
                       probes: Mapping[str, str] = PROBES) -> list[str]:
    """Every trained row against each baseline of its data and width whose runs (if it names any) include its own."""
    return [versus_sentence(r, b, tol, probes) for r in rows if r.trained for b in rows
            if b.stage == "baseline" and b.data == r.data and (not b.runs or r.source in b.runs)
            and b.values.get("units") == r.values.get("units")]


def collapse_sentences(rows: Sequence[Row], threshold: float = COLLAPSE_FRACTION) -> list[str]:
    """Trained rows with more than ``threshold`` of their units collapsed: ``COLLAPSED`` when training pushed them
    past it (or there is no untrained state), else a sentence that they were past it before training."""
    before = _untrained(rows)
    out = []
    for row in rows:
        if not row.trained or row.values.get("collapsed_fraction", 0.0) <= threshold:
            continue
        count, units = row.values["collapsed_units"], row.values["units"]
        state = f"{count:.0f} of {units:.0f} units have std < 0.1"
        twin = before.get((row.source, row.layer, row.data))
        if twin is None:
            out.append(f"COLLAPSED: {row.label}: {state}; there is no untrained state to compare with.")
            continue
        earlier = twin.values["collapsed_units"]
        if twin.values.get("collapsed_fraction", 0.0) <= threshold:
            out.append(f"COLLAPSED: {row.label}: {state}, up from {earlier:.0f} before training: training "
                       f"collapsed more than {threshold:.0%} of the units.")
        else:
            change = count - earlier
            what = f"training added {change:.0f}" if change > 0 else "training did not add any"
            out.append(f"Not caused by training: {row.label}: {state}, but {earlier:.0f} already did before "
                       f"training ({what}).")
    return out


# ---------------------------------------------------------------- deep runs side by side

def spans(layers: Sequence[int]) -> str:
    """``layers 1-2, 4-6 and 8`` for [1, 2, 4, 5, 6, 8]; ``layer 3`` for [3]."""
    out: list[list[int]] = []
    for layer in layers:
        if out and out[-1][-1] == layer - 1:
            out[-1][1:] = [layer]
        else:
            out.append([layer])
    return ("layer " if len(layers) == 1 else "layers ") + join_names(["-".join(map(str, s)) for s in out])


def ranking(entries: Sequence[tuple[str, float]], tol: float) -> str:
    """``A 56.2% > B 23.0% = C 22.9%``: (label, fraction) by falling value, ``=`` where within ``tol`` of the
    previous one."""
    ranked = sorted(entries, key=lambda e: -e[1])
    return "".join(("" if i == 0 else " = " if judge(ranked[i - 1][1], value, tol) == "tie" else " > ")
                   + f"{label} {pct(value)}%" for i, (label, value) in enumerate(ranked))


def _per_layer(values: Sequence[float], start: Sequence[float], tol: float) -> str:
    """``better at layers 2-8; worse at layer 1``: each layer judged against the same layer at initialisation."""
    found: dict[str, list[int]] = {"better": [], "tie": [], "worse": []}
    for layer, (a, b) in enumerate(zip(values, start), 1):
        found[judge(a, b, tol)].append(layer)
    if len([v for v in found.values() if v]) == 1:
        return next(f"{v} at every layer" for v, layers in found.items() if layers)
    return "; ".join(f"{v} at {spans(layers)}" for v, layers in found.items() if layers)


def deep_sentences(trained: Mapping[str, Sequence[float]], init: Mapping[str, Sequence[float]],
                   tol: float = MIN_TOLERANCE, init_label: Mapping[str, str] | None = None) -> list[str]:
    """Sentences on deep runs' readouts per layer (run -> fractions, layer 1 first): the best run at the final
    layer and at its best layer, every run's best layer, and each run against its random initialisation
    (``init``; ``init_label`` names it) at the final layer and layer by layer. Differences up to ``tol`` are ties."""
    runs = {run: list(values) for run, values in trained.items() if values}
    if not runs:
        return []
    out = []
    best_layer = {run: max(range(len(v)), key=lambda i: v[i]) for run, v in runs.items()}
    entries = [(run, runs[run][i], i + 1) for run, i in best_layer.items()]
    if len(runs) > 1:
        for what, found in (("At the final layer,", [(run, v[-1], len(v)) for run, v in runs.items()]),
                            ("At each run's best layer,", entries)):
            out.append(_ranked(what, [(run, v, f"{pct(v)}% at layer {k}") for run, v, k in found], tol,
                               lambda d: f"{100 * d:.1f} points") + ".")
    out.append("Best layer of each run: " + "; ".join(
        f"{run}: layer {layer} of {len(runs[run])} ({pct(value)}%)" for run, value, layer in entries) + ".")
    for run, values in runs.items():
        start = init.get(run)
        if not start or len(start) < len(values):
            continue
        a, b = values[-1], start[len(values) - 1]
        verdict = judge(a, b, tol)
        gap = f"within {100 * tol:.1f} points" if verdict == "tie" else f"{100 * (a - b):+.1f} points"
        name = (init_label or {}).get(run, "the random initialisation")
        layers = f" Layer by layer: {_per_layer(values, start, tol)}." if len(values) > 1 else ""
        out.append(f"{run} vs {name} at the final layer (layer {len(values)}): {verdict} "
                   f"({pct(a)}% vs {pct(b)}%, {gap}).{layers}")
    return out
