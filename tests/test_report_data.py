"""Reports of runs on hand-made data files and exports with hand-made features: data sets kept apart, kNN only
where k fits, one-class data, and view invariance of exports of sequences (``lpl analyze`` and ``lpl report``)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch

from lpl.cli import main


def data_file(path: Path, count: int, classes: int, frames: int = 1) -> Path:
    """A ``.pt`` data set of ``count`` 1x4x4 images (the last 20% is its test split), label = sequence % classes."""
    labels = (torch.arange(count) // frames) % classes
    images = torch.randint(0, 256, (count, 1, 4, 4), generator=torch.Generator().manual_seed(count), dtype=torch.uint8)
    torch.save({"images": images, "labels": labels, "frames": frames}, path)
    return path


def run(root: Path, name: str, dataset: Path, layers: dict[str, list[torch.Tensor]], classes: list[str],
        **extra: object) -> Path:
    """A run record and an export ``{before, after}`` of hand-made features (the data set's test rows)."""
    labels = torch.load(dataset)["labels"]
    test = labels[len(labels) * 4 // 5:]
    (root / "logs").mkdir(parents=True, exist_ok=True)
    (root / "activations").mkdir(exist_ok=True)
    files = [f"{name}_activations_{tag}.pt" for tag in ("before", "after")]
    for index, file in enumerate(files):
        blob = {f"{layer}_activations": features[index] for layer, features in layers.items()}
        torch.save({**blob, "labels": test, **extra}, root / "activations" / file)
    record = {"format": "lpl-run/1", "writer": "hand-made", "network": {"kind": "dense", "dims": [16, 8]},
              "objective": {"name": "lpl", "summary": "a hand-made representation", "training": "layer-local"},
              "terms": {}, "data": {"dataset": str(dataset), "shape": [1, 4, 4], "classes": classes,
                                    "train_images": len(labels) - len(test), "test_images": len(test),
                                    "sequences": {"train": 0, "test": 0}},
              "config": {"dataset": str(dataset), "num_export": len(test), "seed": 0, "batch_size": 4},
              "activation_files": files}
    (root / "logs" / f"{name}_run.json").write_text(json.dumps(record))
    return root / "activations" / files[1]


def noise(rows: int, width: int, seed: int) -> torch.Tensor:
    return torch.randn(rows, width, generator=torch.Generator().manual_seed(seed))


def tables(markdown: str) -> list[str]:
    """The Markdown tables of ``markdown``, each as one string."""
    return re.findall(r"(?:^\|.*\n)+", markdown, re.M)


def test_a_report_over_two_data_sets_keeps_them_apart_and_labels_their_baselines(tmp_path):
    root = tmp_path / "out"
    for name, classes in (("a", 3), ("b", 4)):
        dataset = data_file(tmp_path / f"{name}.pt", 200, classes)
        run(root, name, dataset, {"layer1": [noise(40, 8, 1), noise(40, 8, 2)]}, [str(c) for c in range(classes)])
    assert main(["report", str(root)]) == 0
    markdown = (root / "report" / "report.md").read_text()
    for name, classes in (("a", 3), ("b", 4)):
        assert f"## {tmp_path / name}.pt, 40 test images" in markdown and f"Chance level is 1/{classes} =" in markdown
        assert f"| pixels ({tmp_path / name}.pt) |" in markdown
        assert f"| random projection, 8 units ({tmp_path / name}.pt) |" in markdown
    found = tables(markdown.split("## Run a")[0])
    assert len(found) == 6  # probes, unit statistics and similarity for each data set, none with rows of both
    for table in found:
        assert ("| a, trained" in table) != ("| b, trained" in table)
        assert (f"{tmp_path / 'a'}.pt)" in table) != (f"{tmp_path / 'b'}.pt)" in table)


def test_knn_is_reported_only_below_the_number_of_fitting_images(tmp_path, capsys):
    dataset = data_file(tmp_path / "d.pt", 1200, 4)  # 240 test images, 168 fit the probes
    export = run(tmp_path / "out", "r", dataset, {"layer1": [noise(240, 8, 1), noise(240, 8, 2)]}, list("abcd"))
    assert main(["analyze", str(export), "--csv", str(tmp_path / "all.csv")]) == 0
    markdown = capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "all.csv").open()))
    assert len(rows) == 5 and all(r["knn20"] for r in rows)  # r untrained and trained, pixels, random, PCA
    assert "knn200" not in rows[0] and "kNN-200" not in markdown and "| kNN-20 |" in markdown


