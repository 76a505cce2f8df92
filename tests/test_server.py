"""The server extension's REST endpoints, against a real jupyter_server that requires a token.

Real runs: a POST to /mlops/runs starts a real child process with real kernels.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, write_notebook
from tornado.httpclient import HTTPClientError
from wire import assert_wire

from jupyter_mlops.notebook.roles import ROLES

pytestmark = pytest.mark.kernel


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    """Load our extension, as the jupyter-config file does for an installed package."""
    return {"ServerApp": {"jpserver_extensions": {"jupyter_mlops": True}}}


def small_notebook(folder: Path, sleep: float = 0) -> Path:
    """Two steps, one parameter, one metric: a run takes seconds."""
    return write_notebook(
        folder / "work" / "small.ipynb",
        ("scale = 2\nsleep = " + repr(sleep), ["mlops:params"]),
        ("import time\nvalues = [i * scale for i in range(10)]", ["mlops:step=make"]),
        ("time.sleep(sleep)\ntotal = float(sum(values))", ["mlops:step=total"]),
        ("score = total / 100", ["mlops:metrics"]),
    )


async def call(jp_fetch: Any, method: str, *parts: str, body: Any = None,
               params: dict[str, str] | None = None, **kwargs: Any) -> tuple[int, Any]:
    """One request; the status and the JSON answer, errors included."""
    extra: dict[str, Any] = {}
    if body is not None:
        extra["body"] = body if isinstance(body, str) else json.dumps(body)
    elif method == "POST":
        extra["body"] = "{}"
    try:
        response = await jp_fetch("mlops", *parts, method=method, params=params, **extra,
                                  **kwargs)
    except HTTPClientError as err:
        assert err.response is not None
        return err.code, json.loads(err.response.body or b"null")
    return response.code, json.loads(response.body)


async def wait_for_run(jp_fetch: Any, pipeline: str, run_id: str, timeout: float = 240,
                       until: tuple[str, ...] = ("succeeded", "failed", "cancelled")
                       ) -> dict[str, Any]:
    """Poll the run's status until it reaches one of ``until``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, data = await call(jp_fetch, "GET", "runs", run_id,
                                params={"pipeline": pipeline})
        assert code == 200, data
        if data["status"] in until:
            return data
        await asyncio.sleep(0.5)
    raise AssertionError(f"run {run_id} still {data['status']} after {timeout} s")


async def test_version_answers(jp_fetch: Any) -> None:
    from jupyter_mlops import __version__

    assert await call(jp_fetch, "GET", "version") == (200, {"version": __version__})


async def test_analyze_is_show_json(jp_fetch: Any, jp_root_dir: Path) -> None:
    small_notebook(jp_root_dir)
    code, data = await call(jp_fetch, "POST", "analyze", body={"path": "work/small.ipynb"})
    assert_wire(data, "IAnalysis")
    assert code == 200, data
    assert [s["name"] for s in data["pipeline"]["steps"]] == ["make", "total"]
    assert [p["name"] for p in data["pipeline"]["parameters"]] == ["scale", "sleep"]
    assert [c["role"] for c in data["cells"]] == ["params", "step", "step", "metrics"]
    assert data["notebook"] == "work/small.ipynb"
    assert data["pipeline_dir"] == "work/small_pipeline"
    assert data["exported"] is False
    assert data["captured"] == {"params": {}, "data": {}, "models": {}, "metrics": {}}
    # the same content as `jupyter mlops show --json` prints
    shown = run_cli("show", str(jp_root_dir / "work/small.ipynb"), "--json")
    assert shown.returncode == 0, shown.stderr
    keys = ("pipeline", "cells", "problems", "suggested_prepare")
    assert {k: data[k] for k in keys} == json.loads(shown.stdout)
    assert data["stale"] is None
    assert data["roles"] == list(ROLES)


async def test_analyze_offers_the_cells_that_look_like_preparation(jp_fetch: Any,
                                                                  jp_root_dir: Path) -> None:
    from conftest import EXAMPLES

    source = (EXAMPLES / "churn" / "churn.ipynb").read_text()
    (jp_root_dir / "churn.ipynb").write_text(source.replace(" --prepare", ""))
    code, data = await call(jp_fetch, "POST", "analyze", body={"path": "churn.ipynb"})
    assert code == 200 and data["suggested_prepare"] == [13, 14], data
    assert "inference" not in data["pipeline"]
    (jp_root_dir / "marked.ipynb").write_text(source)
    code, data = await call(jp_fetch, "POST", "analyze", body={"path": "marked.ipynb"})
    assert_wire(data, "IAnalysis")
    assert data["suggested_prepare"] == []
    assert [c["cell"] for c in data["pipeline"]["inference"]["cells"]] == [13, 14]


