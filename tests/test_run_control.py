"""Controlling runs (issue "A clean floor"): a run folder in use is locked, --resume compares what settings mean,
Ctrl-C says what is true, --device auto, --config of a saved run, --tensorboard. Each: the exit code, the one
error line, and nothing lost."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from test_edges import DENSE, error_line, files, run

import lpl.cli
import lpl.config
import lpl.train.deep
import lpl.train.dense
from lpl.cli import COMMANDS
from lpl.config import parse_config, resolve_device, setting_meaning
from lpl.train import run as loop
from lpl.train.deep import DeepConfig

pytestmark = pytest.mark.usefixtures("small_shapes")

STEPS = ["--steps", "4", "--log-every", "2", "--checkpoint-every", "2"]
INTERRUPTED = "lpl train: error: interrupted; files written so far are complete, nothing was half-written; "
NOTHING_SAVED = "no checkpoint of this run was saved yet, so there is nothing to resume: run the same command again"


def train(out: Path, *extra: str) -> list[str]:
    return ["train", *DENSE, *STEPS, "--output-dir", str(out), *extra]


def outputs(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the run's exports and weights, by file and key."""
    found = {}
    for path in sorted([*folder.glob("activations/*.pt"), *folder.glob("weights/*.pt")]):
        blob = torch.load(path, weights_only=True)
        found |= {f"{path.name}:{k}": v for k, v in blob.get("state_dict", blob).items() if isinstance(v, torch.Tensor)}
    return found


def assert_equal_outputs(a: Path, b: Path) -> None:
    left, right = outputs(a), outputs(b)
    assert left.keys() == right.keys() and left
    assert all(torch.equal(left[k], right[k]) for k in left), [k for k in left if not torch.equal(left[k], right[k])]


def saved_config(out: Path, name: str = "lpl") -> dict:
    return json.loads((out / "logs" / f"{name}_run.json").read_text())


# ---------------------------------------------------------------------------------------- 1. a run in use is locked
def test_a_run_in_use_is_refused_and_a_killed_run_leaves_no_lock(tmp_path, capsys):
    out = tmp_path / "out"
    assert run(train(out), capsys)[0] == 0
    ready, tell = os.pipe()
    holder = os.fork()  # a second process writing the run: it takes the lock as a run does, then waits
    if holder == 0:
        try:
            os.close(ready)
            loop.RunLock(lpl.train.dense.DenseConfig(output_dir=str(out)).layout()).acquire()
            os.write(tell, b"held")
            signal.pause()
        finally:
            os._exit(1)
    os.close(tell)
    try:
        assert os.read(ready, 4) == b"held"
        before = files(out)
        status, _, err = run(train(out, "--overwrite"), capsys)
        assert status == 2
        assert error_line(err, "train") == (
            f"lpl train: error: {out} is in use: process {holder} on {platform.node()} is writing the 'lpl' run "
            f"there; wait for it to end, or choose another --output-dir")
        assert files(out) == before  # nothing replaced
    finally:
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)
        os.close(ready)
    status, _, err = run(train(out, "--overwrite"), capsys)  # the killed holder's lock went with it
    assert status == 0, err


PROBE = "import fcntl, os, sys; fcntl.flock(os.open(sys.argv[1], os.O_RDONLY), fcntl.LOCK_SH | fcntl.LOCK_NB)"


def locked(path: Path) -> bool:
    """Whether a process holds the run lock ``path``, tried from another process as a second run would."""
    return subprocess.run([sys.executable, "-I", "-S", "-c", PROBE, str(path)], capture_output=True).returncode != 0


@pytest.mark.usefixtures("small_heads")
def test_the_lock_is_held_from_the_start_to_the_readouts(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    lock = loop.RunLock(DeepConfig(output_dir=str(out)).layout()).path
    held = []

    def probed(module, name: str):
        real = getattr(module, name)

        def call(*args, **kwargs):
            held.append((name, locked(lock)))
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, call)

    probed(lpl.train.deep, "save_export")
    probed(lpl.cli, "write_readouts")
    argv = ["train-deep", "--dataset", "shapes", "--channels", "4", "8", "--pool-after", "1", "--batch-size", "16",
            "--eval-train", "64", "--eval-epochs", "1", "--readout-grid", "0", "--num-export", "48", "--steps", "2",
            "--no-progress", "--output-dir", str(out)]
    assert run(argv, capsys)[0] == 0
    assert held == [("save_export", True), ("save_export", True), ("write_readouts", True)]
    assert not locked(lock)  # released when the command ends


