"""Deep runs side by side: ``lpl compare`` of output folders and ``lpl report`` of a folder with several deep
runs, on hand-made results files (no training); and the verdict sentences on hand-made numbers."""

import csv
import json
from pathlib import Path

import pytest
import torch

from lpl.analysis import report
from lpl.analysis.deep_report import init_rows
from lpl.analysis.runs import find_runs
from lpl.analysis.verdicts import deep_sentences, ranking, spans
from lpl.cli import main
from lpl.heads import HEADS
from lpl.layout import save_export
from lpl.terms import RUN_TERMS, terms_record

INIT = [0.30, 0.31, 0.33, 0.32, 0.31, 0.30, 0.29, 0.28]
READOUTS = {  # (objective, end_to_end) -> trained readout per layer
    ("lpl", False): [0.40, 0.45, 0.50, 0.52, 0.54, 0.553, 0.54, 0.535],
    ("byol", True): [0.35, 0.38, 0.42, 0.45, 0.50, 0.55, 0.60, 0.62],
    ("simclr", True): [0.36, 0.39, 0.43, 0.46, 0.51, 0.56, 0.59, 0.615],
}


def config(objective: str, end_to_end: bool, **extra) -> dict:
    return {"objective": objective, "end_to_end": end_to_end, "epochs": 100, "steps": None, "dataset": "cifar10",
            "seed": 24, "channels": [128, 256, 256, 512, 512, 512, 512, 512], "pool_after": [1, 2, 4, 6, 8],
            "image_size": None, "num_export": 10000, "eval_train": 50000, "eval_epochs": 20, "batch_size": 1024,
            **extra}


def entries(readouts: list[float]) -> list[dict]:
    return [{"layer": i, "readout": r, "participation_ratio": 10.0 + i, "mean_activation": 0.1}
            for i, r in enumerate(readouts, 1)]


def record(objective: str, end_to_end: bool, cfg: dict, files: list[str]) -> dict:
    """A run record as train-deep writes it (``DeepConfig.describe``), the objective's words from the registry."""
    head = HEADS[objective]
    return {"format": "lpl-run/1", "writer": "lpl train-deep", "config": cfg, "schedule": {"steps": 4800},
            "network": {"kind": "conv", "name": "vgg11", "channels": cfg["channels"], "pool_after": cfg["pool_after"]},
            "objective": {"name": objective, "summary": head.summary, "loss_grid": [1] * 8,
                          "training": "end-to-end" if end_to_end else "layer-local", "views": "simclr"},
            "terms": terms_record(head.terms, RUN_TERMS),
            "data": {"dataset": cfg["dataset"], "shape": [3, 32, 32], "classes": [f"c{i}" for i in range(10)],
                     "train_images": 50000, "test_images": 10000, "sequences": {"train": 0, "test": 0}},
            "activation_files": files}


def write_run(root: Path, objective: str, end_to_end: bool, init: list[float] = INIT, spatial: dict | None = None,
              readouts: list[float] | None = None, **extra) -> Path:
    """``<root>/logs/<name>_results.json`` and ``_run.json`` as train-deep and lpl readout write them."""
    name = f"deep_{objective}" + ("_e2e" if end_to_end else "")
    cfg = config(objective, end_to_end, **extra)
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    results = {"config": cfg, "initialisation": entries(init),
               "trained": entries(readouts or READOUTS[objective, end_to_end])}
    if spatial:
        results["spatial"] = spatial
    (logs / f"{name}_results.json").write_text(json.dumps(results))
    files = [f"{name}_activations_before.pt", f"{name}_activations_after.pt"]
    (logs / f"{name}_run.json").write_text(json.dumps(record(objective, end_to_end, cfg, files)))
    return logs / f"{name}_results.json"


@pytest.fixture
def three(tmp_path: Path) -> list[Path]:
    """Three output folders: layer-local LPL, end-to-end BYOL (with a reproduce timing file), end-to-end SimCLR."""
    folders = [tmp_path / "outA", tmp_path / "outB", tmp_path / "outC"]
    write_run(folders[0], "lpl", False)
    write_run(folders[1], "byol", True)
    (folders[1] / "reproduce_timing.json").write_text(json.dumps({"wall_s": 5400.0, "device": "NVIDIA H100",
                                                                  "status": "completed"}))
    write_run(folders[2], "simclr", True)
    return folders


