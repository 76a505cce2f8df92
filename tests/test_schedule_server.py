"""Scheduled jobs over REST (``/mlops/jobs``), against a real jupyter_server that requires a
token: made, listed, paused, resumed and deleted as the sidebar does it, refused in one line
when a schedule, zone, interval or parameter is wrong, and run by the server's own scheduler.

The server's scheduler is turned off (``JUPYTER_MLOPS_SCHEDULER=off``) except in the tests
that ask for the ``with_scheduler`` fixture.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import write_notebook
from test_lab_hardening import call
from tornado.httpclient import HTTPClientError
from wire import assert_wire

PIPELINE = "work/small_pipeline"


@pytest.fixture
def jp_server_config(request: pytest.FixtureRequest,
                     monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Load our extension; its scheduler only where a test asks for ``with_scheduler`` (the
    variable is read as the server loads the extension, so it is set here, before)."""
    if "with_scheduler" in request.fixturenames:
        monkeypatch.delenv("JUPYTER_MLOPS_SCHEDULER", raising=False)
    else:
        monkeypatch.setenv("JUPYTER_MLOPS_SCHEDULER", "off")
    return {"ServerApp": {"jpserver_extensions": {"jupyter_mlops": True}}}


@pytest.fixture
def with_scheduler(jp_serverapp: Any) -> Iterator[Any]:
    """The server's scheduler; stopped after the test, and its runs with it."""
    scheduler = jp_serverapp.web_app.settings["mlops_scheduler"]
    assert scheduler is not None, "the server started no scheduler"
    yield scheduler
    scheduler.stopped.set()
    for child in list(scheduler.children.values()):
        if child.process.poll() is None:
            child.process.terminate()
        child.process.wait(30)


async def exported(jp_fetch: Any, root: Path) -> None:
    """A two-step pipeline with an int parameter ``scale``, exported to ``PIPELINE``."""
    write_notebook(root / "work" / "small.ipynb",
                   ("scale = 2", ["mlops:params"]),
                   ("values = [i * scale for i in range(10)]", ["mlops:step=make"]),
                   ("total = float(sum(values))", ["mlops:step=total"]),
                   ("score = total / 100", ["mlops:metrics"]))
    code, data = await call(jp_fetch, "POST", "export", body={"path": "work/small.ipynb"})
    assert code == 200, data


async def make(jp_fetch: Any, **body: Any) -> tuple[int, Any]:
    return await call(jp_fetch, "POST", "jobs", body={"pipeline": PIPELINE, **body})


async def listed(jp_fetch: Any) -> dict[str, Any]:
    code, data = await call(jp_fetch, "GET", "jobs", params={"pipeline": PIPELINE})
    assert code == 200, data
    assert_wire(data, "IJobsReply")
    return data


