"""The quality gates of pyproject.toml: ruff, and the import rule of the subpackages."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "jupyter_mlops"
#: Besides the subpackages, the package's top holds only these modules.
TOP_MODULES = {"__init__", "_version", "errors", "artifacts", "remote", "runner"}


def test_ruff_is_clean() -> None:
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "jupyter_mlops", "tests",
                           "benchmarks"], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _lint_imports() -> subprocess.CompletedProcess[str]:
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert command, "import-linter is not installed: pip install -e '.[test]'"
    return subprocess.run([command, "--no-cache"], cwd=REPO, capture_output=True, text=True,
                          check=False)


def test_imports_run_down_the_layers() -> None:
    proc = _lint_imports()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    assert "0 broken" in proc.stdout and "Contracts: 2 kept" in proc.stdout, proc.stdout


def test_the_import_contract_catches_an_upward_import(tmp_path: Path) -> None:
    """The contract is not vacuous: a core module that imports a face breaks it."""
    copy = tmp_path / "repo"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(
        ".venv*", "node_modules", ".git", "labextension", "examples", "test-artifacts",
        "*.ipynb", "__pycache__"))
    spec = copy / "jupyter_mlops" / "pipeline" / "spec.py"
    spec.write_text(spec.read_text(encoding="utf-8")
                    + "\n\ndef _upward() -> None:\n    from ..cli import app  # noqa: F401\n",
                    encoding="utf-8")
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert command
    proc = subprocess.run([command, "--no-cache"], cwd=copy, capture_output=True, text=True,
                          check=False, env={"PATH": str(Path(sys.executable).parent),
                                            "PYTHONPATH": str(copy)})
    assert proc.returncode != 0, proc.stdout
    assert "jupyter_mlops.pipeline is not allowed to import jupyter_mlops.cli" in proc.stdout


def _runtime_imports() -> set[str]:
    found: set[str] = set()
    for path in (PACKAGE / "runtime").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_the_runtime_imports_nothing_of_the_authoring_side() -> None:
    assert _runtime_imports() <= {"errors"}, _runtime_imports()


def test_the_package_top_is_small() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules <= TOP_MODULES, modules - TOP_MODULES


def _functions() -> list[tuple[str, int, int]]:
    """Every function of the package: where, its length in lines, its parameters."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [*a.posonlyargs, *a.args, *a.kwonlyargs]
                count = len(names) + bool(a.vararg) + bool(a.kwarg)
                if names and names[0].arg in ("self", "cls"):
                    count -= 1
                where = f"{path.relative_to(REPO)}:{node.lineno} {node.name}"
                found.append((where, node.end_lineno - node.lineno + 1, count))
    return found


def test_no_function_is_long_or_takes_many_parameters() -> None:
    """A function over 80 lines wants splitting; over 8 parameters, an options object."""
    assert not [f for f in _functions() if f[1] > 80 or f[2] > 8]


def test_pipelines_exported_before_the_subpackages_still_import_what_they_did() -> None:
    """Step notebooks, generated tests and Airflow DAGs exported before the move import
    jupyter_mlops.artifacts, .runner and .remote: the same modules under their old names."""
    import jupyter_mlops.artifacts
    import jupyter_mlops.remote
    import jupyter_mlops.runner
    from jupyter_mlops.artifacts import load_inputs, save_outputs
    from jupyter_mlops.run import runner
    from jupyter_mlops.runner import run_pipeline
    from jupyter_mlops.runtime import artifacts, remote

    assert jupyter_mlops.artifacts is artifacts and jupyter_mlops.remote is remote
    assert jupyter_mlops.runner is runner and run_pipeline is runner.run_pipeline
    assert (load_inputs, save_outputs) == (artifacts.load_inputs, artifacts.save_outputs)


_THREAD_IMPORTED = {"papermill", "jupyter_client", "nbclient"}


def test_the_run_s_threads_import_papermill_and_jupyter_client_through_one_lock() -> None:
    """A step's thread and the kernel pool's thread importing these packages at the same
    moment can meet a half-made module (``execution/imports.py`` says why); a lazy import
    of them inside a function of ``execution/`` must go through that module's lock, unless
    the module imported the package at its top already."""
    found = []
    for path in sorted((REPO / "jupyter_mlops" / "execution").glob("*.py")):
        if path.name == "imports.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        on_top = {(n.module or "").split(".")[0] for n in tree.body
                  if isinstance(n, ast.ImportFrom)} | {
            a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import)
            for a in n.names}
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                for name in names:
                    top = name.split(".")[0]
                    if top in _THREAD_IMPORTED and top not in on_top:
                        found.append(f"{path.name}:{node.lineno} imports {name}")
    assert not found, found
