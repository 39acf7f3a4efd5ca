"""Tables (Markdown, CSV) and the Markdown report with its figures."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from lpl.analysis.evaluate import (
    Evaluation,
    analyze_file,
    before_after,
    inputs_of,
    load_representations,
    run_config,
    run_stem,
)
from lpl.io import atomic_write_bytes, atomic_write_text
from lpl.validation import LPLError

COLUMNS = ("collapsed_units", "participation_ratio", "mean_abs_correlation", "lifetime_sparsity",
           "linear_probe", "knn20", "knn200", "within_class_similarity", "across_class_similarity",
           "consecutive_similarity", "random_pair_similarity")
# A trained representation with more than this fraction of units at std < 0.1 is flagged.
COLLAPSE_FRACTION = 0.5


COUNTS = ("collapsed_units", "units")


def _cell(column: str, value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.0f}" if column in COUNTS else f"{value:.3f}"


def markdown_table(rows: Sequence[Evaluation], columns: Sequence[str] = COLUMNS) -> str:
    present = [c for c in columns if any(c in r.values for r in rows)]
    lines = ["| representation | " + " | ".join(present) + " |", "|---" * (len(present) + 1) + "|"]
    lines += [f"| {r.name} | " + " | ".join(_cell(c, r.values.get(c)) for c in present) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_table(rows: Sequence[Evaluation]) -> str:
    keys = sorted({k for r in rows for k in r.values})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["representation", *keys])
    writer.writerows([r.name, *(r.values.get(k, "") for k in keys)] for r in rows)
    return buffer.getvalue()


def collapse_warnings(rows: Sequence[Evaluation]) -> list[str]:
    """COLLAPSED lines for trained representations; untrained ones ('/before') are not judged."""
    return [f"COLLAPSED: {r.name}: {r.values['collapsed_units']:.0f}/{r.values['units']:.0f} units have std < 0.1"
            for r in rows if not r.name.endswith("/before") and "/baseline/" not in r.name
            and r.values.get("collapsed_fraction", 0) > COLLAPSE_FRACTION]


def analyze_files(paths: Sequence[str | Path], with_baselines: bool = True) -> list[Evaluation]:
    rows: list[Evaluation] = []
    seen: set[Path] = set()
    cache: dict[tuple, list[Evaluation]] = {}
    for path in paths:
        key = min(before_after(path).values())
        if key not in seen:
            seen.add(key)
            rows += analyze_file(path, with_baselines, cache=cache)
    return rows


# ---------------------------------------------------------------- figures

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_receptive_fields(weight: torch.Tensor, shape: tuple[int, ...], path: Path, count: int = 32) -> Path:
    """The first ``count`` rows of W (out, in) as images of ``shape`` (C, H, W), each scaled to its range."""
    plt = _plt()
    cols = 8
    rows = -(-min(count, len(weight)) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1 + 0.5))
    for ax, w in zip(axes.flat, weight[:count]):
        image = w.reshape(shape).float()
        image = (image - image.min()) / (image.max() - image.min() + 1e-12)
        ax.imshow(image.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if shape[0] == 1 else None)
        ax.set_xticks([]), ax.set_yticks([])
    for ax in list(axes.flat)[len(weight[:count]):]:
        ax.axis("off")
    fig.suptitle(f"Receptive fields: first {min(count, len(weight))} rows of W, each scaled to its own range")
    return _save(fig, path)


def plot_training_curves(log_file: Path, path: Path) -> Path | None:
    """Every numeric logged quantity against the step, one panel each."""
    records = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    records = [r for r in records if "event" not in r]
    keys = [k for k in records[0] if k != "step" and isinstance(records[0][k], int | float)] if records else []
    if not keys:
        return None
    plt = _plt()
    cols = 4
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 3.2, rows * 2.4), squeeze=False)
    steps = [r["step"] for r in records]
    for ax, key in zip(axes.flat, keys):
        ax.plot(steps, [r.get(key) for r in records], marker=".")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"Training curves: {log_file.name}")
    return _save(fig, path)


def plot_histograms(files: dict[str, Path], path: Path) -> Path:
    """Histogram of all activation values, before vs after, one panel per layer."""
    plt = _plt()
    runs = {tag: load_representations(p) for tag, p in files.items()}
    layers = list(next(iter(runs.values())).layers)
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 3.2), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        for tag, run in runs.items():
            ax.hist(run.layers[layer].flatten().numpy(), bins=60, alpha=0.6, label=tag, density=True)
        ax.set_title(f"{layer}: activation values", fontsize=10)
        ax.set_xlabel("activation")
        ax.set_ylabel("density")
        ax.legend()
    return _save(fig, path)


def plot_embedding(x: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], title: str, path: Path) -> Path:
    """First two principal components of x, coloured by class."""
    plt = _plt()
    xc = x.double() - x.double().mean(0)
    _, _, v = torch.linalg.svd(xc, full_matrices=False)
    pcs = (xc @ v[:2].T).numpy()
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    scatter = ax.scatter(pcs[:, 0], pcs[:, 1], c=labels.numpy(), cmap="tab10", s=4, alpha=0.7)
    handles, _ = scatter.legend_elements()
    names = list(classes) or [str(i) for i in range(int(labels.max()) + 1)]
    ax.legend(handles, names[: len(handles)], fontsize=7, loc="best", markerscale=0.8)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    _plt().close(fig)
    return atomic_write_bytes(buffer.getvalue(), path)


# ---------------------------------------------------------------- report

def write_report(output_dir: str | Path, with_baselines: bool = True) -> Path:
    """``<output_dir>/report/report.md`` with figures for every run found in ``output_dir``."""
    root = Path(output_dir)
    report = root / "report"
    files = sorted((root / "activations").glob("*_after.pt"))
    if not files:
        raise LPLError(f"no *_after.pt files in {root / 'activations'}; train something first")
    sections = [f"# LPL report: `{root}`\n"]
    rows = analyze_files(files, with_baselines)
    sections += ["## Comparison\n", markdown_table(rows)]
    warnings = collapse_warnings(rows)
    sections += [f"\n**{w}**\n" for w in warnings]
    sections += _results_tables(root)
    for after in files:
        stem = run_stem(after)
        pair = before_after(after)
        sections.append(f"\n## {stem}\n")
        sections.append(f"![histograms]({plot_histograms(pair, report / f'{stem}_histograms.png').name})\n")
        config = run_config(after)
        inputs = inputs_of(config)
        final = load_representations(after)
        for layer, x in final.layers.items():
            png = plot_embedding(x, final.labels, inputs.classes if inputs else (), f"{stem} {layer} (after): PCA",
                                 report / f"{stem}_{layer}_pca.png")
            sections.append(f"![{layer} PCA]({png.name})\n")
        if config is not None:
            sections += _run_figures(root, config["name"], report, inputs)
    target = report / "report.md"
    atomic_write_text("\n".join(sections), target)
    atomic_write_text(csv_table(rows), report / "comparison.csv")
    return target


def _results_tables(root: Path) -> list[str]:
    """Per-layer readout of deep runs (``logs/*_results.json``): initialisation vs trained."""
    out = []
    for path in sorted((root / "logs").glob("*_results.json")):
        results = json.loads(path.read_text())
        if "initialisation" not in results or "trained" not in results:
            continue
        out += [f"\n## {path.name.removesuffix('_results.json')}: linear readout per layer\n",
                "| layer | readout at initialisation | readout trained | participation ratio (init -> trained) |",
                "|---|---|---|---|"]
        out += [f"| {a['layer']} | {a['readout']:.3f} | {b['readout']:.3f} | "
                f"{a['participation_ratio']:.1f} -> {b['participation_ratio']:.1f} |"
                for a, b in zip(results["initialisation"], results["trained"])]
    return out


def _run_figures(root: Path, name: str, report: Path, inputs) -> list[str]:
    """Training curves and receptive fields of the run called ``name``."""
    out = []
    log = root / "logs" / f"{name}_log.jsonl"
    if log.is_file() and (png := plot_training_curves(log, report / f"{name}_curves.png")):
        out.append(f"![training curves]({png.name})\n")
    weights = root / "weights" / f"{name}_weights.pt"
    if weights.is_file() and inputs is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        first = state.get("state_dict", state).get("layers.0.weight")
        if first is not None and first.shape[1] == inputs.features:
            png = plot_receptive_fields(first, inputs.shape, report / f"{name}_receptive_fields.png")
            out.append(f"![receptive fields]({png.name})\n")
    return out
