"""Broken inputs: every error a user can cause is one line on stderr, never a traceback.

The corpus in ``tests/files/broken/`` (written by its ``make_corpus.py``) and the expectations
in its ``cases.yaml`` drive the table-driven test; the tests after it need real kernels or more
than one command.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from conftest import Completed, run_cli, write_notebook

CORPUS = Path(__file__).resolve().parent / "files" / "broken"
CASES: list[dict[str, Any]] = yaml.safe_load((CORPUS / "cases.yaml").read_text(encoding="utf-8"))
_PREFIX = re.compile(r"^jupyter mlops( [a-z]+)?: ")
_ANY_CELL = re.compile(r"\bcell \d+\b")


# -- helpers ---------------------------------------------------------------------------
def _fill(value: Any, tmp: Path) -> Any:
    """``value`` with ``{corpus}`` and ``{tmp}`` replaced, in strings and lists of them."""
    if isinstance(value, list):
        return [_fill(v, tmp) for v in value]
    if isinstance(value, str):
        return value.replace("{corpus}", str(CORPUS)).replace("{tmp}", str(tmp))
    return value


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the sha256 of its bytes."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def assert_no_traceback(result: Completed) -> None:
    """No Python traceback and no internal error reached the user."""
    assert "Traceback" not in result.stderr, result.stderr
    assert not any(line.startswith('  File "') for line in result.stderr.splitlines()), \
        result.stderr
    assert "internal error" not in result.stderr, result.stderr


def _prepare(steps: list[list[str]], tmp: Path) -> None:
    for step in steps:
        if step[0] == "copy":
            source, target = Path(step[1]), Path(step[2])
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)
        else:
            done = run_cli(*step, cwd=tmp)
            assert done.returncode == 0, f"preparing {step} failed:\n{done.stderr}"


def _load_make_corpus() -> Any:
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the corpus itself -------------------------------------------------------------------
def test_enough_cases_with_unique_ids() -> None:
    ids = [case["id"] for case in CASES]
    assert len(ids) >= 35
    assert len(ids) == len(set(ids)), "case ids repeat"


def test_corpus_is_what_make_corpus_writes(tmp_path: Path) -> None:
    make_corpus = _load_make_corpus()
    assert make_corpus.check(CORPUS) == [], "run tests/files/broken/make_corpus.py"
    make_corpus.write(tmp_path)
    assert _snapshot(tmp_path) == {k: v for k, v in _snapshot(CORPUS).items()
                                   if k not in ("make_corpus.py", "cases.yaml")}


def test_every_corpus_entry_has_a_case() -> None:
    text = (CORPUS / "cases.yaml").read_text(encoding="utf-8")
    text += Path(__file__).read_text(encoding="utf-8")
    entries = {p.name for p in CORPUS.iterdir()} - {"make_corpus.py", "cases.yaml",
                                                    "__pycache__"}
    unused = sorted(name for name in entries
                    if "{corpus}/" + name not in text and f'"{name}"' not in text)
    assert unused == [], f"corpus files no case uses: {unused}"


# -- the table ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_broken_input(case: dict[str, Any], tmp_path: Path) -> None:
    _prepare(_fill(case.get("prepare") or [], tmp_path), tmp_path)
    args = _fill(case["args"], tmp_path)
    # Paths in tmp that do not exist yet must not exist after a failed command either.
    fresh = [Path(a) for a in args if a.startswith(str(tmp_path)) and not Path(a).exists()]
    absent = fresh + [Path(p) for p in _fill(case.get("absent") or [], tmp_path)]
    before = _snapshot(CORPUS)

    result = run_cli(*args, cwd=tmp_path)

    context = f"exit {result.returncode}\nstderr:\n{result.stderr}\nstdout:\n{result.stdout}"
    assert result.returncode == case["exit"], context
    assert_no_traceback(result)
    for fragment in _as_list(case.get("stderr")):
        assert fragment in result.stderr, f"{fragment!r} not in stderr\n{context}"
    for fragment in _as_list(case.get("stdout")):
        assert fragment in result.stdout, f"{fragment!r} not in stdout\n{context}"
    for fragment in _as_list(case.get("stderr_not")):
        assert fragment not in result.stderr, f"{fragment!r} in stderr\n{context}"

    lines = result.stderr.splitlines()
    expected_lines = case.get("lines", 1 if case["exit"] == 2 else None)
    if expected_lines is not None:
        assert len(lines) == expected_lines, f"expected {expected_lines} stderr lines\n{context}"
    if case["exit"] == 2:
        for line in lines:
            assert _PREFIX.match(line), f"stderr line without the prefix: {line!r}"
    notebook = case.get("notebook")
    if notebook:
        for line in lines:
            assert line.startswith("jupyter mlops:"), line
            assert notebook in line, f"{notebook} not named in {line!r}"
    if "cell" in case:
        assert re.search(rf"\bcell {case['cell']}\b", result.stderr), \
            f"cell {case['cell']} not named\n{context}"
        for line in lines:
            assert _ANY_CELL.search(line), f"no cell number in {line!r}"

    for path in absent:
        assert not path.exists(), f"the failed command left {path} behind"
    assert _snapshot(CORPUS) == before, "the command changed the corpus"


def test_repeated_tags_are_refused_or_tolerated(tmp_path: Path) -> None:
    """nbformat forbids repeated tags; either say so (cell 2) or write valid step notebooks."""
    out = tmp_path / "out"
    result = run_cli("export", str(CORPUS / "tags_repeated.ipynb"), "-o", str(out),
                     cwd=tmp_path)
    assert_no_traceback(result)
    if result.returncode == 2:
        assert result.stderr.count("\n") == 1, result.stderr
        assert "tags_repeated.ipynb" in result.stderr and "cell 2" in result.stderr
        assert not out.exists()
    else:
        assert result.returncode == 0, result.stderr
        for step in sorted((out / "steps").glob("*.ipynb")):
            nbformat.validate(nbformat.read(str(step), as_version=4))


# -- export and folders that are already there --------------------------------------------
def test_show_json_lists_problems_with_cells(tmp_path: Path) -> None:
    result = run_cli("show", "--json", str(CORPUS / "many_problems.ipynb"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert_no_traceback(result)
    problems = json.loads(result.stdout)["problems"]
    assert sorted(p["cell"] for p in problems) == [2, 4, 5]
    for problem in problems:
        assert problem["severity"] == "error"
        assert f"many_problems.ipynb, cell {problem['cell']}" in problem["message"]


def test_failed_export_leaves_the_existing_pipeline_alone(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe"
    assert run_cli("export", str(CORPUS / "good.ipynb"), "-o", str(pipe)).returncode == 0
    before = _snapshot(pipe)
    result = run_cli("export", str(CORPUS / "undefined_name.ipynb"), "-o", str(pipe),
                     cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert_no_traceback(result)
    assert "cell 3" in result.stderr and "`offset`" in result.stderr
    assert _snapshot(pipe) == before
    assert sorted(p.name for p in pipe.iterdir()) == ["README.md", "pipeline.yaml", "steps",
                                                     "tests"]


def test_refused_export_leaves_the_folder_that_is_not_a_pipeline_alone(tmp_path: Path) -> None:
    target = tmp_path / "not_a_pipeline"
    shutil.copytree(CORPUS / "not_a_pipeline", target)
    before = _snapshot(target)
    result = run_cli("export", str(CORPUS / "good.ipynb"), "-o", str(target), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert_no_traceback(result)
    assert _snapshot(target) == before
    assert [p.name for p in target.iterdir()] == ["data.csv"]


def test_export_into_existing_pipeline_keeps_runs(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe"
    assert run_cli("export", str(CORPUS / "good.ipynb"), "-o", str(pipe)).returncode == 0
    run = pipe / "runs" / "20240101-000000-abcdef"
    (run / "steps").mkdir(parents=True)
    (run / "run.json").write_text('{"status": "succeeded"}\n', encoding="utf-8")
    (run / "steps" / "01_load.ipynb").write_text("{}\n", encoding="utf-8")
    kept = _snapshot(pipe / "runs")

    result = run_cli("export", str(CORPUS / "good.ipynb"), "-o", str(pipe), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert_no_traceback(result)
    assert _snapshot(pipe / "runs") == kept
    assert (pipe / "pipeline.yaml").is_file()
    assert sorted(p.name for p in (pipe / "steps").iterdir()) == ["01_load.ipynb",
                                                                  "02_train.ipynb"]


# -- failed steps, with real kernels -------------------------------------------------------
def _export(tmp_path: Path, name: str, *cells: Any, allow_pickle: bool = False) -> Path:
    notebook = write_notebook(tmp_path / f"{name}.ipynb", *cells)
    pipe = tmp_path / f"{name}_pipeline"
    extra = ["--allow-pickle"] if allow_pickle else []
    done = run_cli("export", str(notebook), "-o", str(pipe), *extra, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return pipe


def _only_run(runs: Path) -> Path:
    found = [p for p in runs.iterdir() if p.is_dir()]
    assert len(found) == 1, found
    return found[0]


def _cell_from(nb: Any, source_cell: int) -> Any:
    return next(c for c in nb.cells
                if c.get("metadata", {}).get("mlops", {}).get("source_cell") == source_cell)


@pytest.mark.kernel
def test_failing_step_stops_the_run(tmp_path: Path) -> None:
    pipe = _export(
        tmp_path, "failing",
        "%%mlops step load\nx = 1",
        "%%mlops step check\ny = x + 1",
        'if y > 1:\n    raise ValueError("bad value")',
        "%%mlops step report\nz = y * 2",
    )
    result = run_cli("run", str(pipe), "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)

    assert result.returncode == 1, result.stderr
    assert_no_traceback(result)
    last = result.stderr.splitlines()[-1]
    assert last.startswith("jupyter mlops:"), last
    for fragment in ("`check`", "cell 3", "failing.ipynb", "ValueError: bad value"):
        assert fragment in last, f"{fragment!r} not in {last!r}"

    run = _only_run(tmp_path / "runs")
    executed = nbformat.read(str(run / "steps" / "02_check.ipynb"), as_version=4)
    assert any("papermill-error-cell-tag" in c.get("metadata", {}).get("tags", [])
               for c in executed.cells)
    failed = _cell_from(executed, 3)
    assert failed.metadata["papermill"]["status"] == "failed"
    assert [o.get("ename") for o in failed.outputs if o.output_type == "error"] == ["ValueError"]
    assert (run / "steps" / "01_load.ipynb").is_file()
    assert not (run / "steps" / "03_report.ipynb").exists()
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert record["status"] == "failed"
    assert {s["name"]: s["status"] for s in record["steps"]} == {
        "load": "done", "check": "failed", "report": "not run"}


@pytest.mark.kernel
def test_cell_timeout_interrupts_and_marks_the_cell(tmp_path: Path) -> None:
    pipe = _export(
        tmp_path, "slow",
        "import time",
        "%%mlops step load\nx = 1",
        "%%mlops step wait\ntime.sleep(30)\ny = x",
    )
    started = time.monotonic()
    result = run_cli("run", str(pipe), "--cell-timeout", "2", "--runs-dir",
                     str(tmp_path / "runs"), cwd=tmp_path, timeout=120)
    elapsed = time.monotonic() - started

    assert result.returncode == 1, result.stderr
    assert elapsed < 20, f"the run took {elapsed:.1f} s despite --cell-timeout 2"
    assert_no_traceback(result)
    last = result.stderr.splitlines()[-1]
    for fragment in ("`wait`", "cell 3", "slow.ipynb", "time limit of 2 s"):
        assert fragment in last, f"{fragment!r} not in {last!r}"

    run = _only_run(tmp_path / "runs")
    executed = nbformat.read(str(run / "steps" / "02_wait.ipynb"), as_version=4)
    cell = _cell_from(executed, 3)
    assert cell.metadata["papermill"]["status"] == "failed"
    assert any(o.output_type == "error" for o in cell.outputs)
    assert "timeout" in "".join(o.get("text", "") for o in cell.outputs)
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert {s["name"]: s["status"] for s in record["steps"]} == {"load": "done",
                                                                 "wait": "failed"}


@pytest.mark.kernel
def test_a_cell_timeout_in_fractions_of_a_second_counts_whole_seconds(tmp_path: Path) -> None:
    """papermill's client counts whole seconds: 1.5 s is a limit of 2 s, not an error in
    every step."""
    pipe = _export(tmp_path, "quick", "%%mlops step load\nx = 1",
                   "%%mlops step wait\nimport time\ntime.sleep(5)\ny = x")
    result = run_cli("run", str(pipe), "--cell-timeout", "1.5", "--runs-dir",
                     str(tmp_path / "runs"), cwd=tmp_path, timeout=120)
    assert result.returncode == 1, result.stderr
    assert_no_traceback(result)
    last = result.stderr.splitlines()[-1]
    assert "`wait`" in last and "time limit of 2 s" in last, last
    record = json.loads((_only_run(tmp_path / "runs") / "run.json").read_text(encoding="utf-8"))
    assert {s["name"]: s["status"] for s in record["steps"]} == {"load": "done",
                                                                 "wait": "failed"}


UNSUPPORTED = {
    "generator": ("make", "g", "g = (i for i in range(3))", "total = sum(g)"),
    "open_file": ("load_data", "handle", 'handle = open("data.txt")',
                  "n_lines = len(handle.readlines())"),
}


@pytest.mark.kernel
@pytest.mark.parametrize("kind", sorted(UNSUPPORTED))
def test_unsupported_output_type_names_the_variable(kind: str, tmp_path: Path) -> None:
    step, variable, make, use = UNSUPPORTED[kind]
    (tmp_path / "data.txt").write_text("one\ntwo\n", encoding="utf-8")
    pipe = _export(tmp_path, kind, f"%%mlops step {step}\n{make}", f"%%mlops step use\n{use}")
    result = run_cli("run", str(pipe), "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)

    assert result.returncode == 1, result.stderr
    assert_no_traceback(result)
    last = result.stderr.splitlines()[-1]
    for fragment in (f"step `{step}`", f"`{variable}`", "--allow-pickle"):
        assert fragment in last, f"{fragment!r} not in {last!r}"
    record = json.loads((_only_run(tmp_path / "runs") / "run.json").read_text(encoding="utf-8"))
    assert {s["name"]: s["status"] for s in record["steps"]} == {step: "failed",
                                                                 "use": "not run"}


@pytest.mark.kernel
def test_allow_pickle_is_the_way_out(tmp_path: Path) -> None:
    cells = ("%%mlops step make\nids = {1, 2, 3}", "%%mlops step use\ncount = len(ids)")
    refused = run_cli("run", str(_export(tmp_path / "a", "sets", *cells)), cwd=tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert "`ids`" in refused.stderr and "--allow-pickle" in refused.stderr

    pipe = _export(tmp_path / "b", "sets", *cells, allow_pickle=True)
    result = run_cli("run", str(pipe), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_no_traceback(result)
