"""The readable report: verdict sentences on hand-made tables, duplicates, collapse judged against the
untrained state, compare's run names, and report.md / report.html on a tiny trained output."""

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import shrink_shapes

from lpl.analysis.runs import run_labels
from lpl.analysis.verdicts import (
    Row,
    baseline_sentences,
    best_sentences,
    collapse_sentences,
    duplicate_groups,
    duplicate_sentences,
    merge_duplicates,
    tolerance,
    training_sentences,
    versus_sentence,
)
from lpl.cli import main


def probes(linear: float, knn20: float, knn200: float = 0.2, **extra: float) -> dict[str, float]:
    return {"linear_probe": linear, "knn20": knn20, "knn200": knn200, **extra}


LPL_BEFORE = Row("lpl", "before", probes(0.240, 0.230, participation_ratio=16.0, collapsed_units=92, units=128))
LPL_AFTER = Row("lpl", "after", probes(0.230, 0.334, participation_ratio=6.9, collapsed_units=0, units=128))
PCA = Row("PCA, 128 components", "baseline", probes(0.236, 0.266, units=128), kind="pca")


def test_tolerance_is_one_standard_error_but_never_below_the_floor():
    assert tolerance(300) == pytest.approx(0.5 / 300 ** 0.5)
    assert tolerance(10**6) == tolerance(None) == 0.005


def test_versus_sentence_says_better_worse_and_tie():
    text = versus_sentence(LPL_AFTER, PCA, tol=0.005)
    assert text == ("lpl, trained vs PCA, 128 components: better on kNN-20 (0.334 vs 0.266); tie on kNN-200 "
                    "(0.200 vs 0.200); worse on linear probe (0.230 vs 0.236).")
    # A wider tolerance turns the small linear-probe gap into a tie.
    assert "tie on linear probe (0.230 vs 0.236) and kNN-200" in versus_sentence(LPL_AFTER, PCA, tol=0.01)


def test_baselines_are_those_of_the_same_data_run_and_width():
    other_data = Row("pixels", "baseline", probes(0.5, 0.5, units=128), kind="pixels", data="cifar10")
    other_run = Row("PCA, 128 components", "baseline", probes(0.5, 0.5, units=128), kind="pca", runs=("byol",))
    other_width = Row("PCA, 64 components", "baseline", probes(0.5, 0.5, units=64), kind="pca")
    pixels = Row("pixels", "baseline", probes(0.5, 0.5, units=1024), kind="pixels")
    sentences = baseline_sentences([LPL_BEFORE, LPL_AFTER, PCA, other_data, other_run, other_width, pixels])
    assert len(sentences) == 1 and sentences[0].startswith("lpl, trained vs PCA, 128 components")


def test_best_sentences_name_the_winner_its_margin_and_ties():
    rows = [LPL_BEFORE, LPL_AFTER, PCA]
    linear, knn20, knn200 = best_sentences(rows, tol=0.005, chance=1 / 6)
    assert linear == ("linear probe: lpl, untrained (0.240) and PCA, 128 components (0.236) are best, within "
                      "0.005 of each other, 0.010 ahead of lpl, trained (0.230).")
    assert knn20 == "kNN-20: best is lpl, trained (0.334), 0.068 ahead of PCA, 128 components (0.266)."
    assert knn200 == ("kNN-200: lpl, untrained (0.200), lpl, trained (0.200) and PCA, 128 components (0.200) are "
                      "best, within 0.005 of each other.")
    (near_chance,) = best_sentences([Row("x", "after", {"knn20": 0.17})], tol=0.005, chance=1 / 6)
    assert near_chance == "kNN-20: best is x, trained (0.170); no representation is above chance (0.167)."


def test_training_sentences_compare_after_with_before():
    (text,) = training_sentences([LPL_BEFORE, LPL_AFTER, PCA], tol=0.005)
    assert text == ("lpl after vs before training: better on kNN-20 (0.334 vs 0.230); tie on kNN-200 (0.200 vs "
                    "0.200); worse on linear probe (0.230 vs 0.240); participation ratio 16.0 → 6.9, "
                    "collapsed units 92 → 0.")


