"""The server extension cannot be tricked out of its root, nor made to answer 500.

Each test is a reproduction against a real jupyter_server (as test_server.py starts one):
a symlinked pipeline folder leading out of the root, hidden paths the contents API hides,
and hostile inputs (NUL, very long paths, deeply nested or non-object bodies, damaged
``run.json``) on every route. Every answer must be JSON 4xx with one line that says what
is wrong; nothing may be written outside the root.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import write_notebook
from test_server import small_notebook
from tornado.httpclient import HTTPClientError
from wire import assert_wire

RUN_ID = "20260101-000000-abcdef"
#: A finished step as run.json holds it (run.results.StepResult.to_dict).
STEP = {"status": "done", "started": 1.0, "ended": 2.0, "duration": 1.0, "notebook": None,
        "error": None, "cell": None, "cell_index": None, "cell_total": None,
        "cached_from": None}


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    """Load our extension, as the jupyter-config file does for an installed package."""
    return {"ServerApp": {"jpserver_extensions": {"jupyter_mlops": True}}}


async def call(jp_fetch: Any, method: str, *parts: str, body: Any = None,
               params: dict[str, str] | None = None) -> tuple[int, Any]:
    """One request (a body given as str or bytes is sent as it is); the status and the
    answer, as JSON where it is JSON."""
    extra: dict[str, Any] = {}
    if body is not None:
        extra["body"] = body if isinstance(body, (str, bytes)) else json.dumps(body)
    elif method == "POST":
        extra["body"] = "{}"
    try:
        response = await jp_fetch("mlops", *parts, method=method, params=params, **extra)
    except HTTPClientError as err:
        assert err.response is not None
        code, raw = err.code, err.response.body
    else:
        code, raw = response.code, response.body
    try:
        return code, json.loads(raw or b"null")
    except ValueError:
        return code, raw[:300]


def assert_refused(code: int, data: Any, *words: str, context: Any = None) -> None:
    """A JSON 4xx whose error is one line holding ``words``."""
    assert 400 <= code < 500, (context, code, data)
    assert isinstance(data, dict) and isinstance(data.get("error"), str), (context, data)
    assert data["error"] and "\n" not in data["error"], (context, data)
    assert "Traceback" not in data["error"] and "internal error" not in data["error"], data
    assert len(data["error"]) < 400, (context, data)  # a 5,000-character path is not echoed
    for word in words:
        assert word in data["error"], (context, word, data)
    assert_wire(data, "IErrorReply")


def listing(folder: Path) -> list[str]:
    """Every path under ``folder``, to show nothing was added or removed."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


async def test_export_refuses_a_pipeline_folder_linked_outside_the_root(
        jp_fetch: Any, jp_root_dir: Path) -> None:
    outside = jp_root_dir.parent / "outside"
    (outside / "kept").mkdir(parents=True)
    (outside / "kept" / "mine.txt").write_text("the user's own file")
    (outside / "empty").mkdir()  # what the export would fill
    before = listing(outside)
    small_notebook(jp_root_dir)
    work = jp_root_dir / "work"
    # 1. the pipeline folder itself is a link out of the root (to a folder, or dangling)
    for target in (outside / "empty", outside, outside / "not-yet"):
        os.symlink(target, work / "small_pipeline")
        for endpoint in ("export", "analyze"):
            code, data = await call(jp_fetch, "POST", endpoint, body={"path": "work/small.ipynb"})
            assert_refused(code, data, "outside the server's root", context=(endpoint, target))
            assert code == 403
        assert listing(outside) == before
        (work / "small_pipeline").unlink()
    # 2. a folder inside it that the export replaces (steps/) is such a link: the user's
    # files there must not be moved into the root
    (work / "small_pipeline").mkdir()
    os.symlink(outside / "kept", work / "small_pipeline" / "steps")
    code, data = await call(jp_fetch, "POST", "export", body={"path": "work/small.ipynb"})
    assert_refused(code, data, "outside the server's root", "steps")
    assert listing(outside) == before
    assert not (work / "small_pipeline" / "pipeline.yaml").exists()
    # 3. a link that stays inside the root is followed as before
    (work / "small_pipeline" / "steps").unlink()
    (work / "small_pipeline").rmdir()
    (jp_root_dir / "elsewhere").mkdir()
    os.symlink(jp_root_dir / "elsewhere", work / "small_pipeline")
    code, data = await call(jp_fetch, "POST", "export", body={"path": "work/small.ipynb"})
    assert code == 200, data
    assert (jp_root_dir / "elsewhere" / "pipeline.yaml").is_file()
    # 4. a run must not write its records or logs through runs/ or .mlops/ linked outside
    for name in ("runs", ".mlops"):
        os.symlink(outside, jp_root_dir / "elsewhere" / name)
        code, data = await call(jp_fetch, "POST", "runs", body={"pipeline": "work/small_pipeline"})
        assert_refused(code, data, "outside the server's root", name, context=name)
        code, data = await call(jp_fetch, "GET", "runs", params={"pipeline": "elsewhere"})
        assert_refused(code, data, "outside the server's root", context=name)
        (jp_root_dir / "elsewhere" / name).unlink()
        assert listing(outside) == before


