import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import tiny_net

from lpl.analysis.readout import linear_readouts
from lpl.cli import main
from lpl.heads import LPLHead, LPLOptions, build_model
from lpl.train.deep import DeepConfig, lr_at

SMALL = ["--dataset", "shapes", "--channels", "8", "16", "16", "--pool-after", "1", "2", "--batch-size", "16",
         "--num-export", "64", "--eval-train", "128", "--eval-epochs", "2", "--no-progress"]


def _net_and_views(seed=0):
    torch.manual_seed(seed)
    return tiny_net(4, 6, 8, pool_after=(1, 2)), torch.rand(2 * 12, 1, 16, 16)


def _grads(net):
    return [None if p.grad is None else p.grad.clone() for p in net.parameters()]


def _lpl(net, local=True, **kwargs):
    return build_model("lpl", net, local, kwargs)


def test_locality_no_gradient_reaches_a_lower_block():
    net, views = _net_and_views()
    total, terms = _lpl(net)(views)
    assert sorted(terms) == [1, 2, 3]
    total.backward()
    full = _grads(net)
    net.zero_grad(set_to_none=True)
    only_first, _ = LPLHead(4)(net(views)[0])  # block 1's own loss alone
    only_first.backward()
    first_block = len(list(net.blocks[0].parameters()))
    for a, b in zip(full[:first_block], _grads(net)[:first_block]):
        assert torch.equal(a, b)


def test_end_to_end_sends_the_last_loss_to_every_block():
    net, views = _net_and_views()
    total, terms = _lpl(net, local=False)(views)
    assert list(terms) == [3]
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.blocks[0].parameters())


@pytest.mark.parametrize("term", ["pred", "hebb", "decorr"])
def test_each_coefficient_switches_off_exactly_its_term(term):
    net, views = _net_and_views()
    maps = net(views)
    full, terms = LPLHead(6)(maps[1])
    off, _ = LPLHead(6, LPLOptions(**{term: 0.0}))(maps[1])
    weight = {"pred": 1.0, "hebb": 1.0, "decorr": 10.0}[term]
    assert torch.allclose(full - off, weight * terms[term], atol=1e-5)


def test_shuffled_positives_change_only_the_predictive_term():
    net, views = _net_and_views()
    order = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    shuffled_views = torch.cat((views[:12], views[12:][order]))
    _, plain = _lpl(net)(views)
    _, shuffled = _lpl(net)(shuffled_views)
    for layer in plain:
        a, b = plain[layer], shuffled[layer]
        assert not torch.equal(a["pred"], b["pred"])
        assert torch.allclose(a["hebb"], b["hebb"]) and torch.allclose(a["decorr"], b["decorr"])


def test_no_pooling_uses_full_feature_maps():
    net, views = _net_and_views()
    maps = net(views)
    _, pooled = LPLHead(4)(maps[0])
    _, full = LPLHead(4, grid=0)(maps[0])
    assert not torch.allclose(pooled["pred"], full["pred"])


def test_linear_readouts_separate_separable_features_and_equal_one_readout_per_layer():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(600) % 3
    separable = torch.nn.functional.one_hot(y, 3).float() * 3 + torch.randn(600, 3, generator=g) * 0.2
    noise = torch.randn(600, 5, generator=g)
    joint = linear_readouts([separable[:400], noise[:400]], y[:400], [separable[400:], noise[400:]], y[400:],
                            epochs=30, batch=64, lr=1e-2)
    assert joint[0] > 0.98 and joint[1] < 0.6
    alone = [linear_readouts([x[:400]], y[:400], [x[400:]], y[400:], epochs=30, batch=64, lr=1e-2)[0]
             for x in (separable, noise)]
    assert joint == pytest.approx(alone, abs=1e-6)


def test_the_combined_readout_is_the_readout_of_all_layers_concatenated():
    g = torch.Generator().manual_seed(1)
    y = torch.arange(5400) % 3  # 5,000 test rows: more than one chunk of test predictions
    weak = [torch.nn.functional.one_hot(y, 3).float() + torch.randn(5400, 3, generator=g) * s for s in (1.0, 1.5)]
    train, test = [x[:400] for x in weak], [x[400:] for x in weak]
    combined = linear_readouts(train, y[:400], test, y[400:], epochs=5, batch=64, lr=1e-2, combined=True)
    alone = linear_readouts(train, y[:400], test, y[400:], epochs=5, batch=64, lr=1e-2)
    concatenated = linear_readouts([torch.cat(train, 1)], y[:400], [torch.cat(test, 1)], y[400:], epochs=5, batch=64,
                                   lr=1e-2)
    assert all(0.4 < a < 0.95 for a in combined)  # imperfect readouts: the comparison below can fail
    assert combined[:2] == pytest.approx(alone, abs=1e-6) and combined[2] == pytest.approx(concatenated[0], abs=1e-6)