def test_ranks_of_torchrun_lock_their_own_folders(tmp_path):
    config = DeepConfig(output_dir=str(tmp_path))
    first, second = loop.RunLock(config.layout(0)), loop.RunLock(config.layout(1))
    first.acquire()
    second.acquire()
    assert first.path != second.path
    first.release()
    second.release()


# ---------------------------------------------------------------------------------------- 2. resume by meaning
def test_setting_meaning_normalises_paths_not_names(tmp_path):
    (tmp_path / "data" / "c10").mkdir(parents=True)
    (tmp_path / "mine").mkdir()
    absolute = str(tmp_path / "data" / "c10")
    for value in ("data/c10", "data/c10/", "./data//c10", absolute + "/"):
        assert setting_meaning("dataset", value, str(tmp_path)) == absolute
        assert setting_meaning("data_dir", value, str(tmp_path)) == absolute
    assert setting_meaning("dataset", "mine", str(tmp_path)) == str(tmp_path / "mine")  # a folder in that cwd
    assert setting_meaning("dataset", "cifar10", str(tmp_path)) == "cifar10"  # a name
    assert setting_meaning("data_dir", "~/c10", None) == str(Path.home() / "c10")
    assert setting_meaning("name", "a/b/", str(tmp_path)) == "a/b/"  # not a path


