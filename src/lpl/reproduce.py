"""``lpl reproduce``: the paper's deep comparison in one command, with a report and figures.

Runs layer-local LPL (official protocol), its ablations (Hebbian, predictive or decorrelation
term off, shuffled positives, end-to-end LPL) and the pixel readout, each in a folder of its own::

    <output-dir>/<variant>/                 a normal train-deep output (logs/, activations/, weights/)
    <output-dir>/<variant>/reproduce_timing.json   wall time (training + readout) of each session, device
    <output-dir>/pixels/pixels_results.json the linear readout on raw pixels
    <output-dir>/report.md, reproduce.csv, readout_per_layer.png, participation_ratio_per_layer.png

A rerun skips finished variants, resumes an interrupted one from its checkpoint, and writes the
report again. ``--variants`` picks some, so that several processes (one per GPU) can share one
folder: each writes only its variants' files, and every successful invocation rewrites the
report from whatever has finished (the rest are listed as not run). ``reproduce.csv`` holds the
readouts as fractions; the report shows percentages.
"""

from __future__ import annotations

import csv
import dataclasses
import gc
import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from lpl.analysis.readout import pixel_readout
from lpl.config import check_device, check_fields, inherited, option, passed_on, require
from lpl.data import load_splits
from lpl.io import atomic_write_bytes, atomic_write_json, atomic_write_text, git_revision
from lpl.train.checkpoint import CheckpointFolder
from lpl.train.deep import DeepConfig, train_deep
from lpl.train.run import RESUMABLE_CHANGES, RunResult
from lpl.validation import LPLError


@dataclass(frozen=True)
class Variant:
    """One row of the comparison: its label, its DeepConfig settings and the published value (%)."""

    label: str
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    published: float | None = None
    published_text: str = "—"


VARIANTS: dict[str, Variant] = {
    "lpl": Variant("LPL", {}, 53.5, "53.5 (best layer ~55.3)"),
    "hebb_off": Variant("Hebbian off", {"hebb": 0.0}, 10.0, "10 (collapse)"),
    "pred_off": Variant("predictive off", {"pred": 0.0}, 18.5, "~18.5"),
    "decorr_off": Variant("decorrelation off", {"decorr": 0.0}, 19.2, "~19.2"),
    "shuffled": Variant("shuffled positives", {"shuffle_positives": True}),
    "end_to_end": Variant("end-to-end LPL", {"end_to_end": True}),
}
PIXELS = Variant("pixels", published=31.8, published_text="31.8")
NAMES = (*VARIANTS, "pixels")
PUBLISHED_ORDER = ("lpl", "decorr_off", "pred_off", "hebb_off")  # final layer, CIFAR-10
# Settings that may differ between a finished variant and a rerun without changing its results.
RERUN_CHANGES = RESUMABLE_CHANGES | {"device", "compile", "download", "data_dir", "output_dir"}
TIMING = "reproduce_timing.json"