async def test_make_list_pause_resume_and_delete_jobs(jp_fetch: Any, jp_root_dir: Path) -> None:
    await exported(jp_fetch, jp_root_dir)
    assert await listed(jp_fetch) == {"jobs": [], "scheduler": False}

    before = time.time()
    code, job = await make(jp_fetch, every="1h", parameters={"scale": "3"}, name="hourly",
                           on_failure="echo failed", webhook="https://example.org/hook")
    assert code == 201, job
    assert_wire(job, "IJob")
    assert job["name"] == "hourly" and job["pipeline"] == PIPELINE
    assert job["schedule"] == {"every": 3600.0, "text": "every 1h"}
    assert job["parameters"] == {"scale": 3}  # typed as the pipeline types it
    assert job["state"] == "active" and job["broken"] is None and job["last_runs"] == []
    assert job["on_failure"] == "echo failed" and job["webhook"] == "https://example.org/hook"
    assert job["notify"] == "failure"
    assert before <= job["created"] <= time.time()
    assert job["next_run"] == pytest.approx(job["since"] + 3600)

    # a cron job in a zone runs at that zone's 02:00; no name: the pipeline's
    code, nightly = await make(jp_fetch, cron="0 2 * * *", tz="Europe/Berlin")
    assert code == 201, nightly
    assert_wire(nightly, "IJob")
    assert nightly["name"] == "small"
    assert nightly["schedule"] == {"cron": "0 2 * * *", "tz": "Europe/Berlin",
                                   "text": "cron 0 2 * * * (Europe/Berlin)"}
    due = datetime.fromtimestamp(nightly["next_run"], ZoneInfo("Europe/Berlin"))
    assert (due.hour, due.minute) == (2, 0)
    assert time.time() < nightly["next_run"] <= time.time() + 86400

    data = await listed(jp_fetch)
    assert [j["name"] for j in data["jobs"]] == ["hourly", "small"]
    assert data["jobs"][0] == job | {"next_run": pytest.approx(job["next_run"])}

    # a name taken is refused, and the first job stays as it was
    code, data = await make(jp_fetch, every="5m", name="hourly")
    assert code == 400 and "exists already" in data["error"], data
    assert (await listed(jp_fetch))["jobs"][0]["schedule"]["every"] == 3600.0

    code, paused = await call(jp_fetch, "POST", "jobs", "hourly",
                              body={"pipeline": PIPELINE, "action": "pause"})
    assert code == 200, paused
    assert_wire(paused, "IJob")
    assert paused["state"] == "paused" and paused["next_run"] is None
    assert (await listed(jp_fetch))["jobs"][0]["state"] == "paused"

    code, resumed = await call(jp_fetch, "POST", "jobs", "hourly",
                               body={"pipeline": PIPELINE, "action": "resume"})
    assert code == 200, resumed
    assert resumed["state"] == "active"
    # slots count from the resume
    assert resumed["next_run"] == pytest.approx(resumed["since"] + 3600)
    assert resumed["since"] >= paused["since"]

    code, data = await call(jp_fetch, "POST", "jobs", "hourly",
                            body={"pipeline": PIPELINE, "action": "stop"})
    assert code == 400 and "pause or resume" in data["error"], data

    code, data = await call(jp_fetch, "DELETE", "jobs", "hourly", params={"pipeline": PIPELINE})
    assert (code, data) == (200, {"deleted": "hourly"})
    assert [j["name"] for j in (await listed(jp_fetch))["jobs"]] == ["small"]
    code, data = await call(jp_fetch, "DELETE", "jobs", "hourly", params={"pipeline": PIPELINE})
    assert code == 404 and "no job named hourly" in data["error"], data
    code, data = await call(jp_fetch, "POST", "jobs", "hourly",
                            body={"pipeline": PIPELINE, "action": "pause"})
    assert code == 404 and "no job named hourly" in data["error"], data


@pytest.mark.parametrize(("body", "says"), [
    ({"cron": "0 25 * * *"}, "the hour field `25` is not valid"),
    ({"cron": "61 * * * *"}, "the minute field `61` is not valid"),
    ({"cron": "* * *"}, "has 3 field(s)"),
    ({"cron": "0 2 * * *", "tz": "Mars/Olympus"}, "unknown time zone `Mars/Olympus`"),
    ({"every": "0s"}, "more than 0 seconds"),
    ({"every": "-5m"}, "more than 0 seconds"),
    ({"every": "soon"}, "is not an interval"),
    ({"every": "1h", "tz": "UTC"}, "a time zone goes with a cron expression"),
    ({"every": "1h", "cron": "0 2 * * *"}, "not both"),
    ({}, "not neither"),
    ({"every": 5}, "`every` must be a string"),
    ({"every": "1h", "parameters": {"nope": "1"}}, "nope"),
    ({"every": "1h", "parameters": {"scale": "many"}}, "scale"),
    ({"every": "1h", "parameters": ["scale=3"]}, "`parameters` must be an object"),
    ({"every": "1h", "name": "two words"}, "not usable"),
    ({"every": "1h", "name": "../up"}, "not usable"),
    ({"every": "1h", "webhook": "ftp://example.org"}, "not an http(s) URL"),
    ({"every": "1h", "on_failure": "   "}, "needs a command"),
    ({"every": "1h", "notify": "sometimes"}, "failure or always"),
])
async def test_a_bad_job_is_refused_in_one_line(jp_fetch: Any, jp_root_dir: Path,
                                                body: dict[str, Any], says: str) -> None:
    await exported(jp_fetch, jp_root_dir)
    code, data = await make(jp_fetch, **body)
    assert code == 400, data
    assert_wire(data, "IErrorReply")
    assert says in data["error"], data
    assert "\n" not in data["error"] and data["cell"] is None
    assert (await listed(jp_fetch))["jobs"] == []