def test_duplicates_are_detected_merged_and_explained():
    random = Row("random projection, 128 units", "baseline", dict(LPL_BEFORE.values), kind="random")
    layer1 = Row("hierarchical_lpl", "after", dict(LPL_AFTER.values), layer="layer1")
    layer2 = Row("hierarchical_lpl", "after", probes(0.3, 0.3), layer="layer2")
    rows = [LPL_BEFORE, LPL_AFTER, random, layer1, layer2, PCA]
    groups = duplicate_groups(rows)
    assert [[r.label for r in g] for g in groups] == [
        ["lpl, untrained", "random projection, 128 units"], ["lpl, trained", "hierarchical_lpl layer 1, trained"]]
    untrained, trained = duplicate_sentences(rows)
    assert "random-projection baseline is built exactly like an untrained layer" in untrained
    assert "learning is local" in trained and "learning is local" not in untrained
    merged = merge_duplicates(rows)
    assert [r.full_label for r in merged] == [
        "lpl, untrained = random projection, 128 units", "lpl, trained = hierarchical_lpl layer 1, trained",
        "hierarchical_lpl layer 2, trained", "PCA, 128 components"]
    # A value that differs anywhere keeps rows apart; a repeated baseline is not its own duplicate.
    assert not duplicate_groups([LPL_AFTER, Row("x", "after", {**LPL_AFTER.values, "knn200": 0.21})])
    assert not duplicate_groups([PCA, Row(PCA.source, "baseline", dict(PCA.values), kind="pca")])


def test_collapse_is_judged_against_the_state_before_training():
    def row(stage: str, collapsed: int, source: str = "byol") -> Row:
        return Row(source, stage, {"collapsed_units": collapsed, "units": 256, "collapsed_fraction": collapsed / 256})

    (already,) = collapse_sentences([row("before", 194), row("after", 195)])
    assert already == ("Not caused by training: byol, trained: 195 of 256 units have std < 0.1, but 194 already "
                       "did before training (training added 1).")
    (caused,) = collapse_sentences([row("before", 10), row("after", 200)])
    assert caused.startswith("COLLAPSED: byol, trained: 200 of 256") and "up from 10" in caused
    (unknown,) = collapse_sentences([row("after", 200)])
    assert unknown.startswith("COLLAPSED") and "no untrained state" in unknown
    assert collapse_sentences([row("before", 250), row("after", 100)]) == []  # below the threshold
    assert collapse_sentences([row("before", 200, "other"), row("after", 200)])[0].startswith("COLLAPSED")