def test_resume_compares_what_paths_mean_and_not_where_the_run_is(tmp_path, monkeypatch, capsys):
    """The data set given relative to the first working folder, resumed from another one with its absolute path,
    after the output folder has moved: the same settings."""
    first, second = tmp_path / "first", tmp_path / "second"
    (first / "data").mkdir(parents=True)
    second.mkdir()
    images = torch.rand(64, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.save({"images": images, "labels": torch.arange(64) % 4}, first / "data" / "tiny.pt")

    def argv(out: Path, dataset: str, steps: int) -> list[str]:
        flags = train(out, "--steps", str(steps))
        flags[flags.index("shapes")] = dataset
        return flags

    monkeypatch.chdir(first)
    assert run(argv(Path("whole"), "data/tiny.pt", 4), capsys)[0] == 0
    assert run(argv(Path("split"), "data/tiny.pt", 2), capsys)[0] == 0
    (first / "split").rename(second / "moved")
    monkeypatch.chdir(second)
    status, _, err = run([*argv(Path("moved"), str(first / "data" / "tiny.pt"), 4), "--resume"], capsys)
    assert status == 0, err
    assert_equal_outputs(first / "whole", second / "moved")


def test_resume_with_other_settings_names_them_and_never_suggests_deleting_the_run(tmp_path, capsys):
    out = tmp_path / "out"
    assert run(train(out), capsys)[0] == 0

    def results() -> dict:
        return {p: v for p, v in files(out).items() if p.name != ".lpl.lock"}  # the refused run took the lock

    before = results()
    status, _, err = run(train(out, "--resume", "--steps", "6", "--lr-hebb", "0.5", "--max-shift", "2"), capsys)
    assert status == 2
    assert error_line(err, "train") == (
        "lpl train: error: cannot resume 'lpl': it was started with other settings (--lr-hebb 0.001 (now 0.5), "
        "--max-shift 3 (now 2)); rerun with the original values (--resume alone takes them from the run), or start "
        "a new run in another --output-dir")
    assert results() == before
    assert not locked(out / ".lpl.lock")  # the lock it took is released after the error


# ---------------------------------------------------------------------------------------- 3. Ctrl-C
def ctrl_c(monkeypatch, name: str, when=lambda *args: True) -> None:
    """Ctrl-C in ``lpl.train.dense.<name>`` where ``when(*args)`` holds (else it runs)."""
    real = getattr(lpl.train.dense, name)

    def interrupted(*args, **kwargs):
        if when(*args):
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(lpl.train.dense, name, interrupted)


def test_ctrl_c_while_loading_data_says_to_run_again_not_to_resume(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        ctrl_c(patch, "load_splits")
        status, _, err = run(train(out), capsys)
        assert (status, error_line(err, "train")) == (loop.EXIT_INTERRUPTED, INTERRUPTED + NOTHING_SAVED)
        assert not out.exists()
        status, _, err = run(train(out, "--resume"), capsys)  # interrupted again, before finding no checkpoint
        assert error_line(err, "train") == INTERRUPTED + NOTHING_SAVED + " without --resume"
    assert run(train(out), capsys)[0] == 0  # the same command again


def test_ctrl_c_before_the_first_checkpoint_says_to_run_again_with_overwrite(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        ctrl_c(patch, "save_export", lambda path, *_: path.name.endswith("_before.pt"))
        status, _, err = run(train(out), capsys)
    assert status == loop.EXIT_INTERRUPTED
    assert error_line(err, "train") == INTERRUPTED + NOTHING_SAVED + " with --overwrite"
    assert run(train(out, "--overwrite"), capsys)[0] == 0


def test_ctrl_c_when_replacing_a_run_of_other_settings_does_not_offer_to_resume_that_one(tmp_path, monkeypatch,
                                                                                           capsys):
    out = tmp_path / "out"
    assert run(train(out, "--lr-hebb", "0.5"), capsys)[0] == 0
    ctrl_c(monkeypatch, "load_splits")
    status, _, err = run(train(out, "--overwrite"), capsys)
    assert (status, error_line(err, "train")) == (loop.EXIT_INTERRUPTED, INTERRUPTED + NOTHING_SAVED)


def test_ctrl_c_after_checkpoints_says_resume_and_resume_finishes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        ctrl_c(patch, "save_export", lambda path, *_: path.name.endswith("_after.pt"))
        status, _, err = run(train(out), capsys)
    assert (status, error_line(err, "train")) == (
        loop.EXIT_INTERRUPTED, INTERRUPTED + "continue with the same command plus --resume")
    assert not (out / "activations" / "activations_after.pt").exists()
    status, _, err = run(train(out, "--resume"), capsys)
    assert status == 0, err
    assert (out / "activations" / "activations_after.pt").is_file()



def _no_interrupt(send: Callable[[], None]) -> None:
    try:
        send()
    except KeyboardInterrupt:  # a regression must fail this test, not stop the whole session
        pytest.fail("a repeated stop request interrupted at once")


def test_a_repeated_sigterm_is_one_request_and_only_a_later_ctrl_c_stops_at_once():
    with loop.StopRequest() as stop:
        stop._handle(signal.SIGTERM, None)
        _no_interrupt(lambda: stop._handle(signal.SIGTERM, None))  # timeout's second send, to the process group
        _no_interrupt(lambda: stop._handle(signal.SIGINT, None))  # within repeat_s: the same request
        loop.StopRequest.first_at -= 10 * loop.StopRequest.repeat_s  # handled late (after a long GPU call)
        _no_interrupt(lambda: stop._handle(signal.SIGTERM, None))  # SIGTERM never escalates
        assert stop.signal == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            stop._handle(signal.SIGINT, None)  # Ctrl-C pressed again: stop without waiting


@pytest.mark.parametrize("owns_process", [False, True])
def test_sigterm_outside_the_training_loop_interrupts_the_command_once(owns_process):
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with loop.signals_interrupt(owns_process):
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGTERM)
            _no_interrupt(lambda: os.kill(os.getpid(), signal.SIGTERM))  # the same request again: ignored
        # a process that ends with the command ignores both from then on: Python's shutdown restores defaults
        assert signal.getsignal(signal.SIGTERM) == (signal.SIG_IGN if owns_process else before[signal.SIGTERM])
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)

# ---------------------------------------------------------------------------------------- 5. --device auto
def test_auto_without_cuda_is_the_cpu_bit_for_bit_and_is_said_and_saved(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    status, stdout, err = run(train(tmp_path / "auto"), capsys)
    assert status == 0, err
    assert stdout.splitlines()[0] == f"training 'lpl' on cpu; results in {tmp_path / 'auto'}"
    assert saved_config(tmp_path / "auto")["config"]["device"] == "cpu"
    assert run(train(tmp_path / "cpu", "--device", "cpu"), capsys)[0] == 0
    assert_equal_outputs(tmp_path / "auto", tmp_path / "cpu")


def test_every_command_that_trains_defaults_to_the_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cpu") == "cpu"
    for name in ("train", "train-hierarchical", "train-byol", "train-deep", "sanity", "reproduce"):
        command = COMMANDS[name]
        assert parse_config(command.config, [], f"lpl {name}", "", command.preset).device == "cuda", name


# ---------------------------------------------------------------------------------------- 6. --config, --resume
def test_config_reruns_a_saved_run_and_flags_vary_it(tmp_path, capsys):
    first = tmp_path / "first"
    assert run(train(first, "--lr-hebb", "0.002", "--name", "mine"), capsys)[0] == 0
    saved = first / "logs" / "mine_run.json"
    assert run(["train", "--config", str(saved), "--output-dir", str(tmp_path / "again")], capsys)[0] == 0
    assert_equal_outputs(first, tmp_path / "again")
    assert run(["train", "--config", str(saved), "--output-dir", str(tmp_path / "variant"), "--lr-pred", "0"],
               capsys)[0] == 0
    config = saved_config(tmp_path / "variant", "mine")["config"]
    assert (config["lr_hebb"], config["lr_pred"], config["steps"], config["dims"]) == (0.002, 0.0, 4, [1024, 16])

    # Its own folder by default: refused there, as any second run of that name is
    status, _, err = run(["train", "--config", str(saved)], capsys)
    assert status == 2 and f"{first} already holds results of an earlier 'mine' run" in error_line(err, "train")


def test_config_never_takes_resume_or_overwrite_from_the_file(tmp_path):
    saved = tmp_path / "logs" / "lpl_run.json"
    saved.parent.mkdir()
    saved.write_text(json.dumps({"config": {"resume": True, "overwrite": True, "steps": 7}}))
    config = parse_config(lpl.train.dense.DenseConfig, ["--config", str(saved)], "lpl train", "")
    assert (config.resume, config.overwrite, config.steps, config.output_dir) == (False, False, 7, str(tmp_path))


@pytest.mark.parametrize("content, message", [
    ('{"config": {"objective": "lpl", "channels": [4], "steps": 3}}',
     "holds the settings of lpl train-deep, not of this one (--channels, --objective are not its flags); pass it to "
     "that command"),
    ("not json", "is not a saved run config (a run's <output-dir>/logs/<name>_run.json); check the path"),
])
def test_config_of_another_command_or_no_config_is_refused(content, message, tmp_path, capsys):
    saved = tmp_path / "saved.json"
    saved.write_text(content)
    status, _, err = run(["train", "--config", str(saved), "--output-dir", str(tmp_path / "out")], capsys)
    assert status == 2
    assert error_line(err, "train") == f"lpl train: error: --config {saved} {message} (see lpl train --help)"
    assert not (tmp_path / "out").exists()


def test_resume_takes_the_settings_of_the_run(tmp_path, capsys):
    out = tmp_path / "out"
    assert run(train(out, "--lr-hebb", "0.002", "--steps", "2"), capsys)[0] == 0
    status, stdout, err = run(["train", "--output-dir", str(out), "--resume", "--steps", "4", "--no-progress"], capsys)
    assert status == 0, err
    assert f"resuming 'lpl' from {out / 'weights' / 'lpl_step0000002.ckpt'} at step 2 on cpu" in stdout
    assert saved_config(out)["config"]["lr_hebb"] == 0.002 and saved_config(out)["config"]["dims"] == [1024, 16]


def test_resume_finds_the_only_run_of_the_command_and_asks_which_of_several(tmp_path, capsys):
    out = tmp_path / "out"
    assert run(train(out, "--name", "first", "--steps", "2"), capsys)[0] == 0
    resume = ["train", "--output-dir", str(out), "--resume", "--steps", "4", "--no-progress"]
    assert run(resume, capsys)[0] == 0  # no run 'lpl' there: the only one, 'first'
    assert run(train(out, "--name", "second", "--steps", "2"), capsys)[0] == 0
    status, _, err = run(resume, capsys)
    assert status == 2
    assert error_line(err, "train") == (
        f"lpl train: error: --resume: {out} holds several runs of this command (first, second); name the one to "
        f"continue: --config {out / 'logs' / '<name>_run.json'} --resume (see lpl train --help)")


def test_sanity_resumes_without_no_overwrite(tmp_path, capsys):
    """lpl sanity overwrites its folder by default; --resume turns that off rather than clashing with it."""
    argv = ["sanity", "--features", "64", "--units", "8", "--batch-size", "16", "--log-every", "2", "--no-progress",
            "--output-dir", str(tmp_path)]
    assert run([*argv, "--steps", "2"], capsys)[0] == 0
    status, stdout, err = run([*argv, "--steps", "4", "--resume"], capsys)
    assert status == 0, err
    assert "resuming 'sanity'" in stdout and "OK: finite after 4 steps" in stdout


# ---------------------------------------------------------------------------------------- 7. --tensorboard
class FakeWriter:
    """``SummaryWriter``'s calls that ``TensorBoardLog`` makes, recorded; its event file is created at once, as
    ``SummaryWriter`` creates it."""

    sessions: list[FakeWriter] = []

    def __init__(self, folder: Path, purge_step: int | None):
        self.folder, self.purge_step, self.events, self.closed = folder, purge_step, [], False
        FakeWriter.sessions.append(self)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"events.out.tfevents.{len(FakeWriter.sessions)}").touch()

    def add_scalar(self, key, value, step):
        self.events.append((step, key, value))

    add_text = add_scalar

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_tensorboard_without_the_package_names_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lpl.config, "find_spec", lambda name: None)
    status, _, err = run(train(tmp_path / "out", "--tensorboard"), capsys)
    assert status == 2
    assert error_line(err, "train") == (
        "lpl train: error: --tensorboard needs the tensorboard package, which is not installed; pip install "
        "'lpl[tensorboard]', or leave it out (see lpl train --help)")
    assert not (tmp_path / "out").exists()


