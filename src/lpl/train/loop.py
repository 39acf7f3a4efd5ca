"""The one training loop every entry point uses: outputs guard, logging, checkpoints, resume,
graceful interruption and the NaN early stop.

A ``Task`` knows its model and data; this loop knows everything about not losing a run.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from tqdm.auto import tqdm

from lpl.config import option, require
from lpl.data import DATASET_HELP
from lpl.io import atomic_write_json, atomic_write_jsonl, run_metadata
from lpl.train.checkpoint import CheckpointFolder
from lpl.validation import LPLError

EXIT_NONFINITE = 3
EXIT_INTERRUPTED = 130
# Fields that may differ between a run and its resumption without changing its results.
RESUMABLE_CHANGES = {"steps", "resume", "overwrite", "log_every", "checkpoint_every",
                     "keep_checkpoints", "progress"}


@dataclass
class RunConfig:
    """Fields every training entry point shares."""

    dataset: str = option("cifar10", DATASET_HELP)
    data_dir: str | None = option(None, "CIFAR-10 folder (default $LPL_DATA_DIR, else ./data)")
    download: bool = option(True, "download CIFAR-10 when it is not in --data-dir")
    steps: int = option(5000, "number of training steps")
    batch_size: int = option(256, "temporal pairs per step")
    seed: int = option(0, "random seed (weights, data order, augmentations)")
    device: str = option("cpu", "torch device, e.g. cpu, cuda, cuda:1")
    output_dir: str = option("outputs", "folder for activations/, weights/ and logs/")
    log_every: int = option(500, "steps between diagnostics")
    checkpoint_every: int = option(1000, "steps between checkpoints in weights/")
    keep_checkpoints: int = option(3, "how many recent checkpoints to keep")
    num_export: int = option(10000, "test samples whose activations are exported")
    resume: bool = option(False, "continue from the latest good checkpoint of this run")
    overwrite: bool = option(False, "replace the outputs of an earlier run of the same name")
    progress: bool = option(True, "show a progress bar")

    COUNTS: ClassVar[tuple[str, ...]] = ("steps", "batch_size", "log_every", "checkpoint_every",
                                         "keep_checkpoints", "num_export")
    # Counts that must be > 0; a subclass may let others be 0 (meaning "derived").
    POSITIVE: ClassVar[tuple[str, ...]] = COUNTS

    def __post_init__(self) -> None:
        for name in self.COUNTS:
            low = 0 if name in self.POSITIVE else -1
            bound = "positive" if low == 0 else ">= 0"
            require(getattr(self, name) > low, f"--{name.replace('_', '-')} must be {bound}, got {getattr(self, name)}")
        require(self.batch_size >= 2, "--batch-size must be at least 2 (LPL needs batch statistics)")
        require(not (self.resume and self.overwrite), "--resume and --overwrite exclude each other; pick one")
        if self.device.startswith("cuda"):
            require(torch.cuda.is_available(), f"--device {self.device} was asked for but CUDA is not "
                    "available here; use --device cpu")


class Task(Protocol):
    """What the loop needs from a model + data pair."""

    samples_per_step: int

    def step(self) -> torch.Tensor:
        """One update; returns scalars that must stay finite (losses, update norms)."""

    def diagnostics(self) -> dict[str, float]:
        """Figures for the log, computed on the last batch."""

    def nonfinite_terms(self) -> list[str]:
        """Names of the terms or tensors that are NaN/Inf after a failed step."""

    def export(self, tag: str) -> list[Path]:
        """Write this run's activations for ``tag`` in ('before', 'after'); return the paths."""

    def save_weights(self) -> Path: ...

    def write_logs(self) -> None:
        """Write any task-specific log files (called whenever the loop writes its own)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class RunPaths:
    """Where one named run writes; ``activation_files`` tell the guard what an earlier run left."""

    root: Path
    name: str
    activation_stem: str

    @property
    def activations(self) -> Path:
        return self.root / "activations"

    @property
    def weights(self) -> Path:
        return self.root / "weights"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def activation_file(self, tag: str) -> Path:
        return self.activations / f"{self.activation_stem}_{tag}.pt"

    @property
    def config_file(self) -> Path:
        return self.logs / f"{self.name}_config.json"

    @property
    def log_file(self) -> Path:
        return self.logs / f"{self.name}_log.jsonl"

    def earlier_results(self) -> list[Path]:
        candidates = [self.config_file, self.activation_file("before"), self.activation_file("after")]
        return [p for p in candidates if p.exists()]


@dataclass
class RunResult:
    status: str                 # "completed", "nonfinite" or "interrupted"
    step: int
    records: list[dict[str, Any]]
    message: str = ""

    @property
    def exit_code(self) -> int:
        return {"completed": 0, "nonfinite": EXIT_NONFINITE, "interrupted": EXIT_INTERRUPTED}[self.status]


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step (main thread only)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if _in_main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signal is not None:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def check_outputs(paths: RunPaths, config: RunConfig) -> None:
    """Refuse to overwrite an earlier run's results unless asked to (``--overwrite``/``--resume``)."""
    existing = paths.earlier_results()
    if existing and not (config.overwrite or config.resume):
        names = ", ".join(str(p) for p in existing[:3])
        raise LPLError(f"{paths.root} already holds results of an earlier '{paths.name}' run ({names}); "
                       f"pass --overwrite to replace them, --resume to continue, or another --output-dir")


