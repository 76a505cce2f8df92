"""The Jupyter server extension behind the sidebar: REST endpoints under ``/mlops/``.

Each handler is a thin face over one library call (analyze, export, start / watch / cancel a
run, list runs). Every verb is authenticated, state-changing ones are XSRF-checked by
jupyter_server's ``APIHandler``, every body and path goes through :mod:`.guard` (a JSON
object; inside the server's root, symbolic links followed, hidden unless the contents
manager allows), and a user's mistake comes back as JSON ``{"error": ..., "cell": ...}``
with a 4xx status.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import tornado
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from .. import __version__
from ..errors import AnalysisError, MlopsError, OptionError
from .guard import Refused as _Refused
from .guard import check_inside, parse_body, relative_to, resolve_inside, shown
from .jobs import LabJobs
from .view import RecordError

#: The request field that holds each option the library may refuse (an OptionError's option).
FIELDS = {"parameters": "parameters", "output": "path", "kernel": "kernel"}

#: What a run id looks like (``run.results.new_run_id``, or a name given on the command line).
_RUN_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,127}")
#: What export writes into a pipeline folder, and what a run writes there.
_EXPORTED = ("pipeline.yaml", "README.md", "steps", "contract", "tests")
_RUN_WRITES = ("pipeline.yaml", "runs", ".mlops")

Handler = Callable[..., Awaitable[None]]


def _answers_json(method: Handler) -> Handler:
    """Turn a user's mistake into JSON 4xx with one line, and our bug into a JSON 500."""

    @functools.wraps(method)
    async def wrapper(self: _Base, *args: Any) -> None:
        try:
            await method(self, *args)
        except _Refused as err:
            self._reply(err.status, {"error": str(err), "cell": None})
        except AnalysisError as err:
            self._reply(400, {"error": str(err).splitlines()[0], "cell": err.cell,
                              "problems": [p.to_dict() for p in err.problems]})
        except OptionError as err:  # the field of the request that holds the bad setting
            self._reply(400, {"error": str(err).splitlines()[0], "cell": None,
                              "field": FIELDS.get(err.option, err.option)})
        except MlopsError as err:
            self._reply(400, {"error": str(err).splitlines()[0], "cell": err.cell})
        except tornado.web.HTTPError:
            raise
        except Exception as err:  # a bug of ours: logged in full, one line to the user
            self.log.exception("jupyter-mlops: %s failed", self.request.path)
            self._reply(500, {"error": f"internal error in jupyter-mlops: {type(err).__name__}: "
                                       f"{err}", "cell": None})

    return wrapper


