"""Per-layer objectives of the deep network: closed forms, EMA target, locality, shapes."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_net

from lpl.heads import (
    BYOLHead,
    BYOLOptions,
    LPLHead,
    LPLOptions,
    SimCLRHead,
    SimCLROptions,
    build_model,
    byol_loss,
    byol_momentum,
    ema_update,
    info_nce_loss,
    resample_at,
)
from lpl.objective import LPLObjective
from lpl.validation import LPLError


def _orthonormal(n: int, d: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(0)))
    return q[:n]


def test_byol_loss_is_zero_for_identical_and_four_for_orthogonal_views():
    z = _orthonormal(8, 16)
    assert byol_loss(torch.cat((z, z)), torch.cat((z, z))).item() == pytest.approx(0.0, abs=1e-6)
    other = _orthonormal(16, 16)[8:]  # orthogonal to every row of z
    assert byol_loss(torch.cat((z, other)), torch.cat((z, other))).item() == pytest.approx(4.0, abs=1e-5)
    assert byol_loss(torch.cat((z, z)) * 3.0, torch.cat((z, z))).item() == pytest.approx(0.0, abs=1e-6)


def test_info_nce_of_identical_views_of_orthogonal_samples_has_its_closed_form():
    n, temperature = 6, 0.5
    z = _orthonormal(n, 16)
    expected = math.log(1 + (2 * n - 2) * math.exp(-1 / temperature))
    assert info_nce_loss(torch.cat((z, z)), temperature).item() == pytest.approx(expected, rel=1e-5)
    shuffled = torch.cat((z, z.roll(1, dims=0)))  # each positive is now another sample: much worse
    assert info_nce_loss(shuffled, temperature).item() > expected + 1.0


@pytest.mark.parametrize("head", [BYOLHead(8, BYOLOptions(hidden=32, out=16)),
                                  SimCLRHead(8, SimCLROptions(projector_hidden=32, projector_out=16))])
def test_heads_keep_shapes_and_fall_when_optimised(head):
    torch.manual_seed(0)
    maps = torch.randn(2 * 10, 8, 4, 4)
    maps[10:] = maps[:10] + 0.3 * torch.randn(10, 8, 4, 4)
    params = [p for p in head.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-2)

    def loss() -> torch.Tensor:
        target = head.target_embedding(maps).detach() if head.uses_target else None
        value, terms = head(maps, target)
        assert value.shape == () and all(v.shape == () and not v.requires_grad for v in terms.values())
        return value

    start = loss().item()
    for _ in range(30):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < start - 1e-2


def test_byol_momentum_goes_from_base_to_one_on_a_cosine():
    assert byol_momentum(0, 100) == pytest.approx(0.99)
    assert byol_momentum(50, 100) == pytest.approx(0.995)
    assert byol_momentum(100, 100) == pytest.approx(1.0)
    values = [byol_momentum(s, 100) for s in range(101)]
    assert values == sorted(values)


def test_ema_update_moves_the_target_by_one_minus_momentum():
    online, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = target.weight.detach().clone()
    ema_update(target, online, 0.9)
    assert torch.allclose(target.weight, 0.9 * before + 0.1 * online.weight)


def _model(objective, local=True):
    torch.manual_seed(0)
    return build_model(objective, tiny_net(4, 6, 8, pool_after=(1, 2)), local), torch.rand(2 * 12, 1, 16, 16)


def test_byol_target_gets_no_gradient_and_follows_the_online_network():
    model, views = _model("byol")
    loss, _ = model(views)
    loss.backward()
    assert model.target is not None
    assert all(not p.requires_grad and p.grad is None for p in model.target.parameters())
    online_before = model.net.blocks[0][0].weight.detach().clone()
    target_weight = model.target["net"].blocks[0][0].weight
    assert torch.equal(target_weight, online_before)  # starts as a copy
    with torch.no_grad():
        model.net.blocks[0][0].weight.add_(1.0)
    model.update_target(0.99)
    assert torch.allclose(target_weight, online_before + 0.01)


@pytest.mark.parametrize("objective", ["byol", "simclr"])
def test_layer_local_heads_send_no_gradient_to_a_lower_block(objective):
    model, views = _model(objective)
    maps = model.net(views)
    target = None
    if objective == "byol":
        target = model.target["heads"]["2"].target_embedding(model.target["net"](views)[1]).detach()
    loss, _ = model.heads["2"](maps[1], target)  # block 2's own loss alone
    loss.backward()
    assert all(p.grad is None for p in model.net.blocks[0].parameters())
    assert all(p.grad is not None for p in model.net.blocks[1].parameters())


@pytest.mark.parametrize("objective", ["byol", "simclr"])
def test_end_to_end_heads_train_every_block(objective):
    model, views = _model(objective, local=False)
    loss, terms = model(views)
    assert list(terms) == [3]
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.net.blocks[0].parameters())


def test_simclr_embeddings_are_compared_after_normalisation():
    z = torch.randn(8, 5)
    assert info_nce_loss(z, 0.2).item() == pytest.approx(info_nce_loss(F.normalize(z) * 7, 0.2).item(), rel=1e-5)


@pytest.mark.parametrize("objective", ["lpl", "byol", "simclr"])
def test_models_pickle_and_save_whole(objective):
    """torch.save of a whole model (not only its state_dict) works for every head, and gives the same loss."""
    import io
    import pickle

    model = build_model(objective, tiny_net(4, 8), local=True).eval()
    views = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    copy = pickle.loads(pickle.dumps(model))
    buffer = io.BytesIO()
    torch.save(model, buffer)
    assert torch.equal(copy(views)[0], model(views)[0])


# ---------------------------------------------------------------- loss grids

def _maps(channels: int = 6, side: int = 4, batch: int = 10) -> torch.Tensor:
    maps = torch.rand(2 * batch, channels, side, side, generator=torch.Generator().manual_seed(3))
    maps[batch:] = maps[:batch] + 0.1 * torch.rand(batch, channels, side, side, generator=torch.Generator())
    return maps


def _official_terms(z_prev: torch.Tensor, z_now: torch.Tensor, samples: torch.Tensor) -> dict[str, torch.Tensor]:
    """The official code's loss written out: MSE of the two views, -log variance per unit (mean over units),
    squared off-diagonal covariance of ``samples`` (2, S, C) over (C^2 - C), both views averaged."""
    def hebb(z):
        return -torch.log(z.var(0) + 1e-4).mean()

    def decorr(z):
        zc = z - z.mean(0)
        cov = (zc.T @ zc / (len(z) - 1)).fill_diagonal_(0)
        return cov.square().sum() / (cov.shape[0] ** 2 - cov.shape[0])

    return {"pred": F.mse_loss(z_now, z_prev), "hebb": (hebb(z_prev) + hebb(z_now)) / 2,
            "decorr": (decorr(samples[0]) + decorr(samples[1])) / 2}


@pytest.mark.parametrize("grid", [0, 4, 7])
def test_lpl_on_a_grid_as_large_as_the_map_is_the_official_full_map_loss(grid):
    maps = _maps(side=4)
    _, terms = LPLHead(6, grid=grid)(maps)
    z_prev, z_now = maps.flatten(1).chunk(2)
    samples = maps.permute(0, 2, 3, 1).reshape(2, -1, 6)
    for name, value in _official_terms(z_prev, z_now, samples).items():
        assert terms[name].item() == pytest.approx(value.item(), rel=1e-5), name


@pytest.mark.parametrize("grid", [0, 2])
def test_lpl_on_channels_last_maps_takes_its_samples_without_copies(grid, monkeypatch):
    maps = _maps(side=4).double().contiguous(memory_format=torch.channels_last)  # float64: orders of sums agree
    seen = {}

    def record(self, views, gather=None, decorr_views=None, hebb_views=None, pred_views=None):
        seen.update(views=views, positions=decorr_views)
        return terms(self, views, gather, decorr_views, hebb_views, pred_views)

    terms = LPLObjective.terms
    monkeypatch.setattr(LPLObjective, "terms", record)
    head = LPLHead(6, grid=grid)
    _, channels_last = head(maps)
    storage = {seen[k].untyped_storage().data_ptr() for k in seen}  # both the terms' inputs, one buffer:
    assert storage == ({maps.untyped_storage().data_ptr()} if grid == 0 else storage) and len(storage) == 1
    assert seen["views"].untyped_storage().nbytes() == maps.numel() * 8 // (1 if grid == 0 else 4)  # the maps or cells
    side = grid or 4
    assert seen["views"].shape == (2, 10, 6 * side**2) and seen["positions"].shape == (2, 10 * side**2, 6)
    _, contiguous = head(maps.contiguous())
    assert all(channels_last[k].item() == pytest.approx(contiguous[k].item(), rel=1e-12) for k in channels_last)


@pytest.mark.parametrize("shared", [False, True])
def test_lpl_on_grid_one_is_the_papers_loss_on_pooled_outputs(shared):
    maps = _maps(side=4)
    _, terms = LPLHead(6, LPLOptions(shared_variance=shared), grid=1)(maps)
    pooled = maps.mean(dim=(2, 3))
    for name, value in _official_terms(*pooled.chunk(2), pooled.view(2, -1, 6)).items():
        assert terms[name].item() == pytest.approx(value.item(), rel=1e-5), name


def test_lpl_on_a_2x2_grid_pools_cells_and_shares_variances_over_positions_when_asked():
    maps = _maps(side=4)
    cells = F.avg_pool2d(maps, 2)  # (2B, C, 2, 2): 2x2 cells of the 4x4 map
    samples = cells.permute(0, 2, 3, 1).reshape(2, -1, 6)
    _, per_position = LPLHead(6, grid=2)(maps)
    expected = _official_terms(*cells.flatten(1).chunk(2), samples)
    assert {k: round(v.item(), 5) for k, v in per_position.items()} == \
        {k: round(v.item(), 5) for k, v in expected.items()}
    _, shared = LPLHead(6, LPLOptions(shared_variance=True), grid=2)(maps)
    variance = (-torch.log(samples[0].var(0) + 1e-4).mean() - torch.log(samples[1].var(0) + 1e-4).mean()) / 2
    assert shared["hebb"].item() == pytest.approx(variance.item(), rel=1e-5)
    assert shared["pred"] == per_position["pred"] and shared["decorr"] == per_position["decorr"]


def test_info_nce_in_groups_is_the_mean_of_one_info_nce_per_group():
    z = torch.randn(2 * 5 * 3, 8, generator=torch.Generator().manual_seed(0))  # 5 images x 3 positions per view
    rows = torch.arange(15)
    per_group = [info_nce_loss(torch.cat((z[:15][rows % 3 == g], z[15:][rows % 3 == g])), 0.3) for g in range(3)]
    assert info_nce_loss(z, 0.3, groups=3).item() == pytest.approx(sum(per_group).item() / 3, rel=1e-5)


@pytest.mark.parametrize("objective", ["byol", "simclr"])
def test_byol_and_simclr_heads_take_the_same_loss_grids(objective):
    torch.manual_seed(0)
    model = build_model(objective, tiny_net(4, 6, pool_after=(1,)), True, loss_grid=[2, 0])
    loss, terms = model(torch.rand(2 * 6, 1, 8, 8))
    assert [head.grid for head in model.heads.values()] == [2, 0] and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.net.parameters())


def _theta(scale_x, scale_y, cx, cy):
    return torch.tensor([[[scale_x, 0.0, cx], [0.0, scale_y, cy]]])


def test_resampling_finds_the_same_place_of_the_image_in_the_other_crop():
    """Feature maps that are a linear function of the image position they look at (bilinear resampling is exact
    for them): the earlier crop resampled at the later crop's positions equals the later crop wherever both see
    the place, including across a flip; places the earlier crop does not see are masked."""
    side = 8
    centres = (torch.arange(side) * 2 + 1) / side - 1

    def view_of(theta):  # (1, 2, s, s): channel 0 = image x, channel 1 = image y at each position's centre
        y, x = torch.meshgrid(centres, centres, indexing="ij")
        a, cx, b, cy = theta[0, 0, 0], theta[0, 0, 2], theta[0, 1, 1], theta[0, 1, 2]
        return torch.stack((a * x + cx, b * y + cy))[None]

    earlier_theta, later_theta = _theta(-0.6, 0.5, 0.2, -0.3), _theta(0.5, 0.7, -0.1, 0.1)  # the earlier one flipped
    resampled, mask = resample_at(view_of(earlier_theta), earlier_theta, later_theta)
    later = view_of(later_theta)
    seen = later[0, 0].sub(0.2).abs().le(0.6 * (1 - 1 / side)) & later[0, 1].add(0.3).abs().le(0.5 * (1 - 1 / side))
    assert 0 < seen.sum() < side * side
    assert torch.allclose(resampled[0][:, seen], later[0][:, seen], atol=1e-5)
    outside = later[0, 0].sub(0.2).abs().gt(0.6) | later[0, 1].add(0.3).abs().gt(0.5)
    assert torch.equal(mask[0, 0] == 0, outside)
    same, all_seen = resample_at(later, later_theta, later_theta)
    assert torch.allclose(same, later, atol=1e-6) and bool(all_seen.all())


def test_aligned_lpl_without_geometry_or_with_equal_crops_is_the_full_map_loss():
    maps = _maps(side=4)
    head = LPLHead(6, LPLOptions(aligned=True), grid=0)
    _, plain = LPLHead(6, grid=0)(maps)
    theta = _theta(0.8, 0.8, 0.1, -0.1).repeat(20, 1, 1)
    for geometry in (None, theta):
        _, terms = head(maps, None, geometry)
        assert all(terms[k].item() == pytest.approx(plain[k].item(), rel=1e-5) for k in plain)


def test_the_predictive_term_on_its_own_grid_compares_pooled_outputs():
    maps = _maps(side=4)
    _, hybrid = LPLHead(6, LPLOptions(pred_grid=1), grid=0)(maps)
    _, full = LPLHead(6, grid=0)(maps)
    _, pooled = LPLHead(6, grid=1)(maps)
    assert hybrid["pred"].item() == pytest.approx(pooled["pred"].item(), rel=1e-6)
    assert hybrid["hebb"] == full["hebb"] and hybrid["decorr"] == full["decorr"]


def test_stale_estimates_take_the_previous_batchs_mean_and_variance():
    """The official code's option: the Hebbian term's statistics are the previous batch's (mean and variance
    averaged over the two views). With this batch's own statistics, and views of equal statistics, its gradient is
    the log-variance term's; the first batch uses its own."""
    torch.manual_seed(0)
    head = LPLHead(6, LPLOptions(stale_estimates=True)).train()
    first, second = _maps()[:10].repeat(2, 1, 1, 1), _maps() * 2 + 0.5
    maps = first.clone().requires_grad_()
    _, plain = LPLHead(6)(first)
    loss, terms = head(maps)
    pooled = first.mean(dim=(2, 3)).view(2, 10, 6)
    assert torch.allclose(head.stale, torch.stack((pooled.mean(1).mean(0), pooled.var(1).mean(0))))
    loss.backward()
    reference = first.clone().requires_grad_()
    LPLHead(6)(reference)[0].backward()
    assert torch.allclose(maps.grad, reference.grad, rtol=1e-4, atol=1e-7)  # own statistics: the same rule
    _, later = head(second)  # now with the first batch's estimates
    z = second.mean(dim=(2, 3)).view(2, 10, 6)
    mean, variance = pooled.mean(1).mean(0), pooled.var(1).mean(0)
    expected = -((z - mean).square().sum(1) / (9 * (variance + 1e-4))).mean(1).mean()  # mean over units and views
    assert later["hebb"].item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(LPLError, match="--stale-estimates works on pooled outputs"):
        LPLHead(6, LPLOptions(stale_estimates=True), grid=0)