def _config_dict(config: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _check_resumable(saved: dict[str, Any], config: RunConfig) -> None:
    current = _config_dict(config)
    changed = sorted(k for k in set(saved) | set(current)
                     if k not in RESUMABLE_CHANGES and saved.get(k) != current.get(k))
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise LPLError(f"cannot resume: the checkpoint was made with other settings ({detail}); "
                       f"rerun with the original flags or start afresh with --overwrite")


def _format(record: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())


def run_training(task: Task, config: RunConfig, paths: RunPaths) -> RunResult:
    """Train ``task`` for ``config.steps`` steps with logging, checkpoints and fault handling."""
    check_outputs(paths, config)
    checkpoints = CheckpointFolder(paths.weights, paths.name, config.keep_checkpoints)
    records: list[dict[str, Any]] = []
    start, resumed_from = 0, None
    if config.resume:
        found = checkpoints.latest()
        if found is None:
            raise LPLError(f"--resume: no usable checkpoint of '{paths.name}' in {paths.weights}; "
                           f"run without --resume (add --overwrite to replace earlier results)")
        state, resumed_from = found
        _check_resumable(state["config"], config)
        task.load_state_dict(state["task"])
        records, start = state["records"], state["step"]
    else:
        checkpoints.clear()
    atomic_write_json({"config": _config_dict(config), "run": run_metadata(),
                       "activation_files": [paths.activation_file(tag).name for tag in ("before", "after")],
                       "resumed_from": str(resumed_from) if resumed_from else None}, paths.config_file)
    if resumed_from:
        tqdm.write(f"resuming '{paths.name}' from {resumed_from} at step {start}")
    else:
        task.export("before")

    def checkpoint(step: int) -> Path:
        state = {"step": step, "config": _config_dict(config), "task": task.state_dict(), "records": records}
        return checkpoints.save(state, step)

    result = RunResult("completed", start, records)
    bar = tqdm(total=config.steps, initial=start, disable=not config.progress, desc=paths.name,
               file=sys.stderr, dynamic_ncols=True)
    last_time, last_step = time.perf_counter(), start
    with StopRequest() as stop:
        for step in range(start + 1, config.steps + 1):
            values = task.step()
            if not bool(torch.isfinite(values).all()):
                terms = ", ".join(task.nonfinite_terms()) or "update"
                saved = checkpoint(step - 1)
                result = RunResult("nonfinite", step - 1, records,
                                   f"non-finite values ({terms}) at step {step}: stopped early; the "
                                   f"weights of step {step - 1} were kept and saved in {saved}")
                warnings.warn(result.message, RuntimeWarning, stacklevel=2)
                records.append({"step": step, "event": "nonfinite", "terms": terms})
                break
            bar.update(1)
            result.step = step
            if step % config.log_every == 0 or step == config.steps:
                now = time.perf_counter()
                rate = (step - last_step) * task.samples_per_step / max(now - last_time, 1e-9)
                record = {"step": step, **task.diagnostics(), "samples_per_s": round(rate, 1)}
                records.append(record)
                atomic_write_jsonl(records, paths.log_file)
                task.write_logs()
                bar.set_postfix_str(f"samples/s={rate:.0f}")
                tqdm.write(_format(record))
                last_time, last_step = time.perf_counter(), step
            if stop.signal is not None:
                saved = checkpoint(step)
                result = RunResult("interrupted", step, records,
                                   f"interrupted by signal {stop.signal} at step {step}; checkpoint "
                                   f"{saved}; continue with the same command plus --resume")
                records.append({"step": step, "event": "interrupted"})
                break
            if step % config.checkpoint_every == 0 or step == config.steps:
                checkpoint(step)
    bar.close()
    atomic_write_jsonl(records, paths.log_file)
    task.write_logs()
    if result.status != "interrupted":
        task.export("after")
        task.save_weights()
    if result.status == "completed":
        result.message = f"'{paths.name}' finished {result.step} steps; results in {paths.root}"
    return result
