"""The ``lpl`` command line: one sub-command per entry point, each a typed dataclass config."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lpl.config import parse_config
from lpl.validation import LPLError


@dataclass(frozen=True)
class Command:
    """A sub-command: its config dataclass and its runner, as ``module:attribute`` (imported lazily,
    so ``lpl --help`` does not import torch)."""

    config: str
    run: str
    help: str

    @staticmethod
    def resolve(target: str) -> Any:
        module, attribute = target.split(":")
        return getattr(importlib.import_module(module), attribute)


COMMANDS: dict[str, Command] = {
    "train": Command("lpl.train.dense:DenseLPLConfig", "lpl.train.dense:train_dense",
                     "single-layer LPL (default: CIFAR-10, 3072 -> 128, 5000 steps)"),
    "train-hierarchical": Command("lpl.train.dense:HierarchicalLPLConfig", "lpl.train.dense:train_dense",
                                  "layer-local LPL stack (default: shapes, 1024 -> 128 -> 64, 10000 steps)"),
    "train-byol": Command("lpl.train.byol:BYOLConfig", "lpl.train.byol:train_byol",
                          "BYOL baseline, only the first conv layer trained (default: CIFAR-10, 1000 steps)"),
    "train-deep": Command("lpl.train.deep:DeepLPLConfig", "lpl.train.deep:train_deep",
                          "layer-local VGG-11 LPL, the paper's main experiment (default: CIFAR-10, 800 epochs)"),
    "sanity": Command("lpl.train.sanity:SanityConfig", "lpl.train.sanity:sanity_check",
                      "one LPL layer on random data: weights, variance and NaN checks"),
    "analyze": Command("lpl.analysis.commands:AnalyzeConfig", "lpl.analysis.commands:analyze",
                       "statistics, probes, invariance and baselines of representation files"),
    "compare": Command("lpl.analysis.commands:CompareConfig", "lpl.analysis.commands:compare",
                       "one side-by-side table (Markdown and CSV) of several runs"),
    "report": Command("lpl.analysis.commands:ReportConfig", "lpl.analysis.commands:report",
                      "Markdown report with figures of every run in an output folder"),
    "demo": Command("lpl.demo:DemoConfig", "lpl.demo:demo",
                    "train LPL, hierarchical LPL and BYOL on shapes briefly, analyse, write the report"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {cmd.help}" for name, cmd in COMMANDS.items()]
    return "usage: lpl COMMAND [flags]   (lpl COMMAND --help lists the flags)\n\ncommands:\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; returns the exit status (2 for a user error with a one-line message)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"lpl: error: unknown command {name!r}\n{_usage()}", file=sys.stderr)
        return 2
    command = COMMANDS[name]
    config = parse_config(Command.resolve(command.config), rest, prog=f"lpl {name}", description=command.help)
    try:
        result = Command.resolve(command.run)(config)
    except LPLError as exc:
        print(f"lpl {name}: error: {exc}", file=sys.stderr)
        return 2
    if isinstance(result, int):
        return result
    if result.message:
        print(result.message, file=sys.stderr if result.exit_code else sys.stdout)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
