"""The shape of the package: no import cycle, small modules, and only documents that exist cited."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "fer_lightning"
MAX_LINES = 400
# Text that cites files: the code, the configs, the docs and the notebooks.
CITING = [
    *PACKAGE.rglob("*.py"),
    *(REPO / "conf").rglob("*.yaml"),
    *(REPO / "docs").rglob("*.md"),
    *(REPO / "notebooks").glob("*.ipynb"),
    *(REPO / "bench").glob("*"),
    *(REPO / "tests").glob("*.py"),
    REPO / "README.md",
    REPO / "Makefile",
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """Every project module `path` imports anywhere (type-only and function-level imports too).

    `from package import name` counts as importing `package.name` when that is a module, else
    `package`: a parent package's `__init__` runs first in any case and is not a cycle.
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = [f"{base}.{alias.name}" for alias in node.names]
            targets = [m for m in submodules if m in modules] or [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_cycles() -> list[list[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: imported_modules(path, set(paths)) for name, path in paths.items()}
    cycles, done = [], set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycles.append([*trail[trail.index(name) :], name])
            return
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    return cycles


def test_the_package_has_no_import_cycle():
    assert import_cycles() == []


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
    package = tmp_path / "fer_lightning"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from fer_lightning import b\n")
    (package / "b.py").write_text("def f():\n    from fer_lightning.a import g\n")
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    monkeypatch.setattr(f"{__name__}.PACKAGE", package)
    assert import_cycles() == [["fer_lightning.a", "fer_lightning.b", "fer_lightning.a"]]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_every_module_is_small(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_every_cited_repository_file_exists():
    cited = re.compile(
        r"(?<![\w./-])((?:fer_lightning|conf|docs|tests|bench|notebooks)/[\w./-]+\.\w+)"
    )
    missing = {
        f"{path.relative_to(REPO)}: {match}"
        for path in CITING
        if path.is_file()
        for match in cited.findall(path.read_text(errors="replace"))
        if not (REPO / match.rstrip(".")).exists() and "*" not in match
    }
    assert not missing, sorted(missing)


def test_nothing_cites_a_document_outside_the_repository():
    outside = re.compile(r"DESIGN\.md|design notes|\bissue \d+\b")
    hits = [
        f"{path.relative_to(REPO)}:{number}"
        for path in CITING
        if path.is_file() and path != Path(__file__)
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if outside.search(line)
    ]
    assert hits == []


def test_mutation_testing_runs_the_tests_of_the_mutated_packages():
    """docs/mutation-testing.md: every `tests/test_runs_*.py`, `tests/test_metrics_*.py`,
    `tests/test_module*.py` and `tests/test_inference_*.py` is in mutmut's selection, so a new
    module's tests cannot be left out of it unnoticed."""
    pyproject = (REPO / "pyproject.toml").read_text()
    block = re.search(r"pytest_add_cli_args_test_selection = \[(.*?)\]", pyproject, re.S)
    assert block, "pyproject.toml has no [tool.mutmut] test selection"
    selected = re.findall(r'"([^"]+)"', block.group(1))
    assert [test for test in selected if not (REPO / test).is_file()] == []
    for pattern in (
        "test_runs_*.py",
        "test_metrics_*.py",
        "test_module*.py",
        "test_inference_*.py",
    ):
        missing = {f"tests/{p.name}" for p in (REPO / "tests").glob(pattern)} - set(selected)
        assert not missing, f"add {sorted(missing)} to [tool.mutmut] in pyproject.toml"