async def test_hidden_paths_follow_allow_hidden(jp_fetch: Any, jp_root_dir: Path,
                                               jp_serverapp: Any) -> None:
    cells = (("x = 1", ["mlops:step=a"]),)
    write_notebook(jp_root_dir / ".hidden" / "h.ipynb", *cells)
    write_notebook(jp_root_dir / ".dot.ipynb", *cells)
    os.symlink(jp_root_dir / ".hidden", jp_root_dir / "visible")
    assert jp_serverapp.contents_manager.allow_hidden is False
    for path in (".hidden/h.ipynb", ".dot.ipynb", "visible/h.ipynb", "./.hidden/../.dot.ipynb"):
        for endpoint in ("analyze", "export"):
            code, data = await call(jp_fetch, "POST", endpoint, body={"path": path})
            assert_refused(code, data, "hidden", "allow_hidden", context=(endpoint, path))
            assert code == 404
    code, data = await call(jp_fetch, "GET", "runs", params={"pipeline": ".hidden/h_pipeline"})
    assert_refused(code, data, "hidden")
    assert not (jp_root_dir / ".hidden" / "h_pipeline").exists()
    assert not (jp_root_dir / ".dot_pipeline").exists()
    # the server's own setting lets them through
    jp_serverapp.contents_manager.allow_hidden = True
    code, data = await call(jp_fetch, "POST", "analyze", body={"path": ".hidden/h.ipynb"})
    assert code == 200, data
    code, data = await call(jp_fetch, "POST", "export", body={"path": ".hidden/h.ipynb"})
    assert code == 200, data
    code, data = await call(jp_fetch, "GET", "runs", params={"pipeline": ".hidden/h_pipeline"})
    assert code == 200 and data["runs"] == [], data


