"""Runs as their files describe them, and the one place that finds them.

A ``Run`` is built from what training and ``lpl readout`` wrote (``lpl.layout``): the run record
``logs/<name>_run.json`` (what the run is: network, objective, logged terms, data, config), the readouts
``logs/<name>_results.json`` of deep runs, the exports ``activations/<stem>_{before,after}.pt`` and the log.
Reports read every description from the record and never guess one from a config.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from lpl.io import read_json
from lpl.layout import TAGS, RunLayout, before_after, read_record, run_records, run_stem, saved_run
from lpl.validation import LPLError

RESULTS_SUFFIX = "_results.json"
TIMING_FILE = "reproduce_timing.json"  # lpl reproduce: wall time of a variant, next to its logs/
STATUS = {"nonfinite": "stopped: non-finite", "interrupted": "interrupted"}  # of a run's TIMING_FILE


@dataclass
class Run:
    """One run: its record (None for an export an older lpl wrote), readouts, exports, log and timing."""

    label: str
    layout: RunLayout
    record: dict[str, Any] | None
    results: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)  # the exports named on the command line, if any

    @property
    def name(self) -> str:
        return self.layout.name

    @property
    def config(self) -> dict[str, Any]:
        return (self.record or {}).get("config") or self.results.get("config") or {}

    @property
    def objective(self) -> dict[str, Any]:
        return (self.record or {}).get("objective", {})

    @property
    def data(self) -> dict[str, Any]:
        return (self.record or {}).get("data", {})

    @property
    def dataset(self) -> str:
        return str(self.data.get("dataset") or self.config.get("dataset") or "unknown data")

    @property
    def classes(self) -> int | None:
        """How many classes the run's data set has, if its record says."""
        return len(self.data["classes"]) if isinstance(self.data.get("classes"), list) else None

    @property
    def exports(self) -> dict[str, Path]:
        """``{'before': ..., 'after': ...}``: the export files that exist."""
        return self.files or {tag: p for tag in TAGS if (p := self.layout.activation_file(tag)).is_file()}

    @cached_property
    def log(self) -> list[dict[str, Any]]:
        """The records of the run's log (diagnostics and events); none without a log."""
        file = self.layout.log_file
        return [json.loads(line) for line in file.read_text().splitlines() if line.strip()] if file.is_file() else []

    def readouts(self, stage: str = "trained", key: str = "readout") -> list[float]:
        """``key`` per layer from the results (``trained`` or ``initialisation``), NaN where missing."""
        entries = self.results.get(stage)
        if not isinstance(entries, list):
            return []
        return [float(e.get(key, math.nan)) for e in sorted(entries, key=lambda e: int(e.get("layer", 0)))]

    @property
    def deep(self) -> bool:
        """Whether the run has per-layer readouts of a trained network."""
        return bool(self.readouts())

    @property
    def wall_s(self) -> float | None:
        logged = [r for r in self.log if "event" not in r]
        wall = self.timing.get("wall_s", logged[-1].get("elapsed_s") if logged else None)
        return float(wall) if isinstance(wall, int | float) else None

    @property
    def length(self) -> str:
        """``100`` (epochs) or ``5000 steps``, with how the run stopped early."""
        steps, planned = self.config.get("steps"), (self.record or {}).get("schedule", {}).get("steps")
        text = f"{steps} steps" if steps else str(self.config.get("epochs", "?"))
        last = next((r.get("step") for r in reversed(self.log) if "event" not in r), None)
        if planned and isinstance(last, int) and last < planned:
            text += f", stopped at step {last} of {planned}"
        if self.timing.get("status") not in (None, "completed"):
            text += f", {STATUS.get(self.timing['status'], self.timing['status'])}"
        return text

    def schedule(self) -> str:
        """``4800 steps (100 epochs) of 1024 pairs, simclr views, seed 24``."""
        config, objective = self.config, self.objective
        steps = (self.record or {}).get("schedule", {}).get("steps") or config.get("steps")
        epochs = None if config.get("steps") else config.get("epochs")  # deep runs: --steps 0 means by epochs
        length = (f"{steps} steps" + (f" ({epochs} epochs)" if epochs else "")) if steps else f"{epochs} epochs"
        last = next((r.get("step") for r in reversed(self.log) if "event" not in r), None)
        if steps and isinstance(last, int) and last < steps:
            length += f", stopped at step {last}"
        mode = objective.get("views") or objective.get("pairs")
        if mode == "auto":  # PairStream: consecutive frames when the data has sequences, else augmented views
            mode = "temporal" if self.data.get("sequences", {}).get("train") else "augment"
        return (f"{length} of {config.get('batch_size')} {'images' if 'tau' in config else 'pairs'}"
                + (f", {mode} views" if mode else "") + f", seed {config.get('seed')}")

    def method(self) -> str:
        """What the run trained, in the record's words."""
        if self.record is None:
            return (f"no run record ({self.layout.record_file}): written by an older lpl or by hand, so what it is "
                    "cannot be said; retrain it with this version")
        objective = self.objective
        return f"{objective.get('summary', objective.get('name', 'unknown objective'))}; trained " \
               f"{objective.get('training', 'as its record does not say')}"

    def network(self) -> str:
        """The network in the record's words: kind, widths, pooling and the loss grid."""
        net = (self.record or {}).get("network", {})
        if net.get("kind") == "conv":
            grid = self.objective.get("loss_grid", [])
            where = {1: "globally pooled outputs", 0: "full maps"}.get(grid[0], f"{grid[0]}×{grid[0]} grids") \
                if len(set(grid)) == 1 else f"loss grids {grid} per block"
            return (f"{net.get('name', 'conv')} network of {len(net['channels'])} conv blocks "
                    f"({'-'.join(map(str, net['channels']))} channels, pooling after blocks "
                    f"{', '.join(map(str, net.get('pool_after', [])))}), loss on {where}")
        if net.get("kind") == "dense":
            return f"dense network {' → '.join(map(str, net['dims']))}"
        return f"{net.get('kind', 'unknown')} network" + (f", {net['trained']} trained" if "trained" in net else "")