def test_tensorboard_gets_exactly_the_records_of_the_log_across_an_interruption(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lpl.config, "find_spec", lambda name: object())
    monkeypatch.setattr(loop, "summary_writer", FakeWriter)
    monkeypatch.setattr(FakeWriter, "sessions", [])
    out = tmp_path / "out"
    write_log, sent = loop.atomic_write_jsonl, []

    def interrupt_at_second_log(records, path):
        write_log(records, path)
        if len(records) == 2 and not sent:  # after step 4's record; the checkpoint of step 4 follows
            sent.append(os.kill(os.getpid(), signal.SIGINT))

    monkeypatch.setattr(loop, "atomic_write_jsonl", interrupt_at_second_log)
    argv = train(out, "--tensorboard", "--steps", "8", "--checkpoint-every", "4")
    assert run(argv, capsys)[0] == loop.EXIT_INTERRUPTED
    monkeypatch.setattr(loop, "atomic_write_jsonl", write_log)
    assert run([*argv, "--resume"], capsys)[0] == 0

    first, second = FakeWriter.sessions
    assert first.folder == second.folder == out / "tensorboard" / "lpl" and first.closed and second.closed
    assert (first.purge_step, second.purge_step) == (None, 4)
    shown = [e for e in first.events if e[0] < second.purge_step] + second.events  # what TensorBoard shows
    records = [json.loads(line) for line in (out / "logs" / "lpl_log.jsonl").read_text().splitlines()]
    assert sorted(shown, key=str) == sorted(((r["step"], k, v) for r in records for k, v in r.items() if k != "step"),
                                            key=str)
    assert {e[1] for e in first.events} >= {"event", "pred", "samples_per_s"}  # the interruption too

    assert run(train(out, "--tensorboard", "--overwrite"), capsys)[0] == 0  # a new run replaces the events
    assert [p.name for p in (out / "tensorboard" / "lpl").iterdir()] == ["events.out.tfevents.3"]