async def test_hostile_paths_and_bodies_are_json_4xx_on_every_route(
        jp_fetch: Any, jp_root_dir: Path) -> None:
    small_notebook(jp_root_dir)
    assert (await call(jp_fetch, "POST", "export", body={"path": "work/small.ipynb"}))[0] == 200
    os.symlink("loop.ipynb", jp_root_dir / "loop.ipynb")
    long_path = "a" * 4994 + ".ipynb"  # 5,000 characters
    deep_path = "d/" * 2497 + "x.ipynb"
    bad_paths = {"\x00": "nul/x\x00y.ipynb", "long": long_path, "deep": deep_path,
                 "surrogate": "bad\ud800.ipynb", "number": 5, "list": ["x.ipynb"],
                 "loop": "loop.ipynb"}
    deep_body = "[" * 100_000 + "]" * 100_000
    bad_bodies = [deep_body, '{"path": ' + deep_body + "}",
                  '{"path": "work/small.ipynb", "x": ' + "[" * 500 + "]" * 500 + "}",
                  "[1]", '"x"', "null", "5", "true", "{not json", b"\xff\xfe{}"]
    for endpoint, field in (("analyze", "path"), ("export", "path"), ("runs", "pipeline")):
        for name, path in bad_paths.items():
            code, data = await call(jp_fetch, "POST", endpoint,
                                    body=json.dumps({field: path}))
            assert_refused(code, data, context=(endpoint, name))
        for body in bad_bodies:
            code, data = await call(jp_fetch, "POST", endpoint, body=body)
            assert_refused(code, data, context=(endpoint, body[:20]))
            assert "nested" in data["error"] or len(body) < 1000, data
    # values nested deeply inside an otherwise good request
    nested: Any = 1
    for _ in range(900):
        nested = [nested]
    code, data = await call(jp_fetch, "POST", "runs", body={
        "pipeline": "work/small_pipeline", "parameters": {"scale": nested}})
    assert_refused(code, data, "nested")
    for name, path in bad_paths.items():
        if not isinstance(path, str) or name == "surrogate":  # not in a URL
            continue
        for method, parts in (("GET", ("runs",)), ("GET", ("runs", RUN_ID)),
                              ("DELETE", ("runs", RUN_ID))):
            code, data = await call(jp_fetch, method, *parts, params={"pipeline": path})
            assert_refused(code, data, context=(method, parts, name))
    # hostile run ids in the URL
    for run_id in ("a\x00b", "x" * 5000, "..", "a\nb", "-x"):
        for method in ("GET", "DELETE"):
            code, data = await call(jp_fetch, method, "runs", run_id,
                                    params={"pipeline": "work/small_pipeline"})
            assert_refused(code, data, context=(method, run_id[:20]))


async def exported_with_a_run(jp_fetch: Any, root: Path) -> tuple[Path, Path, Any]:
    """The small notebook exported through the server, and run RUN_ID recorded in its store
    (its folder made, no run.json yet): (pipeline, run folder, the open store)."""
    from jupyter_mlops.run.store import RunStore, default_store

    small_notebook(root)
    assert (await call(jp_fetch, "POST", "export", body={"path": "work/small.ipynb"}))[0] == 200
    pipeline = root / "work" / "small_pipeline"
    folder = pipeline / "runs" / RUN_ID
    folder.mkdir(parents=True)
    store = RunStore(default_store(pipeline))
    store.start_run(RUN_ID, "small", "0" * 64, folder, {}, {}, "test", ["make", "total"])
    return pipeline, folder, store


async def test_a_damaged_run_record_is_json_4xx(jp_fetch: Any, jp_root_dir: Path) -> None:
    from jupyter_mlops.run.store import default_store

    pipeline, folder, store = await exported_with_a_run(jp_fetch, jp_root_dir)
    try:
        store.start_run("20260101-000000-outside", "small", "0" * 64,
                        jp_root_dir.parent, {}, {}, "test", ["make"])
    finally:
        store.close()
    (jp_root_dir.parent / "run.json").write_text(json.dumps(
        {"run_id": "x", "status": "succeeded", "steps": [], "secret": "outside"}))
    damaged = ["{not json", "", "[1, 2]", '"running"', '{"steps": []}',
               '{"status": "running", "steps": "abc"}', '{"status": "running", "steps": [1]}',
               '{"status": 5, "steps": []}',
               '{"status": "done", "steps": [{"name": "make", "status": "done", "notebook": 7}]}',
               '{"status": "done", "steps": [{"name": "make", "status": "done", '
               '"notebook": "a\\u0000b"}]}',
               '{"status": "done", "steps": [{"name": ["make"], "status": "done"}]}']
    for text in damaged:
        (folder / "run.json").write_text(text)
        code, data = await call(jp_fetch, "GET", "runs", RUN_ID,
                                params={"pipeline": "work/small_pipeline"})
        if '"a\\u0000b"' in text:  # a notebook path that cannot be shown is left out
            assert code == 200 and data["steps"][0]["notebook_path"] == "", data
            continue
        assert_refused(code, data, "run.json", context=text)
        # the history still lists the run, from the store
        code, data = await call(jp_fetch, "GET", "runs", params={"pipeline": "work/small_pipeline"})
        assert code == 200 and RUN_ID in [r["run_id"] for r in data["runs"]], data
    # a run the store records outside the root is not read from there
    code, data = await call(jp_fetch, "GET", "runs", "20260101-000000-outside",
                            params={"pipeline": "work/small_pipeline"})
    assert_refused(code, data, "outside the server's root")
    assert "secret" not in json.dumps(data)
    # a damaged store, too
    default_store(pipeline).write_bytes(b"not a database" * 100)
    for parts in (("runs",), ("runs", RUN_ID)):
        code, data = await call(jp_fetch, "GET", *parts, params={"pipeline": "work/small_pipeline"})
        assert_refused(code, data, context=parts)


