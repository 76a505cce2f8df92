"""Kubeflow Pipelines (v2): compile a pipeline folder with the kfp SDK.

Each step becomes a container component that runs papermill on its step notebook, baked into
the image with what the steps read beside the notebook (see :mod:`jupyter_mlops.deploy.kfp_image`),
in the same working directory as a local run. A step's artifacts (``artifacts/STEP/`` in a
local run) are one KFP output artifact (a Model when the step outputs a model, else a
Dataset); the artifacts of the steps it reads are its input artifacts. A small POSIX ``sh``
wrapper lays them out as the step notebook expects: a run folder whose
``artifacts/PRODUCER`` links to each input artifact and ``artifacts/STEP`` to the output
artifact, passed as ``mlops_artifacts``.

Beside the compiled YAML go a ``Dockerfile``, the ``requirements.txt`` of the image and the
kernel runtime wheel it installs (not the authoring tool: :mod:`.runtime_wheel`). For a job,
also ``<stem>.recurring.yaml``: the keyword arguments of ``kfp.Client.create_recurring_run``
that run the pipeline on the job's schedule with the job's parameters.
"""

from __future__ import annotations

import inspect
import json
import posixpath
import re
import tempfile
from pathlib import Path
from typing import Any

from ..errors import MlopsError, shown
from ..pipeline.quoting import python_comment, python_literal, shell_word, yaml_text
from ..pipeline.spec import PipelineSpec, Step
from ..pipeline.stepnotebook import (
    ARTIFACTS_PARAMETER,
    DRIFT_PARAMETER,
    PIPELINE_PARAMETER,
    STEP_PARAMETER,
)
from ..runtime._files import atomic_write
from .kfp_image import ImageLayout, dockerfile, image_layout, requirements
from .runtime_wheel import build_runtime_wheel
from .timetable import Timetable, job_parameters, with_default

#: The run folder the wrapper makes inside the container (one pod per task: no clashes).
RUN_FOLDER = "/tmp/mlops-run"
#: Names of a component's own artifacts (``mlops_`` names are reserved for us).
OUTPUT_ARTIFACT = "mlops_artifacts_out"
INPUT_PREFIX = "mlops_from_"
MISSING_KFP = ("`jupyter mlops kfp` needs the kfp SDK; pip install 'jupyter-mlops[kfp]'")
#: Python types of pipeline parameters; list, dict and None travel as JSON/YAML text.
_KFP_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}
#: Names of UTC itself: a cron job in one of these zones runs on KFP's default zone as written.
UTC_ZONES = frozenset({"UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Etc/Universal",
                       "Zulu", "Etc/Zulu", "GMT", "Etc/GMT", "GMT0", "Etc/GMT0", "GMT+0",
                       "Etc/GMT+0", "GMT-0", "Etc/GMT-0", "Greenwich", "Etc/Greenwich"})
#: What KFP's cron (github.com/robfig/cron, v1 syntax) reads in one field: lists of ``*``,
#: ``?``, numbers, three-letter names and ranges of them, each with an optional ``/step``.
_ROBFIG_VALUE = r"(?:\d+|[A-Za-z]{3})"
_ROBFIG_ITEM = rf"(?:\*|\?|{_ROBFIG_VALUE}(?:-{_ROBFIG_VALUE})?)(?:/\d+)?"
_ROBFIG_FIELD = re.compile(rf"{_ROBFIG_ITEM}(?:,{_ROBFIG_ITEM})*")
_CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")


def _require_kfp() -> Any:
    try:
        from kfp import compiler, dsl
    except ImportError:
        raise MlopsError(MISSING_KFP) from None
    return compiler, dsl


