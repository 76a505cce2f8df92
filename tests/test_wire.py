"""The sidebar's TypeScript types against the Python shapes they mirror.

The server tests hold real responses to these types (``wire.assert_wire``); here the types
that mirror a Python dataclass field for field are compared with it, so a field added on one
side and not the other fails."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import REPO
from wire import assert_wire, interfaces

from jupyter_mlops.errors import Problem
from jupyter_mlops.jobs.api import job_view
from jupyter_mlops.jobs.store import Job, JobStore, Slot
from jupyter_mlops.jobs.timing import Schedule
from jupyter_mlops.notebook.analysis import Output
from jupyter_mlops.notebook.params import Parameter
from jupyter_mlops.pipeline.spec import PipelineSpec, Step
from jupyter_mlops.run.results import StepResult


def _fields(kind: type) -> set[str]:
    return {f.name for f in dataclasses.fields(kind)}


@pytest.mark.parametrize(("interface", "kind", "added", "left_out"), [
    ("IParameter", Parameter, set(), set()),
    ("IOutput", Output, set(), set()),
    ("IStep", Step, set(), set()),
    # the server adds to a step its duration, its notebook's path, its checks' warnings; the
    # sidebar shows no manifests, checks or files; notebook becomes notebook_path
    ("IStepState", StepResult, {"duration", "notebook_path", "warnings"},
     {"outputs", "checks", "notebook", "cache_key", "files"}),
    # jobs.api.job_view adds when the job runs next and its last slots
    ("IJob", Job, {"next_run", "last_runs"}, set()),
    # Slot.to_json adds how late its run started
    ("ISlot", Slot, {"late"}, set()),
])
def test_a_wire_type_declares_the_fields_of_its_dataclass(interface: str, kind: type,
                                                         added: set[str],
                                                         left_out: set[str]) -> None:
    declared = set(interfaces()[interface])
    python = (_fields(kind) | added) - left_out
    assert declared == python, (declared ^ python)


def test_ijobschedule_is_a_schedule_as_a_job_holds_it() -> None:
    declared = set(interfaces()["IJobSchedule"])
    cron, every = Schedule.of(cron="0 2 * * *", tz="UTC"), Schedule.of(every="15m")
    assert declared == set(cron.to_json()) | set(every.to_json()) | {"text"}
    assert {"cron", "tz", "every"} == {k for k, (optional, _) in
                                        interfaces()["IJobSchedule"].items() if optional}


@pytest.mark.parametrize("schedule", [Schedule.of(every="15m"),
                                      Schedule.of(cron="0 2 * * 1-5", tz="Europe/Berlin")])
def test_a_job_view_is_an_ijob(tmp_path: Path, schedule: Schedule) -> None:
    """What jobs.api.job_view makes, with a slot, holds to IJob field for field (EXACT)."""
    jobs = JobStore(tmp_path / "p" / ".mlops" / "runs.sqlite")
    try:
        job = Job("nightly", tmp_path / "p", schedule, {"alpha": 0.5}, owner="me",
                  on_failure="echo failed", created=1000.0, since=1000.0)
        jobs.add_job(job)
        jobs.claim(Slot("nightly", 4600.0, "schedule", 4600.5, "host:1:ab", "succeeded",
                        run_id="r1", ended=4700.0))
        view = job_view(jobs, jobs.job("nightly"), now=5000.0)
    finally:
        jobs.close()
    assert_wire(view, "IJob")
    assert view["last_runs"][0]["late"] == 0.5 and view["next_run"] > 5000.0


def test_ipipeline_is_the_spec_as_pipeline_yaml_holds_it() -> None:
    spec = PipelineSpec("p", "p.ipynb", "0" * 64, ".", {"name": "python3"}, [], [])
    optional = {k for k, (maybe, _) in interfaces()["IPipeline"].items() if maybe}
    assert set(interfaces()["IPipeline"]) - optional == set(spec.to_dict())
    # `inference` is there only for a notebook with prepare cells, as the type says
    assert optional == {"inference"}
    from jupyter_mlops.notebook.inference import InferencePlan

    plan = InferencePlan(input="df", input_step="load", output="df")
    spec.inference = plan.to_dict()
    assert set(interfaces()["IPipeline"]) == set(spec.to_dict())
    assert set(interfaces()["IInference"]) == set(plan.to_dict())


def test_iproblem_is_problem_to_dict() -> None:
    assert set(interfaces()["IProblem"]) == set(Problem("m", 1).to_dict())


def test_the_sidebar_keeps_no_list_of_roles_of_its_own() -> None:
    """The role buttons show what the analysis sends (the server test checks it is ROLES)."""
    assert interfaces()["IAnalysis"]["roles"] == (False, "string[]")
    for source in (REPO / "labextension" / "src").rglob("*.ts*"):
        text = source.read_text(encoding="utf-8")
        assert "'params', 'step'" not in text and '"params", "step"' not in text, source
