import json
import math

import pytest
import torch
from torch import nn

from lpl import swap
from lpl.swap import Exposure, SwapSettings
from lpl.validation import LPLError

TINY = SwapSettings(exposures=4, readout_steps=3, readout_batch=8)


def test_an_image_is_placed_at_its_slot_of_a_canvas_thirteen_images_tall():
    images = torch.arange(2 * 2 * 3 * 2, dtype=torch.float32).reshape(2, 2, 3, 2) / 24
    background = torch.tensor([0.25, 0.75])
    for slot in (0, 6, 12):
        canvas = swap.place(images, slot, background)
        assert canvas.shape == (2, 2, 39, 2)
        assert torch.equal(canvas[:, :, 3 * slot:3 * slot + 3], images)
        rest = torch.cat((canvas[:, :, :3 * slot], canvas[:, :, 3 * slot + 3:]), dim=2)
        assert torch.equal(rest, background[None, :, None, None].expand_as(rest))
    assert torch.equal(swap.place(images, 12)[:, :, :36], torch.zeros(2, 2, 36, 2))
    with pytest.raises(LPLError, match="slot 13 is off the canvas"):
        swap.place(images, 13)


def test_the_schedule_swaps_identity_at_the_swap_slot_only_and_never_shows_controls():
    assert swap.exposure_schedule() == (
        Exposure("P1", 12, "P1"), Exposure("N1", 12, "N1"), Exposure("P1", 0, "N1"), Exposure("N1", 0, "P1"),
        Exposure("P2", 0, "P2"), Exposure("N2", 0, "N2"), Exposure("P2", 12, "N2"), Exposure("N2", 12, "P2"))


def test_canvas_features_pool_each_image_slot_to_one_grid_cell():
    images = torch.rand(3, 2, 4, 5, generator=torch.Generator().manual_seed(0))
    background = torch.tensor([0.1, 0.9])
    features = swap.canvas_features(lambda canvas: canvas, images, background, batch_size=2)
    assert features.shape == (3, 3, 2 * 13)
    cells = features.reshape(3, 3, 2, 13)  # channel-major: channel c, grid row r at c * 13 + r
    for i, slot in enumerate(swap.SLOTS):
        expected = background[None, :, None].repeat(3, 1, 13)
        expected[:, :, slot] = images.mean(dim=(2, 3))
        assert cells[:, i] == pytest.approx(expected, abs=1e-6)
    with pytest.raises(LPLError, match="feature maps"):
        swap.canvas_features(lambda canvas: canvas.flatten(1), images, background)


def hand_made_responses() -> torch.Tensor:
    """Responses (6 groups, 3 slots, 1 pair, 2 units): unit 0 prefers P at the centre, unit 1 prefers N."""
    r = torch.zeros(6, 3, 1, 2)
    for s in range(3):  # P and N of every set at the centre
        r[2 * s, 1, 0], r[2 * s + 1, 1, 0] = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 3.0])
    r[0, 0, 0], r[1, 0, 0] = torch.tensor([5.0, 1.0]), torch.tensor([1.0, 2.0])  # set 1 at the top (swap)
    r[0, 2, 0], r[1, 2, 0] = torch.tensor([3.0, 0.0]), torch.tensor([3.0, 4.0])  # set 1 at the bottom
    r[2, 2, 0], r[3, 2, 0] = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 3.0])  # set 2 at the bottom (swap)
    r[4, 0, 0], r[5, 0, 0] = torch.tensor([4.0, 4.0]), torch.tensor([0.0, 0.0])  # controls at the top
    return r


def test_selectivity_orients_each_unit_by_its_preference_at_the_centre():
    responses = hand_made_responses()
    preferred = swap.preferred(responses)
    assert preferred.tolist() == [[[True, False]]] * 3
    values = swap.selectivity(responses, preferred)
    # swap: set 1 top (5 - 1, 2 - 1) and set 2 bottom (1 - 0, 3 - 1); non-swap: set 1 bottom (0, 4), set 2 top (0, 0).
    assert values["swap"] == pytest.approx((4 + 1 + 1 + 2) / 4)
    assert values["non_swap"] == pytest.approx((0 + 4 + 0 + 0) / 4)
    assert values["centre"] == pytest.approx((1 + 3) / 2)
    # controls: top (4, -4), centre (1, 3), bottom (0, 0)
    assert values["control"] == pytest.approx((4 - 4 + 1 + 3) / 6)
    assert values["preferred"] == pytest.approx((5 + 2 + 1 + 3) / 4)
    assert values["non_preferred"] == pytest.approx((1 + 1 + 0 + 1) / 4)


