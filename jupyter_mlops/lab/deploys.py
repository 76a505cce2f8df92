"""Deploy from JupyterLab: ``POST /mlops/deploy`` over :mod:`jupyter_mlops.deploy`.

``{"pipeline": DIR, "target": "airflow" | "kfp", "options": {...}}`` writes what
``jupyter mlops airflow`` or ``jupyter mlops kfp`` writes, through the same library calls,
and answers the written files relative to the server's root with the line the CLI prints.
The options are the CLI's: ``output`` (``-o``, a path relative to the root), ``job``
(``--job NAME``), for Airflow ``artifacts`` (a folder relative to the root, or an fsspec
URL), ``retries`` and ``timeout``, for KFP ``image``. Paths stay inside the root; a refused
option is a 4xx with the library's one line, the root left out of the paths it names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import tornado

from ..errors import MlopsError
from ..runtime.remote import is_url
from .base import Base, Refused, answers_json
from .guard import check_inside, shown

if TYPE_CHECKING:
    from ..deploy.timetable import Timetable

__all__ = ["DeployHandler", "TARGETS"]

#: The engines the panel deploys to, and the options each takes (with their JSON types).
TARGETS: dict[str, dict[str, tuple[type, ...]]] = {
    "airflow": {"output": (str,), "job": (str,), "artifacts": (str,), "retries": (int,),
                "timeout": (int, float)},
    "kfp": {"output": (str,), "job": (str,), "image": (str,)},
}


def _options(target: Any, given: Any) -> dict[str, Any]:
    """The request's options for ``target``, each of its type (empty strings dropped)."""
    if target not in TARGETS:
        raise Refused(400, f"`target` must be airflow or kfp, not `{shown(str(target), 40)}`")
    given = {} if given is None else given
    if not isinstance(given, dict):
        raise Refused(400, "`options` must be an object of option: value")
    known = TARGETS[target]
    options: dict[str, Any] = {}
    for key, value in given.items():
        if key not in known:
            raise Refused(400, f"{target} has no option `{shown(str(key), 40)}`; its options "
                               f"are {', '.join(known)}")
        if value is None or value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, known[key]):
            kind = "a number" if int in known[key] else "a string"
            raise Refused(400, f"option `{key}` must be {kind}, not {shown(repr(value), 40)}")
        options[key] = value
    if "output" not in options:
        raise Refused(400, "missing option `output`: where to write, relative to the "
                           "server's root")
    return options


def _timetable(folder: Path, job: str | None) -> Timetable | None:
    """The job ``job`` as the exports take it (what ``--job NAME`` does); None without one."""
    if job is None:
        return None
    from ..jobs.api import job_timetable
    from ..jobs.store import NoSuchJob

    try:
        return job_timetable(folder, job)
    except NoSuchJob as err:
        raise Refused(404, str(err).splitlines()[0]) from None


class DeployHandler(Base):
    """``POST /mlops/deploy``: an Airflow DAG or a KFP pipeline of an exported pipeline."""

    @tornado.web.authenticated
    @answers_json
    async def post(self) -> None:
        """Write the target's files; 200 with them, 4xx with one line for a refused option."""
        body = self.body()
        folder = self.pipeline(body.get("pipeline"))
        target = body.get("target")
        options = _options(target, body.get("options"))
        output = self.resolve(options["output"], "output")
        check_inside(self.root(), output.parent)
        artifacts = options.get("artifacts")
        if artifacts is not None and not is_url(artifacts):  # a folder: inside the root too
            options["artifacts"] = str(self.resolve(artifacts, "artifacts"))
        try:
            reply = await self.blocking(self._deploy, folder, target, output, options)
        except MlopsError as err:  # named by the root's spelling, never the server's path
            raise Refused(400, self.spelled(str(err).splitlines()[0])) from None
        self._reply(200, reply)

    def _deploy(self, folder: Path, target: str, output: Path,
                options: dict[str, Any]) -> dict[str, Any]:
        """Call the library as the CLI does; the files written and the CLI's lines."""
        timetable = _timetable(folder, options.get("job"))
        warning = None
        if target == "airflow":
            from ..deploy.airflow_dag import write_dag

            if output.suffix == ".py":
                raise Refused(400, "the Airflow output is a folder for DAG files (e.g. dags), "
                                   "not a .py file")
            written = [write_dag(folder, output, artifacts=options.get("artifacts"),
                                 retries=options.get("retries", 0),
                                 timeout=options.get("timeout"), timetable=timetable)]
            marked = written[0]
        else:
            from ..deploy.kfp_pipeline import compile_pipeline, recurring_path, zone_warning

            written = compile_pipeline(folder, output, image=options.get(
                "image", "jupyter-mlops-pipeline:latest"), timetable=timetable)
            marked = recurring_path(output) if timetable else None
            warning = zone_warning(timetable) if timetable else None
        lines = [f"Wrote {self.relative(p)}"
                 f"{timetable.said() if timetable and p == marked else ''}"
                 for p in written]
        return {"target": target, "path": self.relative(written[0]),
                "files": [self.relative(p) for p in written], "summary": lines[0],
                "lines": lines, "warning": self.spelled(warning) if warning else None}
