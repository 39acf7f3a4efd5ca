"""Fast probes and statistics against the slow definitions they replace, and the on-disk baseline cache."""

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import write_cifar_batch

from lpl.analysis import evaluate, metrics, probes
from lpl.analysis.probes import knn_accuracies, knn_accuracy, linear_probe_accuracy, probe_scores
from lpl.analysis.runs import find_runs


def sklearn_probe(x_train, y_train, x_test, y_test) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, tol=1e-8))
    model.fit(x_train.double().numpy(), y_train.numpy())
    return float(model.score(x_test.double().numpy(), y_test.numpy()))


def blobs(n: int, d: int, classes: int, seed: int, correlated: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Overlapping Gaussian classes (accuracy well below 1, so the probe's penalty matters)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.randn(classes, d, generator=g)[y] * 0.6 + torch.randn(n, d, generator=g)
    if correlated:  # ill-conditioned: strongly mixed features on very different scales
        x = x @ torch.randn(d, d, generator=g) * torch.logspace(-2, 2, d)
    return x, y


@pytest.mark.parametrize("classes, correlated", [(5, False), (5, True), (2, False), (2, True)])
def test_linear_probe_matches_sklearn_within_a_point(classes, correlated):
    x, y = blobs(1200, 30, classes, seed=classes, correlated=correlated)
    ours = linear_probe_accuracy(x[:800], y[:800], x[800:], y[800:])
    assert ours == pytest.approx(sklearn_probe(x[:800], y[:800], x[800:], y[800:]), abs=0.01)


def test_linear_probe_in_float32_on_wide_features_matches_sklearn():
    x, y = blobs(900, 600, 4, seed=0)  # > FLOAT32_FEATURES: the float32 path
    ours = linear_probe_accuracy(x[:600], y[:600], x[600:], y[600:])
    assert ours == pytest.approx(sklearn_probe(x[:600], y[:600], x[600:], y[600:]), abs=0.01)


def test_linear_probe_handles_absent_classes_constant_features_and_one_class():
    x, y = blobs(600, 8, 4, seed=1)
    x[:, 3] = 2.0
    y[450:][y[450:] == 3] = 7  # class 7 only in the test part: never predicted, as in sklearn
    ours = linear_probe_accuracy(x[:450], y[:450], x[450:], y[450:])
    assert ours == pytest.approx(sklearn_probe(x[:450], y[:450], x[450:], y[450:]), abs=0.01)
    assert linear_probe_accuracy(x[:10], torch.zeros(10, dtype=torch.long), x[10:20], y[10:20]) == float(
        (y[10:20] == 0).double().mean())
    flat, labels = torch.ones(30, 80), torch.tensor([0] * 12 + [1] * 8 + [2] * 10)  # no information: majority
    assert linear_probe_accuracy(flat[:20], labels[:20], flat[20:], labels[20:]) == 0.0
    assert linear_probe_accuracy(flat[:20], labels[:20], flat[:20], labels[:20]) == pytest.approx(0.6)


def test_knn_for_several_k_at_once_equals_the_brute_force_vote():
    x, y = blobs(700, 12, 6, seed=2)
    shared = knn_accuracies(x[:500], y[:500], x[500:], y[500:], ks=(1, 5, 20, 200), chunk=64)
    for k, accuracy in shared.items():
        train, test = F.normalize(x[:500].double(), dim=1), F.normalize(x[500:].double(), dim=1)
        votes = F.one_hot(y[:500][(test @ train.T).topk(k, dim=1).indices], 6).sum(1)
        assert accuracy == pytest.approx(float((votes.argmax(1) == y[500:]).double().mean()))
        assert knn_accuracy(x[:500], y[:500], x[500:], y[500:], k) == accuracy


def test_class_similarity_from_class_sums_equals_the_pairwise_mean():
    x, y = blobs(300, 7, 5, seed=3)
    y[y == 4] = 9  # label values need not be 0..C-1
    x[0] = x.mean(0)  # a row at the mean normalises to zero
    z = F.normalize(x.double() - x.double().mean(0), dim=1)
    sim, same = z @ z.T, y[:, None] == y[None, :]
    fast = metrics.class_similarity(x, y)
    assert fast["within_class_similarity"] == pytest.approx(float(sim[same & ~torch.eye(300, dtype=torch.bool)].mean()))
    assert fast["across_class_similarity"] == pytest.approx(float(sim[~same].mean()))
    big = metrics.class_similarity(x.repeat(1, 700), y)  # > FLOAT64_ELEMENTS: float32 path
    assert big["within_class_similarity"] == pytest.approx(fast["within_class_similarity"], abs=1e-5)


@pytest.mark.parametrize("n", [200, 20])
def test_participation_ratio_and_correlation_equal_their_definitions(n):
    x, _ = blobs(n, 40, 3, seed=4, correlated=True)
    x[:, 5] = 1.0  # constant unit: correlation nan -> 0, as torch.corrcoef + nan_to_num
    eig = torch.linalg.svdvals(x.double() - x.double().mean(0)).square()
    assert metrics.participation_ratio(x) == pytest.approx(float(eig.sum().square() / eig.square().sum()))
    corr = torch.nan_to_num(torch.corrcoef(x.T.double()))[~torch.eye(40, dtype=torch.bool)]
    assert metrics.unit_statistics(x)["mean_abs_correlation"] == pytest.approx(float(corr.abs().mean()))


def test_pca_projection_spans_the_top_principal_components(monkeypatch):
    x, _ = blobs(400, 60, 3, seed=5, correlated=True)
    xc = x.double() - x.double().mean(0)
    top = torch.linalg.svd(xc, full_matrices=False)[2][:6].T
    exact = metrics.pca_projection(x, 6).double()
    assert torch.allclose(exact.abs(), (xc @ top).abs(), rtol=1e-4, atol=1e-4 * float(exact.abs().max()))
    monkeypatch.setattr(metrics, "FLOAT64_UNITS", 8)  # the subspace-iteration path of large inputs
    approx = metrics.top_eigenvectors(metrics.covariance(x), 6).double()
    assert (approx * top).sum(0).abs().min() > 0.9999


def analyze(export):
    """``analyze_file`` of an export with the config its run record holds."""
    return evaluate.analyze_file(export, find_runs([export])[0].config)


@pytest.fixture
def run_folder(tmp_path, monkeypatch):
    """A run on a 50-image CIFAR-10 test batch with its config, export and an empty baseline cache."""
    monkeypatch.setenv("LPL_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "data" / "cifar-10-batches-py"
    data.mkdir(parents=True)
    write_cifar_batch(data / "test_batch", 50, seed=0)
    (tmp_path / "logs").mkdir()
    (tmp_path / "activations").mkdir()
    config = {"dataset": "cifar10", "data_dir": str(data.parent), "num_export": 50}
    export = tmp_path / "activations" / "run_activations_after.pt"
    saved = {"format": "lpl-run/1", "config": config, "activation_files": [export.name]}
    (tmp_path / "logs" / "run_run.json").write_text(json.dumps(saved))
    torch.save({"activations": torch.rand(50, 16), "labels": torch.arange(50) % 10}, export)
    return export


def test_baselines_are_computed_once_per_data_set_and_kept_on_disk(run_folder, monkeypatch):
    first = analyze(run_folder)
    assert [r.name for r in first][1:] == [f"run_activations/baseline/{b}" for b in ("pixels", "random16", "pca16")]
    assert len(list((run_folder.parent.parent / "cache" / "baselines").glob("cifar10-50-16-*.json"))) == 1
    computed = []
    monkeypatch.setattr(evaluate, "baselines", lambda *a: computed.append(a) or [])
    again = analyze(run_folder)
    assert not computed and [r.values for r in again] == [r.values for r in first]
    assert isinstance(again[1].values["collapsed_units"], int)
    # Same name, size and labels, different images: a new entry, never the stale one.
    write_cifar_batch(run_folder.parent.parent / "data" / "cifar-10-batches-py" / "test_batch", 50, seed=1)
    analyze(run_folder)
    assert len(computed) == 1


def test_an_unreadable_cache_entry_is_recomputed(run_folder):
    analyze(run_folder)
    (entry,) = (run_folder.parent.parent / "cache" / "baselines").glob("*.json")
    entry.write_text("{not json")
    rows = analyze(run_folder)
    assert len(rows) == 4 and json.loads(entry.read_text())[0]["name"] == "pixels"


def test_a_known_feature_covariance_only_changes_the_path_not_the_probe():
    x, y = blobs(1000, 40, 4, seed=6, correlated=True)
    given = probe_scores(x, y, cov=metrics.covariance(x))
    assert given["linear_probe"] == pytest.approx(probe_scores(x, y)["linear_probe"], abs=0.005)


def test_blocked_covariance_equals_the_plain_product():
    x, _ = blobs(50, 40, 3, seed=7)
    xc = x.double() - x.double().mean(0)
    assert torch.allclose(metrics.covariance(x, block=6), xc.T @ xc)


def test_probes_side_by_side_on_two_threads_equal_them_one_after_the_other(monkeypatch):
    monkeypatch.setattr(probes, "CHUNK_BYTES", 4096)  # many chunks: a helper thread takes half of them
    x, y = blobs(600, 20, 4, seed=8)
    alone = probe_scores(x, y)  # the suite runs on one thread: one job after the other
    torch.set_num_threads(2)
    try:
        together = probe_scores(x, y)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert together == alone
