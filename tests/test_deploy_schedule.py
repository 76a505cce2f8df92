"""A job's schedule and parameters on the distributed engines: the Airflow DAG of a job, and
the recurring run beside a compiled Kubeflow pipeline.

The DAGs are parsed by the real Airflow of ``.venv-airflow`` (in a subprocess, as
tests/test_airflow.py does), which computes their next runs itself. No Kubeflow Pipelines
server exists here: the recurring run is checked against the installed kfp SDK, whose own
``Client.create_recurring_run`` builds the request it would send (only the HTTP call at its
end is replaced).
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import itertools
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import test_airflow
import yaml
from conftest import REPO, run_cli
from test_airflow import VENV, Airflow, _typed_pipeline

from jupyter_mlops.deploy.airflow_dag import write_dag
from jupyter_mlops.deploy.timetable import Timetable
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.jobs.timing import Schedule
from jupyter_mlops.runtime.artifacts import load

BERLIN = "Europe/Berlin"
#: Text that ends every kind of Python and YAML string, and a comment, if unquoted.
HOSTILE = 'a"""b\'\'\'c\\d\ne\r\n"\\\n# x\'); import os  #'
#: tests/test_airflow.py's Airflow: its venv, a fresh home, a migrated database.
airflow = test_airflow.airflow
NIGHTLY = Timetable("nightly", cron="0 2 * * *", tz=BERLIN,
                    parameters={"n": 4, "scale": 2, "label": HOSTILE, "tags": ["p", HOSTILE]})


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The typed pipeline of tests/test_airflow.py: n, scale, label, flag, tags."""
    return _typed_pipeline(tmp_path_factory.mktemp("schedule"))


def _dag_call(text: str) -> dict[str, ast.expr]:
    """The keyword arguments of the DAG file's ``DAG(...)``."""
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DAG":
            return {k.arg: k.value for k in node.keywords if k.arg}
    raise AssertionError("no DAG(...) in the file")


def _param_defaults(call: dict[str, ast.expr]) -> dict[str, Any]:
    """Each ``Param(default, ...)``'s default, read from the source without running it."""
    params = call["params"]
    assert isinstance(params, ast.Dict)
    return {ast.literal_eval(k): ast.literal_eval(v.args[0])  # type: ignore[union-attr]
            for k, v in zip(params.keys, params.values, strict=True)}


def _start_date(call: dict[str, ast.expr]) -> tuple[datetime, str]:
    """``start_date=pendulum.datetime(Y, M, D, h, m, s, tz='UTC').in_timezone(ZONE)``: the
    moment and the zone."""
    moved = call["start_date"]
    assert isinstance(moved, ast.Call) and isinstance(moved.func, ast.Attribute)
    assert moved.func.attr == "in_timezone"
    inner = moved.func.value
    assert isinstance(inner, ast.Call) and ast.unparse(inner.func) == "pendulum.datetime"
    assert [(k.arg, ast.literal_eval(k.value)) for k in inner.keywords] == [("tz", "UTC")]
    moment = datetime(*[ast.literal_eval(a) for a in inner.args], tzinfo=timezone.utc)
    return moment, ast.literal_eval(moved.args[0])


def _constant(text: str, name: str) -> Any:
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == [name]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"no {name} in the DAG file")


# -- the DAG file, without Airflow -----------------------------------------------------------

def test_without_a_job_the_dag_is_triggered_only(pipeline: Path, tmp_path: Path) -> None:
    path = write_dag(pipeline, tmp_path)
    text = path.read_text()
    assert path.name == "mlops_p.py"
    call = _dag_call(text)
    assert ast.literal_eval(call["schedule"]) is None and "start_date" not in call
    assert "max_active_runs" not in call and "pendulum" not in text
    assert _constant(text, "JOB") is None
    assert _param_defaults(call)["n"] == 3