def test_schedule_warms_up_then_decays():
    config = DeepConfig(epochs=100, warmup_epochs=10)
    assert lr_at(config, 0, 100) == 0 and lr_at(config, 5, 100) == pytest.approx(5e-4)
    assert lr_at(config, 10, 100) == pytest.approx(1e-3) and lr_at(config, 100, 100) == pytest.approx(1e-6)


def test_small_run_writes_results_for_initialisation_and_trained(tmp_path, small_shapes, capsys):
    out = tmp_path / "out"
    assert main(["train-deep", *SMALL, "--steps", "4", "--output-dir", str(out)]) == 0
    results = json.loads((out / "logs" / "deep_lpl_results.json").read_text())
    assert [r["layer"] for r in results["initialisation"]] == [1, 2, 3]
    assert {"readout", "participation_ratio", "mean_activation"} <= set(results["trained"][0])
    spatial = results["spatial"]  # SMALL: channels 8, 16, 16 at 16, 8, 8 positions, pooled to at most 4 x 4
    assert spatial["grid"] == 4 and spatial["trained"]["features"] == [8 * 16, 16 * 16, 16 * 16, 640]
    assert all(0 <= a <= 1 for a in [*spatial["initialisation"]["layers"], spatial["trained"]["all"]])
    blob = torch.load(out / "activations" / "deep_lpl_activations_after.pt")
    assert blob["layer3_activations"].shape == (64, 16) and blob["labels"].shape == (64,)
    # lpl readout finds the run by its record and fits the same readouts again
    (out / "logs" / "deep_lpl_results.json").unlink()
    assert main(["readout", str(out), "--name", "deep_lpl", "--epochs", "2"]) == 0  # as --eval-epochs
    assert json.loads((out / "logs" / "deep_lpl_results.json").read_text()) == results
    printed = capsys.readouterr().out  # the readouts themselves, not only where they are
    layers = " ".join(f"{100 * e['readout']:.1f}" for e in results["trained"])
    assert f"paper's readout, trained (layer 1 ..): {layers}" in printed
    assert f"all blocks {100 * spatial['initialisation']['all']:.1f}" in printed
    assert main(["report", str(out), "--no-baselines"]) == 0
    markdown = (out / "report" / "report.md").read_text()
    assert markdown.index("## Linear readout per layer") < markdown.index("| deep_lpl | lpl | layer-local |")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _small_model(objective: str, loss_grid: int = 1):
    torch.manual_seed(0)
    return build_model(objective, tiny_net(4, 6), True, loss_grid=[loss_grid])


class _Both(torch.nn.Module):
    """LPL (pooled and on 2 x 2 grids) and SimCLR models side by side, so that one pair of processes (each start
    imports torch, seconds) and one DistributedDataParallel check all: their parameters are disjoint, so the
    gradient of the summed loss is each model's own."""

    def __init__(self):
        super().__init__()
        self.models = torch.nn.ModuleDict({objective: _small_model(objective) for objective in ("lpl", "simclr")})
        self.models["lpl_grid2"] = _small_model("lpl", loss_grid=2)  # positions of every process gathered too

    def forward(self, views):
        results = {objective: model(views) for objective, model in self.models.items()}
        return sum(loss for loss, _ in results.values()), {k: terms for k, (_, terms) in results.items()}


def _terms(terms: dict) -> dict:
    return {objective: [{k: v.item() for k, v in layer.items()} for layer in by_layer.values()]
            for objective, by_layer in terms.items()}


# The whole check runs in float64: float32 rounding of the summed gradients differs with the CPU's convolution
# kernels and thread count (a near-zero SimCLR bias gradient before BatchNorm moved by 1e-4 of its tensor's largest
# entry), while in float64 the same reorderings stay below 1e-12, far inside the tolerances below.
RTOL, ATOL = 1e-9, 1e-12


