"""The README's Python example runs as written (on the small shapes of the test suite)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_python_api_example_runs(tmp_path, monkeypatch, small_shapes, capsys):
    section = README.read_text().split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    accuracies = re.findall(r"'(\d\.\d\d)'", printed)
    assert len(accuracies) == 2 and all(0 <= float(a) <= 1 for a in accuracies) and "LPL:" in printed
    assert (tmp_path / "outputs" / "api" / "weights" / "deep_lpl_after.safetensors").is_file()
