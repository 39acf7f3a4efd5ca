"""``lpl reproduce`` end to end on a tiny network and data set: variants, skip, resume, report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import lpl.reproduce as reproduce_module
from lpl.cli import main
from lpl.reproduce import NAMES, VARIANTS
from lpl.train.run import EXIT_INTERRUPTED, RunResult


@pytest.fixture(scope="module")
def args(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Flags for a tiny comparison: 60 8x8 images (48 train: 3 steps an epoch), a 2-block network."""
    root = tmp_path_factory.mktemp("reproduce")
    labels = torch.arange(60) % 4
    noise = torch.randint(0, 80, (60, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    images = (labels[:, None, None, None] * 40 + noise).to(torch.uint8)
    torch.save({"images": images, "labels": labels}, root / "tiny.pt")
    return ["--dataset", str(root / "tiny.pt"), "--channels", "4", "8", "--pool-after", "1", "--batch-size", "16",
            "--epochs", "1", "--ablation-epochs", "1", "--eval-train", "64", "--eval-epochs", "1",
            "--num-export", "64", "--checkpoint-minutes", "0", "--no-progress", "--output-dir", str(root / "out")]


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """(variant, resume) of every train_deep call."""
    calls: list[tuple[str, bool]] = []
    real = reproduce_module.train_deep

    def recording(config):
        calls.append((config.name, config.resume))
        return real(config)

    monkeypatch.setattr(reproduce_module, "train_deep", recording)
    return calls


def _out(args: list[str]) -> Path:
    return Path(args[-1])


def test_reproduce_runs_skips_and_resumes(args, trained, monkeypatch, capsys):
    out = _out(args)
    assert main(["reproduce", *args, "--variants", "lpl", "pixels"]) == 0
    assert trained == [("lpl", False)] and sorted(p.name for p in out.iterdir() if p.is_dir()) == ["lpl", "pixels"]
    partial = (out / "report.md").read_text()
    assert "| Hebbian off | — | — | not run |" in partial and "| random init | 0 |" in partial

    assert main(["reproduce", *args]) == 0  # lpl and pixels are skipped
    assert [name for name, _ in trained[1:]] == [n for n in VARIANTS if n != "lpl"]
    for name in VARIANTS:
        results = json.loads((out / name / "logs" / f"{name}_results.json").read_text())
        assert [r["layer"] for r in results["trained"]] == [1, 2]
        timing = json.loads((out / name / "reproduce_timing.json").read_text())
        assert timing["wall_s"] > 0 and timing["device"].startswith("cpu") and len(timing["sessions"]) == 1
    report = (out / "report.md").read_text()
    for label in [v.label for v in VARIANTS.values()] + ["random init", "pixels"]:
        assert f"\n| {label} | " in report
    assert "not run" not in report and "53.5 (best layer ~55.3)" in report and "| 31.8 |" in report
    assert "- LPL final layer >= 53%: **" in report and "- LPL above random init at layers 3-8" in report
    assert "- Hebbian off <= 15% at layers 3-8" in report and "At the final layer: " in report
    with open(out / "reproduce.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["variant"] for r in rows] == [n for n in VARIANTS for _ in (1, 2)] + ["random_init"] * 2 + ["pixels"]
    assert all(0 <= float(r["readout"]) <= 1 for r in rows)
    for png in ("readout_per_layer.png", "participation_ratio_per_layer.png"):
        assert (out / png).read_bytes().startswith(b"\x89PNG")

    # A rerun trains nothing and writes the report again.
    (out / "report.md").unlink()
    monkeypatch.setattr(reproduce_module, "train_deep", lambda config: pytest.fail(f"trained {config.name}"))
    assert main(["reproduce", *args]) == 0 and (out / "report.md").read_text().count("\n| ") == 9

    # Changed settings are refused rather than mixed into the comparison.
    assert main(["reproduce", *args, "--ablation-epochs", "2"]) == 2
    assert "finished with other settings" in capsys.readouterr().err

    # A variant with a checkpoint but no results resumes, and its sessions' times add up.
    monkeypatch.undo()
    (out / "hebb_off" / "logs" / "hebb_off_results.json").unlink()
    assert main(["reproduce", *args, "--variants", "hebb_off"]) == 0
    timing = json.loads((out / "hebb_off" / "reproduce_timing.json").read_text())
    assert [s["resumed"] for s in timing["sessions"]] == [False, True]
    assert timing["wall_s"] == pytest.approx(sum(s["wall_s"] for s in timing["sessions"]), abs=1e-3)


def test_an_interrupted_variant_stops_with_its_exit_code(args, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(reproduce_module, "train_deep", lambda config: RunResult("interrupted", 2, "stopped"))
    flags = [*args[:-1], str(tmp_path / "out")]
    assert main(["reproduce", *flags, "--variants", "pred_off", "lpl"]) == EXIT_INTERRUPTED
    assert "rerun the same command to continue" in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "pred_off" / "reproduce_timing.json").read_text())["status"] == "interrupted"
    assert not (tmp_path / "out" / "lpl").exists() and not (tmp_path / "out" / "report.md").exists()


def test_unknown_variant_lists_the_valid_names(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", *args, "--variants", "lpl", "hebbian"])
    assert exc.value.code == 2 and ", ".join(NAMES) in capsys.readouterr().err


def test_shared_settings_are_declared_once_and_reach_every_variant():
    """ReproduceConfig takes train-deep's defaults (seed aside) and hands its values to every variant."""
    import dataclasses

    from lpl.config import passed_on
    from lpl.reproduce import ReproduceConfig
    from lpl.train.deep import DeepConfig

    shared = passed_on(ReproduceConfig(), DeepConfig)
    assert {"dataset", "batch_size", "eval_train", "channels", "compile", "checkpoint_minutes"} <= set(shared)
    assert {k: v for k, v in shared.items() if k != "seed"} == \
        {k: v for k, v in dataclasses.asdict(DeepConfig()).items() if k in shared and k != "seed"}
    config = ReproduceConfig(batch_size=64, eval_train=123, channels=[4, 8], pool_after=[1], seed=7)
    for name in VARIANTS:
        deep = config.deep_config(name)
        assert all(getattr(deep, k) == v for k, v in passed_on(config, DeepConfig).items()), name
        assert deep.channels is not config.channels  # a variant cannot change the shared list
