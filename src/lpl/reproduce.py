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
readouts as fractions; the report shows percentages. The table, CSV, readout figure and verdicts are
those of ``lpl compare`` (``lpl.analysis.deep_report``); this module adds the paper's published values
and its must-show checks.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from lpl.analysis.deep_report import (
    Extras,
    InputReadout,
    Published,
    deep_comparison,
    init_rows,
    readout_figure,
    scored_images,
)
from lpl.analysis.document import Bullets, Figure, Heading, Paragraph, to_csv, to_markdown
from lpl.analysis.readout import pixel_readout, write_readouts
from lpl.analysis.runs import TIMING_FILE, Run, find_runs
from lpl.analysis.verdicts import judge, pct, ranking, spans, tolerance
from lpl.config import PLACEMENT, check_fields, inherited, option, passed_on, require, resolve_device
from lpl.data import load_splits
from lpl.io import atomic_write_json, atomic_write_text, git_revision, read_json
from lpl.train.checkpoint import CheckpointFolder
from lpl.train.deep import PRESETS, DeepConfig, train_deep
from lpl.train.run import RESUMABLE_CHANGES, RunResult
from lpl.validation import LPLError


@dataclass(frozen=True)
class Variant:
    """One row of the comparison: its label, its DeepConfig settings, the published final-layer readout, and
    whether it trains for ``--epochs`` (the main runs) or ``--ablation-epochs``."""

    label: str
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    published: Published = Published(None, "—")
    main: bool = False


VARIANTS: dict[str, Variant] = {
    "lpl": Variant("LPL", {}, Published(53.5, "53.5 (best layer ~55.3)"), main=True),
    "best": Variant("best layer-local LPL (best-lpl's network and loss, --epochs)",
                    {k: v for k, v in PRESETS["best-lpl"].items() if k != "epochs"}, main=True),  # --epochs
    "hebb_off": Variant("Hebbian off", {"head": {"hebb": 0.0}}, Published(10.0, "10 (collapse)")),
    "pred_off": Variant("predictive off", {"head": {"pred": 0.0}}, Published(18.5, "~18.5")),
    "decorr_off": Variant("decorrelation off", {"head": {"decorr": 0.0}}, Published(19.2, "~19.2")),
    "shuffled": Variant("shuffled positives", {"shuffle_positives": True}),
    "end_to_end": Variant("end-to-end LPL", {"end_to_end": True}),
}
PIXELS = Variant("pixels", published=Published(31.8, "31.8"))
NAMES = (*VARIANTS, "pixels")
PUBLISHED_ORDER = ("lpl", "decorr_off", "pred_off", "hebb_off")  # final layer, CIFAR-10
# Settings that may differ between a finished variant and a rerun without changing its results.
RERUN_CHANGES = RESUMABLE_CHANGES | PLACEMENT
# What the variants change on purpose: not listed as differences between them.
VARIED = ("epochs", *sorted({k for v in VARIANTS.values() for k in v.settings} - {"end_to_end"}))  # head: the ablations
PUBLISHED_NOTE = ("Published values: Halvagal & Zenke 2023, CIFAR-10, final layer (reference notes, LPL.md); shuffled "
                  "positives and end-to-end LPL have none on CIFAR-10 (end-to-end: 72.5% on STL-10).")


