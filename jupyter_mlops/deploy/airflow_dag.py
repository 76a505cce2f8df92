"""Export a pipeline as one Airflow DAG file: a python task per step calling papermill.

The DAG file is self-contained: the pipeline's absolute folder and everything it needs from
``pipeline.yaml`` are written into it as literals, so Airflow's DAG parser never reads the
spec, and at run time it needs only Airflow, papermill, ipykernel and the jupyter-mlops
kernel runtime (``jupyter mlops kernel AIRFLOW_PYTHON`` installs it without changing
Airflow's versions; the whole tool works too, and brings the papermill engine ``mlops``,
which writes the executed notebook less often than papermill's own). Each task runs its step
notebook exactly as ``jupyter mlops run`` does, with ``mlops_pipeline`` set, so a broken
data contract or metric threshold fails the task. Every DAG run keeps its artifacts and
executed notebooks in ``LOCATION/RUN_ID/STEP/``; LOCATION is a folder every worker sees or
an fsspec URL (``s3://bucket/runs``), in which case a task works in a local folder and
copies its inputs down and its step folder up (see :mod:`jupyter_mlops.runtime.remote`).
Each task returns the sha256 of its outputs as its XCom, and the tasks after it check what
they load against those.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import MlopsError, SpecError, shown
from ..pipeline.quoting import QuotingError, python_literal, python_text
from ..pipeline.spec import PipelineSpec
from ..runtime._files import atomic_write
from ..runtime.remote import is_url
from .timetable import Timetable, job_parameters, with_default

#: JSON-schema type of each parameter type, for Airflow's ``Param``.
SCHEMA_TYPES = {"int": "integer", "float": "number", "str": "string", "bool": "boolean",
                "list": "array", "dict": "object"}
_NAME = re.compile(r"[A-Za-z0-9_]+")

_HEADER = '''\
"""Airflow DAG of the jupyter-mlops pipeline `{name}`.

Written by `jupyter mlops airflow`; export the notebook and write the DAG again rather than
editing it. Each task runs one step notebook with papermill (engine `mlops`), so data
contracts and metric thresholds fail the task as they fail a local run. A run's artifacts
and executed notebooks are kept in ARTIFACTS/<run id>/<step>/.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any
{third_party}
_EXTRA = "pip install 'jupyter-mlops[airflow]'"
try:  # Airflow 3
    from airflow.sdk import DAG, Param, get_current_context, task
except ImportError:
    try:  # Airflow 2
        from airflow import DAG
        from airflow.decorators import task
        from airflow.models.param import Param
        from airflow.operators.python import get_current_context
    except ImportError:
        raise ImportError(f"this DAG file needs Apache Airflow; {{_EXTRA}}") from None
try:  # the tasks run jupyter-mlops code; say so when the DAG is parsed, not at run time
    import jupyter_mlops.runtime  # noqa: F401
except ImportError:
    raise ImportError("this DAG needs the jupyter-mlops runtime where Airflow runs: run "
                      "`jupyter mlops kernel AIRFLOW_PYTHON --name KERNEL` (KERNEL below) and "
                      "`pip install papermill` there") from None

PIPELINE = {pipeline}
WORKDIR = {workdir}
#: Where each run's artifacts go: a folder every worker sees, or an fsspec URL (a task then
#: works in a local folder, copying its inputs down and its step's folder up).
ARTIFACTS = {artifacts}
KERNEL = {kernel}
FAIL_ON_DRIFT = {drift}
RETRIES = {retries}
#: Time limit of each task and of each cell, in seconds (None: no limit).
TIMEOUT = {timeout}
#: The job whose schedule this DAG runs (None: runs only when triggered); a job's runs are
#: kept in ARTIFACTS/<job>/<run id>/, apart from other jobs' runs of the same pipeline.
JOB = {job}
#: The type of each pipeline parameter, as pipeline.yaml gives it.
TYPES = {types}
#: Each step: its notebook (relative to PIPELINE), the parameters it uses, and its inputs
#: (variable: the step that outputs it).
STEPS = {steps}


def _run_folder(run_id: str) -> str:
    """The artifacts root of one DAG run; run ids hold `:` and `+`, unsafe in paths."""
    from jupyter_mlops.runtime.remote import join

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("._") or "run"
    return join(ARTIFACTS, JOB, safe) if JOB else join(ARTIFACTS, safe)


