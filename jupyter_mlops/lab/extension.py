"""The Jupyter server extension behind the sidebar: REST endpoints under ``/mlops/``.

Each handler is a thin face over one library call (analyze, export, start / watch / cancel a
run, list runs). Every verb is authenticated, state-changing ones are XSRF-checked by
jupyter_server's ``APIHandler``, every body and path goes through :mod:`.guard` (a JSON
object; inside the server's root, symbolic links followed, hidden unless the contents
manager allows), and a user's mistake comes back as JSON ``{"error": ..., "cell": ...}``
with a 4xx status.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tornado
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from .. import __version__
from ..errors import MlopsError
from .base import Base, answers_json, is_file
from .base import Refused as _Refused
from .deploys import DeployHandler
from .guard import shown
from .launches import LabJobs
from .schedules import JobHandler, JobsHandler, start_scheduler
from .view import RecordError


class VersionHandler(Base):
    """``GET /mlops/version``: the sidebar's check that the server extension is there."""

    @tornado.web.authenticated
    @answers_json
    async def get(self) -> None:
        """Answer with the package version."""
        self._reply(200, {"version": __version__})


class NotFoundHandler(Base):
    """Any other URL under ``/mlops/``: a JSON 404 the sidebar can show, not an HTML page."""

    @tornado.web.authenticated
    @answers_json
    async def get(self, rest: str = "") -> None:
        """Refuse, naming the routes there are."""
        raise _Refused(404, f"no route /mlops/{shown(rest)}; the routes are /mlops/version, "
                            "analyze, export, runs, runs/RUN_ID, runs/A/diff/B, jobs, "
                            "jobs/NAME and deploy")

    post = put = delete = patch = get


class AnalyzeHandler(Base):
    """``POST /mlops/analyze {"path"}``: what ``jupyter mlops show --json`` prints, and more."""

    @tornado.web.authenticated
    @answers_json
    async def post(self) -> None:
        """Analyse the saved notebook: steps, cells, problems, what the kernel captured."""
        path = self.notebook(self.body().get("path"))
        self._reply(200, await self.blocking(self._analyze, path))

    def _analyze(self, path: Path) -> dict[str, Any]:
        from ..notebook.roles import ROLES
        from ..pipeline.export import default_folder, plan
        from ..pipeline.freshness import stale_export
        from ..pipeline.spec import SPEC_FILE, PipelineSpec
        from ..run.report import describe_json
        from .view import captured_summary

        analysis, spec = plan(path)
        data = describe_json(spec, analysis)
        folder = default_folder(path)
        data["notebook"] = self.relative(path)
        data["pipeline_dir"] = self.relative(folder)
        data["exported"] = (folder / SPEC_FILE).is_file()
        data["roles"] = list(ROLES)  # the sidebar's buttons: one list, the library's
        # the pipeline folder's own spec, not this analysis': has the notebook moved on?
        data["stale"] = stale_export(PipelineSpec.read(folder), folder) \
            if data["exported"] else None
        data["captured"] = captured_summary(path)
        return data


class ExportHandler(Base):
    """``POST /mlops/export {"path"}``: write the pipeline folder beside the notebook."""

    @tornado.web.authenticated
    @answers_json
    async def post(self) -> None:
        """Export; 400 with every problem when the notebook cannot become a pipeline."""
        path = self.notebook(self.body().get("path"))
        self._reply(200, await self.blocking(self._export, path))

    def _export(self, path: Path) -> dict[str, Any]:
        from ..pipeline.export import export

        result = export(path)
        return {"pipeline_dir": self.relative(result.folder),
                "steps": [s.name for s in result.spec.steps],
                "warnings": [p.to_dict() for p in result.warnings]}


class RunsHandler(Base):
    """``GET /mlops/runs?pipeline=DIR`` lists runs; ``POST /mlops/runs`` starts one."""

    @tornado.web.authenticated
    @answers_json
    async def get(self) -> None:
        """The latest runs of a pipeline, newest first."""
        from .view import run_history

        folder = self.pipeline(self.get_query_argument("pipeline", ""))
        runs = await self.blocking(run_history, folder, self.launched, 20, self.root())
        self._reply(200, {"runs": runs, "active": self.launched.active(folder)})

    @tornado.web.authenticated
    @answers_json
    async def post(self) -> None:
        """Start a run in a child process; answer 202 with its id at once."""
        from ..pipeline.spec import PipelineSpec

        body = self.body()
        folder = self.pipeline(body.get("pipeline"))
        given = body.get("parameters")
        given = {} if given is None else given
        if not isinstance(given, dict):
            raise _Refused(400, "`parameters` must be an object of name: value")
        spec = PipelineSpec.read(folder)
        # typed and checked here, so a bad value is a 400 now, not a failed run later
        values = spec.parse_parameters(
            [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in given.items()])
        kernel = body.get("kernel") or None
        if kernel is not None:  # checked here too, so a kernel not installed is a 400 now
            from ..execution.stepexec import check_kernel
            from ..run.options import RunOptions

            RunOptions(kernel=kernel).validate()
            check_kernel(kernel, chosen=True)
        job = self.launched.start(folder, values, kernel=kernel)
        self._reply(202, {"run_id": job.run_id, "pipeline_dir": self.relative(folder)})