def kfp_name(name: str) -> str:
    """``name`` as KFP names pipelines: lower case letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "pipeline"


def parameter_default(parameter: Any) -> Any:
    """The KFP default of a spec parameter: itself, or JSON text for list, dict and None."""
    if parameter.type in _KFP_TYPES:
        return parameter.default
    return json.dumps(parameter.default)


def _parameter_flags(name: str, type_name: str, value: Any) -> list[Any]:
    """papermill flags that hand ``value`` (a KFP placeholder) to the notebook, typed.

    str is raw text (``-r``); int and float go through ``-p`` (papermill reads numbers);
    bool, list, dict and None are read as YAML (``-y``), which takes KFP's ``true``/``false``
    and JSON text alike.
    """
    if type_name == "str":
        return ["-r", name, value]
    if type_name in ("int", "float"):
        return ["-p", name, value]
    return ["-y", f"{name}: {value}"]


def _wrapper(step: Step, producers: list[str]) -> str:
    """The sh script of a step: link the artifacts into a run folder, then run ``"$@"``."""
    lines = ["set -eu", f"run={shell_word(RUN_FOLDER)}", 'rm -rf "$run"',
             'mkdir -p "$run/artifacts" "$run/steps" "$1"',
             f'ln -s "$1" "$run/artifacts/"{shell_word(step.name)}']
    lines += [f'ln -s "${i + 2}" "$run/artifacts/"{shell_word(producer)}'
              for i, producer in enumerate(producers)]
    lines += [f"shift {len(producers) + 1}", 'exec "$@"']
    return "\n".join(lines)


def _make_function(name: str, parameters: list[inspect.Parameter], body: Any,
                   doc: str | None = None) -> Any:
    """A function called ``name`` with this signature (what the kfp decorators inspect)."""
    names = [p.name for p in parameters]

    def function(*args: Any, **kwargs: Any) -> Any:
        return body(dict(zip(names, args, strict=False)) | kwargs)

    function.__name__ = function.__qualname__ = name
    function.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    function.__doc__ = doc
    return function


def _step_component(dsl: Any, spec: PipelineSpec, step: Step, image: str,
                    kinds: dict[str, Any], layout: ImageLayout) -> Any:
    """The container component of one step."""
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    producers = list(dict.fromkeys(step.inputs.values()))
    types = {p.name: p.type for p in spec.parameters}
    signature = [inspect.Parameter(OUTPUT_ARTIFACT, keyword, annotation=dsl.Output[kinds[
        step.name]])]
    signature += [inspect.Parameter(INPUT_PREFIX + producer, keyword,
                                    annotation=dsl.Input[kinds[producer]])
                  for producer in producers]
    signature += [inspect.Parameter(name, keyword,
                                    annotation=_KFP_TYPES.get(types[name], str))
                  for name in step.parameters]
    notebook = posixpath.join(layout.pipeline, step.notebook)
    drift = "True" if spec.checks.get("fail_on_drift") else "False"

    def body(values: dict[str, Any]) -> Any:
        command = ["papermill", notebook, f"{RUN_FOLDER}/{step.notebook}",
                   "-k", spec.kernel["name"], "--cwd", layout.workdir, "--log-output",
                   "--no-progress-bar"]
        for name in step.parameters:
            command += _parameter_flags(name, types[name], values[name])
        command += ["-r", ARTIFACTS_PARAMETER, f"{RUN_FOLDER}/artifacts",
                    "-r", PIPELINE_PARAMETER, layout.pipeline,
                    "-r", STEP_PARAMETER, step.name,
                    "-p", DRIFT_PARAMETER, drift]
        paths = [values[OUTPUT_ARTIFACT].path]
        paths += [values[INPUT_PREFIX + producer].path for producer in producers]
        return dsl.ContainerSpec(image=image,
                                 command=["sh", "-c", _wrapper(step, producers), "mlops-step"],
                                 args=[*paths, *command])

    return dsl.container_component(_make_function(step.name, signature, body))


def build_pipeline(spec: PipelineSpec, image: str, layout: ImageLayout) -> Any:
    """The kfp pipeline function of ``spec``: one task per step, wired by artifacts, each
    running in ``image``, laid out as ``layout`` says."""
    _, dsl = _require_kfp()
    kinds = {step.name: dsl.Model if any(o.role == "model" for o in step.outputs)
             else dsl.Dataset for step in spec.steps}
    components = {step.name: _step_component(dsl, spec, step, image, kinds, layout)
                  for step in spec.steps}
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    signature = [inspect.Parameter(p.name, keyword, default=parameter_default(p),
                                   annotation=_KFP_TYPES.get(p.type, str))
                 for p in spec.parameters]

    def body(values: dict[str, Any]) -> None:
        tasks: dict[str, Any] = {}
        for step in spec.steps:
            arguments = {name: values[name] for name in step.parameters}
            for producer in dict.fromkeys(step.inputs.values()):
                arguments[INPUT_PREFIX + producer] = tasks[producer].outputs[OUTPUT_ARTIFACT]
            task = components[step.name](**arguments)
            task.set_display_name(step.name)
            for upstream in step.after:
                if upstream not in step.inputs.values():
                    task.after(tasks[upstream])
            tasks[step.name] = task

    description = f"jupyter-mlops pipeline `{spec.name}` (from {spec.source})"
    helps = [f"    {p.name}: {' '.join(p.help.split())}" for p in spec.parameters if p.help]
    doc = "\n".join([description, "", "Args:", *helps]) if helps else description
    function = _make_function(kfp_name(spec.name), signature, body, doc)
    return dsl.pipeline(name=kfp_name(spec.name), description=description)(function)


def _over_six(value: str) -> bool:
    """Whether a day-of-week field names a day past 6 (croniter's 7 is Sunday, robfig's is
    no day); steps (``/7``) are counts, not days."""
    return any(int(number) > 6 for item in value.split(",")
               for number in re.findall(r"\d+", item.split("/")[0]))


def kfp_cron(timetable: Timetable) -> str:
    """The job's cron expression as KFP writes cron: six fields, seconds first (``0``).

    The job's expression was checked by croniter, which reads more than KFP's robfig cron:
    ``L``, ``#``, ``W``, 7 for Sunday. A field KFP would read differently, or refuse only
    when the run is submitted, is refused here, by name.
    """
    fields = timetable.fields() or []
    for index, value in enumerate(fields):
        letters = any(c.isalpha() for c in value)
        if not _ROBFIG_FIELD.fullmatch(value) or (letters and index < 3) or \
                (index == 4 and _over_six(value)):
            raise MlopsError(f"job `{timetable.name}`: KFP's cron cannot read the "
                             f"{_CRON_FIELDS[index]} field `{shown(value)}` of "
                             f"`{shown(timetable.cron)}`; make the job again with numbers, "
                             "ranges, lists and steps only (Sunday is 0, not 7)")
    return " ".join(["0", *fields])


def zone_warning(timetable: Timetable) -> str | None:
    """The line to show when KFP may run the job's cron in another zone than the job's.

    KFP evaluates a recurring run's cron in its scheduler's zone: UTC unless the
    ml-pipeline-scheduledworkflow deployment sets CRON_SCHEDULE_TIMEZONE, which cannot be
    seen from here. So the definition is written anyway, the job's zone in its description
    and header, and this warning says what to set. Refusing would leave no way to hand a
    cluster set to the job's zone its job; moving the cron to UTC would be an hour off for
    half of each year wherever clocks change.
    """
    if timetable.cron is None or timetable.tz in UTC_ZONES:
        return None
    return (f"job `{timetable.name}` runs `{timetable.cron_text()}` in {timetable.tz}, but KFP "
            "evaluates cron in its scheduler's zone, UTC unless CRON_SCHEDULE_TIMEZONE is set "
            f"on the ml-pipeline-scheduledworkflow deployment: set it to {timetable.tz} there, "
            "or make the job with --tz UTC")


def recurring_path(output: str | Path) -> Path:
    """Where the recurring run of the compiled pipeline ``output`` is written, beside it."""
    output = Path(output)
    return output.with_name(f"{output.stem}.recurring.yaml")


def recurring_run(spec: PipelineSpec, timetable: Timetable, package: str) -> dict[str, Any]:
    """The keyword arguments of ``kfp.Client.create_recurring_run`` that run the compiled
    pipeline ``package`` (a path relative to the definition) on the job's schedule, with the
    job's parameters; all but ``experiment_id``, which names an experiment of the cluster.
    One run at a time (a job never overlaps itself), and no catching up on missed slots."""
    known = {p.name: p for p in spec.parameters}
    params = {name: parameter_default(with_default(known[name], value))
              for name, value in job_parameters(timetable, spec).items()}
    run: dict[str, Any] = {
        "job_name": f"{kfp_name(spec.name)}-{timetable.name}",
        "description": f"jupyter-mlops job {timetable.name} of pipeline {spec.name}: "
                       f"{timetable.describe()}",
    }
    if timetable.every is None:
        run["cron_expression"] = kfp_cron(timetable)
    elif float(timetable.every).is_integer():
        run["interval_second"] = int(timetable.every)
    else:
        raise MlopsError(f"job `{timetable.name}` runs every {timetable.every:g}s; KFP counts "
                         "intervals in whole seconds: make the job again with one")
    run.update(max_concurrency=1, no_catchup=True, enabled=timetable.enabled, params=params,
               pipeline_package_path=package)
    return run


def recurring_text(run: dict[str, Any], timetable: Timetable, path: Path) -> str:
    """The recurring run's YAML file: a header saying how to submit it, then ``run``."""
    name = python_comment(python_literal(path.name))
    zone = timetable.tz if timetable.cron is not None else "none (an interval)"
    header = [
        f"# The recurring run of the jupyter-mlops job {python_comment(timetable.name)}: the "
        "keyword arguments of",
        "# kfp.Client.create_recurring_run, written by `jupyter mlops kfp --job`.",
        f"# The job's time zone: {python_comment(zone)}. KFP evaluates cron_expression in its "
        "scheduler's",
        "# zone: UTC unless ml-pipeline-scheduledworkflow sets CRON_SCHEDULE_TIMEZONE.",
        "# Submit it to an experiment of your cluster (no KFP server was asked to write it):",
        "#   import kfp, pathlib, yaml",
        f"#   path = pathlib.Path({name}); run = yaml.safe_load(path.read_text())",
        "#   run['pipeline_package_path'] = str(path.parent / run['pipeline_package_path'])",
        "#   kfp.Client(host=HOST).create_recurring_run(experiment_id=EXPERIMENT_ID, **run)",
    ]
    return "\n".join(header) + "\n" + yaml_text(run)