def _engine() -> str | None:
    """papermill's engine: jupyter-mlops' own where the whole tool is installed, else
    papermill's (the kernel runtime alone does not bring one)."""
    from papermill.engines import papermill_engines
    from papermill.exceptions import PapermillException

    try:
        papermill_engines.get_engine("mlops")
    except PapermillException:
        return None
    return "mlops"


def _typed(name: str, value: Any) -> Any:
    """A parameter value as the notebook expects it (a JSON 2 for a float is 2.0)."""
    if TYPES.get(name) == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def run_step(name: str) -> dict[str, Any]:
    """Run step `name`'s notebook with papermill; return where its executed notebook is
    and the sha256 of each of its outputs (the XCom the steps after it check)."""
    import papermill

    from jupyter_mlops.runtime.remote import join, output_hashes, staged_run

    context = get_current_context()
    step = STEPS[name]
    location = _run_folder(context["run_id"])
    made = {{p: context["ti"].xcom_pull(task_ids=p) or {{}} for p in set(step["inputs"].values())}}
    hashes = {{v: made[p].get("outputs", {{}}).get(v, "") for v, p in step["inputs"].items()}}
    parameters = {{p: _typed(p, context["params"][p]) for p in step["parameters"]}}
    notebook = Path(step["notebook"]).name
    # A URL location: the kernel works in a local folder, copied down and up around it.
    with staged_run(location, name, step["inputs"], hashes) as root:
        parameters.update(
            mlops_artifacts=str(root),
            mlops_input_hashes=hashes,
            mlops_pipeline=PIPELINE,
            mlops_step=name,
            mlops_fail_on_drift=FAIL_ON_DRIFT,
        )
        (root / name).mkdir(parents=True, exist_ok=True)
        papermill.execute_notebook(
            str(Path(PIPELINE) / step["notebook"]),
            str(root / name / notebook),
            parameters=parameters,
            kernel_name=KERNEL,
            engine_name=_engine(),
            progress_bar=False,
            execution_timeout=TIMEOUT,
            resources={{"metadata": {{"path": WORKDIR}}}},
        )
        outputs = output_hashes(root / name)
    return {{"notebook": join(location, name, notebook), "outputs": outputs}}