async def test_a_steps_drift_is_a_warning_in_the_run_status(jp_fetch: Any,
                                                            jp_root_dir: Path) -> None:
    """What the run summary says of a step's checks reaches the sidebar: a drift check that
    passed under the dataset share still names its drifted columns."""
    _, folder, store = await exported_with_a_run(jp_fetch, jp_root_dir)
    store.close()
    checks = [{"check": "schema", "variable": "df", "ok": True, "problems": []},
              {"check": "drift", "variable": "df", "ok": True, "drifted": ["a"],
               "columns": {"a": {}, "b": {}, "c": {}}}]
    (folder / "run.json").write_text(json.dumps({
        "run_id": RUN_ID, "status": "succeeded", "error": None,
        "steps": [{**STEP, "name": "make", "checks": checks},
                  {**STEP, "name": "total", "checks": []}]}))
    code, data = await call(jp_fetch, "GET", "runs", RUN_ID,
                            params={"pipeline": "work/small_pipeline"})
    assert code == 200, data
    assert_wire(data, "IRunStatus")
    assert data["steps"][0]["warnings"] == [
        "warning: `df` drifted in 1 of 3 columns (a), under the share that counts as "
        "dataset drift"]
    assert data["steps"][1]["warnings"] == []


@pytest.mark.parametrize("text", [
    '{"version": 1, "data": [1]}', '{"version": 1, "metrics": {"m": 5}}',
    '{"version": 1, "data": {"d": {"profile": [1]}}, "params": {"a": [1]}}', "{not json",
    '{"version": 1, "models": "x"}', '{"version": 1, "models": {"m": "x"}}'])
async def test_a_damaged_capture_record_is_json_4xx(jp_fetch: Any, jp_root_dir: Path,
                                                    text: str) -> None:
    small_notebook(jp_root_dir)
    (jp_root_dir / "work" / "small.mlops.json").write_text(text)
    code, data = await call(jp_fetch, "POST", "analyze", body={"path": "work/small.ipynb"})
    if code == 200:  # the parts that are well-formed are shown, the rest left out
        assert_wire(data["captured"], "ICaptured")
    else:
        assert_refused(code, data, "small.mlops.json", context=text)


def test_the_guarded_names_are_those_export_and_runs_write() -> None:
    from jupyter_mlops.lab import base as extension
    from jupyter_mlops.pipeline.contract import CONTRACT_DIR
    from jupyter_mlops.pipeline.gentests import TESTS_DIR
    from jupyter_mlops.pipeline.spec import SPEC_FILE
    from jupyter_mlops.run.store import STORE_DIR

    assert {SPEC_FILE, "steps", CONTRACT_DIR, TESTS_DIR} <= set(extension._EXPORTED)
    assert {SPEC_FILE, "runs", STORE_DIR} <= set(extension._RUN_WRITES)


async def test_a_run_in_a_kernel_that_is_not_installed_is_a_400_naming_the_field(
        jp_fetch: Any, jp_root_dir: Path) -> None:
    small_notebook(jp_root_dir)
    assert (await call(jp_fetch, "POST", "export", body={"path": "work/small.ipynb"}))[0] == 200
    for kernel, words in (("nope", "no kernel `nope` is installed here"),
                          ("a b", "is not a kernel name")):
        code, data = await call(jp_fetch, "POST", "runs", body={
            "pipeline": "work/small_pipeline", "kernel": kernel})
        assert_refused(code, data, words)
        assert code == 400 and data["field"] == "kernel", data
    assert not (jp_root_dir / "work" / "small_pipeline" / "runs").exists()
