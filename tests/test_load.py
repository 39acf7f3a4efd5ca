"""``lpl.load`` gives back what a run trained, from its record and safetensors alone: features of the loaded
network equal the run's own exports, for dense, hierarchical and deep runs of every objective and the seed's BYOL."""

import pytest
import torch

import lpl
from lpl.cli import main
from lpl.data import load_splits
from lpl.io import load_torch
from lpl.validation import LPLError

DEEP = ["--dataset", "shapes", "--channels", "4", "8", "--pool-after", "1", "--batch-size", "16", "--steps", "2",
        "--num-export", "40", "--eval-train", "40", "--eval-epochs", "1", "--readout-grid", "0", "--no-progress",
        "--device", "cpu"]
DENSE = ["--dataset", "shapes", "--batch-size", "16", "--steps", "3", "--num-export", "40", "--no-progress",
         "--device", "cpu"]
# float32 sums of up to 1024 products, batched differently in training and here: a few ulps of the largest term
RTOL, ATOL = 1e-4, 1e-5


def _exported(out, stem: str, tag: str = "after") -> list[torch.Tensor]:
    blob = load_torch(out / "activations" / f"{stem}_{tag}.pt")
    keys = sorted(k for k in blob if k.endswith("activations"))
    return [blob[k] for k in sorted(keys, key=lambda k: (len(k), k))]


@pytest.mark.parametrize("command, flags, stem", [
    ("train", ["--dims", "1024", "16"], "activations"),
    ("train-hierarchical", ["--dims", "1024", "16", "8"], "hierarchical_activations"),
    ("train-deep", ["--objective", "lpl"], "deep_lpl_activations"),
    ("train-deep", ["--objective", "byol"], "deep_byol_activations"),
    ("train-deep", ["--objective", "simclr", "--loss-grid", "2"], "deep_simclr_activations"),
    ("train-byol", [], "byol_shapes_embeddings"),
])
def test_loaded_networks_compute_the_exported_features(tmp_path, small_shapes, small_heads, command, flags, stem):
    out = tmp_path / "out"
    assert main([command, *(DEEP if command == "train-deep" else DENSE), *flags, "--output-dir", str(out)]) == 0
    _, test = load_splits("shapes")
    for tag in ("before", "after"):
        net = lpl.load(out, stage=tag)
        assert not net.training and net.record["network"]["kind"] in ("conv", "dense", "small-byol")
        features = lpl.features(net, test.images[:40])
        exported = _exported(out, stem, tag)
        assert len(features) == len(exported)
        for ours, theirs in zip(features, exported):
            assert torch.allclose(ours, theirs, rtol=RTOL, atol=ATOL)
    assert len(lpl.features(net, test.images[:8], layers=[1])) == 1


def test_load_says_what_is_wrong(tmp_path, small_shapes):
    with pytest.raises(LPLError, match="holds no run record"):
        lpl.load(tmp_path)
    out = tmp_path / "out"
    assert main(["train", *DENSE, "--dims", "1024", "8", "--output-dir", str(out)]) == 0
    with pytest.raises(LPLError, match="stage must be one of before, after"):
        lpl.load(out, stage="best")
    with pytest.raises(LPLError, match="holds no run 'other'; it holds lpl"):
        lpl.load(out, "other")
    (out / "weights" / "lpl_after.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(LPLError, match="is damaged"):
        lpl.load(out)
    net = lpl.load(out, stage="before")
    with pytest.raises(LPLError, match=r"images must be \(N, C, H, W\)"):
        lpl.features(net, torch.zeros(3, 1024))
