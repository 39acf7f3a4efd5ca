"""The ``lpl`` command line: one sub-command per entry point, each a dataclass config."""

from __future__ import annotations

import contextlib
import errno
import shlex
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from lpl.analysis.commands import (
    AnalyzeConfig,
    CompareConfig,
    ReadoutConfig,
    ReportConfig,
    analyze,
    compare,
    readout,
    report,
)
from lpl.analysis.probes import knn_accuracies
from lpl.analysis.readout import write_readouts
from lpl.config import flag, parse_config
from lpl.demo import DemoConfig, demo
from lpl.reproduce import ReproduceConfig, reproduce
from lpl.swap import SwapConfig, swap_exposure
from lpl.train.byol import BYOLConfig, train_byol
from lpl.train.deep import DeepConfig, train_deep
from lpl.train.dense import HIERARCHICAL, DenseConfig, train_dense
from lpl.train.run import EXIT_INTERRUPTED, RunResult, after_interrupt, keep_run_locks, signals_interrupt
from lpl.train.sanity import SanityConfig, sanity_check
from lpl.validation import LPLError


@dataclass(frozen=True)
class Command:
    """A sub-command: its config dataclass, the function that runs it, and preset defaults."""

    config: type[Any]
    run: Callable[[Any], Any]
    help: str
    preset: Mapping[str, Any] = field(default_factory=dict)


def knn_monitor(train: list[torch.Tensor], train_labels: torch.Tensor, test: list[torch.Tensor],
                test_labels: torch.Tensor) -> list[float]:
    """``--monitor-every``'s check: kNN-20 accuracy of each layer's test features against its training features."""
    return [knn_accuracies(a, train_labels, b, test_labels, (20,))[20] for a, b in zip(train, test)]


def train_deep_and_read_out(config: DeepConfig) -> RunResult:
    """``lpl train-deep``: train, then (``--evaluate``, on the process that writes) fit the readouts."""
    result = train_deep(config, knn_monitor)
    if config.evaluate and result.status != "interrupted" and not (dist.is_initialized() and dist.get_rank()):
        layout = config.layout()
        again = (f"lpl readout {shlex.quote(str(layout.root))} --name {shlex.quote(layout.name)} --grid "
                 f"{config.readout_grid} --epochs {config.eval_epochs} --device {config.device}")
        try:
            write_readouts(layout, config.eval_epochs, config.device, config.readout_grid)
        except KeyboardInterrupt:
            return RunResult("interrupted", result.step, f"interrupted while fitting the readouts; training ended and "
                             f"is saved: fit them with '{again}'")
        except (RuntimeError, MemoryError) as exc:
            if not _out_of_memory(exc):
                raise
            raise LPLError(f"training ended and is saved; its readouts ran out of memory on {config.device}: fit them "
                           f"with '{again}' when the device is free, or with --device cpu") from exc
    return result


