"""Jobs in JupyterLab: ``/mlops/jobs`` over :mod:`jupyter_mlops.jobs.api`, and the scheduler
the server runs while it is up.

``GET /mlops/jobs?pipeline=DIR`` lists a pipeline's jobs with their next run and last runs;
``POST /mlops/jobs`` makes one; ``POST /mlops/jobs/NAME`` pauses or resumes it (``{"action":
"pause"}``); ``DELETE /mlops/jobs/NAME?pipeline=DIR`` deletes it. The server's scheduler runs
the jobs of every listed store inside the server's root, in a thread, as ``jupyter mlops
scheduler`` would; a second scheduler on the same store (that command, another server) never
starts a slot twice. ``JUPYTER_MLOPS_SCHEDULER=off`` keeps the server from running one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import tornado

from .base import Base, Refused, answers_json

__all__ = ["JobsHandler", "JobHandler", "start_scheduler"]

_JOB = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _view(handler: Base, view: dict[str, Any]) -> dict[str, Any]:
    """A job's view with its pipeline as the contents API spells it (never a server path)."""
    return {**view, "pipeline": handler.relative(view["pipeline"])}


def _name(name: str) -> str:
    if not _JOB.fullmatch(name):
        raise Refused(400, f"`{name[:64]}` is not a job name")
    return name


class JobsHandler(Base):
    """``GET /mlops/jobs?pipeline=DIR`` lists jobs; ``POST /mlops/jobs`` makes one."""

    @tornado.web.authenticated
    @answers_json
    async def get(self) -> None:
        """The pipeline's jobs (none when it has no store yet)."""
        from ..jobs.api import list_jobs
        from ..run.store import default_store

        folder = self.pipeline(self.get_query_argument("pipeline", ""))
        views = (await self.blocking(list_jobs, folder)) if default_store(folder).is_file() \
            else []
        self._reply(200, {"jobs": [_view(self, v) for v in views],
                          "scheduler": self.settings.get("mlops_scheduler") is not None})

    @tornado.web.authenticated
    @answers_json
    async def post(self) -> None:
        """Make a job: ``{"pipeline", "cron" | "every", "tz"?, "parameters"?, "name"?,
        "on_failure"?, "webhook"?, "notify"?}``; answer 201 with it."""
        from ..jobs.api import create_job, list_jobs
        from ..jobs.timing import Schedule

        body = self.body()
        folder = self.pipeline(body.get("pipeline"))
        given = body.get("parameters") or {}
        if not isinstance(given, dict):
            raise Refused(400, "`parameters` must be an object of name: value")
        texts = {key: body.get(key) for key in ("cron", "tz", "every", "name", "on_failure",
                                                "webhook", "notify")}
        for key, value in texts.items():
            if value is not None and not isinstance(value, str):
                raise Refused(400, f"`{key}` must be a string")
        when = Schedule.of(cron=texts["cron"] or None, tz=texts["tz"] or None,
                           every=texts["every"] or None)
        assignments = [f"{k}={v if isinstance(v, str) else json.dumps(v)}"
                       for k, v in given.items()]
        alerts = {"on_failure": texts["on_failure"] or None, "webhook": texts["webhook"] or None,
                  "notify": texts["notify"] or "failure"}
        job = await self.blocking(lambda: create_job(folder, when, assignments=assignments,
                                                     name=texts["name"] or None, alerts=alerts))
        views = await self.blocking(list_jobs, folder)
        self._reply(201, _view(self, next(v for v in views if v["name"] == job.name)))


async def _on_job(handler: Base, call: Any) -> Any:
    """``call()`` off the event loop; a job that does not exist is a 404."""
    from ..jobs.store import NoSuchJob

    try:
        return await handler.blocking(call)
    except NoSuchJob as err:
        raise Refused(404, str(err)) from None


class JobHandler(Base):
    """``POST /mlops/jobs/NAME`` pauses or resumes a job; ``DELETE`` deletes it."""

    @tornado.web.authenticated
    @answers_json
    async def post(self, name: str) -> None:
        """``{"pipeline", "action": "pause" | "resume"}``: the job after it."""
        from ..jobs.api import set_job_state

        body = self.body()
        folder = self.pipeline(body.get("pipeline"))
        action = body.get("action")
        if action not in ("pause", "resume"):
            raise Refused(400, "`action` must be pause or resume")
        state = "paused" if action == "pause" else "active"
        view = await _on_job(self, lambda: set_job_state(folder, _name(name), state))
        self._reply(200, _view(self, view))

    @tornado.web.authenticated
    @answers_json
    async def delete(self, name: str) -> None:
        """Delete the job (its runs stay)."""
        from ..jobs.api import delete_job

        folder = self.pipeline(self.get_query_argument("pipeline", ""))
        await _on_job(self, lambda: delete_job(folder, _name(name)))
        self._reply(200, {"deleted": name})


def start_scheduler(root: Path, log: Any) -> Any:
    """Run the jobs of the listed stores inside ``root`` in a daemon thread; the scheduler,
    or None when ``JUPYTER_MLOPS_SCHEDULER=off``."""
    if os.environ.get("JUPYTER_MLOPS_SCHEDULER", "").lower() in ("off", "0", "false", "no"):
        log.info("jupyter-mlops: scheduler off (JUPYTER_MLOPS_SCHEDULER)")
        return None
    from ..jobs import registry
    from ..jobs.scheduler import LOG, Scheduler

    if not LOG.handlers:  # what the scheduler does goes to the server's log
        for handler in getattr(log, "handlers", []):
            LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)

    root = root.resolve()

    def stores() -> list[Path]:
        return [s for s in registry.registered() if s.is_relative_to(root)]

    scheduler = Scheduler(stores)
    # the server's event loop: once it is closed (the server has stopped, in this process
    # that goes on), so is the scheduler
    loop = tornado.ioloop.IOLoop.current().asyncio_loop  # type: ignore[attr-defined]

    def run() -> None:
        while not loop.is_closed() and not scheduler.stopped.is_set():
            scheduler.stopped.wait(scheduler.tick())
        scheduler.close()

    threading.Thread(target=run, name="mlops-scheduler", daemon=True).start()
    log.info("jupyter-mlops: running scheduled jobs under %s", root)
    return scheduler
