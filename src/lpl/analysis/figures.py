"""The report's figures (PNG): training curves grouped as the run record groups its terms, readout per layer
of runs side by side, similarity against frame distance, activation histograms, PCA embeddings, receptive fields."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from lpl.io import atomic_write_bytes

# The groups of logged terms (``lpl.terms``) drawn, in order; throughput is a speed, not a learning curve.
GROUP_TITLES = {"objective": "Objective terms (the quantities training minimises)",
                "statistics": "Statistics of weights and activations", "schedule": "Schedule",
                "undescribed": "Logged quantities the run record does not describe"}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, tight: bool = True) -> Path:
    if tight:
        fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")  # legends right of the axes included
    _plt().close(fig)
    return atomic_write_bytes(buffer.getvalue(), path)


def _legend_right(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))


def plot_training_curves(records: Sequence[Mapping[str, Any]], path: Path, title: str,
                         terms: Mapping[str, Mapping[str, Any]]) -> tuple[Path, dict[str, list[str]]] | None:
    """Logged terms (``layer<k>_<term>`` or ``<term>``) against the step, one panel per term and a line per
    layer, grouped as ``terms`` (the run record's) groups them; throughput is left out. Returns the figure and
    the terms drawn per group, or None when nothing was logged."""
    panels: dict[str, dict[str, dict[str, list[tuple[float, float]]]]] = {g: {} for g in GROUP_TITLES}
    for record in (r for r in records if "event" not in r and "step" in r):
        for key, value in record.items():
            layer, name = match.groups() if (match := re.match(r"layer(\d+)_(.+)$", key)) else ("", key)
            group = terms.get(name, {}).get("group", "undescribed")
            if key != "step" and group in panels and isinstance(value, int | float) and not isinstance(value, bool):
                panels[group].setdefault(name, {}).setdefault(layer, []).append((record["step"], float(value)))
    groups = [(g, drawn) for g, drawn in panels.items() if drawn]
    if not groups:
        return None
    plt = _plt()
    cols = max(min(4, max(len(t) for _, t in groups)), 2)
    heights = [-(-len(t) // cols) for _, t in groups]
    fig = plt.figure(figsize=(cols * 3.3, sum(heights) * 2.6 + 0.6 * len(groups)), layout="constrained")
    for subfig, (group, drawn), rows in zip(fig.subfigures(len(groups), 1, height_ratios=heights, squeeze=False)[:, 0],
                                            groups, heights):
        subfig.suptitle(GROUP_TITLES[group], fontsize=11, x=0.01, ha="left")
        axes = list(subfig.subplots(rows, cols, squeeze=False).flat)
        for ax, (name, lines) in zip(axes, drawn.items()):
            for layer, points in sorted(lines.items(), key=lambda kv: int(kv[0] or 0)):
                ax.plot(*zip(*points), marker="." if len(points) < 30 else None, label=layer and f"layer {layer}")
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("training step", fontsize=8)
            ax.tick_params(labelsize=7)
            if len(lines) > 1:
                ax.legend(fontsize=7)
        for ax in axes[len(drawn):]:
            ax.axis("off")
    fig.suptitle(title, fontsize=12)
    return _save(fig, path, tight=False), {group: list(drawn) for group, drawn in groups}


def plot_layer_comparison(runs: Mapping[str, Sequence[float]], init: Mapping[str, Sequence[float]], path: Path,
                          title: str, ylabel: str = "linear readout accuracy (%)", percent: bool = True,
                          chance: float | None = None, inputs: Mapping[str, float] | None = None,
                          published: Mapping[str, float] | None = None) -> Path:
    """A value per layer: a solid line per run, a dashed one per random initialisation (``{label: values}``,
    fractions drawn as % with ``percent``, else a log axis where they span more than a factor of ten); chance
    dotted, input readouts (``{label: fraction}``) dash-dotted, published final-layer values (``{label: %}``)
    as stars right of the last layer in the colour of their line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 4.6))
    scale = 100.0 if percent else 1.0
    colours: dict[str, str] = {}
    for label, values in runs.items():
        (line,) = ax.plot(range(1, len(values) + 1), [scale * v for v in values], marker="o", label=label)
        colours[label] = line.get_color()
    for i, (label, values) in enumerate(init.items()):
        ax.plot(range(1, len(values) + 1), [scale * v for v in values], linestyle="--", marker=".",
                color="black" if i == 0 else None, label=label)
    for label, value in (inputs or {}).items():
        ax.axhline(scale * value, color="black", linestyle="-.", linewidth=1, label=f"{label} ({scale * value:.1f}%)")
        colours[label] = "black"
    if chance is not None:
        ax.axhline(100 * chance, color="grey", linestyle=":", linewidth=1, label=f"chance ({100 * chance:.1f}%)")
    layers = max((len(v) for v in (*runs.values(), *init.values())), default=1)
    if published:
        _stars(ax, published, colours, layers + 0.3)
    drawn = [x for line in (*runs.values(), *init.values()) for x in line if x == x]  # NaN left out
    if not percent and drawn and max(drawn) > 10 * min(drawn) > 0:  # collapsed and rich layers on one axis
        ax.set_yscale("log")
    ax.set(xticks=range(1, layers + 1), xlabel="layer", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    _legend_right(ax)
    return _save(fig, path, tight=False)


def _stars(ax: Any, published: Mapping[str, float], colours: Mapping[str, str], x: float) -> None:
    """Published values (%) as stars at ``x`` in the colour of their line, the numbers kept apart where close."""
    text_y = -1e9
    for label, value in sorted(published.items(), key=lambda kv: kv[1]):
        ax.scatter([x], [value], marker="*", s=160, color=colours.get(label, "white"), edgecolors="black", zorder=3)
        text_y = max(value, text_y + 3.5)
        ax.annotate(f"{value:g}", (x, value), xytext=(12, text_y), fontsize=8, va="center",
                    textcoords=("offset points", "data"), bbox={"fc": "white", "ec": "none", "pad": 1},
                    arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5})
    ax.scatter([], [], marker="*", s=160, color="white", edgecolors="black", label="published, final layer")
    ax.set_xlim(0.7, x + 1.1)
    ax.set_ylim(0, max(ax.get_ylim()[1], text_y + 3))