COMMANDS: dict[str, Command] = {
    "train": Command(DenseConfig, train_dense, "single-layer LPL (default: CIFAR-10, 3072 -> 128, 5000 steps)"),
    "train-hierarchical": Command(DenseConfig, train_dense,
                                  "layer-local LPL stack (default: shapes, 1024 -> 128 -> 64, 10000 steps)",
                                  HIERARCHICAL),
    "train-byol": Command(BYOLConfig, train_byol,
                          "the seed's BYOL baseline, only the first conv layer trained (1000 steps)"),
    "train-deep": Command(DeepConfig, train_deep_and_read_out, "conv networks with layer-local LPL (default: the "
                          "paper's VGG-11 on CIFAR-10, 800 epochs), or BYOL/SimCLR heads, layer-local or end-to-end"),
    "sanity": Command(SanityConfig, sanity_check, "one LPL layer on random data: weights, variance and NaN checks"),
    "analyze": Command(AnalyzeConfig, analyze, "statistics, probes, invariance and baselines of representation files"),
    "compare": Command(CompareConfig, compare, "one side-by-side table (Markdown and CSV) of several runs"),
    "readout": Command(ReadoutConfig, readout, "per-layer linear readout of a deep run's exports"),
    "report": Command(ReportConfig, report, "Markdown and HTML report with figures of every run in an output folder"),
    "reproduce": Command(ReproduceConfig, reproduce, "the paper's deep comparison: LPL, ablations, random init "
                         "and pixels, with report and figures"),
    "swap-exposure": Command(SwapConfig, swap_exposure, "the paper's swap-exposure experiment (Li & DiCarlo 2008) on a "
                             "trained deep run and on its initialisation, beside the monkey data"),
    "demo": Command(DemoConfig, demo, "train LPL, hierarchical LPL and BYOL on shapes briefly, analyse, report"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {cmd.help}" for name, cmd in COMMANDS.items()]
    return "usage: lpl COMMAND [flags]   (lpl COMMAND --help lists the flags)\n\ncommands:\n" + "\n".join(lines)


def _fail(name: str, message: str, code: int = 2) -> int:
    print(f"{f'lpl {name}' if name else 'lpl'}: error: {message}", file=sys.stderr)
    return code


# Flags that set how much memory a run takes, in the order to try lowering them.
MEMORY_FLAGS = ("batch_size", "num_export", "eval_train")


def _out_of_memory(exc: BaseException) -> bool:
    """A device's ``torch.OutOfMemoryError``, or the CPU allocator's (a plain ``RuntimeError``)."""
    return isinstance(exc, torch.OutOfMemoryError | MemoryError) or (
        isinstance(exc, RuntimeError) and "DefaultCPUAllocator" in str(exc))


@contextlib.contextmanager
def one_line_warnings(name: str) -> Iterator[None]:
    """Warnings during a command as one line each, ``lpl <command>: warning: ...``, without Python's file and
    source line (which say nothing to a user of the command line)."""
    previous = warnings.formatwarning

    def formatted(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  line: str | None = None) -> str:
        return f"lpl {name}: warning: {message}\n"

    warnings.formatwarning = formatted
    try:
        yield
    finally:
        warnings.formatwarning = previous


def main(argv: Sequence[str] | None = None, *, owns_process: bool = False) -> int:
    """Run one sub-command; returns the exit status (2 for a user error, with a one-line message).
    ``owns_process``: the process ends with the command, so its signal handling stays until then."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        return _fail("", f"unknown command {name!r}; run 'lpl --help' for the list")
    command = COMMANDS[name]
    config = parse_config(command.config, rest, prog=f"lpl {name}", description=command.help, preset=command.preset,
                          commands={n: c.config for n, c in COMMANDS.items()})
    try:
        # a run's folder stays locked until the command ends; SIGTERM stops it as Ctrl-C does
        with signals_interrupt(owns_process), keep_run_locks(), one_line_warnings(name):
            result = command.run(config)
    except LPLError as exc:
        return _fail(name, str(exc))
    except (RuntimeError, MemoryError) as exc:
        if not _out_of_memory(exc):
            raise
        known = [flag(f) for f in MEMORY_FLAGS if hasattr(config, f)]
        return _fail(name, "out of memory" + (f"; lower {' or '.join(known)}" if known else ""))
    except KeyboardInterrupt:
        again = after_interrupt(config)
        return _fail(name, "interrupted; files written so far are complete, nothing was half-written"
                     + (f"; {again}" if again else ""), EXIT_INTERRUPTED)
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.ENOSPC, errno.ENOTDIR, errno.EEXIST, errno.EDQUOT):
            raise
        return _fail(name, f"cannot write {exc.filename or 'an output file'} ({exc.strerror}); "
                     f"free space or choose another --output-dir")
    if isinstance(result, int):
        return result
    if result.message:
        print(result.message, file=sys.stderr if result.exit_code else sys.stdout)
    return result.exit_code


def cli() -> None:
    """The ``lpl`` command and ``python -m lpl.cli``: :func:`main` in a process of its own."""
    sys.exit(main(owns_process=True))


if __name__ == "__main__":
    cli()