@dataclass
class ReproduceConfig:
    """LPL, its ablations, random init and pixels on one data set, with report and figures."""

    dataset: str = inherited(DeepConfig, "dataset")
    data_dir: str | None = inherited(DeepConfig, "data_dir")
    download: bool = inherited(DeepConfig, "download")
    image_size: int | None = inherited(DeepConfig, "image_size")
    output_dir: str = option("outputs/reproduce", "folder of the variants' run folders and the report")
    variants: list[str] = option(list(NAMES), "variants to run (others are reported if already finished)")
    epochs: int = option(800, "training epochs of LPL (official protocol)")
    ablation_epochs: int = option(100, "training epochs of each ablation")
    batch_size: int = inherited(DeepConfig, "batch_size")
    seed: int = inherited(DeepConfig, "seed", 24, "random seed (official: 24)")
    device: str = inherited(DeepConfig, "device")
    eval_train: int = inherited(DeepConfig, "eval_train")
    eval_epochs: int = inherited(DeepConfig, "eval_epochs")
    num_export: int = inherited(DeepConfig, "num_export")
    channels: list[int] = inherited(DeepConfig, "channels")
    pool_after: list[int] = inherited(DeepConfig, "pool_after")
    compile: bool = inherited(DeepConfig, "compile")
    checkpoint_minutes: float = inherited(DeepConfig, "checkpoint_minutes")
    progress: bool = inherited(DeepConfig, "progress")

    def __post_init__(self) -> None:
        check_fields(self)
        check_device(self.device)
        unknown = sorted(set(self.variants) - set(NAMES))
        require(not unknown, f"--variants: unknown {', '.join(unknown)}; valid names: {', '.join(NAMES)}")
        require(bool(self.variants), f"--variants needs at least one of {', '.join(NAMES)}")
        require(self.eval_train >= 1 and self.eval_epochs >= 1, "--eval-train and --eval-epochs must be positive")
        require(self.ablation_epochs >= 1, "--ablation-epochs must be positive")
        self.deep_config("lpl")  # the shared settings are checked as train-deep checks them

    def folder(self, name: str) -> Path:
        return Path(self.output_dir) / name

    def deep_config(self, name: str, resume: bool = False, overwrite: bool = False) -> DeepConfig:
        """The train-deep config of variant ``name`` in ``<output-dir>/<name>``."""
        return DeepConfig(**passed_on(self, DeepConfig), output_dir=str(self.folder(name)), name=name,
                          epochs=self.epochs if name == "lpl" else self.ablation_epochs, resume=resume,
                          overwrite=overwrite, **VARIANTS[name].settings)

    def pixel_settings(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("dataset", "image_size", "eval_train", "eval_epochs", "num_export")}


def device_name(device: str) -> str:
    """The GPU's name on CUDA, else ``cpu (N threads)``."""
    parsed = torch.device(device)
    if parsed.type == "cuda":
        return torch.cuda.get_device_name(parsed)
    return f"cpu ({torch.get_num_threads()} threads)"


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's dict, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def results_file(config: ReproduceConfig, name: str) -> Path:
    if name == "pixels":
        return config.folder(name) / "pixels_results.json"
    return config.deep_config(name).layout().results_file


def finished(config: ReproduceConfig, name: str) -> dict[str, Any] | None:
    """The results of a finished variant (or None), after checking they match this config."""
    results = read_json(results_file(config, name))
    if results is None or ("readout" if name == "pixels" else "trained") not in results:
        return None
    if name == "pixels":
        saved, wanted = results.get("settings", {}), config.pixel_settings()
    else:
        saved, wanted = results.get("config", {}), dataclasses.asdict(config.deep_config(name))
    changed = sorted(k for k in set(saved) | set(wanted)
                     if k not in RERUN_CHANGES and saved.get(k, wanted.get(k)) != wanted.get(k))
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in changed)
        raise LPLError(f"{name} in {config.folder(name)} was finished with other settings ({detail}); rerun with "
                       f"those flags, delete {config.folder(name)} to redo it, or choose another --output-dir")
    return results


