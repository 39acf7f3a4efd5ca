"""``lpl demo``: train single-layer LPL, hierarchical LPL and BYOL briefly on generated shapes,
analyse them against baselines and write the report; about a minute on 2 CPU cores."""

from __future__ import annotations

from dataclasses import dataclass

from lpl.analysis.report import write_report
from lpl.config import option
from lpl.train.byol import BYOLConfig, train_byol
from lpl.train.dense import HIERARCHICAL, DenseConfig, train_dense


@dataclass
class DemoConfig:
    """Every run uses data that is generated, so the demo needs no download."""

    output_dir: str = option("outputs/demo", "where the runs and the report go")
    lpl_steps: int = option(3000, "steps of single-layer and hierarchical LPL")
    byol_steps: int = option(300, "steps of BYOL")
    num_export: int = option(4000, "test images evaluated (500 shape sequences)")
    seed: int = option(0, "random seed of every run")
    resume: bool = option(False, "continue an interrupted demo (finished runs are kept)")
    overwrite: bool = option(False, "replace the results of an earlier demo in --output-dir")
    progress: bool = option(True, "show progress bars")


def demo(config: DemoConfig) -> int:
    common = {"output_dir": config.output_dir, "num_export": config.num_export, "seed": config.seed,
              "resume": config.resume, "overwrite": config.overwrite, "progress": config.progress}
    runs = [
        ("single-layer LPL (1024 -> 128)", train_dense,
         DenseConfig(dataset="shapes", dims=[1024, 128], steps=config.lpl_steps, **common)),
        ("hierarchical LPL (1024 -> 128 -> 64)", train_dense,
         DenseConfig(**{**HIERARCHICAL, "steps": config.lpl_steps}, **common)),
        ("BYOL, first conv trained", train_byol,
         BYOLConfig(dataset="shapes", steps=config.byol_steps, log_every=50, **common)),
    ]
    for number, (title, train, run_config) in enumerate(runs, 1):
        print(f"[{number}/{len(runs) + 1}] {title}", flush=True)
        result = train(run_config)
        if result.exit_code:
            print(result.message)
            return result.exit_code
    print(f"[{len(runs) + 1}/{len(runs) + 1}] analysis and report", flush=True)
    path = write_report(config.output_dir)
    print(f"\nreport: {path}\n" + path.with_name("comparison.csv").as_posix())
    return 0