class _Base(APIHandler):
    """What every endpoint shares: the root directory, JSON bodies and replies."""

    @property
    def jobs(self) -> LabJobs:
        """The runs this server started."""
        return self.settings["mlops_jobs"]

    def _reply(self, status: int, data: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))

    def body(self) -> dict[str, Any]:
        """The request's JSON object (400 for anything else)."""
        return parse_body(self.request.body)

    def root(self) -> Path:
        """The server's root directory, resolved."""
        return Path(self.settings.get("server_root_dir") or ".").expanduser().resolve()

    def resolve(self, relative: Any, what: str) -> Path:
        """``relative`` (a path as the contents API spells it) inside the root, or 4xx."""
        allow_hidden = bool(getattr(self.contents_manager, "allow_hidden", False))
        return resolve_inside(self.root(), relative, what, allow_hidden)

    def relative(self, path: str | Path) -> str:
        """``path`` as the contents API spells it (for links the sidebar opens), or ""."""
        return relative_to(self.root(), path)

    def notebook(self, relative: Any) -> Path:
        """An existing notebook inside the root, whose capture record and pipeline folder
        (which analysis reads and export writes) stay inside the root too."""
        from ..notebook.captures import record_path
        from ..pipeline.export import default_folder

        path = self.resolve(relative, "path")
        if path.suffix != ".ipynb":
            raise _Refused(400, f"`{shown(relative)}` is not a notebook (.ipynb)")
        if not _is_file(path):
            raise _Refused(404, f"no notebook `{shown(relative)}` under the server's root")
        check_inside(self.root(), record_path(path))
        check_inside(self.root(), default_folder(path), _EXPORTED + _RUN_WRITES)
        return path

    def pipeline(self, relative: Any) -> Path:
        """An exported pipeline folder inside the root."""
        from ..pipeline.spec import SPEC_FILE

        path = self.resolve(relative, "pipeline")
        check_inside(self.root(), path, _RUN_WRITES)
        if not _is_file(path / SPEC_FILE):
            raise _Refused(404, f"`{shown(relative)}` is not an exported pipeline (no "
                                f"{SPEC_FILE}); export the notebook first")
        return path

    def run_id(self, run_id: str) -> str:
        """The run id of the URL, if it can be one (400 otherwise)."""
        if not _RUN_ID.fullmatch(run_id):
            raise _Refused(400, f"`{shown(run_id)}` is not a run id; the run history lists "
                                "the runs")
        return run_id

    async def blocking(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function`` off the server's event loop (analysis of a big notebook, SQLite)."""
        return await tornado.ioloop.IOLoop.current().run_in_executor(None, function, *args)


class VersionHandler(_Base):
    """``GET /mlops/version``: the sidebar's check that the server extension is there."""

    @tornado.web.authenticated
    @_answers_json
    async def get(self) -> None:
        """Answer with the package version."""
        self._reply(200, {"version": __version__})


class NotFoundHandler(_Base):
    """Any other URL under ``/mlops/``: a JSON 404 the sidebar can show, not an HTML page."""

    @tornado.web.authenticated
    @_answers_json
    async def get(self, rest: str = "") -> None:
        """Refuse, naming the routes there are."""
        raise _Refused(404, f"no route /mlops/{shown(rest)}; the routes are /mlops/version, "
                            "analyze, export, runs and runs/RUN_ID")

    post = put = delete = patch = get


class AnalyzeHandler(_Base):
    """``POST /mlops/analyze {"path"}``: what ``jupyter mlops show --json`` prints, and more."""

    @tornado.web.authenticated
    @_answers_json
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


class ExportHandler(_Base):
    """``POST /mlops/export {"path"}``: write the pipeline folder beside the notebook."""

    @tornado.web.authenticated
    @_answers_json
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


class RunsHandler(_Base):
    """``GET /mlops/runs?pipeline=DIR`` lists runs; ``POST /mlops/runs`` starts one."""

    @tornado.web.authenticated
    @_answers_json
    async def get(self) -> None:
        """The latest runs of a pipeline, newest first."""
        from .view import run_history

        folder = self.pipeline(self.get_query_argument("pipeline", ""))
        runs = await self.blocking(run_history, folder, self.jobs)
        self._reply(200, {"runs": runs, "active": self.jobs.active(folder)})

    @tornado.web.authenticated
    @_answers_json
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
        job = self.jobs.start(folder, values, kernel=kernel)
        self._reply(202, {"run_id": job.run_id, "pipeline_dir": self.relative(folder)})


class RunHandler(_Base):
    """``GET /mlops/runs/ID?pipeline=DIR``: progress; ``DELETE``: cancel the run."""

    @tornado.web.authenticated
    @_answers_json
    async def get(self, run_id: str) -> None:
        """The run's record as it stands, with per-step progress and notebook links."""
        run_id = self.run_id(run_id)
        folder = self.pipeline(self.get_query_argument("pipeline", ""))
        try:
            data = await self.blocking(self.jobs.status, folder, run_id, self.root())
        except RecordError as err:  # there, but damaged or kept outside the root
            raise _Refused(409, str(err)) from None
        except MlopsError as err:
            raise _Refused(404, str(err)) from None
        from ..run.report import check_warnings

        for step in data.get("steps", []):
            step["notebook_path"] = self.relative(step["notebook"]) if step.get("notebook") \
                else ""
            # what the run summary says of the step's checks: drift named by column
            step["warnings"] = check_warnings(step.get("checks") or [])[0]
        self._reply(200, data)

    @tornado.web.authenticated
    @_answers_json
    async def delete(self, run_id: str) -> None:
        """Cancel a run this server started; its kernels are shut down. 409 once it has
        ended (a second cancel answers once the first has ended it)."""
        run_id = self.run_id(run_id)
        folder = self.pipeline(self.get_query_argument("pipeline", ""))
        job = self.jobs.jobs.get(run_id)
        if job is None or job.pipeline != folder:
            raise _Refused(404, f"run `{run_id}` of `{self.relative(folder)}` was not started "
                                "by this server, so it cannot be cancelled here")
        # off the event loop: a run already being cancelled is waited for (bounded)
        if not await self.blocking(self.jobs.cancel, run_id):
            state = "is still being cancelled" if job.running else "has already finished"
            raise _Refused(409, f"run `{run_id}` {state}")
        self._reply(202, {"run_id": run_id, "status": "cancelling"})


def _is_file(path: Path) -> bool:
    """Whether ``path`` is a file; an unreadable path is refused (403), not a crash."""
    try:
        return path.is_file()
    except OSError as err:
        raise _Refused(403, f"`{shown(path.name)}` cannot be read ({err.strerror}); check "
                            "its permissions") from None


def handlers(base_url: str) -> list[tuple[str, type[APIHandler]]]:
    """The URL routes of the extension under ``base_url``."""
    return [
        (url_path_join(base_url, "mlops", "version"), VersionHandler),
        (url_path_join(base_url, "mlops", "analyze"), AnalyzeHandler),
        (url_path_join(base_url, "mlops", "export"), ExportHandler),
        (url_path_join(base_url, "mlops", "runs"), RunsHandler),
        (url_path_join(base_url, "mlops", "runs", "([^/]+)"), RunHandler),
        (url_path_join(base_url, "mlops", "(.*)"), NotFoundHandler),
    ]


def load(server_app: Any) -> None:
    """Register the routes with a running jupyter_server."""
    web_app = server_app.web_app
    web_app.settings.setdefault("mlops_jobs", LabJobs())
    web_app.add_handlers(".*$", handlers(web_app.settings["base_url"]))
    server_app.log.info("jupyter-mlops %s: server extension loaded at /mlops/", __version__)
    if not (Path(__file__).resolve().parent.parent / "labextension" / "package.json").is_file():
        # an editable install on a machine without Node.js: the endpoints work, the panel is absent
        server_app.log.warning("jupyter-mlops: the JupyterLab sidebar was not built; install "
                               "Node.js 20 and run `pip install -e .` again to get it")