def record_session(config: ReproduceConfig, name: str, wall_s: float, status: str, resumed: bool,
                   epochs: int | None) -> None:
    """Add one session to ``<variant>/reproduce_timing.json`` (a fresh start replaces earlier ones)."""
    path = config.folder(name) / TIMING
    sessions = (read_json(path) or {}).get("sessions", []) if resumed else []
    sessions.append({"wall_s": round(wall_s, 3), "device": device_name(config.device), "status": status,
                     "resumed": resumed, "ended": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    devices = list(dict.fromkeys(s["device"] for s in sessions))
    atomic_write_json({"variant": name, "epochs": epochs, "wall_s": round(sum(s["wall_s"] for s in sessions), 3),
                       "device": " + ".join(devices), "status": status, "sessions": sessions}, path)


def run_variant(config: ReproduceConfig, name: str) -> RunResult:
    """Train variant ``name`` (resuming from its checkpoint, replacing a partial start) and time it."""
    layout = config.deep_config(name).layout()
    resume = bool(CheckpointFolder(layout.weights, layout.name).paths())
    overwrite = not resume and bool(layout.earlier_results())
    deep = config.deep_config(name, resume=resume, overwrite=overwrite)
    how = "resuming" if resume else "restarting" if overwrite else "running"
    print(f"reproduce: {how} {name} ({deep.epochs} epochs) in {layout.root}", flush=True)
    start = time.perf_counter()
    try:
        result = train_deep(deep)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the training loop
        record_session(config, name, time.perf_counter() - start, "interrupted", resume, deep.epochs)
        raise
    record_session(config, name, time.perf_counter() - start, result.status, resume, deep.epochs)
    if torch.device(config.device).type == "cuda":  # the next variant gets the whole GPU
        gc.collect()
        torch._dynamo.reset()  # drops the compiled step and its CUDA graph memory pool
        torch.cuda.empty_cache()
    return result


def run_pixels(config: ReproduceConfig) -> None:
    """The linear readout on raw pixels (the same training and test images as the layer readouts)."""
    print(f"reproduce: pixel readout in {config.folder('pixels')}", flush=True)
    start = time.perf_counter()
    train, test = load_splits(config.dataset, config.data_dir, config.download, image_size=config.image_size)
    count = min(config.eval_train, len(train))
    test = test.head(config.num_export)
    accuracy = pixel_readout(train, test, count, config.eval_epochs, config.device)
    atomic_write_json({"readout": accuracy, "train_images": count, "test_images": len(test),
                       "settings": config.pixel_settings()}, results_file(config, "pixels"))
    record_session(config, "pixels", time.perf_counter() - start, "completed", False, None)


# ---------------------------------------------------------------------------------------- the report
@dataclass
class Row:
    """One row of the table: per-layer readouts (fractions) and participation ratios."""

    name: str
    label: str
    readout: list[float]
    participation: list[float]
    epochs: int | None = None
    wall_s: float | None = None
    device: str = ""
    status: str = "completed"
    published: Variant | None = None


def collect(config: ReproduceConfig) -> tuple[dict[str, Row | None], Row | None]:
    """Rows of every variant and pixels (None: not run), and the random-init row from the lpl run."""
    rows: dict[str, Row | None] = {}
    init = None
    for name in NAMES:
        results = finished(config, name)
        if results is None:
            rows[name] = None
            continue
        timing = read_json(config.folder(name) / TIMING) or {}
        variant = PIXELS if name == "pixels" else VARIANTS[name]
        common = {"wall_s": timing.get("wall_s"), "device": timing.get("device", "?"), "published": variant}
        if name == "pixels":
            rows[name] = Row(name, variant.label, [results["readout"]], [], **common)
            continue
        trained = results["trained"]
        rows[name] = Row(name, variant.label, [r["readout"] for r in trained],
                         [r["participation_ratio"] for r in trained], results["config"].get("epochs"),
                         status=timing.get("status", "completed"), **common)
        if name == "lpl" and "initialisation" in results:
            first = results["initialisation"]
            init = Row("random_init", "random init", [r["readout"] for r in first],
                       [r["participation_ratio"] for r in first], 0, device=common["device"])
    return rows, init


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def spans(layers: Sequence[int]) -> str:
    """``layers 1-2, 4-6`` for [1, 2, 4, 5, 6]; ``layer 3`` for [3]."""
    out: list[str] = []
    for layer in layers:
        if out and int(out[-1].split("-")[-1]) == layer - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{layer}"
        else:
            out.append(str(layer))
    return ("layer " if len(layers) == 1 else "layers ") + ", ".join(out)


def ranking(pairs: Sequence[tuple[str, float]]) -> str:
    """``A 56.2% > B 23.0% = C 23.0%`` for pairs sorted by falling value."""
    text = ""
    for i, (label, value) in enumerate(pairs):
        text += ("" if not i else " = " if pct(value) == pct(pairs[i - 1][1]) else " > ") + f"{label} {pct(value)}%"
    return text


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 \
        else f"{seconds / 3600:.1f} h"


def findings(rows: dict[str, Row | None], init: Row | None, layers: int) -> tuple[list[str], list[str]]:
    """Sentences computed from the numbers, and the must-show checks."""
    lpl, hebb = rows["lpl"], rows["hebb_off"]
    deep = list(range(3, layers + 1))
    where = spans(deep) if deep else ""
    few = f"not checked: the network has {layers} layer(s), the check is on layers 3 and up"
    text, checks = [], []
    if lpl is not None and init is not None:
        gap = lpl.readout[-1] - init.readout[-1]
        best = max(range(len(lpl.readout)), key=lambda i: lpl.readout[i])
        text.append(f"LPL's final layer (layer {layers}) reads out {pct(lpl.readout[-1])}% (published 53.5%), "
                    f"{abs(100 * gap):.1f} points {'above' if gap >= 0 else 'below'} its random initialisation "
                    f"({pct(init.readout[-1])}%); its best layer is layer {best + 1} with {pct(lpl.readout[best])}% "
                    "(published best layer ~55.3%).")
        above = [i for i, (a, b) in enumerate(zip(lpl.readout, init.readout), 1) if a > b]
        below = [i for i in range(1, layers + 1) if i not in above]
        parts = [f"above at {spans(above)}" if above else "", f"at or below at {spans(below)}" if below else ""]
        text.append("Compared with its random initialisation, LPL is " + " and ".join(p for p in parts if p) + ".")
    pixels = rows["pixels"]
    if pixels is not None:
        gap = 0.0 if lpl is None else lpl.readout[-1] - pixels.readout[0]
        versus = "" if lpl is None else \
            f"; LPL's final layer is {abs(100 * gap):.1f} points {'above' if gap >= 0 else 'below'} it"
        text.append(f"The same readout on raw pixels gives {pct(pixels.readout[0])}% (published 31.8%){versus}.")
    ran = [r for r in rows.values() if r is not None and r.name != "pixels"]
    if len(ran) > 1:
        ordered = sorted(ran, key=lambda r: -r.readout[-1])
        text.append("At the final layer: " + ranking([(r.label, r.readout[-1]) for r in ordered]) + ".")
    if all(rows[n] is not None for n in PUBLISHED_ORDER):
        final = {n: rows[n].readout[-1] for n in PUBLISHED_ORDER}  # type: ignore[union-attr]
        ours = sorted(PUBLISHED_ORDER, key=lambda n: -final[n])
        same = all(final[a] > final[b] for a, b in zip(PUBLISHED_ORDER, PUBLISHED_ORDER[1:]))
        text.append("The published order at the final layer (" + " > ".join(VARIANTS[n].label for n in PUBLISHED_ORDER)
                    + f") is {'reproduced' if same else 'not reproduced'}"
                    + ("." if same else f" (here: {ranking([(VARIANTS[n].label, final[n]) for n in ours])})."))

    def check(claim: str, ok: bool | None, detail: str) -> None:
        verdict = "not run" if ok is None else "holds" if ok else "fails"
        checks.append(f"- {claim}: **{verdict}**" + (f" ({detail})" if detail else "") + ".")

    check("LPL final layer >= 53%", None if lpl is None else lpl.readout[-1] >= 0.53,
          "" if lpl is None else f"{pct(lpl.readout[-1])}%")
    if lpl is None or init is None:
        check(f"LPL above random init at {where or 'layers 3-8'}", None, "")
    elif not deep:
        checks.append(f"- LPL above random init at layers 3-8: {few}.")
    else:
        low = [i for i in deep if lpl.readout[i - 1] <= init.readout[i - 1]]
        check(f"LPL above random init at {where}", not low, f"not at {spans(low)}" if low else "")
    if hebb is None:
        check(f"Hebbian off <= 15% at {where or 'layers 3-8'}", None, "")
    elif not deep:
        checks.append(f"- Hebbian off <= 15% at layers 3-8: {few}.")
    else:
        top = max(deep, key=lambda i: hebb.readout[i - 1])
        check(f"Hebbian off <= 15% at {where}", hebb.readout[top - 1] <= 0.15,
              f"highest {pct(hebb.readout[top - 1])}% at layer {top}")
    return text, checks


def table(rows: dict[str, Row | None], init: Row | None, layers: int) -> list[str]:
    """The per-layer Markdown table: a row per variant, random init and pixels."""
    head = ["", "epochs", "input (pixels)", *(f"L{i}" for i in range(1, layers + 1)), "published (final layer)",
            "wall time", "device"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = [*VARIANTS, "random_init", "pixels"]
    for name in order:
        row = init if name == "random_init" else rows[name]
        label = "random init" if name == "random_init" else (PIXELS if name == "pixels" else VARIANTS[name]).label
        if row is None:
            cells = [label, "—", "—", "not run", *["—"] * (layers - 1), "—", "—", "—"]
        else:
            values = [pct(x) for x in row.readout] + ["—"] * (layers - len(row.readout))
            label += " (stopped: non-finite)" if row.status == "nonfinite" else ""
            cells = [label, "—" if row.epochs is None else str(row.epochs),
                     values[0] if name == "pixels" else "—", *(["—"] * layers if name == "pixels" else values),
                     row.published.published_text if row.published else "—",
                     "(the lpl run, before training)" if name == "random_init" else duration(row.wall_s), row.device]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def report_text(config: ReproduceConfig, rows: dict[str, Row | None], init: Row | None, layers: int) -> str:
    text, checks = findings(rows, init, layers)
    missing = [n for n, r in rows.items() if r is None]
    lines = [
        "# LPL reproduction: the paper's deep comparison", "",
        f"- data set: {config.dataset}; network: channels {config.channels}, pooling after {config.pool_after}",
        f"- LPL: {config.epochs} epochs; ablations: {config.ablation_epochs} epochs; batch {config.batch_size}; "
        f"seed {config.seed}",
        f"- readouts: logistic regression on {config.eval_train} training images' pooled features, "
        f"{config.eval_epochs} epochs, scored on {config.num_export} test images",
        f"- device: {config.device}; git revision {git_revision()}",
        f"- written {datetime.now(timezone.utc).isoformat(timespec='seconds')}"
        + (f"; not run yet: {', '.join(missing)}" if missing else ""), "",
        "## Linear readout per layer (% correct)", "", *table(rows, init, layers), "",
        "Published values: Halvagal & Zenke 2023, CIFAR-10, final layer (reference notes, LPL.md); shuffled "
        "positives and end-to-end LPL have none on CIFAR-10 (end-to-end: 72.5% on STL-10)."
        + ("" if config.dataset == "cifar10" else f" This run used {config.dataset}, not CIFAR-10."), "",
        "## Findings", "", *(f"- {t}" for t in text or ["No trained variant to compare yet."]), "",
        "## Must show", "", *checks, "",
        "Figures: `readout_per_layer.png`, `participation_ratio_per_layer.png`; numbers: `reproduce.csv`.", ""]
    return "\n".join(lines)


def csv_text(rows: dict[str, Row | None], init: Row | None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["variant", "epochs", "layer", "readout", "participation_ratio", "wall_s", "device"])
    for row in [*(rows[n] for n in VARIANTS), init, rows["pixels"]]:
        if row is None:
            continue
        for layer, accuracy in enumerate(row.readout, 0 if row.name == "pixels" else 1):
            ratio = row.participation[layer - 1] if row.participation else ""
            writer.writerow([row.name, "" if row.epochs is None else row.epochs, layer, f"{accuracy:.4f}",
                             ratio if ratio == "" else f"{ratio:.3f}", "" if row.wall_s is None else row.wall_s,
                             row.device])
    return buffer.getvalue()


def figure(rows: dict[str, Row | None], init: Row | None, layers: int, readout: bool, title: str) -> bytes:
    """Per-layer readout (%) or participation ratio of every variant and random init, as PNG bytes.

    The readout figure marks the published final-layer values as stars right of the last layer and
    the pixel readout as a dashed horizontal line.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.08, right=0.74, bottom=0.11, top=0.93)  # room for the legend on the right
    ax = fig.add_subplot()
    x = list(range(1, layers + 1))
    colours = {name: f"C{i}" for i, name in enumerate(VARIANTS)}
    stars: list[tuple[float, str, str]] = []  # (published %, label, colour)
    for row in [*(rows[n] for n in VARIANTS), init]:
        if row is None:
            continue
        values = [100 * v for v in row.readout] if readout else row.participation
        style: dict[str, Any] = {"color": "0.45", "linestyle": ":", "marker": "s"} if row is init else \
            {"color": colours[row.name], "marker": "o"}
        ax.plot(x[: len(values)], values, label=row.label, **style)
        if row.published is not None and row.published.published is not None:
            stars.append((row.published.published, row.label, style["color"]))
    pixels = rows["pixels"]
    if readout:
        if pixels is not None:
            ax.axhline(100 * pixels.readout[0], color="k", linestyle="--", label=f"pixels ({pct(pixels.readout[0])}%)")
        assert PIXELS.published is not None
        stars.append((PIXELS.published, "pixels", "w"))
        star_x, text_y = layers + 0.3, -1e9
        for value, label, colour in sorted(stars):
            ax.scatter([star_x], [value], marker="*", s=160, color=colour, edgecolors="k", zorder=3)
            text_y = max(value, text_y + 3.5)  # keep close values' labels apart
            ax.annotate(f"{label} {value:g}", (star_x, value), xytext=(12, text_y), fontsize=8, va="center",
                        textcoords=("offset points", "data"), bbox={"fc": "w", "ec": "none", "pad": 1},
                        arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5})
        ax.scatter([], [], marker="*", s=160, color="w", edgecolors="k", label="published, final layer (CIFAR-10)")
        ax.set_ylim(0, max([100.0 * max(r.readout) for r in [*rows.values(), init] if r is not None] + [s[0] for s in
                                                                                                    stars]) + 5)
        ax.set_xlim(0.7, layers + 1.4)
    else:
        ratios = [v for r in [*rows.values(), init] if r is not None for v in r.participation]
        if ratios and max(ratios) > 10 * min(ratios) > 0:  # collapsed and rich layers on one axis
            ax.set_yscale("log")
        ax.set_xlim(0.7, layers + 0.3)
    ax.set_xticks(x)
    ax.set_xlabel("layer")
    ax.set_ylabel("linear readout accuracy (%)" if readout else "participation ratio of the test features")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_report(config: ReproduceConfig) -> Path:
    """``report.md``, ``reproduce.csv`` and the two figures from whatever has finished."""
    rows, init = collect(config)
    layers = max([len(r.readout) for n, r in rows.items() if r is not None and n != "pixels"]
                 or [len(config.channels)])
    out = Path(config.output_dir)
    atomic_write_text(csv_text(rows, init), out / "reproduce.csv")
    atomic_write_bytes(figure(rows, init, layers, True, f"Linear readout per layer ({config.dataset})"),
                       out / "readout_per_layer.png")
    atomic_write_bytes(figure(rows, init, layers, False, f"Participation ratio per layer ({config.dataset})"),
                       out / "participation_ratio_per_layer.png")
    return atomic_write_text(report_text(config, rows, init, layers), out / "report.md")


def reproduce(config: ReproduceConfig) -> RunResult:
    """Run the requested variants that have not finished, then write the report."""
    require(int(os.environ.get("WORLD_SIZE", "1")) == 1, "lpl reproduce runs in one process; to use several GPUs "
            "start one process per GPU (CUDA_VISIBLE_DEVICES) with --variants and the same --output-dir")
    for name in dict.fromkeys(config.variants):
        if finished(config, name) is not None:
            print(f"reproduce: {name} already finished in {config.folder(name)}; skipped", flush=True)
            continue
        if name == "pixels":
            run_pixels(config)
            continue
        result = run_variant(config, name)
        if result.status != "completed":
            what = f"was interrupted at step {result.step} (checkpoint saved)" if result.status == "interrupted" \
                else f"{result.message}; its last finite weights are read out and the report marks it"
            result.message = (f"reproduce: {name} {what}; rerun the same command to continue (finished variants "
                              f"are skipped, an interrupted one resumes from its checkpoint)")
            return result
    path = write_report(config)
    missing = [n for n in NAMES if finished(config, n) is None]
    note = f" (not run yet: {', '.join(missing)})" if missing else ""
    return RunResult("completed", 0, f"reproduce: report in {path}{note}")