@pytest.mark.parametrize("pipeline", ["../outside_pipeline", "work/../../outside_pipeline",
                                      "/etc", "link/outside_pipeline"])
async def test_a_pipeline_outside_the_root_is_refused(jp_fetch: Any, jp_root_dir: Path,
                                                      pipeline: str) -> None:
    await exported(jp_fetch, jp_root_dir)
    outside = jp_root_dir.parent / "outside_pipeline"
    outside.mkdir()
    # a real pipeline there, so that only its place can be the reason to refuse it
    (outside / "pipeline.yaml").write_bytes((jp_root_dir / PIPELINE / "pipeline.yaml")
                                            .read_bytes())
    (jp_root_dir / "link").symlink_to(jp_root_dir.parent)
    for method, parts, body, params in [
            ("GET", ("jobs",), None, {"pipeline": pipeline}),
            ("POST", ("jobs",), {"pipeline": pipeline, "every": "1h", "name": "x"}, None),
            ("POST", ("jobs", "x"), {"pipeline": pipeline, "action": "pause"}, None),
            ("DELETE", ("jobs", "x"), None, {"pipeline": pipeline})]:
        code, data = await call(jp_fetch, method, *parts, body=body, params=params)
        assert code == 403, (method, parts, data)
        assert "outside" in data["error"] or "absolute" in data["error"], data
    assert not (outside / ".mlops").exists()  # no store was made there

    # inside the root but not exported: 404, saying to export first
    code, data = await call(jp_fetch, "POST", "jobs", body={"pipeline": "work", "every": "1h"})
    assert code == 404 and "export the notebook first" in data["error"], data


async def test_every_verb_needs_the_token(jp_fetch: Any, jp_root_dir: Path) -> None:
    await exported(jp_fetch, jp_root_dir)
    no_token = {"Authorization": ""}
    for method, parts, params in [("GET", ("jobs",), {"pipeline": PIPELINE}),
                                  ("POST", ("jobs",), None),
                                  ("POST", ("jobs", "small"), None),
                                  ("DELETE", ("jobs", "small"), {"pipeline": PIPELINE})]:
        body = json.dumps({"pipeline": PIPELINE, "every": "1h", "action": "pause"}) \
            if method == "POST" else None
        with pytest.raises(HTTPClientError) as err:
            await jp_fetch("mlops", *parts, method=method, headers=dict(no_token),
                           params=params, **({"body": body} if body else {}))
        assert err.value.code == 403, (method, parts)
    assert (await listed(jp_fetch))["jobs"] == []  # nothing was made


@pytest.mark.parametrize(("name", "code"), [
    ("a/b", 404),  # not a route of one job
    ("..", 400),
    ("-x", 400),
    ("a b", 400),
    ("a%2Fb", 400),  # sent escaped: the server reads `a%2Fb`
    ("x" * 65, 400),
])
async def test_a_job_name_in_the_url_must_be_a_name(jp_fetch: Any, jp_root_dir: Path,
                                                    name: str, code: int) -> None:
    await exported(jp_fetch, jp_root_dir)
    made, job = await make(jp_fetch, every="1h", name="keep")
    assert made == 201, job
    for method, body, params in [("POST", {"pipeline": PIPELINE, "action": "pause"}, None),
                                 ("DELETE", None, {"pipeline": PIPELINE})]:
        answer = await call(jp_fetch, method, "jobs", name, body=body, params=params)
        assert answer[0] == code, (method, answer)
        assert isinstance(answer[1]["error"], str), answer
    [kept] = (await listed(jp_fetch))["jobs"]
    assert kept["name"] == "keep" and kept["state"] == "active"