def plot_similarity_curves(curves: Mapping[str, tuple[Sequence[int], Sequence[float], float]], path: Path,
                           title: str) -> Path:
    """Similarity of two views of one sequence against their frame distance, a line per representation
    (``{label: (distances, similarities, across-sequence similarity)}``), its across-sequence reference dotted."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.6))
    ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    for label, (distance, similarity, across) in curves.items():
        (line,) = ax.plot(distance, similarity, marker="o", label=label)
        ax.axhline(across, color=line.get_color(), linestyle=":", linewidth=1)
    ax.set(xlabel="frame distance", ylabel="mean cosine similarity (centred)", title=title,
           xticks=sorted({d for distance, _, _ in curves.values() for d in distance}))
    ax.grid(alpha=0.3)
    _legend_right(ax)
    return _save(fig, path, tight=False)


def plot_receptive_fields(weight: torch.Tensor, shape: tuple[int, ...], path: Path, count: int = 32) -> Path:
    """The first ``count`` rows of W (out, in) as images of ``shape`` (C, H, W), each scaled to its range."""
    plt = _plt()
    cols = 8
    rows = -(-min(count, len(weight)) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1 + 0.5), squeeze=False)
    for ax, w in zip(axes.flat, weight[:count]):
        image = w.reshape(shape).float()
        image = (image - image.min()) / (image.max() - image.min() + 1e-12)
        ax.imshow(image.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if shape[0] == 1 else None)
        ax.set_xticks([]), ax.set_yticks([])
    for ax in list(axes.flat)[len(weight[:count]):]:
        ax.axis("off")
    fig.suptitle(f"Receptive fields: first {min(count, len(weight))} rows of W, each scaled to its own range")
    return _save(fig, path)


def plot_histograms(layers: Mapping[str, Mapping[str, torch.Tensor]], path: Path, title: str) -> Path:
    """Histogram of all activation values, one panel per layer (``{layer: {stage: x}}``), stages overlaid."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 3.3), squeeze=False)
    for ax, (layer, stages) in zip(axes[0], layers.items()):
        for stage, x in stages.items():
            ax.hist(x.flatten().numpy(), bins=60, alpha=0.6, label=stage, density=True)
        ax.set(title=layer, xlabel="activation value", ylabel="density")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
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
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    return _save(fig, path)
