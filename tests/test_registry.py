"""An objective is one module: a toy head registered here trains end to end through ``lpl train-deep``, with
its own flag, its logged terms described in the run record, and no other file edited."""

import json
from dataclasses import dataclass

import pytest
import torch

import lpl.heads
from lpl import rules
from lpl.cli import main
from lpl.config import option
from lpl.heads import LayerHead, register
from lpl.terms import Term

SMALL = ["--dataset", "shapes", "--channels", "4", "8", "--pool-after", "1", "--batch-size", "16", "--steps", "3",
         "--num-export", "32", "--eval-train", "64", "--eval-epochs", "1", "--readout-grid", "0", "--no-progress",
         "--device", "cpu"]


@dataclass(frozen=True)
class WhiteningOptions:
    strength: float = option(1.0, "toy: weight of the decorrelation term")


class Whitening(LayerHead):
    """Decorrelation and variance of each block's pooled output, nothing predictive."""

    name = "whitening"
    summary = "toy objective: whitening of each block's output"
    Options = WhiteningOptions
    terms = {"offdiag": Term("squared covariance of different units", "falls"),
             "logvar": Term("minus the log variance of each unit", "falls")}

    def forward(self, maps, target=None, geometry=None):
        z = self.samples(maps)
        offdiag = rules.decorrelation_loss(z, "mean")
        logvar = rules.hebbian_loss(z, "mean")
        return self.options.strength * offdiag + logvar, {"offdiag": offdiag.detach(), "logvar": logvar.detach()}


def test_a_registered_toy_head_trains_end_to_end(tmp_path, monkeypatch, small_shapes):
    monkeypatch.setitem(lpl.heads.HEADS, "whitening", Whitening)
    assert register(Whitening) is Whitening  # what a module does when imported
    out = tmp_path / "out"
    assert main(["train-deep", *SMALL, "--objective", "whitening", "--strength", "3", "--output-dir", str(out)]) == 0
    record = json.loads((out / "logs" / "deep_whitening_run.json").read_text())
    assert record["objective"]["name"] == "whitening" and record["objective"]["options"] == {"strength": 3.0}
    assert record["objective"]["summary"] == Whitening.summary
    assert record["terms"]["offdiag"]["meaning"] == "squared covariance of different units"
    last = json.loads((out / "logs" / "deep_whitening_log.jsonl").read_text().splitlines()[-1])
    assert {"layer1_offdiag", "layer2_logvar"} <= set(last) and torch.isfinite(torch.tensor(last["loss"]))
    results = json.loads((out / "logs" / "deep_whitening_results.json").read_text())
    assert [r["layer"] for r in results["trained"]] == [1, 2]


def test_a_setting_of_another_objective_is_refused(tmp_path, monkeypatch, capsys, small_shapes):
    monkeypatch.setitem(lpl.heads.HEADS, "whitening", Whitening)
    with pytest.raises(SystemExit) as exit_info:
        main(["train-deep", *SMALL, "--temperature", "0.5", "--output-dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and not (tmp_path / "out").exists()
    err = capsys.readouterr().err
    assert "--objective lpl has no such setting: --temperature belongs to simclr" in err


def test_a_heads_flags_are_listed_with_their_own_value_names(monkeypatch, capsys):
    monkeypatch.setitem(lpl.heads.HEADS, "whitening", Whitening)
    with pytest.raises(SystemExit):
        main(["train-deep", "--help"])
    out = capsys.readouterr().out
    assert "whitening settings" in out and "--strength STRENGTH" in out and "OPTION:" not in out