@pytest.mark.parametrize("raw", ["..%2Fkeep", "%2E%2E", "keep%2F..%2Fkeep"])
async def test_an_escaped_slash_or_dots_in_the_url_are_no_name(
        jp_fetch: Any, jp_root_dir: Path, http_server_client: Any, jp_base_url: str,
        jp_auth_header: dict[str, str], raw: str) -> None:
    """As a browser may send them, unescaped by no client on the way."""
    await exported(jp_fetch, jp_root_dir)
    assert (await make(jp_fetch, every="1h", name="keep"))[0] == 201
    url = f"{jp_base_url}mlops/jobs/{raw}?pipeline={PIPELINE}"
    with pytest.raises(HTTPClientError) as err:
        await http_server_client.fetch(url, method="DELETE", headers=jp_auth_header)
    assert err.value.code == 400, err.value.response.body
    assert "is not a job name" in json.loads(err.value.response.body)["error"]
    assert [j["name"] for j in (await listed(jp_fetch))["jobs"]] == ["keep"]


async def _until(what: str, check: Any, timeout: float) -> Any:
    """Poll ``check()`` (async) until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        await asyncio.sleep(0.5)


@pytest.mark.kernel
async def test_the_servers_scheduler_runs_a_job(jp_fetch: Any, jp_root_dir: Path,
                                                with_scheduler: Any) -> None:
    await exported(jp_fetch, jp_root_dir)
    assert (await listed(jp_fetch))["scheduler"] is True
    code, job = await make(jp_fetch, every="2s", name="often", parameters={"scale": "4"})
    assert code == 201, job

    async def started() -> Any:
        slots = (await listed(jp_fetch))["jobs"][0]["last_runs"]
        return next((s for s in slots if s["run_id"]), None)

    slot = await _until("the server's scheduler started a run", started, 25)
    # paused at once, it starts no more runs (and skips no more slots while this one goes);
    # the run going is still settled by the scheduler
    code, paused = await call(jp_fetch, "POST", "jobs", "often",
                              body={"pipeline": PIPELINE, "action": "pause"})
    assert code == 200 and paused["state"] == "paused", paused
    assert slot["job"] == "often" and slot["trigger"] in ("schedule", "catch-up")
    assert slot["scheduler"] == with_scheduler.name
    assert slot["due"] >= job["since"] + 2 - 0.01 and slot["late"] >= 0

    async def in_history() -> Any:
        code, data = await call(jp_fetch, "GET", "runs", params={"pipeline": PIPELINE})
        assert code == 200, data
        assert_wire(data, "IRunsReply")
        return next((r for r in data["runs"] if r["run_id"] == slot["run_id"]), None)

    run = await _until("the scheduled run is in the run history", in_history, 25)
    assert run["job"] == "often" and run["started_by"] == "schedule:often"
    assert run["parameters"]["scale"] == 4

    async def settled() -> Any:
        slots = (await listed(jp_fetch))["jobs"][0]["last_runs"]
        ours = next((s for s in slots if s["run_id"] == slot["run_id"]), None)
        assert ours is not None, slots
        return ours if ours["outcome"] != "started" else None

    ended = await _until("the scheduled run was settled", settled, 240)
    assert ended["outcome"] == "succeeded", ended
    run = await in_history()
    assert run["status"] == "succeeded" and run["metrics"] == {"score": pytest.approx(1.8)}
