"""Everything about not losing a run, in one piece every trainer shares.

``TrainingRun`` guards earlier outputs, locks the run against a second process writing it, saves the
config with the git revision, resumes from the newest good checkpoint, exports the representations
before and after training, turns SIGINT and SIGTERM into a checkpoint and a clean stop, stops on
non-finite values with the last finite weights kept, writes checksummed checkpoints from a background
thread (by wall time and optionally every N steps, always at the end) and, if asked, the log records as
TensorBoard events. A trainer's loop then reads::

    with TrainingRun(config, layout, schedule, state, export, samples_per_step) as run:
        for step in run.steps():
            ...one update...
            if run.log_due(step):
                run.log(step, diagnostics)
    return run.result
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import platform
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from tqdm.auto import tqdm

from lpl.config import PLACEMENT, RUN_CONTROL, field_default, flag, setting_meaning
from lpl.data.images import ImageSet
from lpl.io import atomic_write_jsonl, read_json, run_metadata
from lpl.layout import TAGS, RunLayout, write_record
from lpl.train.checkpoint import CheckpointFolder, CheckpointWriter
from lpl.validation import LPLError

try:
    import fcntl
except ImportError:  # Windows: runs are not locked
    fcntl = None  # type: ignore[assignment]

EXIT_NONFINITE = 3
EXIT_TIME_LIMIT = 75  # sysexits' EX_TEMPFAIL: stopped at --stop-after-minutes, to be continued with --resume
EXIT_INTERRUPTED = 130
# Config fields that may differ between a run and its resumption without changing its results (placement: up to
# floating-point order).
RESUMABLE_CHANGES = RUN_CONTROL | PLACEMENT | {"steps"}


@dataclass(frozen=True)
class Schedule:
    """The counts a run follows, derived from its config before the trainer is built."""

    steps: int
    log_every: int
    checkpoint_every: int       # steps between checkpoints; 0 = by wall time only
    checkpoint_minutes: float   # 0 = only at the end, on a signal and on a NaN stop
    stop_after_minutes: float   # of training in this session, then a checkpoint and a stop; 0 = no limit

    def __post_init__(self) -> None:
        if self.steps < 1 or self.log_every < 1:
            raise LPLError(f"a run needs at least one step and a positive logging interval, got {self}")


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class StateGroup:
    """Several stateful parts (modules, optimizers, streams) checkpointed as one dict."""

    def __init__(self, **parts: Stateful):
        self.parts = parts

    def state_dict(self) -> dict[str, Any]:
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, part in self.parts.items():
            part.load_state_dict(state[name])


@dataclass
class RunResult:
    status: str = "completed"  # "completed", "nonfinite" or "interrupted" (by a signal or the time limit)
    step: int = 0
    message: str = ""
    timed_out: bool = False  # interrupted at --stop-after-minutes

    @property
    def exit_code(self) -> int:
        if self.timed_out:
            return EXIT_TIME_LIMIT
        return {"completed": 0, "nonfinite": EXIT_NONFINITE, "interrupted": EXIT_INTERRUPTED}[self.status]


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag checked after each step (main thread only), so the step finishes and a
    checkpoint is written. Further SIGTERMs are the same request (``timeout`` and job schedulers send it to the
    process and again to its process group; what they send next is SIGKILL); a further Ctrl-C more than
    ``repeat_s`` after the first stops at once."""

    repeat_s: ClassVar[float] = 1.0
    first_at: ClassVar[float | None] = None  # when the run or command took its first signal (one per process)

    def __init__(self) -> None:
        self.signal: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        StopRequest.first_at = None  # a run starts with no request (callers in one process may run many)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    @staticmethod
    def take(signum: int) -> str:
        """What a signal now is: "first" (noted), "again" (a Ctrl-C more than ``repeat_s`` after the first:
        stop at once) or "repeat" (the same request: nothing to do)."""
        now = time.monotonic()
        if StopRequest.first_at is None:
            StopRequest.first_at = now
            return "first"
        return "again" if signum == signal.SIGINT and now - StopRequest.first_at >= StopRequest.repeat_s else "repeat"

    def _handle(self, signum: int, _frame: Any) -> None:
        taken = self.take(signum)
        if taken == "first":
            self.signal = signum
        elif taken == "again":
            raise KeyboardInterrupt

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _interrupt(signum: int, _frame: Any) -> None:
    if StopRequest.take(signum) != "repeat":
        raise KeyboardInterrupt


