"""The ``lpl`` command line: one sub-command per entry point, each a typed dataclass config."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lpl.config import parse_config
from lpl.validation import LPLError


@dataclass(frozen=True)
class Command:
    config: Callable[[], type]        # imported lazily so `lpl --help` stays fast
    run: Callable[[], Callable[[Any], Any]]
    help: str


def _dense():
    from lpl.train import dense
    return dense


def _byol():
    from lpl.train import byol
    return byol


def _analysis():
    from lpl.analysis import commands
    return commands


def _demo():
    from lpl import demo
    return demo


def _deep():
    from lpl.train import deep
    return deep


def _sanity():
    from lpl.train import sanity
    return sanity


COMMANDS: dict[str, Command] = {
    "train": Command(lambda: _dense().DenseLPLConfig, lambda: _dense().train_dense,
                     "single-layer LPL (default: CIFAR-10, 3072 -> 128, 5000 steps)"),
    "train-hierarchical": Command(lambda: _dense().HierarchicalLPLConfig, lambda: _dense().train_dense,
                                  "layer-local LPL stack (default: shapes, 1024 -> 128 -> 64, 10000 steps)"),
    "train-byol": Command(lambda: _byol().BYOLConfig, lambda: _byol().train_byol,
                          "BYOL baseline, only the first conv layer trained (default: CIFAR-10, 1000 steps)"),
    "train-deep": Command(lambda: _deep().DeepLPLConfig, lambda: _deep().train_deep,
                          "layer-local VGG-11 LPL, the paper's main experiment (default: CIFAR-10, 800 epochs)"),
    "sanity": Command(lambda: _sanity().SanityConfig, lambda: _sanity().sanity_check,
                      "one LPL layer on random data: weights, variance and NaN checks"),
    "analyze": Command(lambda: _analysis().AnalyzeConfig, lambda: _analysis().analyze,
                       "statistics, probes, invariance and baselines of representation files"),
    "compare": Command(lambda: _analysis().CompareConfig, lambda: _analysis().compare,
                       "one side-by-side table (Markdown and CSV) of several runs"),
    "report": Command(lambda: _analysis().ReportConfig, lambda: _analysis().report,
                      "Markdown report with figures of every run in an output folder"),
    "demo": Command(lambda: _demo().DemoConfig, lambda: _demo().demo,
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
    config = parse_config(command.config(), rest, prog=f"lpl {name}", description=command.help)
    try:
        result = command.run()(config)
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
