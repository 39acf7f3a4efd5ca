"""``lpl demo``: train single-layer LPL, hierarchical LPL and BYOL briefly on generated shapes,
analyse them against baselines and write the report; about a minute on 2 CPU cores."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lpl.analysis.report import write_report
from lpl.config import TrainConfig, check_fields, inherited, option, passed_on, require
from lpl.train.byol import BYOLConfig, train_byol
from lpl.train.checkpoint import CheckpointFolder
from lpl.train.dense import HIERARCHICAL, DenseConfig, train_dense
from lpl.train.run import RunResult
from lpl.validation import LPLError


@dataclass
class DemoConfig:
    """Every run uses data that is generated, so the demo needs no download."""

    output_dir: str = inherited(TrainConfig, "output_dir", "outputs/demo", "where the runs and the report go")
    lpl_steps: int = option(3000, "steps of single-layer and hierarchical LPL")
    byol_steps: int = option(100, "steps of BYOL (the slowest part on a CPU)")
    num_export: int = inherited(TrainConfig, "num_export", 4000, "test images evaluated (500 shape sequences)")
    seed: int = inherited(TrainConfig, "seed")
    resume: bool = inherited(TrainConfig, "resume", help="continue an interrupted demo (finished runs are kept)")
    overwrite: bool = inherited(TrainConfig, "overwrite", help="replace the results of an earlier demo in --output-dir")
    progress: bool = inherited(TrainConfig, "progress")

    def __post_init__(self) -> None:
        check_fields(self)
        require(not (self.resume and self.overwrite), "--resume and --overwrite exclude each other; pick one")


def _continued(run_config: Any) -> Any:
    """``--resume``: a run with a checkpoint continues, one that never wrote one starts afresh."""
    layout = run_config.layout()
    started = CheckpointFolder(layout.weights, layout.name).latest() is not None
    return dataclasses.replace(run_config, resume=started, overwrite=not started)


def demo(config: DemoConfig) -> int | RunResult:
    common = passed_on(config, TrainConfig)
    runs: list[tuple[str, Callable[[Any], RunResult], TrainConfig]] = [
        ("single-layer LPL (1024 -> 128)", train_dense,
         DenseConfig(dataset="shapes", dims=[1024, 128], steps=config.lpl_steps, **common)),
        ("hierarchical LPL (1024 -> 128 -> 64)", train_dense,
         DenseConfig(**{**HIERARCHICAL, "steps": config.lpl_steps}, **common)),
        ("BYOL, first conv trained", train_byol,
         BYOLConfig(dataset="shapes", steps=config.byol_steps, log_every=max(1, config.byol_steps // 4), **common)),
    ]
    earlier = [p for _, _, run in runs for p in run.layout().earlier_results()]  # type: ignore[attr-defined]
    if earlier and not (config.resume or config.overwrite):
        raise LPLError(f"{config.output_dir} already holds results of an earlier lpl demo ({earlier[0]}); pass "
                       f"--overwrite to replace it, --resume to finish an interrupted one, or another --output-dir")
    for number, (title, train, run_config) in enumerate(runs, 1):
        print(f"[{number}/{len(runs) + 1}] {title}", flush=True)
        result = train(_continued(run_config) if config.resume else run_config)
        if result.exit_code:
            return result  # its message says how to go on
    print(f"[{len(runs) + 1}/{len(runs) + 1}] analysis and report", flush=True)
    path = write_report(config.output_dir)
    print(f"\nreport: {path} (and {path.with_suffix('.html').name} beside it, figures embedded)\n"
          f"table:  {path.with_name('comparison.csv')}")
    return 0