def test_compare_puts_deep_runs_side_by_side(three, tmp_path, capsys):
    output = tmp_path / "cmp"
    assert main(["compare", *map(str, three), "--output", str(output)]) == 0
    markdown = (tmp_path / "cmp.md").read_text()
    png = (tmp_path / "cmp.png").read_bytes()
    assert png.startswith(b"\x89PNG") and "](cmp.png)" in markdown

    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert table[0] == ("| run | objective | training | epochs | layer 1 | layer 2 | layer 3 | layer 4 | layer 5 | "
                        "layer 6 | layer 7 | layer 8 | wall time |")
    assert table[1:] == [
        "| outA/deep_lpl | lpl | layer-local | 100 | 40.0 | 45.0 | 50.0 | 52.0 | 54.0 | 55.3 | 54.0 | 53.5 |  |",
        "| outB/deep_byol_e2e | byol | end-to-end | 100 | 35.0 | 38.0 | 42.0 | 45.0 | 50.0 | 55.0 | 60.0 | 62.0 "
        "| 90.0 min (NVIDIA H100) |",
        "| outC/deep_simclr_e2e | simclr | end-to-end | 100 | 36.0 | 39.0 | 43.0 | 46.0 | 51.0 | 56.0 | 59.0 | "
        "61.5 |  |",
        "| random initialisation | — | untrained | 0 | 30.0 | 31.0 | 33.0 | 32.0 | 31.0 | 30.0 | 29.0 | 28.0 |  |"]
    assert markdown.count("random initialisation |") == 1
    assert "all runs start from it (seed 24, 8 conv blocks on cifar10), so it is shown once" in markdown
    # Verdicts: BYOL and SimCLR tie at the final layer (0.5 points apart, the tolerance for 10000 images).
    assert ("At the final layer, outB/deep_byol_e2e (62.0% at layer 8) and outC/deep_simclr_e2e (61.5% at layer 8) "
            "are best, within 0.5 points of each other, 8.5 points ahead of outA/deep_lpl (53.5% at layer 8).") \
        in markdown
    assert ("At each run's best layer, outB/deep_byol_e2e (62.0% at layer 8) and outC/deep_simclr_e2e (61.5% at "
            "layer 8) are best, within 0.5 points of each other, 6.7 points ahead of outA/deep_lpl (55.3% at "
            "layer 6).") in markdown
    assert "outA/deep_lpl: layer 6 of 8 (55.3%)" in markdown
    assert ("outA/deep_lpl vs the random initialisation at the final layer (layer 8): better (53.5% vs 28.0%, "
            "+25.5 points). Layer by layer: better at every layer.") in markdown
    assert "Settings that differ" not in markdown

    rows = list(csv.DictReader((tmp_path / "cmp.csv").open()))
    assert [r["row"] for r in rows] == ["outA/deep_lpl", "outB/deep_byol_e2e", "outC/deep_simclr_e2e",
                                        "random initialisation"]
    assert [r["objective"] for r in rows] == ["lpl", "byol", "simclr", ""]
    assert [r["training"] for r in rows] == ["layer-local", "end-to-end", "end-to-end", "untrained"]
    assert float(rows[1]["layer8_readout"]) == 0.62 and float(rows[3]["layer3_readout"]) == 0.33
    assert float(rows[1]["wall_s"]) == 5400.0 and rows[0]["wall_s"] == ""
    assert float(rows[0]["layer2_participation_ratio"]) == 12.0


def test_compare_takes_results_files_and_logs_folders_once_each(three, tmp_path):
    paths = [str(three[0] / "logs" / "deep_lpl_results.json"), str(three[0]), str(three[1] / "logs")]
    assert main(["compare", *paths, "--output", str(tmp_path / "two")]) == 0
    rows = list(csv.DictReader((tmp_path / "two.csv").open()))
    assert [r["row"] for r in rows] == ["outA/deep_lpl", "outB/deep_byol_e2e", "random initialisation"]


def test_a_folder_of_run_folders_gives_every_run(three, tmp_path):
    assert [r.layout.root.name for r in find_runs([tmp_path])] == ["outA", "outB", "outC"]


