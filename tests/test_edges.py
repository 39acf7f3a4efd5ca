"""Rough edges a fuzz pass found: each must end in one clear error line (``lpl <command>: error: ...``)
and an exit code, never a traceback, and leave no half-written file behind."""

from __future__ import annotations

import errno
import functools
import io
import json
import os
import re
import signal
from pathlib import Path

import pytest
import torch
from PIL import Image

import lpl.analysis.commands
import lpl.cli
import lpl.demo
from lpl.cli import main
from lpl.train import run as loop
from lpl.train.byol import BYOLConfig
from lpl.train.dense import DenseConfig, DenseLPLStack

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
DENSE = ["--dataset", "shapes", "--dims", "1024", "16", "--batch-size", "16", "--num-export", "48", "--no-progress"]
DEMO = ["--lpl-steps", "4", "--byol-steps", "2", "--num-export", "64", "--no-progress"]


# 16 sequences of shapes a split instead of 2000 and 1000 (conftest): the runs here take a fraction of a second.
pytestmark = pytest.mark.usefixtures("small_shapes")


@pytest.fixture
def quick_demo(monkeypatch):
    """The demo's BYOL on batches of 4, its LPL runs on batches of 16 (the small shapes have 128 training images)
    and its analysis and report (seconds of probes and figures) replaced by one small file."""
    monkeypatch.setattr(lpl.demo, "BYOLConfig", functools.partial(BYOLConfig, batch_size=4))
    monkeypatch.setattr(lpl.demo, "DenseConfig", functools.partial(DenseConfig, batch_size=16))

    def write_report(output_dir):
        path = Path(output_dir) / "report" / "report.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("report\n")
        return path

    monkeypatch.setattr(lpl.demo, "write_report", write_report)


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``lpl <argv>`` (a bad flag exits from argparse)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str, command: str) -> str:
    """The one line of ``err``, which must be an ``lpl <command>: error:`` line and no traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"lpl {command}: error:"), err
    return lines[0]


def files(folder: Path) -> dict[Path, tuple[int, bytes]]:
    """Every file under ``folder`` with its modification time and contents."""
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------- flags
@pytest.mark.parametrize("argv, code, fragment", [
    # 1. --output-dir that is a file (or below one)
    (["train", *DENSE, "--output-dir", "{tmp}/file"], 2, "{tmp}/file is a file, not a folder"),
    (["train", *DENSE, "--output-dir", "{tmp}/file/sub"], 2, "{tmp}/file is a file, not a folder"),
    (["train-deep", "--dataset", "shapes", "--channels", "4", "8", "--pool-after", "1", "--no-progress",
      "--output-dir", "{tmp}/file"], 2, "{tmp}/file is a file, not a folder"),
    (["demo", *DEMO, "--output-dir", "{tmp}/file"], 2, "{tmp}/file is a file, not a folder"),
    # 3. devices that are not there
    (["train", "--device", "tpu"], 2, "--device 'tpu' is not a torch device"),
    (["train-deep", "--device", "tpu"], 2, "--device 'tpu' is not a torch device"),
    (["train", "--device", "mps"], 2, "only cpu and cuda are supported"),
    pytest.param(["train", "--device", "cuda:7"], 2, "CUDA is not available", marks=NO_CUDA),
    pytest.param(["train-byol", "--device", "cuda:7"], 2, "CUDA is not available", marks=NO_CUDA),
    # 9. values that are not finite or negative
    (["train", "--lr-hebb", "nan"], 2, "--lr-hebb must be a finite number"),
    (["train", "--lr-hebb", "inf"], 2, "--lr-hebb must be a finite number"),
    (["train", "--max-shift", "-3"], 2, "--max-shift must be a non-negative integer, got -3"),
    (["demo", "--lpl-steps", "0"], 2, "--lpl-steps must be a positive integer, got 0"),
    (["demo", "--resume", "--overwrite"], 2, "exclude each other"),
    # 10. a bad flag: one line, not the usage
    (["train", "--no-such-flag"], 2, "unrecognized arguments: --no-such-flag"),
    (["demo", "--device", "cpu"], 2, "unrecognized arguments: --device cpu"),
])
def test_bad_command_lines_exit_with_one_error_line(argv, code, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("not a folder\n")
    before = files(tmp_path)
    status, _, err = run([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert status == code
    assert fragment.replace("{tmp}", str(tmp_path)) in error_line(err, argv[0])
    assert files(tmp_path) == before  # nothing written


def test_unknown_command_has_no_empty_command_name(capsys):
    status, _, err = run(["nonsense"], capsys)
    assert status == 2 and err.startswith("lpl: error: unknown command 'nonsense'")


# ---------------------------------------------------------------------------------------- 2. read-only
def read_only(monkeypatch, folder: Path) -> None:
    """Make writes under ``folder`` fail as on a read-only file system.

    Mode 0o555 alone stops no one running as root (as tests here often do), so then every way our code
    creates files and folders is made to fail with EROFS under ``folder``.
    """
    folder.chmod(0o555)
    if not os.access(folder, os.W_OK):
        return

    def failing(real, writes=lambda *args, **kwargs: True):
        def call(path, *args, **kwargs):
            inside = isinstance(path, str | os.PathLike) and Path(path).absolute().is_relative_to(folder)
            if inside and writes(*args, **kwargs):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real(path, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "mkdir", failing(os.mkdir))
    monkeypatch.setattr(os, "open", failing(os.open, lambda flags, *_, **__: flags & (os.O_WRONLY | os.O_RDWR)))
    monkeypatch.setattr(io, "open", failing(io.open, lambda mode="r", *_, **__: any(c in mode for c in "wax+")))


@pytest.mark.parametrize("argv", [["train", *DENSE, "--steps", "2"], ["demo", *DEMO]])
def test_read_only_output_dir_is_one_line_and_writes_nothing(argv, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "read-only"
    folder.mkdir()
    try:
        read_only(monkeypatch, folder)
        status, _, err = run([*argv, "--output-dir", str(folder / "out")], capsys)
    finally:
        folder.chmod(0o755)
    assert status == 2
    line = error_line(err, argv[0])
    assert f"--output-dir {folder / 'out'} is not writable" in line and "choose another --output-dir" in line
    assert not [p for p in folder.rglob("*") if p.is_file()]


def test_disk_full_mid_run_is_one_line_and_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    status, _, err = run(["train", *DENSE, "--steps", "2", "--output-dir", str(tmp_path / "out")], capsys)
    assert status == 2
    line = error_line(err, "train")
    assert f"cannot write {tmp_path / 'out'}" in line and "(No space left on device)" in line
    assert not list((tmp_path / "out").rglob("*.tmp")) and not list((tmp_path / "out").rglob("*.json"))


# ---------------------------------------------------------------------------------------- 4. memory
@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                 "tried to allocate 4611686018427387904 bytes. Error code 12 (Cannot allocate memory)"),
], ids=["device", "cpu"])
def test_batch_too_large_for_memory_suggests_a_smaller_batch(error, tmp_path, monkeypatch, capsys):
    def allocate(*args, **kwargs):
        raise error

    monkeypatch.setattr(DenseLPLStack, "plasticity_step", allocate)
    status, _, err = run(["train", *DENSE, "--steps", "2", "--output-dir", str(tmp_path / "out")], capsys)
    assert status == 2
    assert "out of memory; lower --batch-size or --num-export" in error_line(err, "train")


@pytest.mark.parametrize("stop, status, says", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 6.00 GiB"), 2,
     "lpl train-deep: error: training ended and is saved; its readouts ran out of memory on cpu"),
    (KeyboardInterrupt(), 130, "interrupted while fitting the readouts; training ended and is saved"),
], ids=["out of memory", "ctrl-c"])
def test_readouts_stopped_after_training_say_the_run_is_saved_and_how_to_fit_them(stop, status, says, tmp_path,
                                                                                  monkeypatch, capsys):
    def stopped(*args, **kwargs):
        raise stop

    monkeypatch.setattr(lpl.cli, "write_readouts", stopped)
    out = tmp_path / "out"
    code, _, err = run(["train-deep", "--dataset", "shapes", *DEEP, "--batch-size", "8", "--steps", "2",
                        "--output-dir", str(out)], capsys)
    assert code == status and says in err and (out / "logs" / "deep_lpl_run.json").is_file()
    again = re.search(r"'(lpl readout [^']*)'", err)  # the command it suggests fits the readouts the run would have
    assert again and again.group(1) == f"lpl readout {out} --name deep_lpl --grid 4 --epochs 20 --device cpu"


def test_other_runtime_errors_are_not_mistaken_for_memory(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(DenseLPLStack, "plasticity_step", broken)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        main(["train", *DENSE, "--steps", "2", "--output-dir", str(tmp_path / "out")])


# ---------------------------------------------------------------------------------------- 5, 7. Ctrl-C
def test_ctrl_c_in_analyze_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lpl.analysis.commands, "evaluate_runs", interrupted)
    exports = tmp_path / "lpl_activations_after.pt"
    exports.write_bytes(b"")
    status, out, err = run(["analyze", str(exports), "--csv", str(tmp_path / "table.csv")], capsys)
    assert status == loop.EXIT_INTERRUPTED
    line = error_line(err, "analyze")
    assert "interrupted" in line and "--resume" not in line  # analyze has nothing to resume
    assert not (tmp_path / "table.csv").exists() and not out


def test_ctrl_c_in_the_demo_says_resume_and_resume_finishes(tmp_path, monkeypatch, capsys, quick_demo):
    out = tmp_path / "demo"
    argv = ["demo", *DEMO, "--output-dir", str(out)]
    # Ctrl-C during the second run: it checkpoints and stops; the third never starts.
    write_log, sent = loop.atomic_write_jsonl, []

    def ctrl_c_in_second_run(records, path):
        write_log(records, path)
        if path.name.startswith("hierarchical") and not sent:
            sent.append(os.kill(os.getpid(), signal.SIGINT))

    monkeypatch.setattr(loop, "atomic_write_jsonl", ctrl_c_in_second_run)
    status, _, err = run(argv, capsys)
    monkeypatch.setattr(loop, "atomic_write_jsonl", write_log)
    assert status == loop.EXIT_INTERRUPTED
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "continue with the same command plus --resume" in err
    assert not (out / "activations" / "hierarchical_activations_after.pt").exists()
    assert not list(out.rglob("byol*")) and not (out / "report").exists()

    # --resume: the second run continues, the third starts; then Ctrl-C in the analysis step.
    report = lpl.demo.write_report

    def ctrl_c(output_dir):
        raise KeyboardInterrupt

    monkeypatch.setattr(lpl.demo, "write_report", ctrl_c)
    status, stdout, err = run([*argv, "--resume"], capsys)
    assert status == loop.EXIT_INTERRUPTED, err
    assert "resuming 'hierarchical_lpl'" in stdout and "[4/4] analysis and report" in stdout
    assert "continue with the same command plus --resume" in error_line(err, "demo")
    assert not (out / "report").exists()
    assert all((out / "activations" / f"{stem}_after.pt").is_file()
               for stem in ("activations", "hierarchical_activations", "byol_shapes_embeddings"))

    monkeypatch.setattr(lpl.demo, "write_report", report)
    status, stdout, err = run([*argv, "--resume"], capsys)
    assert status == 0, err
    assert (out / "report" / "report.md").is_file() and f"report: {out / 'report' / 'report.md'}" in stdout


# ---------------------------------------------------------------------------------------- 6. a second demo
def test_second_demo_refuses_then_overwrites_or_resumes(tmp_path, capsys, quick_demo):
    out = tmp_path / "demo"
    argv = ["demo", *DEMO, "--output-dir", str(out)]
    assert run(argv, capsys)[0] == 0
    first = files(out)

    status, _, err = run(argv, capsys)
    assert status == 2
    line = error_line(err, "demo")
    assert "already holds results" in line and "--overwrite" in line and "--resume" in line
    assert files(out) == first  # untouched

    status, stdout, err = run([*argv, "--resume"], capsys)
    assert status == 0, err
    assert stdout.count("resuming '") == 3 and "report:" in stdout

    assert run([*argv, "--overwrite"], capsys)[0] == 0
    replaced = files(out)
    config = out / "logs" / "lpl_run.json"
    assert replaced[config][0] > first[config][0] and b'"resumed_from": null' in replaced[config][1]
    assert not set(first) - set(replaced)


# ---------------------------------------------------------------------------------------- 8. umask
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_output_files_follow_the_umask(umask, mode, tmp_path, capsys):
    previous = os.umask(umask)
    try:
        status, _, err = run(["train", *DENSE, "--steps", "2", "--checkpoint-every", "1",
                              "--output-dir", str(tmp_path / "out")], capsys)
    finally:
        os.umask(previous)
    assert status == 0, err
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert {p.suffix for p in written} >= {".json", ".jsonl", ".pt", ".ckpt"}
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {p.name: oct(mode) for p in written}


# ---------------------------------------------------------------------------------------- 11. short lines
def test_multi_layer_diagnostics_fit_in_120_columns(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, out, err = run(["train-hierarchical", "--dims", "1024", "16", "8", "--steps", "4", "--log-every", "2",
                            "--batch-size", "16", "--num-export", "48", "--no-progress", "--output-dir", "out"], capsys)
    assert status == 0, err
    assert "layer 2:" in out
    assert max(map(len, out.splitlines())) <= 120, out


# ---------------------------------------------------------------------------------------- data sets
DEEP = ["--channels", "4", "8", "--pool-after", "1", "--no-progress"]


def image(path: Path, mode: str = "L", value: int | tuple = 7) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (4, 4), value).save(path)


def misplaced_layouts(tmp: Path) -> None:
    """A photo, a folder of photos, a folder without test/, a split passed for its data set, sequence folders
    without classes, and a good layout holding one LAB image."""
    image(tmp / "photo.jpg")
    image(tmp / "photos" / "a.png")
    image(tmp / "no-test" / "train" / "cat" / "a.png")
    image(tmp / "data" / "train" / "cat" / "a.png")
    image(tmp / "data" / "test" / "cat" / "a.png")
    for split, first in (("train", 0), ("test", 10)):
        for s in range(first, first + 3):
            image(tmp / "clips" / split / f"seq_{s:03d}" / "frame_0.png")
    image(tmp / "lab" / "train" / "cat" / "a.png")
    image(tmp / "lab" / "test" / "cat" / "a.tif", "LAB", (50, 0, 0))


@pytest.mark.parametrize("command", [["train", "--dims", "16", "8"], ["train-deep", *DEEP]], ids=["dense", "deep"])
@pytest.mark.parametrize("dataset, fragment", [
    ("{tmp}/photo.jpg", "data set {tmp}/photo.jpg is a file, not a folder; pass a folder with train/<class>/ and "
                        "test/<class>/ of images, a .pt file or one of cifar10, shapes, digits"),
    ("{tmp}/photos", "image folder {tmp}/photos has no train/ or test/ folder; put images in {tmp}/photos/train/"),
    ("{tmp}/no-test", "image folder {tmp}/no-test has no test/ folder"),
    ("{tmp}/data/train", "has no train/ or test/ folder; it looks like a split itself: pass the folder above it, "
                         "{tmp}/data"),
    ("{tmp}/clips", "{tmp}/clips lacks the class level: train/ and test/ hold different folders of images "
                    "(train/seq_000, test/seq_010, ...), as sequence folders would be; put them in class folders, "
                    "<split>/<class>/<sequence>/<frame>"),
    ("{tmp}/lab", "{tmp}/lab/test/cat/a.tif is a CIELAB image"),
], ids=["file", "no-splits", "no-test", "split", "no-classes", "lab"])
def test_data_sets_in_the_wrong_shape_say_what_is_wrong(command, dataset, fragment, tmp_path, capsys):
    misplaced_layouts(tmp_path)
    before = files(tmp_path)
    status, _, err = run([*command, "--dataset", dataset.format(tmp=tmp_path), "--steps", "1",
                          "--output-dir", str(tmp_path / "out")], capsys)
    assert status == 2
    assert fragment.format(tmp=tmp_path) in error_line(err, command[0])
    assert files(tmp_path) == before  # nothing written, nothing changed


def test_a_corrupt_image_cache_is_rebuilt_with_one_warning_and_never_used(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LPL_CACHE_DIR", str(tmp_path / "cache"))
    for split in ("train", "test"):
        for k in range(8):
            image(tmp_path / "data" / split / ("ab"[k % 2]) / f"{k}.png", value=20 * k + (split == "test"))
    argv = ["train", "--dataset", str(tmp_path / "data"), "--dims", "16", "8", "--steps", "2", "--batch-size", "4",
            "--num-export", "8", "--no-progress", "--output-dir"]
    assert run([*argv, str(tmp_path / "first")], capsys)[0] == 0
    (cache,) = (tmp_path / "cache" / "image-folders").glob("*-test.pt")
    data = bytearray(cache.read_bytes())
    data[data.find(torch.load(cache, weights_only=True)["images"].numpy().tobytes()) + 3] ^= 0xFF  # one pixel
    cache.write_bytes(bytes(data))
    with pytest.warns(UserWarning) as caught:
        status, _, err = run([*argv, str(tmp_path / "second")], capsys)
    assert status == 0, err
    assert [str(w.message) for w in caught] == [
        f"the decoded-image cache {cache} was corrupt; decoding {tmp_path / 'data'} again and rebuilding it"]
    (first,) = (tmp_path / "first" / "activations").glob("*_after.pt")
    second = torch.load(tmp_path / "second" / "activations" / first.name, weights_only=True)
    first_export = torch.load(first, weights_only=True)
    assert torch.equal(second["layer1_activations"], first_export["layer1_activations"])  # the same data


def _tiny_file(tmp_path: Path, count: int, classes: int) -> str:
    path = tmp_path / "tiny.pt"
    images = torch.randint(0, 256, (count, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.save({"images": images, "labels": torch.arange(count) % classes}, path)
    return str(path)


DEEP_TINY = ["--channels", "4", "--pool-after", "1", "--eval-train", "8", "--eval-epochs", "1", "--readout-grid", "0",
             "--no-progress", "--device", "cpu"]


@pytest.mark.parametrize("command, flags", [("train", ["--dims", "64", "4"]), ("train-deep", DEEP_TINY)])
def test_a_batch_larger_than_the_training_set_is_refused(tmp_path, capsys, command, flags):
    data = _tiny_file(tmp_path, 50, 2)  # 40 training images
    code, _, err = run([command, "--dataset", data, *flags, "--batch-size", "41", "--steps", "2",
                        "--output-dir", str(tmp_path / "out")], capsys)
    assert code == 2 and "--batch-size 41 is larger than the 40 training images; use at most 40" in error_line(
        err, command)
    assert not (tmp_path / "out" / "logs").exists()


def test_too_many_exports_and_one_class_are_said_and_recorded(tmp_path, capsys):
    data = _tiny_file(tmp_path, 50, 1)  # 10 test images, one class
    out = tmp_path / "out"
    with pytest.warns(UserWarning) as warned:  # each printed as one line by the command (tests/test_cli.py)
        code, _, _ = run(["train-deep", "--dataset", data, *DEEP_TINY, "--batch-size", "8", "--steps", "2",
                          "--num-export", "100", "--output-dir", str(out)], capsys)
    assert code == 0
    messages = [str(w.message) for w in warned]
    assert any("--num-export 100: the test split has 10 images; all of them are exported" in m for m in messages)
    assert any("one class: training goes on" in m for m in messages)
    record = json.loads((out / "logs" / "deep_lpl_run.json").read_text())
    assert record["exports"]["rows"] == 10
    results = json.loads((out / "logs" / "deep_lpl_results.json").read_text())
    assert "trained" not in results and "one class" in results["note"]
