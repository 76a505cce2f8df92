"""What every endpoint of the server extension shares: the handler base, JSON replies, the
server's root and the paths kept inside it, and how a user's mistake becomes JSON 4xx."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import tornado
from jupyter_server.base.handlers import APIHandler

from ..errors import AnalysisError, MlopsError, OptionError
from .guard import Refused as _Refused
from .guard import check_inside, parse_body, relative_to, resolve_inside, shown
from .launches import LabJobs

__all__ = ["Base", "answers_json", "Refused", "is_file", "FIELDS"]

Refused = _Refused

#: The request field that holds each option the library may refuse (an OptionError's option).
FIELDS = {"parameters": "parameters", "output": "path", "kernel": "kernel"}

#: What a run id looks like (``run.results.new_run_id``, or a name given on the command line).
_RUN_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,127}")
#: What export writes into a pipeline folder, and what a run writes there.
_EXPORTED = ("pipeline.yaml", "README.md", "steps", "contract", "tests")
_RUN_WRITES = ("pipeline.yaml", "runs", ".mlops")

Handler = Callable[..., Awaitable[None]]


def answers_json(method: Handler) -> Handler:
    """Turn a user's mistake into JSON 4xx with one line, and our bug into a JSON 500."""

    @functools.wraps(method)
    async def wrapper(self: Base, *args: Any) -> None:
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


class Base(APIHandler):
    """What every endpoint shares: the root directory, JSON bodies and replies."""

    @property
    def launched(self) -> LabJobs:
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

    def spelled(self, line: str) -> str:
        """``line`` with the server's root left out of the paths it names: a user sees paths
        as the file browser shows them, never where the server keeps them."""
        root = str(self.root())
        return line.replace(root + "/", "").replace(root, ".")

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
        if not is_file(path):
            raise _Refused(404, f"no notebook `{shown(relative)}` under the server's root")
        check_inside(self.root(), record_path(path))
        check_inside(self.root(), default_folder(path), _EXPORTED + _RUN_WRITES)
        return path

    def pipeline(self, relative: Any) -> Path:
        """An exported pipeline folder inside the root."""
        from ..pipeline.spec import SPEC_FILE

        path = self.resolve(relative, "pipeline")
        check_inside(self.root(), path, _RUN_WRITES)
        if not is_file(path / SPEC_FILE):
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


def is_file(path: Path) -> bool:
    """Whether ``path`` is a file; an unreadable path is refused (403), not a crash."""
    try:
        return path.is_file()
    except OSError as err:
        raise _Refused(403, f"`{shown(path.name)}` cannot be read ({err.strerror}); check "
                            "its permissions") from None
