"""Never lose a run: interruption, resume, kill -9 during writes, corrupt checkpoints, NaN."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lpl.cli import main
from lpl.train import run as loop
from lpl.train.checkpoint import CheckpointFolder, load_checkpoint
from lpl.validation import LPLError

# Shapes with 16 sequences a split and BYOL/SimCLR heads of 64 units (conftest): resuming, checkpoints and NaN
# handling do not depend on the size of the data or the network.
pytestmark = pytest.mark.usefixtures("small_shapes", "small_heads")

DENSE = ["--dataset", "shapes", "--dims", "1024", "16", "--batch-size", "16"]
DEEP = ["--dataset", "shapes", "--channels", "4", "8", "--pool-after", "1", "--batch-size", "16",
        "--eval-train", "64", "--eval-epochs", "1"]
RUNS = {
    "train": (DENSE, "activations_after.pt", "lpl_weights.pt"),
    "train-hierarchical": (["--dims", "1024", "16", "8", "--batch-size", "16"],
                           "hierarchical_activations_after.pt", "hierarchical_lpl_weights.pt"),
    "train-byol": (["--dataset", "shapes", "--batch-size", "8"], "byol_shapes_embeddings_after.pt",
                   "byol_shapes_weights.pt"),
    "train-deep": (DEEP, "deep_lpl_activations_after.pt", "deep_lpl_weights.pt"),
    "train-deep --objective byol": (DEEP, "deep_byol_activations_after.pt", "deep_byol_weights.pt"),
    "train-deep --objective simclr --end-to-end": (DEEP, "deep_simclr_e2e_activations_after.pt",
                                                   "deep_simclr_e2e_weights.pt"),
}


def _args(command: str, out: Path, steps: int = 6) -> list[str]:
    extra, _, _ = RUNS[command]
    return [*command.split(), *extra, "--steps", str(steps), "--log-every", "2", "--checkpoint-every", "2",
            "--num-export", "48", "--output-dir", str(out), "--no-progress"]


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    blob = torch.load(path, weights_only=True)
    blob = blob.get("state_dict", blob)
    return {k: v for k, v in blob.items() if isinstance(v, torch.Tensor)}


def _assert_same_outputs(command: str, a: Path, b: Path) -> None:
    _, activations, weights = RUNS[command]
    for name, folder in ((activations, "activations"), (weights, "weights")):
        left, right = _tensors(a / folder / name), _tensors(b / folder / name)
        assert left.keys() == right.keys()
        for key in left:
            assert torch.equal(left[key], right[key]), f"{name}:{key} differs"


@pytest.mark.parametrize("command", list(RUNS))
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(command, tmp_path, monkeypatch, capsys):
    assert main(_args(command, tmp_path / "whole")) == 0
    write_log, sent = loop.atomic_write_jsonl, []

    def interrupt_at_first_log(records, path):
        write_log(records, path)
        if not sent:  # delivered to the loop's handler: finish the step, checkpoint, stop
            sent.append(os.kill(os.getpid(), signal.SIGINT))

    monkeypatch.setattr(loop, "atomic_write_jsonl", interrupt_at_first_log)
    assert main(_args(command, tmp_path / "split")) == loop.EXIT_INTERRUPTED
    assert "continue with the same command plus --resume" in capsys.readouterr().err
    monkeypatch.setattr(loop, "atomic_write_jsonl", write_log)
    assert not any((tmp_path / "split" / "activations").glob("*_after.pt"))
    assert main([*_args(command, tmp_path / "split"), "--resume"]) == 0
    _assert_same_outputs(command, tmp_path / "whole", tmp_path / "split")


@pytest.mark.parametrize("command", ["train", "train-deep"])
def test_a_run_stopped_at_its_time_limit_resumes_to_the_uninterrupted_result(command, tmp_path, capsys):
    assert main(_args(command, tmp_path / "whole")) == 0
    split = _args(command, tmp_path / "split")
    assert main([*split, "--stop-after-minutes", "1e-9"]) == loop.EXIT_TIME_LIMIT  # after the first step
    assert "stopped after --stop-after-minutes 1e-09 at step 1; checkpoint" in capsys.readouterr().err
    statuses = [main([*split, "--resume"]) for _ in range(5)]  # --resume keeps the limit: a job's loop
    assert statuses == [loop.EXIT_TIME_LIMIT] * 4 + [0]  # a step per session; the last one finishes
    _assert_same_outputs(command, tmp_path / "whole", tmp_path / "split")


def test_sigterm_to_a_real_process_writes_a_resumable_checkpoint_and_says_how_to_resume(tmp_path):
    """SIGTERM at an arbitrary point of a run in its own process, sent as ``timeout`` sends it: to the process
    and again to its process group. Taken as "stop at once" during a step, the second one once lost a GPU
    run's checkpoint (that timing is checked in ``test_run_control``; here the two often arrive within one
    C call and are handled once); after the command, it killed the exiting process (-15), which this checks.
    SIGINT goes to the same handler (``TrainingRun``); the in-process test above delivers it to every trainer."""
    data = tmp_path / "tiny.pt"  # not shapes: the process would spend its time generating them
    images = torch.rand(320, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.save({"images": images, "labels": torch.arange(320) % 4}, data)
    out = tmp_path / "out"

    def args(steps: int) -> list[str]:
        flags = _args("train", out, steps)
        flags[flags.index("shapes")] = str(data)
        return flags

    process = subprocess.Popen([sys.executable, "-m", "lpl.cli", *args(100_000)[:-1], "--log-every", "20"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert process.stdout.readline() == f"training 'lpl' on cpu; results in {out}\n"
    first_log = process.stdout.readline()  # the first diagnostics line: training is under way
    assert first_log.startswith("step 20/")
    process.send_signal(signal.SIGTERM)
    time.sleep(0.02)  # usually after the first one was handled
    os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == loop.EXIT_INTERRUPTED
    assert "continue with the same command plus --resume" in err
    state, path = CheckpointFolder(out / "weights", "lpl").latest()
    assert state["step"] >= 20
    assert main([*args(state["step"] + 4), "--resume"]) == 0


KILLER = textwrap.dedent("""
    import os, signal, sys, time, traceback
    import torch
    from lpl.io import atomic_torch_save, atomic_write_json
    target = sys.argv[1]
    for _ in range(3):
        ready, tell = os.pipe()
        writer = os.fork()  # this process runs no torch operation, so the writer starts as a fresh one would
        if writer == 0:
            try:
                os.close(ready)
                for i in range(100000):
                    atomic_torch_save({"value": torch.full((1_000_000,), float(i))}, target + ".pt")
                    atomic_write_json({"value": i, "pad": "x" * 100000}, target + ".json")
                    if i == 1:
                        os.write(tell, b"ready")
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(1)  # never back into this loop
        os.close(tell)
        assert os.read(ready, 5) == b"ready"  # b"" if the writer failed
        os.close(ready)
        time.sleep(0.3)
        os.kill(writer, signal.SIGKILL)  # at an arbitrary point of a write
        assert os.waitpid(writer, 0)[1] == signal.SIGKILL
        print("killed", flush=True)
        sys.stdin.readline()  # the test has read the files
