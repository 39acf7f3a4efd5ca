import math

import pytest
import torch
import torch.nn.functional as F

from lpl.analysis import invariance
from lpl.analysis.invariance import (
    sequence_frames,
    similarity_by_distance,
    unit_invariance,
    unit_selectivity,
    view_identification,
)
from lpl.validation import LPLError

# Float32 unit rows, sums in float64: a cosine is off by a few float32 roundings at most.
COSINE_TOL = 1e-6


def grid(sequences: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence id and frame of ``sequences`` sequences of ``frames`` views, contiguous."""
    index = torch.arange(sequences * frames)
    return index // frames, index % frames


def test_sequence_frames_counts_views_within_contiguous_sequences():
    assert sequence_frames(torch.tensor([5, 5, 5, 2, 2, 7])).tolist() == [0, 1, 2, 0, 1, 0]


def test_an_exactly_view_invariant_representation_identifies_every_view_at_every_gap():
    sequence, frame = grid(6, 8)
    x = torch.randn(6, 32, generator=torch.Generator().manual_seed(0))[sequence]
    scores = view_identification(x, sequence, frame, gaps=range(1, 8))
    assert all(s["accuracy"] == 1.0 for s in scores.values())
    # Non-cyclic: frame f of 8 has a view G or more frames away when max(f, 7 - f) >= G.
    assert [scores[g]["queries"] for g in range(1, 8)] == [6 * sum(max(f, 7 - f) >= g for f in range(8))
                                                           for g in range(1, 8)]


def test_a_representation_of_the_view_alone_always_picks_the_same_view_of_another_object():
    sequence, frame = grid(6, 8)
    scores = view_identification(F.one_hot(frame).float(), sequence, frame, gaps=(1, 3))
    assert scores[1]["accuracy"] == 0.0 and scores[1]["queries"] == 48
    # Chance: 7 own views among 7 + 40 candidates for every query at G = 1.
    assert scores[1]["chance"] == pytest.approx(7 / 47, rel=1e-6)
    per_frame = [sum(abs(f - j) >= 3 for j in range(8)) for f in range(8)]
    assert scores[3]["chance"] == pytest.approx(sum(c / (c + 40) for c in per_frame) / 8, rel=1e-6)


def test_random_features_identify_at_chance():
    sequence, frame = grid(50, 20)
    x = torch.randn(1000, 16, generator=torch.Generator().manual_seed(1))
    score = view_identification(x, sequence, frame, gaps=(1,))[1]
    assert score["chance"] == pytest.approx(19 / 999, rel=1e-6)
    # Exchangeable candidates: each query is right with probability p = chance; 5 standard errors.
    tolerance = 5 * math.sqrt(score["chance"] * (1 - score["chance"]) / 1000)
    assert abs(score["accuracy"] - score["chance"]) < tolerance


def test_a_mixed_representation_identifies_the_sequences_whose_object_code_dominates():
    sequence, frame = grid(8, 8)
    weight = torch.tensor([3.0] * 4 + [1 / 3] * 4)[sequence, None]
    x = torch.cat((weight * F.one_hot(sequence).float(), F.one_hot(frame).float()), dim=1)
    scores = view_identification(x, sequence, frame, gaps=(1, 4))
    # Object code 3x the view code: its own views win; 1/3 of it: the same view of another object wins.
    assert scores[1]["accuracy"] == 0.5 and scores[4]["accuracy"] == 0.5


def test_cyclic_sequences_measure_frame_distance_around_the_ring():
    sequence, frame = grid(4, 8)
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(2))[sequence]
    ring = view_identification(x, sequence, frame, gaps=(4, 5), cyclic=True)
    line = view_identification(x, sequence, frame, gaps=(4, 5))
    assert ring[4]["queries"] == 32 and line[4]["queries"] == 32
    assert ring[5]["queries"] == 0 and math.isnan(ring[5]["accuracy"]) and math.isnan(ring[5]["chance"])
    assert line[5]["queries"] == 4 * 6  # frames 0, 1, 2, 5, 6, 7
    assert ring[4]["chance"] == pytest.approx(1 / 25, rel=1e-6)  # only the opposite view: 1 of 1 + 24


def test_identification_does_not_depend_on_the_chunk_size(monkeypatch):
    sequence, frame = grid(12, 10)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(120, 6, generator=g) + 0.5 * torch.randn(12, 6, generator=g)[sequence]
    whole = view_identification(x, sequence, frame, gaps=(1, 2, 5), cyclic=True)
    monkeypatch.setattr(invariance, "CHUNK_ENTRIES", 7 * 120)
    chunked = view_identification(x, sequence, frame, gaps=(1, 2, 5), cyclic=True)
    for g, score in whole.items():  # the chance sums add the same float64 terms in another order
        assert chunked[g] == pytest.approx(score, rel=1e-12) and chunked[g]["accuracy"] == score["accuracy"]
    assert 0 < whole[1]["accuracy"] < 1  # a case where the neighbours differ between queries


def test_similarity_of_a_representation_drifting_linearly_with_the_frame():
    # Sequence s turns by 0.3 rad a frame in its own plane; sequence s + 3 is its mirror image, so the
    # rows have mean zero and unit length and the cosine of frames d apart is cos(0.3 d).
    sequence, frame = grid(6, 6)
    angle = 0.3 * frame.double()
    plane = F.one_hot(sequence % 3, 3).double()
    sign = torch.where(sequence < 3, 1.0, -1.0).double()[:, None]
    x = sign * torch.cat((angle.cos()[:, None] * plane, angle.sin()[:, None] * plane), dim=1)
    curve = similarity_by_distance(x, sequence, frame)
    assert curve.distance == [1, 2, 3, 4, 5] and curve.pairs == [6 * (6 - d) for d in range(1, 6)]
    assert curve.similarity == pytest.approx([math.cos(0.3 * d) for d in range(1, 6)], abs=COSINE_TOL)
    # Across sequences only a mirror pair correlates: -cos(0.3 (f - g)) over its 36 frame pairs, in 3 of 15 pairs.
    mirror = sum(-math.cos(0.3 * (f - g)) for f in range(6) for g in range(6)) / 36
    assert curve.across == pytest.approx(mirror * 2 * 3 * 36 / (36 * 36 - 6 * 36), abs=COSINE_TOL)


def test_similarity_around_a_ring_of_views_with_missing_frames():
    # Every second view of rings of 16: cos(2 pi d / 16) at even distances up to 8, nothing across.
    sequence, frame = grid(3, 8)
    frame = 2 * frame
    angle = 2 * math.pi * frame.double() / 16
    plane = F.one_hot(sequence, 3).double()
    x = torch.cat((angle.cos()[:, None] * plane, angle.sin()[:, None] * plane), dim=1)
    lengths = torch.full_like(frame, 16)
    curve = similarity_by_distance(x, sequence, frame, lengths=lengths, cyclic=True)
    assert curve.distance == list(range(1, 9))
    assert curve.pairs == [0, 24, 0, 24, 0, 24, 0, 12]
    even = [math.cos(2 * math.pi * d / 16) for d in (2, 4, 6, 8)]
    assert curve.similarity[1::2] == pytest.approx(even, abs=COSINE_TOL)
    assert all(math.isnan(s) for s in curve.similarity[::2])
    assert curve.across == pytest.approx(0.0, abs=COSINE_TOL)
    with pytest.raises(LPLError, match="lengths="):
        similarity_by_distance(x, sequence, frame, cyclic=True)


def test_unit_tuning_of_invariant_view_tuned_and_mixed_units():
    sequence, frame = grid(2, 5)
    view = frame.double() / 4  # 0 .. 1 over each sequence's views
    invariant, tuned, mixed = sequence.double(), view, sequence.double() + 0.5 * view
    x = torch.stack((invariant, tuned, mixed, torch.ones(10, dtype=torch.float64)), dim=1)
    selectivity, inv = unit_selectivity(x, sequence), unit_invariance(x, sequence)
    # Mixed: range 1.5, means 1 apart, each sequence spans 0.5.
    assert selectivity[:3].tolist() == pytest.approx([1.0, 0.0, 2 / 3], abs=1e-6)
    assert inv[:3].tolist() == pytest.approx([1.0, 0.0, 2 / 3], abs=1e-6)
    assert math.isnan(selectivity[3]) and math.isnan(inv[3])  # constant unit: undefined


def test_selectivity_of_two_groups_is_the_papers_normalised_difference_of_means():
    g = torch.Generator().manual_seed(4)
    x, groups = torch.randn(40, 3, generator=g), torch.arange(40) % 2
    paper = (x[groups == 0].mean(0) - x[groups == 1].mean(0)).abs() / (x.max(0).values - x.min(0).values)
    assert unit_selectivity(x, groups) == pytest.approx(paper, abs=1e-6)


def test_bad_inputs_are_named():
    sequence, frame = grid(3, 4)
    x = torch.randn(12, 5)
    with pytest.raises(LPLError, match="single view"):
        view_identification(x, torch.arange(12), torch.zeros(12, dtype=torch.long))
    with pytest.raises(LPLError, match="single view"):
        unit_invariance(x, torch.arange(12))
    with pytest.raises(LPLError, match=r"sequence must be an integer tensor of shape \(12,\)"):
        similarity_by_distance(x, sequence[:-1], frame)
    with pytest.raises(LPLError, match="frame must be an integer tensor"):
        similarity_by_distance(x, sequence, frame.float())
    with pytest.raises(LPLError, match=r"features must be a float tensor of shape \(N, M\)"):
        unit_selectivity(x[0], sequence)
    with pytest.raises(LPLError, match="5 NaN or Inf"):
        unit_selectivity(torch.cat((x[:-1], torch.full((1, 5), math.nan))), sequence)
    with pytest.raises(LPLError, match="lengths differ within a sequence"):
        view_identification(x, sequence, frame, lengths=torch.arange(12) + 4)
    with pytest.raises(LPLError, match="at least two sequences"):
        view_identification(x[:4], sequence[:4], frame[:4])
    with pytest.raises(LPLError, match=r"objects must be an integer tensor of shape \(12,\)"):
        view_identification(x, sequence, frame, objects=sequence[:6])
    with pytest.raises(LPLError, match="at least two objects"):
        view_identification(x, sequence, frame, objects=torch.zeros(12, dtype=torch.long))
    with pytest.raises(LPLError, match="gaps must be frame distances >= 1"):
        view_identification(x, sequence, frame, gaps=(0, 1))


def test_identification_by_object_leaves_the_objects_other_sequences_out():
    """Two objects, each seen at two elevations (a sequence each) from four views: a representation that
    encodes the object strongly, the view moderately and the elevation weakly finds the same view at the
    object's other elevation first; grouped by object, those views are left out and the object is found."""
    objects = torch.arange(4).repeat_interleave(8) // 2  # objects 0, 0, 1, 1 by sequence
    sequence = torch.arange(4).repeat_interleave(8)
    frame = torch.arange(8).repeat(4)
    x = torch.cat((F.one_hot(objects, 2) * 3.0, F.one_hot(frame, 8) * 1.0, F.one_hot(sequence, 4) * 0.2), 1)
    by_sequence = view_identification(x, sequence, frame, (1,), cyclic=True)[1]
    by_object = view_identification(x, sequence, frame, (1,), cyclic=True, objects=objects)[1]
    assert by_sequence["accuracy"] == 0.0 and by_object["accuracy"] == 1.0
    assert by_object["chance"] == pytest.approx(7 / (7 + 16))  # own views, and the other object's 16 views
