"""Runs as their files describe them, and the one place that finds them: a ``Run`` is built from its run record
``logs/<name>_run.json`` (network, objective, logged terms, data, config: ``lpl.layout``), the readouts
``logs/<name>_results.json`` of deep runs, its exports and its log. Reports take every description from the
record and never guess one from a config."""

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
    """One run: its record (None for an export without one), readouts, timing, and export files named on the
    command line (else those of its layout)."""

    label: str
    layout: RunLayout
    record: dict[str, Any] | None
    results: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.layout.name

    def _part(self, key: str) -> dict[str, Any]:
        return (self.record or {}).get(key) or {}

    @property
    def config(self) -> dict[str, Any]:
        return self._part("config") or self.results.get("config") or {}

    @property
    def objective(self) -> dict[str, Any]:
        return self._part("objective")

    @property
    def objective_name(self) -> str:
        return str(self.objective.get("name") or self.config.get("objective") or "unknown")

    @property
    def training(self) -> str:
        training = {True: "end-to-end", False: "layer-local"}.get(bool(self.config.get("end_to_end")), "?")
        return str(self.objective.get("training") or training)

    @property
    def data(self) -> dict[str, Any]:
        return self._part("data")

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
        return [float(e.get(key, math.nan)) for e in sorted(entries, key=lambda e: int(e.get("layer", 0)))] \
            if isinstance(entries, list) else []

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
    def last_step(self) -> int | None:
        return next((r.get("step") for r in reversed(self.log) if "event" not in r), None)

    def _stopped_at(self, planned: int | None) -> int | None:
        """The last logged step where the log ends before ``planned`` steps (None otherwise)."""
        last = self.last_step
        return last if planned and isinstance(last, int) and last < planned else None

    @property
    def length(self) -> str:
        """``100`` (epochs) or ``5000 steps``, and how the run stopped early."""
        steps, planned = self.config.get("steps"), self._part("schedule").get("steps")
        text = f"{steps} steps" if steps else str(self.config.get("epochs", "?"))
        text += f", stopped at step {stopped} of {planned}" if (stopped := self._stopped_at(planned)) else ""
        status = self.timing.get("status")
        return text + (f", {STATUS.get(status, status)}" if status not in (None, "completed") else "")

    def schedule(self) -> str:
        """``4800 steps (100 epochs) of 1024 pairs, simclr views, seed 24``."""
        config = self.config
        steps = self._part("schedule").get("steps") or config.get("steps")
        epochs = None if config.get("steps") else config.get("epochs")  # deep runs: --steps 0 means by epochs
        text = (f"{steps} steps" + (f" ({epochs} epochs)" if epochs else "")) if steps else f"{epochs} epochs"
        text += f", stopped at step {stopped}" if (stopped := self._stopped_at(steps)) else ""
        mode = self.objective.get("views") or self.objective.get("pairs")
        if mode == "auto":  # PairStream: consecutive frames when the data has sequences, else augmented views
            mode = "temporal" if self.data.get("sequences", {}).get("train") else "augment"
        return (f"{text} of {config.get('batch_size')} {'images' if 'tau' in config else 'pairs'}"
                + (f", {mode} views" if mode else "") + f", seed {config.get('seed')}")

    def method(self) -> str:
        """What the run trained, in its record's words."""
        if self.record is None:
            return (f"no run record ({self.layout.record_file}): written by an older lpl or by hand, so what it is "
                    "cannot be said; retrain it with this version")
        return f"{self.objective.get('summary', self.objective_name)}; trained {self.training}"

    def data_summary(self) -> str:
        """``**shapes** (32×32 pixels, 1 channel, 6 classes, 128 training and 128 test images, 16 test sequences)``."""
        data, classes = self.data, self.classes
        if "shape" not in data:
            return f"**{self.dataset}**"
        c, h, w = data["shape"]
        sequences = data.get("sequences", {}).get("test", 0)
        return (f"**{self.dataset}** ({h}×{w} pixels, {c} channel{'s' * (c > 1)}, {classes} "
                f"class{'es' * (classes != 1)}, {data['train_images']} training and {data['test_images']} test images"
                + (f", {sequences} test sequences" if sequences else "") + ")")

    def network(self) -> str:
        """The network in its record's words: kind, widths, pooling and the loss grid."""
        net = self._part("network")
        if net.get("kind") == "conv":
            grid = self.objective.get("loss_grid") or [None]
            where = {1: "globally pooled outputs", 0: "full maps"}.get(grid[0], f"{grid[0]}×{grid[0]} grids") \
                if len(set(grid)) == 1 else f"grids {grid} (one per block)"
            return (f"{net.get('name', 'conv')} network of {len(net['channels'])} conv blocks "
                    f"({'-'.join(map(str, net['channels']))} channels, pooling after blocks "
                    f"{', '.join(map(str, net.get('pool_after', [])))}), loss on {where}")
        if net.get("kind") == "dense":
            return f"dense network {' → '.join(map(str, net['dims']))}"
        return f"{net.get('kind', 'unknown')} network" + (f", {net['trained']} trained" if "trained" in net else "")


def chance_of(runs: Sequence[Run]) -> float | None:
    """1 / classes of the runs' data set, where their records agree on two or more classes."""
    classes = {r.classes for r in runs}
    count = classes.pop() if len(classes) == 1 else None
    return 1 / count if count and count > 1 else None


def _found_at(path: Path) -> list[tuple[RunLayout, dict[str, Any] | None]]:
    """The runs a path names: a results file's, an export's, or every run of an output folder (or of its run
    folders, as ``lpl reproduce`` keeps them)."""
    if path.is_file():
        if path.name.endswith(RESULTS_SUFFIX):
            root = path.parent.parent if path.parent.name == "logs" else path.parent
            records = [root / "logs" / f"{path.name[:-len(RESULTS_SUFFIX)]}_run.json"]
        elif (found := saved_run(path)) is not None:
            records = [path.parent.parent / "logs" / f"{found[0]}_run.json"]
        else:
            return [(RunLayout(path.parent.parent, run_stem(path), run_stem(path)), None)]
    else:
        root = path.parent if path.name == "logs" else path
        nested = sorted(root.glob("*/logs/*_run.json")) if not (root / "logs").is_dir() else []
        records = nested or list(run_records(root).values())
    out: list[tuple[RunLayout, dict[str, Any] | None]] = []
    for file in records:
        record = read_record(file)
        exports = record.get("activation_files") or [f"{file.name.removesuffix('_run.json')}_activations_after.pt"]
        out.append((RunLayout(file.parent.parent, file.name.removesuffix("_run.json"), run_stem(exports[0])), record))
    return out


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
            files = before_after(path) if path.suffix == ".pt" else {}
            found.setdefault((layout.root.resolve(), layout.name), Run(
                layout.name, layout, record, results, read_json(layout.root / TIMING_FILE) or {}, files))
    runs = list(found.values())
    names = [r.name for r in runs]
    if runs and (qualify or len(set(names)) < len(names)):
        for run, label in zip(runs, run_labels([r.layout.record_file for r in runs], names)):
            run.label = label
    return runs
