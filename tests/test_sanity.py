from lpl.cli import main

SMALL = ["--steps", "300", "--features", "64", "--units", "16", "--log-every", "100"]


def test_sanity_check_passes_with_the_default_rule(capsys):
    assert main(["sanity", *SMALL]) == 0
    assert "OK: finite after 300 steps" in capsys.readouterr().out


def test_sanity_check_fails_when_the_layer_collapses(capsys):
    # Without the Hebbian term the predictive term alone silences every unit.
    assert main(["sanity", *SMALL, "--lr-hebb", "0", "--lr-pred", "2", "--lr-stab", "0"]) == 1
    assert "FAIL" in capsys.readouterr().out
