"""Reading our own torch files: one clear error for each way a path can be wrong."""

import pytest
import torch

from lpl.io import load_torch
from lpl.validation import LPLError


def test_load_torch_reads_what_torch_save_wrote(tmp_path):
    torch.save({"x": torch.arange(3)}, tmp_path / "a.pt")
    assert torch.equal(load_torch(tmp_path / "a.pt")["x"], torch.arange(3))


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(LPLError, match="does not exist; check the path"):
        load_torch(tmp_path / "none.pt", "export")


def test_a_file_of_another_kind_is_named_not_called_corrupt(tmp_path):
    (tmp_path / "config.json").write_text('{"steps": 3}')
    with pytest.raises(LPLError, match=r"config.json is not a torch file; pass a .pt file") as info:
        load_torch(tmp_path / "config.json")
    assert "delete" not in str(info.value)  # a valid file passed by mistake must not be deleted


def test_a_truncated_torch_file_is_corrupt(tmp_path):
    torch.save({"x": torch.zeros(1000)}, tmp_path / "t.pt")
    data = (tmp_path / "t.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(LPLError, match="is corrupt .*delete it and rerun"):
        load_torch(tmp_path / "t.pt")