@dataclass
class ReproduceConfig:
    """LPL, its ablations, random init and pixels on one data set, with report and figures."""

    dataset: str = inherited(DeepConfig, "dataset")
    data_dir: str | None = inherited(DeepConfig, "data_dir")
    download: bool = inherited(DeepConfig, "download")
    image_size: int | None = inherited(DeepConfig, "image_size")
    output_dir: str = option("outputs/reproduce", "folder of the variants' run folders and the report")
    variants: list[str] = option(list(NAMES), "variants to run (others are reported if already finished)")
    epochs: int = option(800, "training epochs of LPL (official protocol) and of the best layer-local LPL")
    ablation_epochs: int = option(100, "training epochs of each ablation")
    batch_size: int = inherited(DeepConfig, "batch_size")
    seed: int = inherited(DeepConfig, "seed", 24, "random seed (official: 24)")
    device: str = inherited(DeepConfig, "device")
    eval_train: int = inherited(DeepConfig, "eval_train")
    eval_epochs: int = inherited(DeepConfig, "eval_epochs")
    num_export: int = inherited(DeepConfig, "num_export")
    network: str = inherited(DeepConfig, "network")
    channels: list[int] | None = inherited(DeepConfig, "channels")
    pool_after: list[int] | None = inherited(DeepConfig, "pool_after")
    readout_grid: int = inherited(DeepConfig, "readout_grid")
    compile: bool = inherited(DeepConfig, "compile")
    checkpoint_minutes: float = inherited(DeepConfig, "checkpoint_minutes")
    progress: bool = inherited(DeepConfig, "progress")

    def __post_init__(self) -> None:
        check_fields(self)
        self.device = resolve_device(self.device)
        unknown = sorted(set(self.variants) - set(NAMES))
        require(not unknown, f"--variants: unknown {', '.join(unknown)}; valid names: {', '.join(NAMES)}")
        require(bool(self.variants), f"--variants needs at least one of {', '.join(NAMES)}")
        self.deep_config("lpl")  # the shared settings are checked as train-deep checks them

    def folder(self, name: str) -> Path:
        return Path(self.output_dir) / name

    def deep_config(self, name: str, resume: bool = False, overwrite: bool = False) -> DeepConfig:
        """The train-deep config of variant ``name`` in ``<output-dir>/<name>``."""
        settings = {**passed_on(self, DeepConfig), **VARIANTS[name].settings}  # the variant's own win
        return DeepConfig(**settings, output_dir=str(self.folder(name)), name=name,
                          epochs=self.epochs if VARIANTS[name].main else self.ablation_epochs, resume=resume,
                          overwrite=overwrite)

    def pixel_settings(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("dataset", "image_size", "eval_train", "eval_epochs", "num_export")}


def device_name(device: str) -> str:
    """The GPU's name on CUDA, else ``cpu (N threads)``."""
    parsed = torch.device(device)
    if parsed.type == "cuda":
        return torch.cuda.get_device_name(parsed)
    return f"cpu ({torch.get_num_threads()} threads)"


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
    path = config.folder(name) / TIMING_FILE
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
        if result.status != "interrupted":
            write_readouts(deep.layout(), deep.eval_epochs, deep.device, deep.readout_grid)
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
def collect(config: ReproduceConfig) -> tuple[dict[str, Run], InputReadout | None]:
    """The finished variants (labelled as in the paper, in the order of VARIANTS) and the pixel readout."""
    done = [results_file(config, name) for name in VARIANTS if finished(config, name) is not None]
    runs = {r.name: r for r in find_runs(done)}
    for run in runs.values():
        run.label = VARIANTS[run.name].label
    pixels = finished(config, "pixels")
    if pixels is None:
        return runs, None
    timing = read_json(config.folder("pixels") / TIMING_FILE) or {}
    return runs, InputReadout(PIXELS.label, pixels["readout"], timing.get("wall_s"), timing.get("device", ""))


def against_the_paper(runs: Mapping[str, Run], pixels: InputReadout | None, tol: float) -> list[str]:
    """LPL's final and best layer, the pixel readout and the order of the ablations against the published values."""
    out = []
    lpl = runs.get("lpl")
    if lpl is not None:
        readout = lpl.readouts()
        final, best = readout[-1], max(readout)
        out.append(f"LPL's final layer (layer {len(readout)}) reads out {pct(final)}% (published "
                   f"{VARIANTS['lpl'].published.value}%); its best layer is layer {readout.index(best) + 1} with "
                   f"{pct(best)}% (published best layer ~55.3%).")
    if pixels is not None:
        text = f"The same readout on raw pixels gives {pct(pixels.readout)}% (published {PIXELS.published.value}%)"
        if lpl is not None:
            final = lpl.readouts()[-1]
            verdict = judge(final, pixels.readout, tol)
            gap = abs(100 * (final - pixels.readout))
            text += ("; LPL's final layer is level with it" if verdict == "tie" else
                     f"; LPL's final layer is {gap:.1f} points {'above' if verdict == 'better' else 'below'} it")
        out.append(text + ".")
    if all(name in runs for name in PUBLISHED_ORDER):
        order = [(runs[name].label, runs[name].readouts()[-1]) for name in PUBLISHED_ORDER]
        same = all(judge(a[1], b[1], tol) == "better" for a, b in zip(order, order[1:]))
        here = "" if same else f" (here: {ranking(order, tol)})"
        out.append(f"The published order at the final layer ({' > '.join(label for label, _ in order)}) "
                   f"is {'reproduced' if same else 'not reproduced'}{here}.")
    return out


def _check(claim: str, result: tuple[bool, str] | None) -> str:
    """``claim: **holds** (detail).`` or ``fails``; without a result (the variant has not run) ``not run``."""
    if result is None:
        return f"{claim}: **not run**."
    ok, detail = result
    return f"{claim}: **{'holds' if ok else 'fails'}**" + (f" ({detail})" if detail else "") + "."


