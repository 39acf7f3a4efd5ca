import json

import pytest
import torch

from lpl.cli import main
from lpl.small_byol import BYOL

QUICK = ["--steps", "4", "--batch-size", "8", "--log-every", "2", "--checkpoint-every", "2",
         "--num-export", "40", "--no-progress"]


def test_heads_have_the_documented_shapes():
    model = BYOL(in_channels=3)
    x = torch.rand(4, 3, 32, 32)
    features = model.backbone(x)
    assert features.shape == (4, 256)
    assert model.projector(features).shape == (4, 128)
    assert model.predictor(model.projector(features)).shape == (4, 128)
    assert model.target_projector(model.target_backbone(x)).shape == (4, 128)
    assert model.embed(x).norm(dim=1).allclose(torch.ones(4))


def test_only_the_first_convolution_learns():
    torch.manual_seed(0)
    model = BYOL(in_channels=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
    loss, _ = model.loss(torch.rand(8, 1, 32, 32), torch.rand(8, 1, 32, 32))
    loss.backward()
    optimizer.step()
    changed = {k for k, v in model.state_dict().items()
               if not torch.equal(v, before[k]) and "running" not in k and "num_batches" not in k}
    assert changed == {"backbone.conv1.weight", "backbone.conv1.bias"}
    assert all(p.grad is None for name, p in model.named_parameters() if not name.startswith("backbone.conv1"))


def test_target_is_the_ema_of_the_online_network():
    model = BYOL(in_channels=1, tau=0.9)
    target_before = model.target_backbone.conv1.weight.clone()
    with torch.no_grad():
        model.backbone.conv1.weight.add_(1.0)
    model.update_target()
    expected = 0.9 * target_before + 0.1 * model.backbone.conv1.weight
    assert torch.allclose(model.target_backbone.conv1.weight, expected)
    assert torch.equal(model.target_backbone.conv2.weight, model.backbone.conv2.weight)


def test_loss_is_symmetric_and_bounded():
    torch.manual_seed(1)
    model = BYOL(in_channels=1).eval()  # eval: BatchNorm uses fixed statistics, so swapping is exact
    a, b = torch.rand(6, 1, 32, 32), torch.rand(6, 1, 32, 32)
    ab, ba = model.loss(a, b)[0], model.loss(b, a)[0]
    assert torch.allclose(ab, ba, atol=1e-6)
    assert -2.0 <= ab.item() <= 2.0
    same = model.loss(a, a)[0]  # identical views: prediction vs target of the same input
    assert -2.0 <= same.item() <= 2.0


def test_shapes_run_writes_embeddings_and_logs(tmp_path, small_shapes):
    out = tmp_path / "out"
    assert main(["train-byol", "--dataset", "shapes", *QUICK, "--output-dir", str(out)]) == 0
    for tag in ("before", "after"):
        blob = torch.load(out / "activations" / f"byol_shapes_embeddings_{tag}.pt")
        assert set(blob) == {"layer1_activations", "labels", "sequence", "frame", "sequence_names"}  # shapes: sequences
        assert blob["layer1_activations"].shape == (40, 256)
        assert torch.allclose(blob["layer1_activations"].norm(dim=1), torch.ones(40), atol=1e-5)
    logs = json.loads((out / "logs" / "byol_shapes_training_logs.json").read_text())
    assert logs["config"]["tau"] == 0.99 and len(logs["steps"]) == 4
    assert set(logs["steps"][0]) == {"step", "loss", "time_s", "embedding_std"}


def test_cifar_run_with_temporal_views(tmp_path, cifar_dir):
    out = tmp_path / "out"
    assert main(["train-byol", "--data-dir", str(cifar_dir), "--no-download", "--views", "temporal",
                 *QUICK, "--output-dir", str(out)]) == 0
    assert torch.load(out / "activations" / "byol_embeddings_after.pt")["layer1_activations"].shape == (40, 256)
    assert (out / "logs" / "byol_training_logs.json").is_file()


@pytest.mark.parametrize("flags, message", [
    (["--tau", "1.5"], "--tau must be in [0, 1)"),
    (["--lr", "0"], "--lr must be a positive number, got 0.0"),
    (["--views", "fancy"], "invalid choice"),
])
def test_bad_flags(flags, message, capsys):
    with pytest.raises(SystemExit):
        main(["train-byol", *flags])
    assert message in capsys.readouterr().err


def test_cuda_without_cuda_is_a_clear_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(SystemExit):
        main(["train-byol", "--device", "cuda"])
    assert "CUDA is not available here; use --device cpu" in capsys.readouterr().err