def test_distinct_initialisations_get_a_row_each_and_same_network_differences_are_said(tmp_path):
    write_run(tmp_path / "a", "lpl", False)
    write_run(tmp_path / "b", "byol", True, seed=1, init=[x + 0.01 for x in INIT])
    write_run(tmp_path / "c", "simclr", True, init=[x + 0.002 for x in INIT])  # same network, another readout
    runs = find_runs([tmp_path / f for f in "abc"], qualify=True)
    inits = init_rows(runs)
    assert [i.label for i in inits] == ["random initialisation of a/deep_lpl, c/deep_simclr_e2e",
                                        "random initialisation of b/deep_byol_e2e"]
    assert inits[0].spread == pytest.approx(0.002)
    assert main(["compare", *(str(tmp_path / f) for f in "abc"), "--output", str(tmp_path / "cmp")]) == 0
    markdown = (tmp_path / "cmp.md").read_text()
    assert "differ by up to 0.2 points (each run fits its own readout); the row shows those of a/deep_lpl" in markdown
    assert "b/deep_byol_e2e vs its random initialisation at the final layer" in markdown
    assert 'seed (a/deep_lpl 24, b/deep_byol_e2e 1, c/deep_simclr_e2e 24)' in markdown


def test_compare_refuses_a_mix_and_empty_folders(three, tmp_path, capsys):
    export = tmp_path / "x_after.pt"
    save_export(export, [torch.zeros(4, 2)], torch.zeros(4, dtype=torch.long))
    assert main(["compare", str(three[0]), str(export), "--output", str(tmp_path / "m")]) != 0
    assert "not both" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty"), "--output", str(tmp_path / "m")]) != 0
    assert "holds no run record" in capsys.readouterr().err
    assert not (tmp_path / "m.md").exists()


def test_deep_sentences_on_hand_made_numbers():
    trained = {"A": [0.5, 0.6, 0.55], "B": [0.4, 0.5, 0.58]}
    init = {"A": [0.3, 0.3, 0.553], "B": [0.3, 0.3, 0.553]}
    final, best, layers, a, b = deep_sentences(trained, init, tol=0.005)
    assert final == "At the final layer, best is B (58.0% at layer 3), 3.0 points ahead of A (55.0% at layer 3)."
    assert best == "At each run's best layer, best is A (60.0% at layer 2), 2.0 points ahead of B (58.0% at layer 3)."
    assert layers == "Best layer of each run: A: layer 2 of 3 (60.0%); B: layer 3 of 3 (58.0%)."
    assert a == ("A vs the random initialisation at the final layer (layer 3): tie (55.0% vs 55.3%, within 0.5 "
                 "points). Layer by layer: better at layers 1-2; tie at layer 3.")
    assert b.endswith("better (58.0% vs 55.3%, +2.7 points). Layer by layer: better at every layer.")
    assert ranking([("A", 0.562), ("B", 0.23), ("C", 0.226), ("D", 0.22)], tol=0.005) == \
        "A 56.2% > B 23.0% = C 22.6% > D 22.0%"
    assert spans([1, 2, 4, 5, 6, 8]) == "layers 1-2, 4-6 and 8" and spans([3]) == "layer 3"
    worse = deep_sentences({"C": [0.1]}, {"C": [0.3]}, tol=0.005)[-1]
    assert worse == "C vs the random initialisation at the final layer (layer 1): worse (10.0% vs 30.0%, -20.0 points)."


def test_report_of_a_folder_with_two_deep_runs_shows_them_side_by_side(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "_run_section", lambda *args: [])  # histograms and PCA: tested in test_report
    root = tmp_path / "out"
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 4
    for objective, end_to_end in (("lpl", False), ("byol", True)):
        write_run(root, objective, end_to_end, data_dir=str(tmp_path / "no_data"))
        name = f"deep_{objective}" + ("_e2e" if end_to_end else "")
        for tag in ("before", "after"):
            layers = [torch.randn(40, 6, generator=generator) + labels[:, None] for _ in range(2)]
            save_export(root / "activations" / f"{name}_activations_{tag}.pt", layers, labels)
    assert main(["report", str(root), "--no-baselines"]) == 0
    markdown = (root / "report" / "report.md").read_text()
    assert markdown.index("## Linear readout per layer") < markdown.index("## Representations on the exported")
    assert "| deep_byol_e2e | byol | end-to-end | 100 | 35.0 |" in markdown
    assert "| deep_lpl | lpl | layer-local | 100 | 40.0 |" in markdown
    assert markdown.count("| random initialisation | — | untrained |") == 1
    assert "deep_runs_readout.png" in markdown and (root / "report" / "deep_runs_readout.png").is_file()
    assert "At the final layer, best is deep_byol_e2e (62.0% at layer 8)" in markdown
    assert (root / "report" / "deep_runs.csv").read_text().startswith("row,folder,run,")
    # the exports' probes follow, said to be another protocol than the readout above
    assert "This probe protocol differs from the readout above" in markdown