def describe_data(run: Run) -> str:
    """``**shapes** (32×32 pixels, 1 channel, 6 classes, 16 test sequences)``."""
    data, classes = run.data, run.classes
    if "shape" not in data:
        return f"**{run.dataset}**"
    c, h, w = data["shape"]
    sequences = data.get("sequences", {}).get("test", 0)
    return (f"**{run.dataset}** ({h}×{w} pixels, {c} channel{'s' if c > 1 else ''}, {classes} "
            f"class{'es' if classes != 1 else ''}, {data['train_images']} training and {data['test_images']} test "
            f"images" + (f", {sequences} test sequences" if sequences else "") + ")")


def _layout(root: Path, name: str, record: dict[str, Any] | None) -> RunLayout:
    files = (record or {}).get("activation_files") or [f"{name}_activations_after.pt"]
    return RunLayout(root, name, run_stem(files[0]))


def _found_at(path: Path) -> list[tuple[RunLayout, dict[str, Any] | None]]:
    """The runs a path names: a results file's, an export's, or every run of an output folder (or of its run
    folders, as ``lpl reproduce`` keeps them)."""
    if path.is_file() and path.name.endswith(RESULTS_SUFFIX):
        root, name = path.parent.parent if path.parent.name == "logs" else path.parent, path.name[:-len(RESULTS_SUFFIX)]
        return [(_layout(root, name, record := read_record(root / "logs" / f"{name}_run.json")), record)]
    if path.is_file():
        found = saved_run(path)
        if found is None:
            return [(RunLayout(path.parent.parent, run_stem(path), run_stem(path)), None)]
        return [(_layout(path.parent.parent, found[0], record := read_record(path.parent.parent / "logs" /
                                                                             f"{found[0]}_run.json")), record)]
    root = path.parent if path.name == "logs" else path
    nested = sorted(root.glob("*/logs/*_run.json")) if not (root / "logs").is_dir() else []
    files = {p: p.parent.parent for p in nested} or {p: root for p in run_records(root).values()}
    return [(_layout(folder, p.name.removesuffix("_run.json"), record := read_record(p)), record)
            for p, folder in files.items()]


def run_labels(paths: Sequence[Path], names: Sequence[str]) -> list[str]:
    """``<output folder>/<run name>``, with as many parent folders as it takes to tell the runs apart."""
    folders = [p.resolve().parent.parent.parts for p in paths]
    depth = 1
    while True:
        labels = ["/".join((*f[-depth:], n)) for f, n in zip(folders, names)]
        if len(set(labels)) == len(labels) or depth >= max(len(f) for f in folders):
            return labels
        depth += 1


def find_runs(paths: Sequence[str | Path], qualify: bool = False) -> list[Run]:
    """Every distinct run of ``paths`` (output folders, ``logs`` folders, results files or export files), each
    once, labelled by name, or ``<folder>/<name>`` with ``qualify`` or where names repeat."""
    found: dict[tuple[Path, str], Run] = {}
    for path in map(Path, paths):
        if not path.exists():
            raise LPLError(f"{path} does not exist; give output folders, results files or export files")
        for layout, record in _found_at(path):
            results = read_json(layout.results_file) if layout.results_file.is_file() else {}
            if results is None:
                raise LPLError(f"{layout.results_file} is not a readable results file; rerun lpl readout on "
                               f"{layout.root}")
            timing = read_json(layout.root / TIMING_FILE) or {}
            files = before_after(path) if path.is_file() and path.suffix == ".pt" else {}
            found.setdefault((layout.root.resolve(), layout.name), Run(layout.name, layout, record, results, timing,
                                                                       files))
    runs = list(found.values())
    names = [r.name for r in runs]
    if runs and (qualify or len(set(names)) < len(names)):
        for run, label in zip(runs, run_labels([r.layout.record_file for r in runs], names)):
            run.label = label
    return runs