def test_a_one_class_data_set_says_chance_cannot_be_judged(tmp_path, capsys):
    dataset = data_file(tmp_path / "d.pt", 200, 1)
    export = run(tmp_path / "out", "r", dataset, {"layer1": [noise(40, 8, 1), noise(40, 8, 2)]}, ["only"])
    assert main(["analyze", str(export), "--no-baselines"]) == 0
    markdown = capsys.readouterr().out
    assert "With a single class, chance (and so any accuracy) cannot be judged." in markdown
    assert "1.000" not in markdown.split("### Findings")[0] and "above chance" not in markdown


SEQUENCES = {"sequence": torch.arange(48) // 4, "frame": torch.arange(48) % 4,
             "sequence_names": [f"o{s // 2}_elev{s % 2}" for s in range(12)]}  # 6 objects at 2 elevations, 4 views


def sequence_run(tmp_path: Path) -> Path:
    """48 test views in 12 sequences of 4: the trained features are the object alone (identical views, and
    identical across the object's elevations), the untrained ones the view alone."""
    dataset = data_file(tmp_path / "d.pt", 240, 3, frames=4)
    objects = torch.nn.functional.one_hot(SEQUENCES["sequence"] // 2, 6).float()
    views = torch.nn.functional.one_hot(SEQUENCES["frame"], 6).float()
    return run(tmp_path / "out", "r", dataset, {"layer1": [views, objects]}, list("abc"), **SEQUENCES)


def test_analyze_measures_view_invariance_of_exports_of_sequences(tmp_path, capsys):
    export = sequence_run(tmp_path)
    assert main(["analyze", str(export), "--csv", str(tmp_path / "plain.csv")]) == 0
    assert main(["analyze", str(export), "--objects", "(.*)_elev", "--cyclic", "--csv", str(tmp_path / "obj.csv")]) == 0
    markdown = capsys.readouterr().out
    plain, by_object = ({r["representation"]: r for r in csv.DictReader((tmp_path / f).open())}
                        for f in ("plain.csv", "obj.csv"))
    assert set(plain) == {"r, untrained", "r, trained", "pixels", "random projection, 6 units", "PCA, 6 components"}
    assert all(r["view_identification_1"] and r["unit_invariance"] for r in plain.values())  # baselines too
    # Gaps that fit: 1-3 frames apart on open sequences of 4 (3 is no default), 1-2 on rings of 4.
    assert "view_identification_2" in plain["pixels"] and "view_identification_4" not in plain["pixels"]
    trained, untrained = plain["r, trained"], plain["r, untrained"]
    # The object's other elevation is an identical view of another sequence: a tie, counted wrong, until
    # --objects leaves it out of the gallery.
    assert float(trained["view_identification_1"]) == 0.0
    assert float(by_object["r, trained"]["view_identification_1"]) == 1.0
    assert float(by_object["r, trained"]["view_identification_2"]) == 1.0
    assert float(untrained["view_identification_1"]) == 0.0 < float(untrained["view_chance_1"])
    assert float(trained["unit_selectivity"]) == 1.0 and float(trained["unit_invariance"]) == 1.0
    assert float(untrained["unit_invariance"]) == 0.0
    # chance of a random candidate among 3 own views and 44 others (40 with --objects) at G = 1
    assert float(trained["view_chance_1"]) == pytest.approx(3 / 47)
    assert float(by_object["r, trained"]["view_chance_1"]) == pytest.approx(3 / 43)
    assert "identification ≥1 frames" in markdown and "Chance: 0.070 at G = 1" in markdown


def test_invariance_flags_need_sequences_and_objects_that_match(tmp_path, capsys):
    dataset = data_file(tmp_path / "d.pt", 200, 3)
    export = run(tmp_path / "plain", "r", dataset, {"layer1": [noise(40, 8, 1), noise(40, 8, 2)]}, list("abc"))
    assert main(["analyze", str(export), "--cyclic"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no export here has sequences (no 'sequence' and 'frame' keys)" in err
    assert main(["analyze", str(sequence_run(tmp_path)), "--objects", "(x)_elev"]) == 2
    assert "--objects '(x)_elev' does not match the sequence name 'o0_elev0'" in capsys.readouterr().err
    assert main(["analyze", str(sequence_run(tmp_path)), "--objects", "elev"]) == 2
    assert "has no group" in capsys.readouterr().err


def test_the_report_draws_similarity_against_frame_distance(tmp_path):
    sequence_run(tmp_path)
    assert main(["report", str(tmp_path / "out"), "--cyclic"]) == 0
    markdown = (tmp_path / "out" / "report" / "report.md").read_text()
    assert "](similarity_by_distance_1.png)" in markdown and "### View invariance" in markdown
    assert (tmp_path / "out" / "report" / "similarity_by_distance_1.png").read_bytes().startswith(b"\x89PNG")