with DAG(
    dag_id={dag_id},
    description={description},
{schedule}
    render_template_as_native_obj=True,
    tags=["jupyter-mlops"],
    default_args={{
        "retries": RETRIES,
        "execution_timeout": None if TIMEOUT is None else timedelta(seconds=TIMEOUT),
    }},
    params={params},
) as dag:
'''


def _literal(value: Any, indent: int = 0) -> str:
    """Python source of a JSON-like ``value`` whose continuation lines start at ``indent``
    spaces: containers one item a line, long strings split, so every line stays short."""
    pad, inner = " " * indent, " " * (indent + 4)
    if isinstance(value, str) and len(python_literal(value)) > 60:
        parts = [value[i:i + 50] for i in range(0, len(value), 50)]
        return "(\n" + "".join(f"{inner}{python_literal(p)}\n" for p in parts) + pad + ")"
    if isinstance(value, dict) and value:
        items = "".join(f"{inner}{python_literal(k)}: {_literal(v, indent + 4)},\n"
                        for k, v in value.items())
        return "{\n" + items + pad + "}"
    if isinstance(value, list) and len(python_literal(value)) > 60:
        items = "".join(f"{inner}{_literal(v, indent + 4)},\n" for v in value)
        return "[\n" + items + pad + "]"
    return python_literal(value)


def _param(parameter: Any, indent: int, nullable: bool = False) -> str:
    """``Param(...)`` source for one pipeline parameter (``nullable``: its type takes None
    too, as a parameter whose notebook default is None does)."""
    inner = " " * (indent + 4)
    arguments = [_literal(parameter.default, indent + 4)]
    schema = SCHEMA_TYPES.get(parameter.type)
    if schema is not None:
        nullable = nullable or parameter.default is None
        arguments.append(f"type={python_literal([schema, 'null'] if nullable else schema)}")
    if parameter.help:
        arguments.append(f"description={_literal(parameter.help, indent + 4)}")
    return "Param(\n" + "".join(f"{inner}{a},\n" for a in arguments) + " " * indent + ")"


def dag_id(spec: PipelineSpec, timetable: Timetable | None = None) -> str:
    """The DAG id (and file stem) of ``spec``: ``mlops_<pipeline>``, and for a job's DAG
    ``mlops_<pipeline>__<job>``, so that each job of a pipeline is a DAG of its own."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", spec.name)
    if timetable is None:
        return f"mlops_{name}"
    return f"mlops_{name}__{re.sub(r'[^A-Za-z0-9_.-]+', '_', timetable.name)}"


def _start_date(moment: datetime, zone: str) -> str:
    """Source of a pendulum datetime at ``moment`` (whole seconds) in the zone ``zone``.

    Written as a UTC time moved into the zone, not as a wall-clock time in it: a wall-clock
    time in the hour a daylight-saving change repeats would be ambiguous.
    """
    utc = moment.astimezone(timezone.utc)
    return (f"pendulum.datetime(\n        {utc.year}, {utc.month}, {utc.day}, {utc.hour}, "
            f"{utc.minute}, {utc.second}, tz='UTC',\n    ).in_timezone({_literal(zone, 4)})")


def _schedule(timetable: Timetable | None, written: datetime) -> str:
    """The schedule arguments of ``DAG(...)``: none for a pipeline without a job, else the
    job's timing, one run at a time (a job never overlaps itself), no catching up.

    ``start_date`` is the moment the file is written: with catchup off, Airflow's first run
    is the later of the schedule's last slot before now and its first slot after the start
    date, so a DAG written now first runs at the job's next slot, not at once; an interval
    job's start is one interval later, as a job's first slot is one interval after it is
    made. (That is Airflow 3's trigger timetables, the default there; Airflow 2's default
    data-interval timetables run each slot one period late.) A cron job's start date is in
    the job's zone, which makes it the DAG's zone: Airflow evaluates the cron there,
    daylight-saving changes included.
    """
    if timetable is None:
        return "    schedule=None,\n    catchup=False,"
    if timetable.every is not None:
        seconds = timetable.every
        delta = python_literal(int(seconds) if float(seconds).is_integer() else float(seconds))
        schedule = f"timedelta(seconds={delta})"
        start = _start_date(datetime.fromtimestamp(
            written.timestamp() + float(seconds), tz=timezone.utc), "UTC")
    else:
        schedule = _literal(timetable.cron_text(), 4)
        start = _start_date(written, timetable.tz)
    # a paused job's DAG starts paused; an active one's as Airflow's own setting says
    paused = "" if timetable.enabled else "\n    is_paused_upon_creation=True,"
    return (f"    schedule={schedule},\n    start_date={start},\n    catchup=False,\n"
            f"    max_active_runs=1,{paused}")


def _params_text(spec: PipelineSpec, timetable: Timetable | None) -> str:
    """The ``params={...}`` source: each pipeline parameter's ``Param``, its default the
    job's value where the job sets one."""
    if not spec.parameters:
        return "{}"
    values = job_parameters(timetable, spec) if timetable else {}
    job = timetable.name if timetable else ""
    lines = []
    for parameter in spec.parameters:
        if parameter.name in values:
            value = values[parameter.name]
            try:
                source = _param(with_default(parameter, value), 8, nullable=value is None)
            except QuotingError as err:
                raise MlopsError(f"job `{job}`: parameter `{parameter.name}` = {shown(value)} "
                                 f"cannot be written into a DAG ({err})") from None
        else:
            source = _param(parameter, 8)
        lines.append(f"        {python_literal(parameter.name)}: {source},\n")
    return "{\n" + "".join(lines) + "    }"


def render_dag(spec: PipelineSpec, pipeline_dir: Path, artifacts: str, retries: int,
               timeout: float | None, timetable: Timetable | None = None,
               written: datetime | None = None) -> str:
    """The text of the DAG file of ``spec`` (its folder ``pipeline_dir``, absolute); with
    ``timetable``, the DAG of that job, on its schedule, written at ``written`` (now)."""
    for step in spec.steps:
        if not _NAME.fullmatch(step.name):
            raise SpecError(f"step `{step.name}` cannot be an Airflow task id; use letters, "
                            "digits and underscores (export the notebook again)")
    steps = {s.name: {"notebook": s.notebook, "parameters": list(s.parameters),
                      "inputs": dict(s.inputs)} for s in spec.steps}
    description = f"jupyter-mlops pipeline {spec.name}"
    if timetable is not None:
        description += f", job {timetable.name} ({timetable.describe()})"
    text = _HEADER.format(
        name=python_text(spec.name), pipeline=_literal(str(pipeline_dir)),
        workdir=_literal(str((pipeline_dir / spec.workdir).resolve())),
        artifacts=_literal(artifacts), kernel=_literal(spec.kernel["name"]),
        drift=python_literal(bool(spec.checks.get("fail_on_drift", False))),
        retries=python_literal(retries), timeout=python_literal(timeout),
        types=_literal({p.name: p.type for p in spec.parameters}),
        steps=_literal(steps), dag_id=_literal(dag_id(spec, timetable), 4),
        description=_literal(description, 4),
        params=_params_text(spec, timetable),
        third_party="\nimport pendulum\n" if timetable else "",
        job=_literal(timetable.name if timetable else None),
        schedule=_schedule(timetable, written or datetime.now(timezone.utc)),
    )
    lines = []
    for step in spec.steps:
        lines += [
            f"    @task(task_id={python_literal(step.name)})",
            f"    def step_{step.name}() -> dict[str, Any]:",
            f'        """Run {python_text(step.notebook)}."""',
            f"        return run_step({python_literal(step.name)})",
            "",
        ]
    lines += ["    tasks = {"]
    lines += [f"        {python_literal(s.name)}: step_{s.name}()," for s in spec.steps]
    lines += ["    }"]
    for upstream, downstream in spec.edges:
        lines.append(f"    tasks[{python_literal(upstream)}] >> "
                     f"tasks[{python_literal(downstream)}]")
    return text + "\n".join(lines) + "\n"


def _check_protocols(url: str) -> None:
    """Each protocol of ``url`` (``a::b://...`` chains several) must be one fsspec knows;
    its driver (s3fs, gcsfs) need only be installed where Airflow runs."""
    import fsspec

    for part in url.split("::"):
        protocol = part.split("://", 1)[0]
        if protocol not in fsspec.available_protocols():
            raise MlopsError(f"--artifacts {url}: fsspec knows no protocol `{protocol}`; give "
                             "a folder or a URL such as s3://bucket/runs or file:///shared/runs")


def write_dag(pipeline_dir: str | Path, dags_dir: str | Path, *, artifacts: str | None = None,
              retries: int = 0, timeout: float | None = None,
              timetable: Timetable | None = None) -> Path:
    """Write ``DAGS_DIR/mlops_<pipeline name>.py`` for the pipeline in ``pipeline_dir``.

    ``artifacts`` is where runs keep their artifacts (default ``PIPELINE/runs/airflow``;
    a local path is made absolute, an fsspec URL is written as it is); each DAG run uses
    ``ARTIFACTS/<run id>/``. ``retries`` and ``timeout`` (seconds) apply to every task.

    With ``timetable`` (a job), the DAG is that job's: ``mlops_<pipeline>__<job>.py``, on
    the job's schedule, the job's parameter values as its params' defaults, its runs in
    ``ARTIFACTS/<job>/<run id>/``.
    """
    folder = Path(pipeline_dir).resolve()
    spec = PipelineSpec.read(folder)
    for step in spec.steps:
        if not (folder / step.notebook).is_file():
            raise SpecError(f"{folder / step.notebook} is missing; export the notebook again")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise MlopsError(f"--retries needs a whole number of at least 0, got {retries!r}")
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise MlopsError(f"--timeout needs a positive number of seconds, got {timeout}")
    if timeout is not None:
        timeout = math.ceil(timeout)  # papermill's client counts whole seconds
    if artifacts is None:
        location = str(folder / "runs" / "airflow")
    elif is_url(artifacts):
        _check_protocols(artifacts)
        location = artifacts
    else:
        location = str(Path(artifacts).expanduser().resolve())
    dags = Path(dags_dir)
    if dags.exists() and not dags.is_dir():
        raise MlopsError(f"{dags} is a file, not a folder for DAG files; give a folder with -o")
    text = render_dag(spec, folder, location, retries, timeout, timetable)
    path = dags / f"{dag_id(spec, timetable)}.py"
    try:
        atomic_write(path, text)
    except OSError as err:
        raise MlopsError(f"cannot write {path}: {err.strerror or err}") from None
    return path
