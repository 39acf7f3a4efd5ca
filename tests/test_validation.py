import pytest
import torch

from lpl.validation import LPLError, validate_inputs


@pytest.mark.parametrize("x, match", [
    (torch.ones(4, 3, dtype=torch.int64), "dtype torch.int64"),
    (torch.ones(4, 3, dtype=torch.float64), "dtype torch.float64"),
    (torch.tensor([[0.5, float("nan")]]), "NaN or Inf"),
    (torch.tensor([[0.5, float("inf")]]), "NaN or Inf"),
    (torch.tensor([[0.5, 1.5]]), r"expected \[0, 1\]"),
    (torch.tensor([[-0.1, 0.5]]), r"expected \[0, 1\]"),
    (torch.zeros(0, 3), "N > 0"),
])
def test_bad_inputs_give_clear_errors(x, match):
    with pytest.raises(LPLError, match=match):
        validate_inputs(x)


def test_wrong_feature_size():
    with pytest.raises(LPLError, match="7 features per sample, the first layer expects 3072"):
        validate_inputs(torch.rand(2, 7), expected_features=3072)


def test_good_inputs_pass():
    validate_inputs(torch.rand(5, 3, 4, 4), expected_features=48)