@contextlib.contextmanager
def signals_interrupt(owns_process: bool = False) -> Iterator[None]:
    """For a whole command: SIGTERM, like SIGINT, raises KeyboardInterrupt outside the training loop (loading
    data, fitting readouts), so the command ends with its one-line message instead of SIGTERM's silent death;
    repeats are handled as in :class:`StopRequest`. ``owns_process``: the process ends with the command, so
    both signals are ignored from then on (Python's shutdown would restore their defaults, and a repeat of the
    request would kill the process before it reports its status). Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    StopRequest.first_at = None
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if owns_process else handler)


class RunLock:
    """``<root>/.<name>.lock``, locked (``flock``) by the process writing the run: the operating system lets go
    of it when that process ends, however it ends, so a killed run leaves no stale lock (the empty file stays).
    A process holds a run's lock once however often it takes it; inside ``keep_run_locks`` a run's end does not
    release it. Ranks of torchrun write different roots. Without ``fcntl`` (Windows) runs are not locked."""

    held: ClassVar[dict[Path, int]] = {}  # this process's locks and their file descriptors
    keeping: ClassVar[bool] = False

    def __init__(self, layout: RunLayout):
        self.layout, self.path = layout, Path(os.path.abspath(layout.root / f".{layout.name}.lock"))

    def check(self) -> None:
        """Raise if another process holds the lock (creates nothing)."""
        if fcntl is None or self.path in RunLock.held or not self.path.is_file():
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            self._lock(fd, fcntl.LOCK_SH)
        finally:
            os.close(fd)  # lets go of the probe's lock

    def acquire(self) -> None:
        """Take the lock for this process, or raise if another one holds it."""
        if fcntl is None or self.path in RunLock.held:
            return
        self.layout.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            self._lock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {platform.node()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        RunLock.held[self.path] = fd

    def release(self) -> None:
        """Let go of the lock, unless inside ``keep_run_locks``."""
        if not RunLock.keeping and self.path in RunLock.held:
            os.close(RunLock.held.pop(self.path))

    def _lock(self, fd: int, kind: int) -> None:
        assert fcntl is not None
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").split()
            who = f"process {holder[0]} on {holder[1]}" if len(holder) == 2 else "another process"
            raise LPLError(f"{self.layout.root} is in use: {who} is writing the '{self.layout.name}' run there; "
                           f"wait for it to end, or choose another --output-dir") from None


@contextlib.contextmanager
def keep_run_locks() -> Iterator[None]:
    """Hold the lock of every run that ends inside until the end (of a command whose later steps read its
    runs: train-deep's readouts, the demo's and reproduce's reports)."""
    if RunLock.keeping:
        yield
        return
    RunLock.keeping = True
    try:
        yield
    finally:
        RunLock.keeping = False
        while RunLock.held:
            os.close(RunLock.held.popitem()[1])


def check_data(config: Any, train: ImageSet, test: ImageSet) -> None:
    """Settings that do not fit the data: a batch larger than the training set is an error; exporting more test
    images than there are (unless the default asked), or training on one class (probes and readouts then say
    nothing), a warning."""
    if config.batch_size > len(train):
        raise LPLError(f"--batch-size {config.batch_size} is larger than the {len(train)} training images; use at "
                       f"most {len(train)}")
    default = next(field_default(f) for f in dataclasses.fields(config) if f.name == "num_export")
    if config.num_export > len(test) and config.num_export != default:  # the default means "up to this many"
        warnings.warn(f"--num-export {config.num_export}: the test split has {len(test)} images; all of them are "
                      f"exported (the run record says how many)", stacklevel=2)
    if int(torch.unique(train.labels).numel()) < 2:
        warnings.warn("the training images are of one class: training goes on, but probes and readouts need two "
                      "or more classes and report none", stacklevel=2)


def check_output_dir(layout: RunLayout, resume: bool, overwrite: bool) -> None:
    """A usable, writable output folder that no other process is writing and that holds no earlier results
    unless asked to replace them."""
    root = layout.root
    blocking = next((p for p in (root, *root.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise LPLError(f"--output-dir {root}: {blocking} is a file, not a folder; choose another --output-dir")
    RunLock(layout).check()
    existing = layout.earlier_results()
    if existing and not (overwrite or resume):
        names = ", ".join(str(p) for p in existing[:3])
        raise LPLError(f"{root} already holds results of an earlier '{layout.name}' run ({names}); pass "
                       f"--overwrite to replace them, --resume to continue, or another --output-dir")
    nearest = next(p for p in (root, *root.parents) if p.exists())  # probed without creating folders
    try:
        handle, probe = tempfile.mkstemp(dir=nearest, prefix=".lpl-write-test-")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise LPLError(f"--output-dir {root} is not writable ({exc.strerror}); choose another --output-dir") from None


def changed_settings(saved: Mapping[str, Any], saved_cwd: str | None, config: Any) -> list[str]:
    """The settings of ``config`` whose meaning differs from those ``saved`` by a run in the working folder
    ``saved_cwd`` (paths compared as absolute paths; ``RESUMABLE_CHANGES`` not compared), as
    ``--flag <saved> (now <current>)``."""
    current = dataclasses.asdict(config)
    return [f"{flag(k)} {saved.get(k)!r} (now {current.get(k)!r})" for k in sorted(set(saved) | set(current))
            if k not in RESUMABLE_CHANGES
            and setting_meaning(k, saved.get(k), saved_cwd) != setting_meaning(k, current.get(k))]


def after_interrupt(config: Any) -> str:
    """What to do after Ctrl-C stopped the command of ``config`` outside a training loop (which checkpoints and
    says so itself): continue with --resume where a checkpoint of these settings exists, else run it again."""
    if not hasattr(config, "resume"):
        return ""
    resume = "continue with the same command plus --resume"
    if not hasattr(config, "layout"):  # a command of several runs (demo): its --resume starts what has no checkpoint
        return resume
    layout = config.layout()
    saved = read_json(layout.record_file) or {}
    if (CheckpointFolder(layout.weights, layout.name).paths() and isinstance(saved.get("config"), dict)
            and not changed_settings(saved["config"], saved.get("cwd"), config)):
        return resume
    how = (" without --resume" if config.resume else
           " with --overwrite" if layout.earlier_results() and not config.overwrite else "")
    return f"no checkpoint of this run was saved yet, so there is nothing to resume: run the same command again{how}"


LINE_WIDTH = 100  # printed diagnostics wrap here


def _wrap(items: list[str], indent: int) -> list[str]:
    """The items two spaces apart on lines of at most ``LINE_WIDTH`` characters, the continuation
    lines indented by ``indent``."""
    lines = [items[0]]
    for item in items[1:]:
        if len(lines[-1]) + 2 + len(item) > LINE_WIDTH:
            lines.append(" " * indent + item)
        else:
            lines[-1] += "  " + item
    return lines


def format_record(record: dict[str, Any], total_steps: int) -> str:
    """A few short lines: the step and run-wide values, then those of each layer of multi-layer records
    (``layer<k>_<name>`` keys)."""
    def value(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    layers: dict[str, list[str]] = {}
    head = [f"step {record['step']}/{total_steps}"]
    for key, v in record.items():
        if key == "step":
            continue
        layer, _, name = key.partition("_")
        if layer.startswith("layer") and layer[5:].isdigit() and name:
            layers.setdefault(layer[5:], []).append(f"{name} {value(v)}")
        else:
            head.append(f"{key} {value(v)}")
    lines = _wrap(head, len(head[0]) + 2)
    for k, items in layers.items():
        prefix = f"  layer {k}: "
        lines += _wrap([prefix + items[0], *items[1:]], len(prefix))
    return "\n".join(lines)


class TrainingRun:
    """Fault handling around a trainer's loop (see the module docstring)."""

    def __init__(self, config: Any, layout: RunLayout, schedule: Schedule, state: Stateful,
                 export: Callable[[str], object], samples_per_step: int, *, writer: bool = True,
                 describe: dict[str, Any] | None = None):
        self.config, self.layout, self.schedule = config, layout, schedule
        self.describe = describe or {}  # the run record's description of network, objective, data and terms
        self.state, self.export, self.samples_per_step = state, export, samples_per_step
        self.write_outputs = writer  # False on the non-zero ranks of torchrun
        self.records: list[dict[str, Any]] = []
        self.result = RunResult()
        self.start = 0
        self.checkpoints = CheckpointFolder(layout.weights, layout.name, config.keep_checkpoints)
        self.writer = CheckpointWriter(self.checkpoints)
        self.stop = StopRequest()
        self.lock = RunLock(layout)
        self.tensorboard: TensorBoardLog | None = None

    # ------------------------------------------------------------------ start and end
    def __enter__(self) -> TrainingRun:
        check_output_dir(self.layout, self.config.resume, self.config.overwrite)
        self.lock.acquire()
        try:
            self._start()
        except BaseException:
            self._let_go()
            raise
        self.stop.__enter__()
        self.started = time.perf_counter()
        return self

    def _start(self) -> None:
        config = self.config
        resumed_from = None
        if config.resume:
            found = self.checkpoints.latest()
            if found is None:
                raise LPLError(f"--resume: no usable checkpoint of '{self.layout.name}' in {self.layout.weights}; "
                               f"run without --resume (add --overwrite to replace earlier results)")
            saved, resumed_from = found
            self._check_resumable(saved)
            self.state.load_state_dict(saved["state"])
            self.records, self.start = saved["records"], saved["step"]
        else:
            self.checkpoints.clear()
        if self.write_outputs:
            write_record(self.layout, {
                **self.describe, "config": dataclasses.asdict(config), "schedule": dataclasses.asdict(self.schedule),
                "run": run_metadata(), "activation_files": [self.layout.activation_file(t).name for t in TAGS],
                "resumed_from": str(resumed_from) if resumed_from else None, "cwd": os.getcwd()})
            if config.tensorboard:
                self.tensorboard = TensorBoardLog(self.layout.root / "tensorboard" / self.layout.name, self.records,
                                                  self.start if resumed_from else None)
        if resumed_from:
            tqdm.write(f"resuming '{self.layout.name}' from {resumed_from} at step {self.start} on {config.device}")
        else:
            tqdm.write(f"training '{self.layout.name}' on {config.device}; results in {self.layout.root}")
            self.export("before")
        self.result.step = self.start

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._finish(exc_type)
        finally:
            self._let_go()

    def _let_go(self) -> None:
        """Close the TensorBoard events and release the lock (``keep_run_locks`` may keep it)."""
        if self.tensorboard is not None:
            self.tensorboard.close()
        self.lock.release()

    def _finish(self, exc_type: Any) -> None:
        self.stop.__exit__()
        try:
            if exc_type is None and self.result.status != "interrupted":
                self.writer.save(self._checkpoint_state(self.result.step), self.result.step)
        finally:
            self.writer.close()
        if exc_type is not None:
            return
        self._write_log()
        if self.result.status != "interrupted":
            self.export("after")
        if self.result.status == "completed":
            self.result.message = (f"'{self.layout.name}' finished {self.result.step} steps; "
                                   f"results in {self.layout.root}")

    def _check_resumable(self, checkpoint: dict[str, Any]) -> None:
        changed = changed_settings(checkpoint["config"], checkpoint.get("cwd"), self.config)
        if changed:
            raise LPLError(f"cannot resume '{self.layout.name}': it was started with other settings "
                           f"({', '.join(changed)}); rerun with the original values (--resume alone takes them "
                           f"from the run), or start a new run in another --output-dir")

    # ------------------------------------------------------------------ the loop
    def steps(self) -> Iterator[int]:
        """Step numbers from the first one not yet done; checkpoints and stops between them."""
        schedule = self.schedule
        bar = tqdm(total=schedule.steps, initial=self.start, desc=self.layout.name, file=sys.stderr,
                   disable=None if self.config.progress else True, dynamic_ncols=True)  # None: on a terminal only
        self._last_log = (time.perf_counter(), self.start)
        last_checkpoint, due = time.monotonic(), False
        deadline = last_checkpoint + 60 * schedule.stop_after_minutes if schedule.stop_after_minutes else math.inf
        try:
            for step in range(self.start + 1, schedule.steps + 1):
                yield step
                if self.result.status == "nonfinite":
                    return
                self.result.step = step
                bar.update(1)
                timed_out = step < schedule.steps and time.monotonic() >= deadline
                if self.stop.signal is not None or timed_out:
                    saved = self.writer.save(self._checkpoint_state(step), step)
                    self.records.append({"step": step, "event": "interrupted"})
                    why = (f"stopped after --stop-after-minutes {schedule.stop_after_minutes:g}" if timed_out
                           else f"interrupted by signal {self.stop.signal}")
                    self.result = RunResult("interrupted", step, f"{why} at step {step}; checkpoint {saved}; "
                                            f"continue with the same command plus --resume", timed_out)
                    return
                by_steps = schedule.checkpoint_every and step % schedule.checkpoint_every == 0
                by_time = (schedule.checkpoint_minutes
                           and time.monotonic() - last_checkpoint >= 60 * schedule.checkpoint_minutes)
                due = due or bool(by_steps or by_time)
                # One due while the previous one is still being written waits for it; training does not.
                if due and step < schedule.steps and not self.writer.busy():
                    self.writer.submit(self._checkpoint_state(step), step)
                    due, last_checkpoint = False, time.monotonic()
        finally:
            bar.close()

    def log_due(self, step: int) -> bool:
        return step % self.schedule.log_every == 0 or step == self.schedule.steps

    def log(self, step: int, diagnostics: dict[str, Any]) -> None:
        """Record, print and save the diagnostics of ``step`` with the throughput since the last log."""
        now = time.perf_counter()
        last_time, last_step = self._last_log
        rate = (step - last_step) * self.samples_per_step / max(now - last_time, 1e-9)
        record = {"step": step, **diagnostics, "samples_per_s": round(rate, 1),
                  "elapsed_s": round(now - self.started, 2)}
        self.records.append(record)
        self._write_log()
        tqdm.write(format_record(record, self.schedule.steps))
        self._last_log = (time.perf_counter(), step)

    def nonfinite(self, step: int, last_good_step: int, what: str) -> None:
        """Stop: values at ``step`` were not finite; the state is that of ``last_good_step``."""
        self.records.append({"step": step, "event": "nonfinite", "terms": what})
        self.result = RunResult("nonfinite", last_good_step)
        saved = self.checkpoints.path(last_good_step)
        self.result.message = (f"non-finite values ({what}) at step {step}: stopped early; the weights of "
                               f"step {last_good_step} were kept and saved in {saved}")
        warnings.warn(self.result.message, RuntimeWarning, stacklevel=2)

    def _checkpoint_state(self, step: int) -> dict[str, Any]:
        return {"step": step, "config": dataclasses.asdict(self.config), "cwd": os.getcwd(),
                "state": self.state.state_dict(), "records": list(self.records)}

    def _write_log(self) -> None:
        if self.write_outputs:
            atomic_write_jsonl(self.records, self.layout.log_file)
        if self.tensorboard is not None:
            self.tensorboard.write(self.records)


def summary_writer(folder: Path, purge_step: int | None) -> Any:
    """TensorBoard's ``SummaryWriter`` for ``folder`` (imported here: tensorboard is an optional extra)."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder), purge_step=purge_step)


class TensorBoardLog:
    """The log records as TensorBoard events: numbers as scalars, other values (events) as text, at each
    record's step. A fresh run replaces earlier event files; a resumed one hides the events from its
    checkpoint's step on (``purge_step``) and writes its records from there again (all of them if there
    were no events before)."""

    def __init__(self, folder: Path, records: list[dict[str, Any]], resumed_at: int | None):
        earlier = list(folder.glob("events.out.tfevents.*"))
        if resumed_at is None:
            for old in earlier:
                old.unlink()
        self.writer = summary_writer(folder, resumed_at)
        # Written before: the records before the checkpoint's step, if that session wrote events.
        self.written = sum(1 for r in records if earlier and resumed_at is not None and r["step"] < resumed_at)

    def write(self, records: list[dict[str, Any]]) -> None:
        """Write the records not written yet, and flush them to disk."""
        for record in records[self.written:]:
            for key, value in record.items():
                if key == "step":
                    continue
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self.writer.add_scalar(key, value, record["step"])
                else:
                    self.writer.add_text(key, str(value), record["step"])
        self.written = len(records)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