def test_run_labels_tell_apart_runs_of_one_name():
    a, b = Path("/x/outA/activations/activations_after.pt"), Path("/x/outB/activations/activations_after.pt")
    assert run_labels([a, b], ["lpl", "lpl"]) == ["outA/lpl", "outB/lpl"]
    c, d = Path("/p/out/activations/activations_after.pt"), Path("/q/out/activations/activations_after.pt")
    assert run_labels([c, d], ["lpl", "lpl"]) == ["p/out/lpl", "q/out/lpl"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Iterator[Path]:
    """A tiny single-layer run on shapes (16 sequences a split, conftest), which stay small while this module's
    tests analyse it."""
    out = tmp_path_factory.mktemp("report") / "outA"
    with pytest.MonkeyPatch.context() as patch:
        shrink_shapes(patch)
        assert main(["train", "--dataset", "shapes", "--dims", "1024", "32", "--steps", "20", "--batch-size", "16",
                     "--log-every", "5", "--checkpoint-every", "20", "--num-export", "64", "--no-progress",
                     "--output-dir", str(out)]) == 0
        yield out


def test_compare_names_rows_by_folder_and_run(trained, tmp_path, capsys):
    other = tmp_path / "outB"
    shutil.copytree(trained, other)
    files = [str(folder / "activations" / "activations_after.pt") for folder in (trained, other)]
    assert main(["compare", *files, "--output", str(tmp_path / "cmp"), "--no-baselines"]) == 0
    csv = (tmp_path / "cmp.csv").read_text()
    assert csv.startswith("representation,") and "outA/lpl, trained" in csv and "outB/lpl, trained" in csv
    markdown = (tmp_path / "cmp.md").read_text()
    assert "outA/lpl, trained = outB/lpl, trained" in markdown  # a copy: identical rows, merged and said
    assert ("**outA/lpl**: LPL's local rule: each layer's weights follow the gradient of its own predictive, Hebbian "
            "and decorrelation terms (closed-form neuron-level rule); trained layer-local; dense network 1024 → 32; "
            "20 steps of 16 pairs, temporal views, seed 0") in markdown  # from the run record


def test_report_writes_markdown_and_self_contained_html(trained):
    assert main(["report", str(trained)]) == 0
    folder = trained / "report"
    markdown = (folder / "report.md").read_text()
    for phrase in ("on **shapes**", "first 64 test images", "Chance level is 1/6 = 0.167", "git revision",
                   "20 steps", "## Findings", "What the columns mean", "**participation ratio**:",
                   "lpl, trained vs PCA, 32 components", "predictive term", "samples/s on average"):
        assert phrase in markdown, phrase
    assert "samples_per_s" not in markdown and "knn20" not in markdown
    pngs = re.findall(r"\]\(([^)]+\.png)\)", markdown)
    assert {"lpl_curves.png", "activations_histograms.png", "lpl_receptive_fields.png"} <= set(pngs)
    page = (folder / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(pngs) and all(s.startswith("data:image/png;base64,iVBOR") for s in sources)
    assert not re.search(r"https?://|<link|<script|@import|url\(", page)
    assert "<table>" in page and "Chance level is 1/6" in page


def test_report_of_a_wrong_folder_says_what_to_pass(tmp_path, capsys):
    from lpl.cli import main

    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "is not a folder; pass the --output-dir of a training run" in capsys.readouterr().err
    (tmp_path / "run" / "activations").mkdir(parents=True)
    assert main(["report", str(tmp_path / "run" / "activations")]) == 2
    assert f"pass the run's output folder, {tmp_path / 'run'}" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "run")]) == 2
    assert "holds no run record (logs/<name>_run.json); pass the --output-dir" in capsys.readouterr().err
    (tmp_path / "run" / "logs").mkdir()
    (tmp_path / "run" / "logs" / "old_config.json").write_text("{}")  # an older lpl's run: one clear message
    assert main(["report", str(tmp_path / "run")]) == 2
    assert "older lpl without run records: retrain them with this version" in capsys.readouterr().err
    (tmp_path / "run" / "logs" / "x_run.json").write_text('{"config": {}}')
    assert main(["report", str(tmp_path / "run")]) == 2
    assert "was written by an older lpl (no lpl-run/1 record)" in capsys.readouterr().err
    (tmp_path / "run" / "logs" / "x_run.json").write_text('{"format": "lpl-run/1", "config": {}}')
    assert main(["report", str(tmp_path / "run")]) == 2
    assert "have neither readouts (logs/*_results.json) nor exports" in capsys.readouterr().err


def test_a_trainers_own_terms_win_over_the_shared_ones(small_shapes):
    """The seed's BYOL logs ``loss`` as -2 x cosine: its record (and so its report) says so, not the shared
    meaning of ``loss`` (the weighted objective of every head)."""
    from lpl.data import load_splits
    from lpl.terms import RUN_TERMS, Term, terms_record
    from lpl.train.byol import BYOLConfig

    own = {"loss": Term("mine", "falls"), "x": Term("x")}
    assert terms_record(own, RUN_TERMS)["loss"]["meaning"] == "mine"
    assert list(terms_record(own, RUN_TERMS)) == ["loss", "x", *(k for k in RUN_TERMS if k != "loss")]
    train, test = load_splits("shapes")
    terms = BYOLConfig(dataset="shapes").describe(train, test)["terms"]
    assert terms["loss"]["meaning"] == "BYOL loss: -2 x cosine of prediction and target (minimum -2)"
