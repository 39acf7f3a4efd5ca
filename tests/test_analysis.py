import pytest
import torch
from conftest import shrink_shapes

from lpl.analysis import metrics, probes
from lpl.analysis.document import to_markdown
from lpl.analysis.evaluate import consecutive_pairs, load_representations
from lpl.cli import main
from lpl.validation import LPLError


@pytest.fixture(autouse=True)
def baseline_cache(tmp_path, monkeypatch):
    """Baselines cached in the test's own folder, never in the user's cache."""
    monkeypatch.setenv("LPL_CACHE_DIR", str(tmp_path / "cache"))


def test_participation_ratio_of_isotropic_and_rank_one_data():
    g = torch.Generator().manual_seed(0)
    isotropic = torch.randn(20000, 10, generator=g)
    assert metrics.participation_ratio(isotropic) == pytest.approx(10, rel=0.02)
    rank_one = torch.randn(500, 1, generator=g) * torch.randn(1, 10, generator=g)
    assert metrics.participation_ratio(rank_one) == pytest.approx(1.0, abs=1e-6)


def test_collapse_detection_on_a_constant_column():
    x = torch.randn(100, 4)
    x[:, 2] = 3.0
    stats = metrics.unit_statistics(x)
    assert stats["collapsed_units"] == 1 and stats["collapsed_fraction"] == 0.25
    assert stats["min_unit_std"] == 0.0


def test_collapse_of_normalised_embeddings_is_judged_relative_to_their_width():
    g = torch.Generator().manual_seed(0)
    healthy = torch.nn.functional.normalize(torch.randn(500, 256, generator=g), dim=1)
    assert metrics.unit_statistics(healthy)["collapsed_units"] == 256  # raw std ~ 1/16
    assert metrics.unit_statistics(healthy, normalised=True)["collapsed_units"] == 0
    collapsed = torch.nn.functional.normalize(torch.ones(500, 256) + 1e-3 * torch.randn(500, 256, generator=g), dim=1)
    assert metrics.unit_statistics(collapsed, normalised=True)["collapsed_units"] == 256


def test_probes_reach_perfect_accuracy_on_separable_data_and_chance_on_shuffled_labels():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(1000) % 4
    x = torch.nn.functional.one_hot(labels, 4).float() * 5 + torch.randn(1000, 4, generator=g) * 0.3
    x = torch.cat((x, torch.randn(1000, 12, generator=g)), dim=1)
    scores = probes.probe_scores(x, labels)
    assert scores["linear_probe"] > 0.99 and scores["knn20"] > 0.99
    shuffled = labels[torch.randperm(1000, generator=g)]
    chance = probes.probe_scores(x, shuffled)
    assert abs(chance["linear_probe"] - 0.25) < 0.08 and abs(chance["knn20"] - 0.25) < 0.08


def test_probe_split_is_disjoint_and_contiguous():
    train, test = probes.probe_split(10)
    assert train.tolist() == list(range(7)) and test.tolist() == [7, 8, 9]


