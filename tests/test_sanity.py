from lpl.cli import main

SMALL = ["--steps", "300", "--features", "64", "--units", "16", "--log-every", "100"]


def test_sanity_check_passes_with_the_default_rule(capsys, tmp_path):
    assert main(["sanity", *SMALL, "--output-dir", str(tmp_path)]) == 0
    assert "OK: finite after 300 steps" in capsys.readouterr().out


def test_sanity_check_fails_when_the_layer_collapses(capsys, tmp_path):
    # Without the Hebbian term the predictive term alone silences every unit.
    no_hebb = ["--lr-hebb", "0", "--lr-pred", "2", "--lr-stab", "0"]
    assert main(["sanity", *SMALL, "--output-dir", str(tmp_path), *no_hebb]) == 1
    assert "FAIL" in capsys.readouterr().out