def _worker(rank: int, world: int, port: int, views: torch.Tensor, state: dict, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model = _Both().double()
    model.load_state_dict(state)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    half = views.shape[0] // 2 // world  # this rank's share of each view
    earlier, later = views[: views.shape[0] // 2], views[views.shape[0] // 2:]
    local = torch.cat((earlier[rank * half:(rank + 1) * half], later[rank * half:(rank + 1) * half]))
    total, terms = ddp(local)
    total.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    torch.save({"terms": _terms(terms), "grads": grads}, os.path.join(folder, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def test_two_gloo_processes_compute_the_global_batch_objective(tmp_path):
    """Batch statistics (variance, covariance, BatchNorm, InfoNCE negatives) are the global batch's: LPL and
    SimCLR heads."""
    model = _Both().double()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    views = torch.rand(2 * 16, 1, 12, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    total, terms = model(views)
    total.backward()
    expected_terms = _terms(terms)
    expected_grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    assert {name.split(".")[1] for name in expected_grads} == {"lpl", "simclr", "lpl_grid2"}
    # forked, not spawned: the workers share the imported torch instead of importing it again (seconds each)
    mp.start_processes(_worker, args=(2, _free_port(), views, state, str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    out = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    for rank in (0, 1):
        for objective, layers in expected_terms.items():
            shards = out[rank]["terms"][objective]
            assert len(shards) == len(layers)
            for single, shard in zip(layers, shards):
                assert set(shard) == set(single)
                for key in set(single) - {"pred"}:  # global-batch terms: the same on every process
                    assert shard[key] == pytest.approx(single[key], rel=RTOL, abs=ATOL), (objective, key)
        assert out[rank]["grads"].keys() == expected_grads.keys()
        for name, expected in expected_grads.items():  # DDP averages over ranks
            assert out[rank]["grads"][name].dtype == torch.float64
            assert torch.allclose(expected, out[rank]["grads"][name], rtol=RTOL, atol=ATOL), name
    # LPL's predictive term is per sample: its mean over processes is the global one
    for lpl in ("lpl", "lpl_grid2"):
        mean_pred = [(a["pred"] + b["pred"]) / 2 for a, b in zip(out[0]["terms"][lpl], out[1]["terms"][lpl])]
        assert mean_pred == pytest.approx([layer["pred"] for layer in expected_terms[lpl]], rel=RTOL, abs=ATOL)


def test_presets_set_defaults_that_flags_beside_them_replace():
    from lpl.config import parse_config

    config = parse_config(DeepConfig, ["--preset", "best-lpl"], "lpl train-deep", "")
    assert (config.preset, config.network, config.loss_grid, config.epochs) == ("best-lpl", "wide3", [0], 300)
    assert parse_config(DeepConfig, ["--preset", "best-lpl", "--epochs", "800"], "x", "").epochs == 800
    from lpl.train.deep import preset_help  # --help says what each preset sets

    assert "best-lpl (--network wide3 --loss-grid 0 --epochs 300 --correlation)" in preset_help()
    assert config.head == {"correlation": True}  # a head option in a preset, merged with the head flags given
    video = parse_config(DeepConfig, ["--preset", "video", "--pred", "2", "--no-correlation"], "x", "")
    assert (video.views, video.head) == ("temporal", {"correlation": False, "pred": 2.0})
    # a preset's head settings apply to the objectives that have them; typed ones are checked
    simclr = parse_config(DeepConfig, ["--preset", "best-lpl", "--objective", "simclr"], "x", "")
    assert (simclr.network, simclr.head) == ("wide3", {})
    with pytest.raises(SystemExit):
        parse_config(DeepConfig, ["--preset", "best-lpl", "--objective", "simclr", "--correlation"], "x", "")
    assert config.spec(3).channels == (96, 384, 1536) and config.spec(3).kernel_sizes == (5, 3, 3)
    config = parse_config(DeepConfig, ["--preset", "full-maps", "--loss-grid", "2", "--network", "wide3"], "x", "")
    assert (config.network, config.loss_grid) == ("wide3", [2])
    assert parse_config(DeepConfig, [], "x", "").loss_grid == [1]  # the paper's
    with pytest.raises(SystemExit):
        parse_config(DeepConfig, ["--preset", "fastest"], "x", "")


def test_the_online_knn_monitor_logs_every_block_when_due(tmp_path, small_shapes):
    out = tmp_path / "out"
    # shapes: 128 training images, batch 16 -> 8 steps an epoch; logs every 4 steps; one check every 2 epochs
    assert main(["train-deep", *SMALL, "--steps", "32", "--log-every", "4", "--monitor-every", "2", "--no-evaluate",
                 "--output-dir", str(out)]) == 0
    records = [json.loads(line) for line in (out / "logs" / "deep_lpl_log.jsonl").read_text().splitlines()]
    checked = [r["step"] for r in records if "layer1_knn20" in r]
    assert checked == [16, 32] and all(0 <= r[f"layer{k}_knn20"] <= 1 for r in records if "layer1_knn20" in r
                                       for k in (1, 2, 3))
    record = json.loads((out / "logs" / "deep_lpl_run.json").read_text())
    assert "online kNN-20" in record["terms"]["knn20"]["meaning"]