class RunHandler(Base):
    """``GET /mlops/runs/ID?pipeline=DIR``: progress; ``DELETE``: cancel the run."""

    @tornado.web.authenticated
    @answers_json
    async def get(self, run_id: str) -> None:
        """The run's record as it stands, with per-step progress and notebook links."""
        run_id = self.run_id(run_id)
        folder = self.pipeline(self.get_query_argument("pipeline", ""))
        try:
            data = await self.blocking(self.launched.status, folder, run_id, self.root())
        except RecordError as err:  # there, but damaged or kept outside the root
            raise _Refused(409, str(err)) from None
        except MlopsError as err:
            raise _Refused(404, str(err)) from None
        from ..run.report import check_warnings

        for step in data.get("steps", []):
            # what the run summary says of the step's checks: drift named by column
            step["warnings"] = check_warnings(step.get("checks") or [])[0]
        self._reply(200, data)

    @tornado.web.authenticated
    @answers_json
    async def delete(self, run_id: str) -> None:
        """Cancel a run this server started; its kernels are shut down. 409 once it has
        ended (a second cancel answers once the first has ended it)."""
        run_id = self.run_id(run_id)
        folder = self.pipeline(self.get_query_argument("pipeline", ""))
        job = self.launched.jobs.get(run_id)
        if job is None or job.pipeline != folder:
            raise _Refused(404, f"run `{run_id}` of `{self.relative(folder)}` was not started "
                                "by this server, so it cannot be cancelled here")
        # off the event loop: a run already being cancelled is waited for (bounded)
        if not await self.blocking(self.launched.cancel, run_id):
            state = "is still being cancelled" if job.running else "has already finished"
            raise _Refused(409, f"run `{run_id}` {state}")
        self._reply(202, {"run_id": run_id, "status": "cancelling"})


class CompareHandler(Base):
    """``GET /mlops/runs/A/diff/B?pipeline=DIR``: two runs side by side (``runs diff A B``)."""

    @tornado.web.authenticated
    @answers_json
    async def get(self, run_a: str, run_b: str) -> None:
        """Parameters, data fingerprints, outputs and metrics of runs A and B; 404 for a run
        the pipeline's store does not have."""
        ids = self.run_id(run_a), self.run_id(run_b)
        folder = self.pipeline(self.get_query_argument("pipeline", ""))
        self._reply(200, await self.blocking(self._compare, folder, *ids))

    def _compare(self, folder: Path, run_a: str, run_b: str) -> dict[str, Any]:
        from ..run.compare import compare_runs
        from ..run.store import RunStore, default_store

        path = default_store(folder)
        if not is_file(path):
            raise _Refused(404, f"`{self.relative(folder)}` has no runs yet; run it first")
        store = RunStore(path)
        try:
            return compare_runs(store.run(run_a), store.run(run_b)).to_dict()
        except MlopsError as err:  # named by the root's spelling, not the server's path
            raise _Refused(404, self.spelled(str(err).splitlines()[0])) from None
        finally:
            store.close()


def handlers(base_url: str) -> list[tuple[str, type[APIHandler]]]:
    """The URL routes of the extension under ``base_url``."""
    return [
        (url_path_join(base_url, "mlops", "version"), VersionHandler),
        (url_path_join(base_url, "mlops", "analyze"), AnalyzeHandler),
        (url_path_join(base_url, "mlops", "export"), ExportHandler),
        (url_path_join(base_url, "mlops", "runs"), RunsHandler),
        (url_path_join(base_url, "mlops", "runs", "([^/]+)"), RunHandler),
        (url_path_join(base_url, "mlops", "runs", "([^/]+)", "diff", "([^/]+)"), CompareHandler),
        (url_path_join(base_url, "mlops", "jobs"), JobsHandler),
        (url_path_join(base_url, "mlops", "jobs", "([^/]+)"), JobHandler),
        (url_path_join(base_url, "mlops", "deploy"), DeployHandler),
        (url_path_join(base_url, "mlops", "(.*)"), NotFoundHandler),
    ]


def load(server_app: Any) -> None:
    """Register the routes with a running jupyter_server."""
    web_app = server_app.web_app
    web_app.settings.setdefault("mlops_jobs", LabJobs())
    web_app.add_handlers(".*$", handlers(web_app.settings["base_url"]))
    root = Path(web_app.settings.get("server_root_dir") or ".").expanduser()
    if "mlops_scheduler" not in web_app.settings:  # one scheduler per server
        web_app.settings["mlops_scheduler"] = start_scheduler(root, server_app.log)
    server_app.log.info("jupyter-mlops %s: server extension loaded at /mlops/", __version__)
    if not (Path(__file__).resolve().parent.parent / "labextension" / "package.json").is_file():
        # an editable install on a machine without Node.js: the endpoints work, the panel is absent
        server_app.log.warning("jupyter-mlops: the JupyterLab sidebar was not built; install "
                               "Node.js 20 and run `pip install -e .` again to get it")