def test_a_jobs_dag_has_its_schedule_and_its_values(pipeline: Path, tmp_path: Path) -> None:
    before = time.time()
    path = write_dag(pipeline, tmp_path, timetable=NIGHTLY)
    text = path.read_text()
    compile(text, str(path), "exec")
    assert path.name == "mlops_p__nightly.py"  # a DAG per job: two jobs do not clash
    call = _dag_call(text)
    assert ast.literal_eval(call["dag_id"]) == "mlops_p__nightly"
    assert ast.literal_eval(call["schedule"]) == "0 2 * * *"
    assert ast.literal_eval(call["catchup"]) is False
    assert ast.literal_eval(call["max_active_runs"]) == 1
    assert "is_paused_upon_creation" not in call
    written, zone = _start_date(call)
    assert zone == BERLIN and before - 1 <= written.timestamp() <= time.time()
    assert _constant(text, "JOB") == "nightly"
    # the job's values, typed as the pipeline types them (a float given as 2); the rest as is
    assert _param_defaults(call) == {"n": 4, "scale": 2.0, "label": HOSTILE, "flag": False,
                                     "tags": ["p", HOSTILE]}
    assert "Europe/Berlin" in ast.literal_eval(call["description"])
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config",
                           str(REPO / "pyproject.toml"), str(path)], capture_output=True,
                          text=True, cwd=REPO)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_an_interval_job_and_a_paused_one(pipeline: Path, tmp_path: Path) -> None:
    often = Timetable("often", every=90.5, enabled=False)
    call = _dag_call(write_dag(pipeline, tmp_path, timetable=often).read_text())
    assert ast.unparse(call["schedule"]) == "timedelta(seconds=90.5)"
    assert ast.literal_eval(call["max_active_runs"]) == 1
    assert ast.literal_eval(call["is_paused_upon_creation"]) is True
    hourly = Timetable("hourly", every=3600)
    call = _dag_call(write_dag(pipeline, tmp_path, timetable=hourly).read_text())
    assert ast.unparse(call["schedule"]) == "timedelta(seconds=3600)"
    assert _start_date(call)[1] == "UTC"


def test_hostile_cron_text_stays_a_string(pipeline: Path, tmp_path: Path) -> None:
    """A cron field is quoted like any other value (the jobs package refuses such a cron,
    but the DAG writer does not rely on that)."""
    hostile = Timetable("odd", cron="0 2 * * a\"\"\"b'''c\\d#x');import(os)#")
    text = write_dag(pipeline, tmp_path, timetable=hostile).read_text()
    call = _dag_call(text)
    assert ast.literal_eval(call["schedule"]) == hostile.cron_text()
    assert hostile.cron_text() in ast.literal_eval(call["description"])