""")


def test_kill_9_during_writes_leaves_old_or_new_files_never_half(tmp_path):
    """Three writers killed by SIGKILL, forked by one process (which imports torch once)."""
    target = tmp_path / "result"
    process = subprocess.Popen([sys.executable, "-c", KILLER, str(target)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(3):
            assert process.stdout.readline().strip() == "killed"
            value = torch.load(f"{target}.pt", weights_only=True)["value"]
            assert value.shape == (1_000_000,) and bool((value == value[0]).all())
            assert json.loads(Path(f"{target}.json").read_text())["value"] >= 1
            process.stdin.write("\n")
            process.stdin.flush()
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()


def test_corrupt_latest_checkpoint_is_detected_and_the_previous_one_used(tmp_path, capsys):
    assert main(_args("train", tmp_path / "whole", steps=8)) == 0
    split = tmp_path / "split"
    assert main(_args("train", split, steps=6)) == 0
    newest = CheckpointFolder(split / "weights", "lpl").paths()[-1]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    with pytest.raises(LPLError, match="checksum mismatch"):
        load_checkpoint(newest)
    capsys.readouterr()
    assert main([*_args("train", split, steps=8), "--resume"]) == 0
    # One plain line, not a warning with its source line
    assert capsys.readouterr().err == f"checkpoint {newest} is corrupt (checksum mismatch); trying the previous " \
                                      "checkpoint\n"
    _assert_same_outputs("train", tmp_path / "whole", split)


def test_truncated_checkpoint_is_rejected(tmp_path, capsys):
    assert main(_args("train", tmp_path, steps=2)) == 0
    (newest,) = CheckpointFolder(tmp_path / "weights", "lpl").paths()
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.raises(LPLError, match="truncated|corrupt"):
        load_checkpoint(newest)
    capsys.readouterr()
    assert main([*_args("train", tmp_path, steps=4), "--resume"]) == 2  # no good checkpoint left
    first, error = capsys.readouterr().err.splitlines()
    assert first == f"checkpoint {newest} is corrupt (checksum mismatch); trying the previous checkpoint"
    assert error.startswith("lpl train: error: --resume: no usable checkpoint of 'lpl'")


def test_resume_refuses_changed_settings(tmp_path, capsys):
    assert main(_args("train", tmp_path, steps=2)) == 0
    assert main([*_args("train", tmp_path, steps=4), "--resume", "--lr-hebb", "0.5"]) == 2
    assert "cannot resume" in capsys.readouterr().err


def test_nan_stops_early_keeps_finite_weights_and_outputs(tmp_path, monkeypatch, capsys):
    from lpl.objective import LPLObjective

    grad, calls = LPLObjective.grad, {"n": 0}

    def poisoned(self, views):
        calls["n"] += 1
        result = grad(self, views)
        return result * float("nan") if calls["n"] >= 4 else result

    monkeypatch.setattr(LPLObjective, "grad", poisoned)
    with pytest.warns(RuntimeWarning, match="non-finite values .* at step 4"):
        code = main(_args("train", tmp_path, steps=10))
    assert code == loop.EXIT_NONFINITE
    weights = _tensors(tmp_path / "weights" / "lpl_weights.pt")
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert torch.isfinite(torch.load(tmp_path / "activations" / "activations_after.pt")["layer1_activations"]).all()
    state, _ = CheckpointFolder(tmp_path / "weights", "lpl").latest()
    assert state["step"] == 3 and torch.equal(state["state"]["stack"]["layers.0.weight"], weights["layers.0.weight"])
    events = [json.loads(line) for line in (tmp_path / "logs" / "lpl_log.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "nonfinite"
    assert "stopped early" in capsys.readouterr().err


def test_nan_loss_in_byol_is_never_applied(tmp_path, monkeypatch):
    from lpl.small_byol import BYOL

    loss = BYOL.loss

    def poisoned(self, a, b):
        value, features = loss(self, a, b)
        return value * float("nan"), features

    monkeypatch.setattr(BYOL, "loss", poisoned)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        assert main(_args("train-byol", tmp_path, steps=4)) == loop.EXIT_NONFINITE
    weights = _tensors(tmp_path / "weights" / "byol_shapes_weights.pt")
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


def test_a_slow_disk_postpones_checkpoints_and_never_holds_up_training(tmp_path, monkeypatch):
    """A checkpoint falling due while the previous one is still being written is taken at the end of
    the first step after that write ends (not at the next multiple of --checkpoint-every); steps go
    on meanwhile, and the last state is always saved."""
    import threading
    import time
    from dataclasses import dataclass
    from types import SimpleNamespace

    from lpl.layout import RunLayout
    from lpl.train.run import Schedule, TrainingRun

    disk_free, written = threading.Event(), []
    real_save = CheckpointFolder.save

    def slow_save(folder, state, step):
        if not written:  # the first write lasts until the test frees the disk
            assert disk_free.wait(timeout=5), "the training loop waited for the disk"
        written.append(step)
        return real_save(folder, state, step)

    @dataclass
    class Config:
        keep_checkpoints: int = 10
        resume: bool = False
        overwrite: bool = False
        progress: bool = False
        tensorboard: bool = False
        device: str = "cpu"

    monkeypatch.setattr(CheckpointFolder, "save", slow_save)
    state = SimpleNamespace(step=0)
    trainer = SimpleNamespace(state_dict=lambda: {"step": state.step}, load_state_dict=lambda saved: None)
    layout = RunLayout(tmp_path, "slow", "slow_activations")
    schedule = Schedule(12, 100, checkpoint_every=3, checkpoint_minutes=0, stop_after_minutes=0)
    with TrainingRun(Config(), layout, schedule, trainer, lambda tag: None, 1) as run:
        for step in run.steps():
            state.step = step
            if step == 7:  # steps 3-7 ran while step 3's checkpoint was being written; step 6's is due
                assert written == []
                disk_free.set()
            if step >= 7:  # from here on, each step outlasts a write
                deadline = time.monotonic() + 5
                while run.writer.busy() and time.monotonic() < deadline:
                    time.sleep(0.01)
    assert written == [3, 7, 9, 12]
    assert load_checkpoint(CheckpointFolder(tmp_path / "weights", "slow").path(12))["step"] == 12
