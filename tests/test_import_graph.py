"""Layers point one way: the commands (cli, reproduce, demo, swap) use training and analysis; training never
imports analysis, and analysis never imports training."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "lpl"
COMMANDS = {"cli", "reproduce", "demo", "swap", "__init__"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return found | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_training_and_the_core_never_import_analysis_and_analysis_never_imports_training():
    below_analysis = [p for p in PACKAGE.rglob("*.py") if "analysis" not in p.parts and p.stem not in COMMANDS]
    assert len(below_analysis) > 20
    for path in below_analysis:
        assert not {m for m in imports(path) if m.startswith("lpl.analysis")}, path
    for path in (PACKAGE / "analysis").glob("*.py"):
        assert not {m for m in imports(path) if m.startswith("lpl.train")}, path