async def test_analyze_says_when_the_export_is_older_than_the_notebook(
        jp_fetch: Any, jp_root_dir: Path) -> None:
    small_notebook(jp_root_dir)
    assert (await call(jp_fetch, "POST", "export", body={"path": "work/small.ipynb"}))[0] == 200
    code, data = await call(jp_fetch, "POST", "analyze", body={"path": "work/small.ipynb"})
    assert code == 200 and data["exported"] is True and data["stale"] is None
    small_notebook(jp_root_dir, sleep=1)  # the author edits a cell and saves
    code, data = await call(jp_fetch, "POST", "analyze", body={"path": "work/small.ipynb"})
    assert_wire(data, "IAnalysis")
    assert "small.ipynb changed since the export" in data["stale"]


async def test_export_run_and_history(jp_fetch: Any, jp_root_dir: Path) -> None:
    small_notebook(jp_root_dir)
    code, data = await call(jp_fetch, "POST", "export", body={"path": "work/small.ipynb"})
    assert code == 200, data
    assert_wire(data, "IExportReply")
    assert data["pipeline_dir"] == "work/small_pipeline"
    assert data["steps"] == ["make", "total"]
    assert (jp_root_dir / "work/small_pipeline/pipeline.yaml").is_file()

    code, data = await call(jp_fetch, "POST", "runs",
                            body={"pipeline": "work/small_pipeline", "parameters": {"scale": 3}})
    assert code == 202, data
    assert_wire(data, "IRunStarted")
    run_id = data["run_id"]
    run = await wait_for_run(jp_fetch, "work/small_pipeline", run_id)
    assert_wire(run, "IRunStatus")
    assert run["status"] == "succeeded", run
    assert run["parameters"]["scale"] == 3
    assert [s["status"] for s in run["steps"]] == ["done", "done"]
    for step in run["steps"]:
        assert step["notebook_path"].startswith(f"work/small_pipeline/runs/{run_id}/")
        assert (jp_root_dir / step["notebook_path"]).is_file()

    deadline = time.monotonic() + 30
    while True:  # the record says succeeded a moment before the child process exits
        code, data = await call(jp_fetch, "GET", "runs", params={"pipeline": "work/small_pipeline"})
        assert code == 200
        if not data["active"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert data["active"] == []
    assert_wire(data, "IRunsReply")
    latest = data["runs"][0]
    assert latest["run_id"] == run_id and latest["status"] == "succeeded"
    assert latest["metrics"] == {"score": pytest.approx(1.35)}  # 3 * 45 / 100
    assert latest["duration"] > 0 and latest["started_by"] == "jupyterlab"


def _cmdline(process: Any) -> str:
    import psutil

    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # gone, or a zombie, since it was listed
        return ""


def _alive(process: Any) -> bool:
    import psutil

    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def test_cancel_stops_the_run_and_its_kernels(jp_fetch: Any, jp_root_dir: Path) -> None:
    import psutil

    small_notebook(jp_root_dir, sleep=120)
    assert (await call(jp_fetch, "POST", "export", body={"path": "work/small.ipynb"}))[0] == 200
    code, data = await call(jp_fetch, "POST", "runs", body={"pipeline": "work/small_pipeline"})
    assert code == 202
    run_id = data["run_id"]
    run = await wait_for_run(jp_fetch, "work/small_pipeline", run_id, until=("running",))
    deadline = time.monotonic() + 120
    while not any(s["status"] == "running" and s["name"] == "total" for s in run["steps"]):
        assert time.monotonic() < deadline, run
        await asyncio.sleep(0.5)
        run = (await call(jp_fetch, "GET", "runs", run_id,
                          params={"pipeline": "work/small_pipeline"}))[1]

    # the run's process and its kernels, as they are while step `total` sleeps
    runner = [p for p in psutil.process_iter(["cmdline"])
              if run_id in " ".join(p.info["cmdline"] or [])]
    assert len(runner) == 1
    # kernels, and the zygote they are forked from (a forked kernel keeps its command line)
    kernels = [p for p in runner[0].children(recursive=True)
               if "ipykernel" in _cmdline(p) or "zygote_main" in _cmdline(p)]
    assert kernels, "the running step has no kernel"
    code, data = await call(jp_fetch, "DELETE", "runs", run_id,
                            params={"pipeline": "work/small_pipeline"})
    assert code == 202, data
    started = time.monotonic()
    run = await wait_for_run(jp_fetch, "work/small_pipeline", run_id, timeout=60)
    assert run["status"] == "cancelled"
    assert time.monotonic() - started < 60
    # soon none of them is left (the record is final a moment before the runner has exited)
    deadline = time.monotonic() + 30
    while left := [p for p in [*runner, *kernels] if _alive(p)]:
        assert time.monotonic() < deadline, left
        await call(jp_fetch, "GET", "runs", run_id, params={"pipeline": "work/small_pipeline"})
        await asyncio.sleep(0.3)
    code, data = await call(jp_fetch, "DELETE", "runs", run_id,
                            params={"pipeline": "work/small_pipeline"})
    assert code == 409 and "already finished" in data["error"]
    # recorded so, not only in the server's memory: a restarted server shows it cancelled
    from jupyter_mlops.run.store import RunStore, default_store

    pipeline = jp_root_dir / "work/small_pipeline"
    record = json.loads((pipeline / "runs" / run_id / "run.json").read_text(encoding="utf-8"))
    assert record["status"] == "cancelled"
    store = RunStore(default_store(pipeline))
    try:
        assert store.run(run_id).status == "cancelled"
    finally:
        store.close()


async def test_every_verb_needs_the_token(jp_fetch: Any, jp_root_dir: Path) -> None:
    small_notebook(jp_root_dir)
    no_token = {"Authorization": ""}
    for method, parts, params in [("GET", ("version",), None),
                                  ("POST", ("analyze",), None),
                                  ("POST", ("export",), None),
                                  ("GET", ("runs",), {"pipeline": "work"}),
                                  ("POST", ("runs",), None),
                                  ("GET", ("runs", "20260101-000000-abcdef"), {"pipeline": "w"}),
                                  ("DELETE", ("runs", "20260101-000000-abcdef"),
                                   {"pipeline": "w"})]:
        body = json.dumps({"path": "work/small.ipynb"}) if method == "POST" else None
        with pytest.raises(HTTPClientError) as err:
            await jp_fetch("mlops", *parts, method=method, headers=dict(no_token),
                           params=params, **({"body": body} if body else {}))
        assert err.value.code == 403, (method, parts)
    assert not (jp_root_dir / "work/small_pipeline").exists()  # the export never ran


@pytest.mark.parametrize("path", ["../outside.ipynb", "work/../../outside.ipynb",
                                  "/etc/hosts.ipynb", "link/outside.ipynb"])
async def test_paths_outside_the_root_are_refused(jp_fetch: Any, jp_root_dir: Path,
                                                  path: str) -> None:
    outside = jp_root_dir.parent / "outside.ipynb"
    write_notebook(outside, ("x = 1", ["mlops:step=a"]))
    os.symlink(jp_root_dir.parent, jp_root_dir / "link")
    for endpoint in ("analyze", "export"):
        code, data = await call(jp_fetch, "POST", endpoint, body={"path": path})
        assert code == 403, (endpoint, data)
        assert "outside" in data["error"] or "absolute" in data["error"]
    code, data = await call(jp_fetch, "GET", "runs", params={"pipeline": path.rsplit("/", 1)[0]
                                                            or ".."})
    assert code == 403, data
    assert not (jp_root_dir.parent / "outside_pipeline").exists()


async def test_user_errors_are_json_4xx(jp_fetch: Any, jp_root_dir: Path) -> None:
    small_notebook(jp_root_dir)
    write_notebook(jp_root_dir / "bad.ipynb", ("y = x + 1", ["mlops:step=a"]))
    (jp_root_dir / "notes.txt").write_text("hi")
    (jp_root_dir / "broken.ipynb").write_text("{not json")
    cases = [
        ("POST", ("analyze",), {"path": "missing.ipynb"}, None, 404, "no notebook"),
        ("POST", ("analyze",), {"path": "notes.txt"}, None, 400, "not a notebook"),
        ("POST", ("analyze",), {}, None, 400, "missing `path`"),
        ("POST", ("analyze",), "[1, 2", None, 400, "not JSON"),
        ("POST", ("analyze",), {"path": "broken.ipynb"}, None, 400, "broken.ipynb"),
        ("POST", ("export",), {"path": "bad.ipynb"}, None, 400, "`x`"),
        ("GET", ("runs",), None, {"pipeline": "work"}, 404, "not an exported pipeline"),
        ("POST", ("runs",), {"pipeline": "nowhere"}, None, 404, "not an exported pipeline"),
        ("GET", ("runs", "20260101-000000-abcdef"), None, {"pipeline": "work/small_pipeline"},
         404, "no run"),
        ("DELETE", ("runs", "20260101-000000-abcdef"), None,
         {"pipeline": "work/small_pipeline"}, 404, "not started by this server"),
    ]
    assert (await call(jp_fetch, "POST", "export", body={"path": "work/small.ipynb"}))[0] == 200
    cases += [
        ("POST", ("runs",), {"pipeline": "work/small_pipeline", "parameters": {"scale": "big"}},
         None, 400, "scale"),
        ("POST", ("runs",), {"pipeline": "work/small_pipeline", "parameters": {"nope": 1}},
         None, 400, "nope"),
        ("POST", ("runs",), {"pipeline": "work/small_pipeline", "parameters": [1]},
         None, 400, "parameters"),
    ]
    for method, parts, body, params, status, words in cases:
        code, data = await call(jp_fetch, method, *parts, body=body, params=params)
        assert code == status, (parts, body, data)
        assert isinstance(data, dict) and words in data["error"], (parts, data)
        assert_wire(data, "IErrorReply")
        assert "Traceback" not in data["error"] and "\n" not in data["error"]
    code, data = await call(jp_fetch, "POST", "export", body={"path": "bad.ipynb"})
    assert data["cell"] == 1 and data["problems"][0]["cell"] == 1
    assert_wire(data, "IErrorReply")