def test_a_report_from_records_and_results_alone_describes_each_objective_in_its_own_words(tmp_path):
    """SimCLR, BYOL and LPL, layer-local, without exports (as docs/measured keeps them): each described by its
    record, the headline first with both readout protocols, the loss terms drawn as objective terms."""
    grid = {"grid": 4, "initialisation": {"layers": [0.5] * 8, "all": 0.55, "features": [1024] * 9},
            "trained": {"layers": [0.6] * 7 + [0.58], "all": 0.66, "features": [1024] * 9}}
    root = tmp_path / "out"
    for objective in ("lpl", "byol", "simclr"):
        write_run(root, objective, False, spatial=grid if objective == "simclr" else None,
                  readouts=READOUTS["lpl", False])
    log = [{"step": s, "loss": 1.0 / s, "layer1_byol": 2.0 / s, "layer2_byol": 3.0 / s, "lr": 0.1, "epoch": s / 10,
            "samples_per_s": 1000.0, "elapsed_s": s} for s in (1, 2, 3)]
    (root / "logs" / "deep_byol_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    assert main(["report", str(root)]) == 0
    markdown = (root / "report" / "report.md").read_text()
    for objective in ("lpl", "byol", "simclr"):
        assert f"**deep_{objective}**: {HEADS[objective].summary}; trained layer-local; vgg11 network of 8 conv " \
               f"blocks" in markdown
    assert "deep LPL" not in markdown and "8 conv blocks" in markdown
    headline = markdown.split("\n\n")[:5]
    assert headline[0] == f"# LPL report: `{root}`" and headline[1] == "## Linear readout per layer"
    assert headline[2] == ("**Answer.** Globally pooled features (the paper's readout): best is **deep_byol**, "
                           "layer 6, **55.3%** against 30.0% for its random initialisation; spatial readout: best is "
                           "**deep_simclr**, all blocks concatenated, **66.0%** against 55.0% for its random "
                           "initialisation. Chance is 10.0%.")
    assert "| deep_simclr | 60.0 | 60.0 | 60.0 | 60.0 | 60.0 | 60.0 | 60.0 | 58.0 | 66.0 |" in markdown
    assert "| random initialisation | 50.0 | 50.0 | 50.0 | 50.0 | 50.0 | 50.0 | 50.0 | 50.0 | 55.0 |" in markdown
    # BYOL's logged loss is an objective term, described by the record, never drawn among the statistics.
    assert ("**byol**: BYOL loss: 2 - 2 cos(prediction, target), summed over both directions (0 to 4); it falls"
            in markdown) and (root / "report" / "deep_byol_curves.png").is_file()
    from lpl.analysis.figures import plot_training_curves

    _, groups = plot_training_curves(log, tmp_path / "c.png", "c", terms_record(HEADS["byol"].terms, RUN_TERMS))
    assert groups == {"objective": ["loss", "byol"], "schedule": ["lr", "epoch"]}


def test_a_short_network_beside_a_deep_one_keeps_all_blocks_in_its_column_and_each_data_set_its_answer(tmp_path):
    """A 3-block run's spatial readout of all blocks goes under 'all blocks', never under 'layer 4'; runs on two
    data sets get one answer each, with their own chance."""
    grid = {"grid": 4, "initialisation": {"layers": [0.5] * 3, "all": 0.55, "features": [1024] * 4},
            "trained": {"layers": [0.6, 0.62, 0.64], "all": 0.7, "features": [1024] * 4}}
    deep = {"grid": 4, "initialisation": {"layers": [0.5] * 8, "all": 0.55, "features": [1024] * 9},
            "trained": {"layers": [0.6] * 8, "all": 0.66, "features": [1024] * 9}}
    write_run(tmp_path / "deep", "simclr", True, spatial=deep)
    write_run(tmp_path / "short", "lpl", False, init=INIT[:3], readouts=[0.4, 0.5, 0.6], spatial=grid,
              dataset="eth80", channels=[96, 384, 1536], pool_after=[1, 2, 3])
    assert main(["report", str(tmp_path)]) == 0
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| deep_lpl | 60.0 | 62.0 | 64.0 |  |  |  |  |  | 70.0 |" in markdown
    answer = next(p for p in markdown.split("\n\n") if p.startswith("**Answer"))
    assert answer.startswith("**Answer**, per data set. On **cifar10**: ") and "On **eth80**: " in answer
    assert answer.count("Chance is 10.0%.") == 2  # both records name ten classes