def compile_pipeline(pipeline_dir: str | Path, output: str | Path, *, image: str,
                     timetable: Timetable | None = None) -> list[Path]:
    """Compile the pipeline in ``pipeline_dir`` to the KFP v2 YAML ``output``; write the
    image's ``Dockerfile``, ``requirements.txt`` and the kernel runtime wheel beside it,
    and with ``timetable`` (a job) its recurring run (:func:`recurring_path`).
    Returns the paths written."""
    folder = Path(pipeline_dir)
    spec = PipelineSpec.read(folder)
    compiler, _ = _require_kfp()
    output = Path(output)
    if output.suffix not in (".yaml", ".yml"):
        raise MlopsError(f"the compiled pipeline is YAML: name it *.yaml, not {output.name}")
    recurring: dict[Path, str] = {}
    if timetable is not None:  # checked before compiling: a refusal costs nothing
        path = recurring_path(output)
        run = recurring_run(spec, timetable, output.name)
        recurring[path] = recurring_text(run, timetable, path)
    if not image.strip():
        raise MlopsError("--image needs the name of the image the steps run in")
    for step in spec.steps:
        if not (folder / step.notebook).is_file():
            raise MlopsError(f"{folder / step.notebook} is missing; export the notebook again")
    layout = image_layout(folder, spec)
    try:
        pipeline = build_pipeline(spec, image, layout)
        with tempfile.TemporaryDirectory() as tmp:
            compiled = Path(tmp) / "pipeline.yaml"
            compiler.Compiler().compile(pipeline, str(compiled))
            text = compiled.read_text(encoding="utf-8")
    except MlopsError:
        raise
    except Exception as err:  # the SDK's own checks: names, types, placeholders
        reason = (str(err).splitlines() or [""])[0]
        raise MlopsError(f"kfp could not compile pipeline `{spec.name}`: "
                         f"{type(err).__name__}: {reason}") from None
    docker = output.parent / "Dockerfile"
    reqs = output.parent / "requirements.txt"
    # every text first: a refusal (a WORKDIR Docker cannot take) leaves nothing half-written
    texts = {output: text, **recurring, reqs: requirements(folder, spec, layout),
             docker: dockerfile(layout, output.parent, spec, image)}
    for path, content in texts.items():
        atomic_write(path, content)
    wheel = build_runtime_wheel(output.parent)
    return [output, *recurring, docker, reqs, wheel]