def test_a_macro_is_written_as_five_fields(pipeline: Path, tmp_path: Path) -> None:
    text = write_dag(pipeline, tmp_path, timetable=Timetable("m", cron="@midnight")).read_text()
    assert ast.literal_eval(_dag_call(text)["schedule"]) == "0 0 * * *"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"name": "a'b", "cron": "0 2 * * *"}, "job name"),
    ({"name": "a\nb", "cron": "0 2 * * *"}, "job name"),
    ({"name": "j"}, "exactly one"),
    ({"name": "j", "cron": "0 2 * * *", "every": 60}, "exactly one"),
    ({"name": "j", "every": 0}, "positive number"),
    ({"name": "j", "every": float("inf")}, "positive number"),
    ({"name": "j", "cron": "0 2 * *"}, "five fields"),
    ({"name": "j", "cron": "0 2 * * *", "tz": "Europe/'Nowhere\n"}, "unknown time zone"),
])
def test_a_bad_timetable_is_a_one_line_error(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(MlopsError, match=match) as err:
        Timetable(**kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("schedule", [
    {"cron": "0 2 * * *", "tz": BERLIN}, {"cron": "@daily"}, {"every": "15m"},
    {"every": "90"}, {"every": "2d"}, {"every": "1.5s"}, {"every": "36h"},
])
def test_a_timetable_says_its_schedule_as_the_job_does(schedule: dict[str, Any]) -> None:
    job = Schedule.of(**schedule)
    timetable = Timetable("j", cron=job.cron, tz=job.tz, every=job.every)
    assert timetable.describe() == job.describe()


def test_a_parameter_the_pipeline_lost_is_a_one_line_error(pipeline: Path,
                                                           tmp_path: Path) -> None:
    gone = Timetable("nightly", cron="0 2 * * *", parameters={"alpha": 1})
    with pytest.raises(MlopsError, match=r"job `nightly` sets parameter `alpha`.*schedule"):
        write_dag(pipeline, tmp_path, timetable=gone)
    with pytest.raises(MlopsError, match="finite number"):
        write_dag(pipeline, tmp_path,
                  timetable=Timetable("n", every=60, parameters={"scale": float("nan")}))
    assert not list(tmp_path.iterdir())


# -- the DAG in Airflow --------------------------------------------------------------------

#: Run by Airflow's Python: parse a DAG folder, and say what Airflow makes of each DAG.
PROBE = '''
import json, sys
try:  # Airflow 3
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 2
    from airflow.models.dagbag import DagBag
import pendulum
from airflow.timetables.base import TimeRestriction


def scheduler_dag(dag):
    """The DAG as the scheduler holds it (Airflow 3 parses an SDK DAG, then serializes it)."""
    try:
        from airflow.serialization.serialized_objects import LazyDeserializedDAG
    except ImportError:
        return dag
    return LazyDeserializedDAG.from_dag(dag)._real_dag


def next_run(dag):
    try:
        info = dag.next_dagrun_info(last_automated_run_info=None)
    except TypeError:  # Airflow 2
        info = dag.next_dagrun_info(None)
    return None if info is None else info.run_after.isoformat()


def runs_from(timetable, earliest, count):
    """The first runs at or after `earliest`, by the timetable alone (catching up)."""
    runs, last = [], None
    restriction = TimeRestriction(earliest=earliest, latest=None, catchup=True)
    for _ in range(count):
        info = timetable.next_dagrun_info(last_automated_data_interval=last,
                                          restriction=restriction)
        runs.append(info.run_after.isoformat())
        last = info.data_interval
    return runs


bag = DagBag(dag_folder=sys.argv[1])
out = {"errors": {str(k): str(v)[-3000:] for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    real = scheduler_dag(dag)
    timetable = real.timetable
    out["dags"][dag_id] = {
        "timetable": type(timetable).__name__, "summary": timetable.summary,
        "catchup": dag.catchup, "max_active_runs": dag.max_active_runs,
        "paused_upon_creation": dag.is_paused_upon_creation,
        "start_date": dag.start_date.isoformat() if dag.start_date else None,
        "timezone": getattr(dag.timezone, "name", str(dag.timezone)),
        "params": {k: dag.params[k] for k in dag.params},
        "next_run": next_run(real),
        "runs": runs_from(timetable, pendulum.parse(sys.argv[3]), 5) if dag.start_date else [],
    }
with open(sys.argv[2], "w") as handle:
    json.dump(out, handle)
'''


def _probe(dags: Path, tmp_path: Path, earliest: str = "2025-03-28T00:00:00Z") -> dict[str, Any]:
    """What Airflow makes of the DAG files in ``dags``, by DAG id."""
    script, result = tmp_path / "probe.py", tmp_path / "probe.json"
    script.write_text(PROBE)
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
    for name in ("PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(name, None)
    done = subprocess.run([str(VENV / "bin" / "python"), str(script), str(dags), str(result),
                           earliest], env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    out = json.loads(result.read_text())
    assert not out["errors"], out["errors"]
    return out["dags"]


def _slots(schedule: Schedule, after: float, count: int) -> list[str]:
    """The local scheduler's next ``count`` slots at or after ``after``, as Airflow says them."""
    slots, moment = [], after - 1
    for _ in range(count):
        moment = schedule.next_after(moment, 0)
        slots.append(datetime.fromtimestamp(moment, tz=timezone.utc).isoformat())
    return slots


def test_airflow_runs_a_cron_job_in_its_zone(pipeline: Path, tmp_path: Path,
                                             airflow: Airflow) -> None:
    dags = tmp_path / "dags"
    write_dag(pipeline, dags, timetable=NIGHTLY)
    dag = _probe(dags, tmp_path)["mlops_p__nightly"]
    assert dag["timetable"] in ("CronTriggerTimetable", "CronDataIntervalTimetable")
    assert dag["summary"] == "0 2 * * *"
    assert dag["catchup"] is False and dag["max_active_runs"] == 1
    assert dag["paused_upon_creation"] is None  # as Airflow's setting says
    assert dag["timezone"] == BERLIN
    assert dag["params"] == {"n": 4, "scale": 2.0, "label": HOSTILE, "flag": False,
                             "tags": ["p", HOSTILE]}
    # Airflow's own runs are 02:00 in Berlin: 01:00 UTC in winter, 00:00 UTC in summer; on
    # 30 March 2025 02:00 does not exist and both Airflow and the local scheduler run at 03:00
    assert dag["runs"] == ["2025-03-28T01:00:00+00:00", "2025-03-29T01:00:00+00:00",
                           "2025-03-30T01:00:00+00:00", "2025-03-31T00:00:00+00:00",
                           "2025-04-01T00:00:00+00:00"]
    schedule = Schedule.of(cron="0 2 * * *", tz=BERLIN)
    assert dag["runs"] == _slots(schedule, datetime(2025, 3, 28, tzinfo=timezone.utc)
                                 .timestamp(), 5)
    # the next run is the job's next slot after the DAG was written, not one run at once
    start = datetime.fromisoformat(dag["start_date"]).timestamp()
    (expected,) = _slots(schedule, start, 1)
    assert dag["next_run"] == expected
    local = datetime.fromisoformat(dag["next_run"]).astimezone(ZoneInfo(BERLIN))
    assert (local.hour, local.minute) == (2, 0) and local.timestamp() > time.time() - 60


def test_airflow_runs_a_paused_interval_job_one_interval_after_it_is_written(
        pipeline: Path, tmp_path: Path, airflow: Airflow) -> None:
    dags = tmp_path / "dags"
    written = time.time()
    write_dag(pipeline, dags, timetable=Timetable("often", every=900, enabled=False))
    write_dag(pipeline, dags)
    found = _probe(dags, tmp_path)
    dag = found["mlops_p__often"]
    assert dag["timetable"] in ("DeltaTriggerTimetable", "DeltaDataIntervalTimetable")
    assert dag["catchup"] is False and dag["max_active_runs"] == 1
    assert dag["paused_upon_creation"] is True  # the job is paused
    start = datetime.fromisoformat(dag["start_date"]).timestamp()
    assert written + 899 <= start <= time.time() + 900
    assert dag["next_run"] == dag["start_date"]
    runs = [datetime.fromisoformat(r) for r in dag["runs"]]
    assert {b - a for a, b in itertools.pairwise(runs)} == {timedelta(seconds=900)}, runs
    # the pipeline's own DAG, beside it, stays without a schedule
    assert found["mlops_p"]["timetable"] == "NullTimetable"
    assert found["mlops_p"]["next_run"] is None


@pytest.mark.kernel
def test_a_jobs_dag_run_uses_the_jobs_values(tmp_path: Path,
                                             airflow: Airflow) -> None:
    """`airflow dags test` of the job's DAG, no conf: the steps see the job's values."""
    pipeline = _typed_pipeline(tmp_path)
    dags = tmp_path / "dags"
    job = Timetable("nightly", cron="0 2 * * *", tz=BERLIN,
                    parameters={"n": 4, "scale": 2, "label": HOSTILE, "tags": ["q"]})
    write_dag(pipeline, dags, timeout=300, timetable=job)
    done = airflow("dags", "test", "mlops_p__nightly", dags=dags)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    (run,) = (pipeline / "runs" / "airflow" / "nightly").iterdir()  # apart from other jobs'
    assert load("kinds", run / "scaled") == f"{HOSTILE}:int,float,bool,list:(False, ['q'])"
    assert load("total", run / "report") == 12.0


# -- Kubeflow Pipelines: the recurring run -------------------------------------------------

def _compile(pipeline: Path, output: Path, timetable: Timetable | None) -> list[Path]:
    pytest.importorskip("kfp")
    from jupyter_mlops.deploy.kfp_pipeline import compile_pipeline

    return compile_pipeline(pipeline, output, image="registry.example/p:1", timetable=timetable)


def test_the_recurring_run_is_create_recurring_runs_arguments(pipeline: Path,
                                                              tmp_path: Path) -> None:
    """No KFP server here: the keys are checked against the SDK's signature."""
    import kfp
    from croniter import croniter

    from jupyter_mlops.deploy.kfp_pipeline import zone_warning

    output = tmp_path / "kfp" / "p.yaml"
    written = _compile(pipeline, output, NIGHTLY)
    recurring = tmp_path / "kfp" / "p.recurring.yaml"
    assert written[:2] == [output, recurring]
    text = recurring.read_text()
    run = yaml.safe_load(text)
    inspect.signature(kfp.Client.create_recurring_run).bind(None, experiment_id="e", **run)
    assert run["cron_expression"] == "0 0 2 * * *"  # KFP's six fields, seconds first
    assert "interval_second" not in run
    assert (run["max_concurrency"], run["no_catchup"], run["enabled"]) == (1, True, True)
    assert run["pipeline_package_path"] == "p.yaml"
    assert (recurring.parent / run["pipeline_package_path"]).is_file()
    # JSON text for a list, as the compiled pipeline's list parameters take it
    assert run["params"] == {"n": 4, "scale": 2.0, "label": HOSTILE,
                             "tags": json.dumps(["p", HOSTILE])}
    # the same times as the five fields, in whatever zone the cluster evaluates them
    start = datetime(2025, 3, 28, tzinfo=timezone.utc)
    six = croniter(run["cron_expression"], start, second_at_beginning=True)
    five = croniter("0 2 * * *", start)
    assert [six.get_next(float) for _ in range(5)] == [five.get_next(float) for _ in range(5)]
    # the zone is not lost: the job's runs in Berlin, KFP's cron in its scheduler's zone
    assert "Europe/Berlin" in run["description"] and "CRON_SCHEDULE_TIMEZONE" in text
    warning = zone_warning(NIGHTLY)
    assert warning and "nightly" in warning and BERLIN in warning and "\n" not in warning
    assert "CRON_SCHEDULE_TIMEZONE" in warning


def test_the_header_snippet_submits_it(pipeline: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The file's own instructions, run: kfp's real ``create_recurring_run`` reads the
    definition and the package and builds its request; only sending it is replaced."""
    import kfp

    sent: list[Any] = []

    class Recorder:
        def recurring_run_service_create_recurring_run(self, recurring_run: Any) -> Any:
            sent.append(recurring_run)
            return recurring_run

    class Offline(kfp.Client):
        def __init__(self, host: str) -> None:  # no server to connect to
            self._recurring_run_api = Recorder()

    output = tmp_path / "kfp" / "p.yaml"
    _compile(pipeline, output, NIGHTLY)
    text = (tmp_path / "kfp" / "p.recurring.yaml").read_text()
    snippet = "\n".join(line[4:] for line in text.splitlines() if line.startswith("#   "))
    monkeypatch.setattr(kfp, "Client", Offline)
    monkeypatch.chdir(tmp_path / "kfp")
    exec(snippet, {"HOST": "http://kfp.invalid", "EXPERIMENT_ID": "e-1"})
    (body,) = sent
    assert body.experiment_id == "e-1" and body.display_name == "p-nightly"
    assert body.trigger.cron_schedule.cron == "0 0 2 * * *"
    assert body.max_concurrency == 1 and body.no_catchup is True
    assert body.runtime_config.parameters["label"] == HOSTILE
    assert body.pipeline_spec["pipelineInfo"]["name"] == "p"


def test_an_interval_job_and_a_utc_job(pipeline: Path, tmp_path: Path) -> None:
    from jupyter_mlops.deploy.kfp_pipeline import zone_warning

    often = Timetable("often", every=900, enabled=False)
    _compile(pipeline, tmp_path / "p.yaml", often)
    run = yaml.safe_load((tmp_path / "p.recurring.yaml").read_text())
    assert run["interval_second"] == 900 and "cron_expression" not in run
    assert run["enabled"] is False and run["params"] == {}
    assert zone_warning(often) is None
    daily = Timetable("daily", cron="@daily", tz="Etc/UTC")
    _compile(pipeline, tmp_path / "q.yaml", daily)
    run = yaml.safe_load((tmp_path / "q.recurring.yaml").read_text())
    assert run["cron_expression"] == "0 0 0 * * *"
    assert zone_warning(daily) is None


@pytest.mark.parametrize(("timetable", "match"), [
    (Timetable("sun", cron="0 2 * * 7"), "day-of-week field `7`"),
    (Timetable("last", cron="0 2 L * *"), "day-of-month field `L`"),
    (Timetable("nth", cron="0 2 * * 1#2"), "day-of-week field `1#2`"),
    (Timetable("half", every=1.5), "whole seconds"),
    (Timetable("gone", every=60, parameters={"alpha": 1}), "parameter `alpha`"),
])
def test_what_kfp_cannot_run_is_refused_before_anything_is_written(
        pipeline: Path, tmp_path: Path, timetable: Timetable, match: str) -> None:
    with pytest.raises(MlopsError, match=match) as err:
        _compile(pipeline, tmp_path / "p.yaml", timetable)
    assert "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())


def test_without_a_job_no_recurring_run(pipeline: Path, tmp_path: Path) -> None:
    written = _compile(pipeline, tmp_path / "p.yaml", None)
    assert not (tmp_path / "p.recurring.yaml").exists()
    assert tmp_path / "p.recurring.yaml" not in written


# -- the CLI, from a job made by `jupyter mlops schedule` ----------------------------------

def test_the_cli_exports_a_job_made_by_schedule(tmp_path: Path) -> None:
    pipeline = _typed_pipeline(tmp_path)
    made = run_cli("schedule", str(pipeline), "--cron", "0 2 * * *", "--tz", BERLIN,
                   "-p", "n=300", "-p", f"label={HOSTILE}", "--name", "nightly")
    assert made.returncode == 0, made.stderr
    done = run_cli("airflow", str(pipeline), "-o", str(tmp_path / "dags"), "--job", "nightly")
    assert done.returncode == 0, done.stderr
    path = tmp_path / "dags" / "mlops_p__nightly.py"
    (line,) = done.stdout.splitlines()
    assert line.startswith(f"Wrote {path} (schedule: cron 0 2 * * * (Europe/Berlin), "
                           "parameters n=300, label=")
    call = _dag_call(path.read_text())
    assert ast.literal_eval(call["schedule"]) == "0 2 * * *"
    assert _param_defaults(call)["n"] == 300 and _param_defaults(call)["label"] == HOSTILE
    if importlib.util.find_spec("kfp") is not None:
        done = run_cli("kfp", str(pipeline), "-o", str(tmp_path / "kfp" / "p.yaml"),
                       "--job", "nightly")
        assert done.returncode == 0, done.stderr
        assert any(line.startswith(f"Wrote {tmp_path / 'kfp' / 'p.recurring.yaml'} (schedule:")
                   for line in done.stdout.splitlines())
        (warning,) = done.stderr.splitlines()
        assert "warning: job `nightly`" in warning and "CRON_SCHEDULE_TIMEZONE" in warning
    missing = run_cli("airflow", str(pipeline), "-o", str(tmp_path / "dags"), "--job", "nope")
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1
    assert "nope" in missing.stderr
    alone = run_cli("kfp", str(pipeline), "-o", str(tmp_path / "x.yaml"), "--store", "s.sqlite")
    assert alone.returncode == 2 and "--job" in alone.stderr