def test_class_similarity_on_a_constructed_case():
    # Two classes on opposite rays: within-class similarity 1, across -1 (after centring).
    x = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [-2.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    sims = metrics.class_similarity(x, labels)
    assert sims["within_class_similarity"] == pytest.approx(1.0)
    assert sims["across_class_similarity"] == pytest.approx(-1.0)


def test_pair_similarity_and_consecutive_indices():
    first, second = consecutive_pairs(8, frames=4)
    assert first.tolist() == [0, 1, 2, 4, 5, 6] and (second - first).eq(1).all()
    x = torch.randn(50, 6)
    sims = metrics.pair_similarity(x, x)
    assert sims["consecutive_similarity"] == pytest.approx(1.0) and sims["random_pair_similarity"] < 0.5


@pytest.mark.parametrize("blob, message", [
    ({"activations": torch.rand(5, 3)}, "not a representation file"),
    ({"labels": torch.zeros(5, dtype=torch.long), "other": torch.rand(5, 3)}, "no 'activations'"),
    ({"activations": torch.rand(5, 3), "labels": torch.zeros(4, dtype=torch.long)}, "5 rows but there are 4"),
    ({"activations": torch.full((5, 3), float("nan")), "labels": torch.zeros(5, dtype=torch.long)}, "NaN"),
    ({"activations": torch.rand(5, 3), "labels": torch.zeros(5)}, "integer tensor"),
])
def test_bad_files_give_clear_errors(tmp_path, blob, message):
    path = tmp_path / "x_after.pt"
    torch.save(blob, path)
    with pytest.raises(LPLError, match=message):
        load_representations(path)


def test_missing_and_corrupt_files(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nothing_after.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad_after.pt").write_bytes(b"not a torch file")
    assert main(["analyze", str(tmp_path / "bad_after.pt")]) == 2
    assert "is not a torch file; pass a .pt file" in capsys.readouterr().err  # (the path holds "corrupt")
    torch.save({"activations": torch.zeros(64, 4)}, tmp_path / "cut_after.pt")
    (tmp_path / "cut_after.pt").write_bytes((tmp_path / "cut_after.pt").read_bytes()[:300])
    assert main(["analyze", str(tmp_path / "cut_after.pt")]) == 2
    assert ".pt is corrupt (" in capsys.readouterr().err


def test_collapse_is_said_only_of_trained_representations():
    from lpl.analysis.report import tables
    from lpl.analysis.verdicts import Row, collapse_sentences

    collapsed = {"collapsed_units": 64, "units": 64, "collapsed_fraction": 1.0}
    rows = [Row("h", "before", collapsed, layer="layer2"), Row("h", "after", collapsed, layer="layer2"),
            Row("random projection, 64 units", "baseline", collapsed, kind="random")]
    (sentence,) = collapse_sentences(rows)
    assert sentence.startswith("Not caused by training: h layer 2, trained: 64 of 64 units have std < 0.1")
    assert collapse_sentences(rows[1:])[0].startswith("COLLAPSED: h layer 2, trained: 64 of 64")
    assert "| h layer 2, trained | 64 |" in to_markdown(tables(rows)[0])


def test_analyze_compare_and_report_on_a_small_run(tmp_path, monkeypatch, capsys):
    shrink_shapes(monkeypatch, 64)  # 512 images a split: the 400 exported are all test images
    out = tmp_path / "out"
    args = ["--steps", "30", "--batch-size", "32", "--num-export", "400", "--output-dir", str(out),
            "--no-progress", "--log-every", "10"]
    assert main(["train-hierarchical", *args]) == 0
    capsys.readouterr()
    assert main(["analyze", str(out / "activations" / "hierarchical_activations_after.pt"),
                 "--csv", str(tmp_path / "all.csv")]) == 0
    table = capsys.readouterr().out
    for name in ("hierarchical_lpl layer 1, untrained", "hierarchical_lpl layer 2, trained", "pixels",
                 "random projection, 128 units", "PCA, 128 components", "random projection, 64 units",
                 "PCA, 64 components"):  # baselines of each layer's width
        assert name in table, name
    assert "| consecutive frames |" in table and "consecutive_similarity" in (tmp_path / "all.csv").read_text()
    assert main(["compare", str(out / "activations" / "hierarchical_activations_after.pt"),
                 "--output", str(tmp_path / "cmp"), "--no-baselines"]) == 0
    assert (tmp_path / "cmp.csv").read_text().startswith("representation,")
    assert main(["report", str(out)]) == 0
    report = out / "report"
    text = (report / "report.md").read_text()
    pngs = sorted(report.glob("*.png"))
    names = {p.name for p in pngs}
    assert {"hierarchical_lpl_curves.png", "hierarchical_lpl_receptive_fields.png",
            "hierarchical_activations_histograms.png", "hierarchical_activations_layer1_pca.png"} <= names
    assert all(p.stat().st_size > 5000 and p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    assert all(p.name in text for p in pngs)
