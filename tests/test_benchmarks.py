"""Every script in benchmarks/ runs at toy size and prints its figures, so a refactor that breaks one fails here.
Speed itself is measured by running the scripts at full size, never in tests."""

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

# script -> (toy-size flags, patterns its output must contain)
SMOKE = {
    "bench_lpl_step": (["--images", "64", "--batch-sizes", "8", "--seconds", "0.01"],
                       [r"\n +8 +\d+ +\d+ +\d+\.\d\d +\d+ +\d+\.\d\d +\d+\n"]),
    "bench_deep": (["--device", "cpu", "--no-compile", "--width", "0.0625", "--images", "20", "--batch-size", "16",
                    "--warmup", "1", "--steps", "2", "--epochs", "3"],
                   [r"bare step: +\d+ pairs/s +[\d.]+ GFLOP/pair", r"default run: +\d+ pairs/s +\([\d.]+ of the bare",
                    r"kNN monitor: +[\d.]+ s per check = [\d.]+% of an epoch",
                    r"checkpoint/epoch: +\d+ pairs/s .* 3 checkpoints written"]),
    "bench_startup": (["--device", "cpu", "--no-compile", "--epochs", "1"],
                      [r"first epoch after: cold caches +[\d.]+ s +warm caches +[\d.]+ s"]),
    "bench_analysis": (["--samples", "100", "--width", "8", "--threads", "1", "--warm-repeats", "0"],
                       [r"images: synthetic \(100\)", r"cold cache [\d.]+ s \(CPU [\d.]+ s\)",
                        r"speed-up [\d.]+x cold", r"baseline/pca8 +linear_probe +[\d.]+ +[\d.]+ +[-+][\d.]+ pt"]),
}


def load(script: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(script, BENCHMARKS / f"{script}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_benchmark_script_has_a_smoke_test():
    assert sorted(p.stem for p in BENCHMARKS.glob("*.py")) == sorted(SMOKE)


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_benchmark_runs_at_toy_size_and_prints_its_figures(script, capsys):
    argv, patterns = SMOKE[script]
    load(script).main(argv)
    out = capsys.readouterr().out
    for pattern in patterns:
        assert re.search(pattern, out), f"{script}: no match for {pattern!r} in:\n{out}"
