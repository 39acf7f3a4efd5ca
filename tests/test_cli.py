import dataclasses

import pytest

from lpl.cli import COMMANDS, main
from lpl.config import build_parser
from lpl.train.dense import DenseConfig


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_config_field_is_a_flag(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    config = COMMANDS[name].config
    groups = getattr(config, "option_groups", dict)().values()  # the objectives' own settings
    for field in [*dataclasses.fields(config), *(f for group in groups for f in dataclasses.fields(group))]:
        if field.metadata.get("hidden"):  # filled from the option groups' flags
            continue
        positional = field.metadata.get("positional")
        assert (field.name if positional else "--" + field.name.replace("_", "-")) in text
    assert "--no-no-" not in text
    assert all(entry.count("(default") <= 1 for entry in text.split("\n  -"))  # said once per flag


@pytest.mark.parametrize("flags, message", [
    (["--steps", "0"], "--steps must be a positive integer, got 0"),
    (["--steps", "-3"], "--steps must be a positive integer, got -3"),
    (["--batch-size", "1"], "--batch-size must be an integer >= 2, got 1"),
    (["--dims", "1024"], "--dims needs the input size and at least one layer size (e.g. --dims 3072 128), got [1024]"),
    (["--dims", "1024", "0"], "each value of --dims must be a positive integer, got [1024, 0]"),
    (["--lr-hebb", "-1"], "--lr-hebb must be a non-negative number, got -1.0"),
    (["--steps", "ten"], "invalid int value"),
    (["--no-such-flag"], "unrecognized arguments"),
    (["--step", "3"], "unrecognized arguments: --step"),  # no abbreviations: a typo never runs by accident
    (["--reduction", "median"], "invalid choice"),
    (["--resume", "--overwrite"], "exclude each other"),
    (["--device", "cuda:7"], ""),
])
def test_bad_flags_exit_with_one_clear_error(flags, message, capsys):
    import torch

    if flags[0] == "--device" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().splitlines()[-1].startswith("lpl train: error:")


def test_unknown_command(capsys):
    assert main(["nonsense"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_defaults_are_the_missions():
    config = DenseConfig()
    assert (config.lr_hebb, config.lr_pred, config.lr_stab, config.steps, config.dims, config.log_every) == (
        1e-3, 1e-2, 5e-4, 5000, [3072, 128], 500)
    parser = build_parser(DenseConfig, "x", "y")
    assert parser.parse_args([]).dims == [3072, 128]


def test_the_command_line_starts_without_importing_the_compiler():
    """Importing dynamo costs about a second on every command; only training on CUDA needs it."""
    import subprocess
    import sys

    code = "import sys, lpl.cli; print('torch._dynamo' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_warnings_during_a_command_are_one_line(monkeypatch, capsys):
    import sys
    import warnings

    from lpl.cli import Command

    def noisy(config):
        warnings.warn("the cache was corrupt; decoding again", RuntimeWarning, stacklevel=1)
        return 0

    @dataclasses.dataclass
    class NoFlags:
        pass

    monkeypatch.setitem(COMMANDS, "noisy", Command(NoFlags, noisy, "test"))
    with warnings.catch_warnings():  # Python's own printing of warnings, which pytest replaces
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
            warnings.formatwarning(message, category, filename, lineno, line))
        assert main(["noisy"]) == 0
    err = capsys.readouterr().err
    assert err == "lpl noisy: warning: the cache was corrupt; decoding again\n"