def must_show(runs: Mapping[str, Run], tol: float, layers: int) -> list[str]:
    """The paper's checks: LPL's final layer >= 53%; at layers 3 and up, LPL above its random initialisation
    (by more than the tie tolerance) and Hebbian off at most 15%."""
    lpl, hebb = runs.get("lpl"), runs.get("hebb_off")
    trained = lpl.readouts() if lpl is not None else []
    out = [_check("LPL final layer >= 53%", (trained[-1] >= 0.53, f"{pct(trained[-1])}%") if trained else None)]
    deep = list(range(3, layers + 1))
    if not deep:
        few = f"not checked: the network has {layers} layer(s), the check is on layers 3 and up"
        return [*out, f"LPL above random init at layers 3-8: {few}.", f"Hebbian off <= 15% at layers 3-8: {few}."]
    init = lpl.readouts("initialisation") if lpl is not None else []
    if lpl is None or len(init) < layers:
        out.append(_check(f"LPL above random init at {spans(deep)}", None))
    else:
        low = [i for i in deep if judge(trained[i - 1], init[i - 1], tol) != "better"]
        out.append(_check(f"LPL above random init at {spans(deep)}", (not low, f"not at {spans(low)}" if low else "")))
    if hebb is None:
        out.append(_check(f"Hebbian off <= 15% at {spans(deep)}", None))
    else:
        ablated = hebb.readouts()
        top = max(deep, key=lambda i: ablated[i - 1])
        highest = ablated[top - 1]
        out.append(_check(f"Hebbian off <= 15% at {spans(deep)}", (highest <= 0.15, f"highest {pct(highest)}% at "
                                                                                     f"layer {top}")))
    return out


def write_paper_report(config: ReproduceConfig) -> tuple[Path, list[str]]:
    """``report.md``, ``reproduce.csv`` and the two figures from whatever has finished; returns the report's
    path and the variants not run yet."""
    runs, pixels = collect(config)
    missing = [n for n in VARIANTS if n not in runs] + (["pixels"] if pixels is None else [])
    out, ordered = Path(config.output_dir), list(runs.values())
    tol = tolerance(scored_images(ordered))
    extras = Extras("Linear readout per layer (% correct)", (pixels,) if pixels else (),
                    tuple((PIXELS if n == "pixels" else VARIANTS[n]).label for n in missing),
                    {v.label: v.published for v in (*VARIANTS.values(), PIXELS)}, VARIED)
    note = PUBLISHED_NOTE + ("" if config.dataset == "cifar10" else f" This run used {config.dataset}, not CIFAR-10.")
    blocks, table = deep_comparison(ordered, out / "readout_per_layer.png", notes=[note], extras=extras)
    participation = readout_figure(ordered, init_rows(ordered), out / "participation_ratio_per_layer.png",
                                   key="participation_ratio")
    spec = config.deep_config("lpl").spec(3)
    layers = max((len(r.readouts()) for r in ordered), default=len(spec.channels))
    setup = (f"data set: {config.dataset}; network: {config.network}, channels {list(spec.channels)}, pooling after "
             f"{list(spec.pool_after)}",
             f"LPL: {config.epochs} epochs; ablations: {config.ablation_epochs} epochs; batch {config.batch_size}; "
             f"seed {config.seed}",
             f"device: {config.device}; git revision {git_revision()}",
             f"written {datetime.now(timezone.utc).isoformat(timespec='seconds')}"
             + (f"; not run yet: {', '.join(missing)}" if missing else ""))
    document = [Heading("LPL reproduction: the paper's deep comparison", 1), Bullets(setup), *blocks,
                Figure(participation, "Participation ratio of the test features per layer: one line per variant, "
                                      "the random initialisation dashed."),
                Heading("Against the paper"),
                Bullets(tuple(against_the_paper(runs, pixels, tol) or ["Nothing to compare with the paper yet."])),
                Heading("Must show"), Bullets(tuple(must_show(runs, tol, layers))),
                Paragraph("Numbers: `reproduce.csv` (readouts as fractions).")]
    atomic_write_text(to_csv(table), out / "reproduce.csv")
    return atomic_write_text(to_markdown(document), out / "report.md"), missing


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
    path, missing = write_paper_report(config)
    note = f" (not run yet: {', '.join(missing)})" if missing else ""
    return RunResult("completed", 0, f"reproduce: report in {path}{note}")