def test_verdict_on_the_monkey_data_and_on_curves_that_cannot_be_judged():
    monkey = swap.swap_verdict(swap.MONKEY_SELECTIVITY)
    assert monkey.swap_falls and monkey.non_swap_holds and "as in the monkeys" in monkey.text
    held = swap.swap_verdict({"swap": [1.0, 0.95], "non_swap": [1.0, 0.5]})
    assert held.swap_falls is False and held.non_swap_holds is False and "unlike the monkeys" in held.text
    none = swap.swap_verdict({"swap": [-0.1, 0.2], "non_swap": [1.0, 1.0]})
    assert none.swap_falls is None and "says nothing" in none.text
    assert swap.relative([2.0, 1.0, 3.0]) == [1.0, 0.5, 1.5]
    assert all(math.isnan(v) for v in swap.relative([0.0, 1.0]))


def tiny_extractor() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))


def test_a_tiny_run_end_to_end_returns_finite_curves_of_every_position():
    g = torch.Generator().manual_seed(1)
    objects, images = torch.rand(12, 3, 6, 6, generator=g), torch.rand(10, 3, 6, 6, generator=g)
    results = swap.run_swap_experiment(tiny_extractor(), objects, images, settings=TINY)
    assert results["exposures"] == [0, 1, 2, 3, 4] and results["pairs"] == 2 and results["units"] == 4
    curves = results["model"]
    assert set(curves) == {"swap", "non_swap", "centre", "control", "preferred", "non_preferred"}
    assert all(len(c) == 5 and all(math.isfinite(v) for v in c) for c in curves.values())
    assert curves["centre"][0] > 0  # P is the preferred object at the centre, by definition
    assert len(results["readout_losses"]) == 3 and len(results["exposure_losses"]) == 4
    assert results["position_response"][1] == 1.0 and all(math.isfinite(v) for v in results["position_response"])
    assert results["monkey"]["exposures"] == list(swap.MONKEY_EXPOSURES)
    figure = swap.swap_figure(results)
    assert [len(ax.lines) for ax in figure.axes] == [3, 3, 3]  # model, monkey, reference line at 1


def test_only_exposure_steps_change_the_curves():
    g = torch.Generator().manual_seed(2)
    objects, images = torch.rand(6, 3, 6, 6, generator=g), torch.rand(10, 3, 6, 6, generator=g)
    frozen = swap.run_swap_experiment(tiny_extractor(), objects, images, settings=SwapSettings(
        exposures=3, readout_steps=2, readout_batch=8, exposure_lr=0.0))
    assert all(len(set(c)) == 1 for c in frozen["model"].values())
    moved = swap.run_swap_experiment(tiny_extractor(), objects, images, settings=SwapSettings(
        exposures=3, readout_steps=2, readout_batch=8))
    before, after = moved["model"]["swap"][0], moved["model"]["swap"][-1]
    assert before == frozen["model"]["swap"][0] and after != before


def test_bad_inputs_are_named():
    images = torch.rand(10, 3, 6, 6)
    with pytest.raises(LPLError, match=r"give \(6 k, C, H, W\) images"):
        swap.run_swap_experiment(tiny_extractor(), torch.rand(7, 3, 6, 6), images, settings=TINY)
    with pytest.raises(LPLError, match="one view per image"):
        swap.run_swap_experiment(tiny_extractor(), torch.rand(6, 3, 6, 6), images, images[:5], settings=TINY)
    with pytest.raises(LPLError, match=r"values in \["):
        swap.run_swap_experiment(tiny_extractor(), 2 * torch.rand(6, 3, 6, 6) + 1, images, settings=TINY)


def test_the_command_runs_on_a_trained_run_and_its_initialisation(tmp_path, small_shapes):
    from lpl.cli import main

    out = tmp_path / "out"
    assert main(["train-deep", "--dataset", "shapes", "--channels", "4", "8", "--pool-after", "1", "2", "--steps", "2",
                 "--batch-size", "16", "--num-export", "32", "--eval-train", "32", "--no-evaluate", "--no-progress",
                 "--device", "cpu", "--output-dir", str(out)]) == 0
    assert main(["swap-exposure", str(out), "--pairs", "2", "--readout-images", "16", "--readout-steps", "3",
                 "--exposures", "4", "--device", "cpu"]) == 0
    results = json.loads((out / "swap" / "results.json").read_text())
    assert set(results) >= {"trained", "initialisation", "objective", "readout_pairs"}
    assert results["readout_pairs"] == "next frames"  # shapes come in sequences
    assert len(results["trained"]["model"]["swap"]) == 5 and results["objective"]["name"] == "lpl"
    report = (out / "swap" / "report.md").read_text()
    assert "**Trained network:** " in report and "**The same network at initialisation**" in report
    assert (out / "swap" / "swap_exposure.png").read_bytes().startswith(b"\x89PNG")
