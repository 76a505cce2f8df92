"""``jupyter mlops serve``: a run's model behind HTTP, on tornado.

``POST /predict`` takes JSON records and answers predictions; ``GET /health`` says which run
is served; ``GET /metrics`` is Prometheus' text format (see :mod:`.metrics`). Every
request a client gets wrong is a JSON 4xx (400 not JSON, 404/405 wrong route or verb, 413
too large, 422 not the model's schema); a 5xx is a bug of ours. Serving a pipeline folder
follows its store: when another run is promoted, the next check loads it (hash verified) off
the event loop and swaps it in between two requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

import numpy
import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web

from ..errors import MlopsError
from ..run.store import RunStore
from .batching import Batcher
from .inputs import InputError, parse_records, to_frame
from .metrics import ServeMetrics
from .model import RunModel, load_run_model
from .workers import run_forked

MAX_BODY = 1 << 20
"""Largest /predict body read (1 MiB): a bigger one is a 413."""
DRAIN_LIMIT = 64 << 20
"""A client that sends a body above MAX_BODY without waiting for ``100-continue`` is read to
the end (and dropped) up to this size, so it still gets its 413; beyond it tornado closes
the connection with a 400."""

log = logging.getLogger("jupyter_mlops.serving.serve")


@dataclass
class ServeState:
    """What the handlers share: the model in service and where to look for a newer one."""

    model: RunModel
    metrics: ServeMetrics
    store_path: str | None = None
    #: Set when serving a pipeline folder: follow its promotions.
    pipeline: str | None = None
    model_name: str | None = None
    allow_pickle: bool = False
    #: The pipeline's folder, when known: its prepare cells serve raw records.
    pipeline_dir: str | None = None
    #: Requests arriving together, predicted in one call (see :mod:`.batching`).
    batcher: Batcher = field(default_factory=Batcher)
    started: float = field(default_factory=time.time)
    last_error: str | None = None
    #: One connection for the checks, opened at the first (they never overlap).
    _follower: RunStore | None = field(default=None, repr=False)
    #: Held while a check runs in a worker thread: shutting down waits for it, since closing
    #: the store's connection under a running query can crash the process.
    checking: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def follow(self) -> str | None:
        """The run the store says to serve now, or None when it cannot say."""
        if self.store_path is None or self.pipeline is None:
            return None
        if self._follower is None:
            self._follower = RunStore(self.store_path)
        return self._follower.served_run(self.pipeline)

    def close(self) -> None:
        """Close the store connection of the checks."""
        if self._follower is not None:
            self._follower.close()
            self._follower = None

    async def refresh(self) -> None:
        """Load and swap in the run the store serves now, if it changed."""
        async with self.checking:
            await self._refresh()

    async def _refresh(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            wanted = await loop.run_in_executor(None, self.follow)
            if wanted is None or wanted == self.model.run_id:
                return
            model = await loop.run_in_executor(None, self._load, wanted)
        except (MlopsError, OSError, sqlite3.Error) as err:
            # keep serving the run we have (a store busy for longer than its timeout is
            # asked again at the next check); /health shows why the new one is not served
            self.last_error = str(err)
            log.warning("still serving run %s: %s", self.model.run_id, err)
            return
        self.model, self.last_error = model, None
        self.metrics.switch(model)
        log.warning("now serving run %s (model `%s`)", model.run_id, model.name)

    def _load(self, run_id: str) -> RunModel:
        assert self.store_path is not None
        store = RunStore(self.store_path)
        try:
            return load_run_model(store, run_id, self.model_name, self.allow_pickle,
                                  self.pipeline_dir)
        finally:
            store.close()


class _JSONHandler(tornado.web.RequestHandler):
    """JSON answers, errors included, and one metrics observation per request."""

    state: ServeState

    def initialize(self, state: ServeState) -> None:
        self.state = state

    def answer(self, status: int, data: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = self._reason if status_code < 500 else "internal error (see the server log)"
        if status_code == 405:
            reason = (f"{self.request.method} is not allowed on {self.request.path}; use "
                      "POST /predict, POST /predict/raw, GET /health or GET /metrics")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": reason}))

    def on_finish(self) -> None:
        self.state.metrics.observe(self.request.path, self.get_status(),
                                   self.request.request_time())


class _NotFound(_JSONHandler):
    def prepare(self) -> None:
        self.answer(404, {"error": f"no such endpoint {self.request.path}; use POST /predict, "
                                   "POST /predict/raw, GET /health or GET /metrics"})


@tornado.web.stream_request_body
class PredictHandler(_JSONHandler):
    """``POST /predict``: records in, predictions out."""

    def prepare(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.too_large = False
        if self.request.method != "POST":
            return
        self.request.connection.set_max_body_size(DRAIN_LIMIT)  # type: ignore[union-attr]
        declared = self.request.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
            self.too_large = True
            if self.request.headers.get("Expect", "").lower() == "100-continue":
                self._refuse_size()  # before the body is sent at all

    def _refuse_size(self) -> None:
        self.answer(413, {"error": f"the body is larger than {MAX_BODY} bytes; send fewer "
                                   "records per request"})

    def data_received(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > MAX_BODY:
            self.too_large, self.chunks = True, []  # drain: read and drop the rest
        elif not self.too_large:
            self.chunks.append(chunk)

    def frame_of(self, records: list[dict[str, Any]], model: RunModel
                 ) -> tuple[Any, list[int] | None]:
        """The model's input frame for the records, and the records left out (None: none
        can be); InputError for records that do not fit."""
        return to_frame(records, model.columns), None

    async def post(self) -> None:
        if self.too_large:
            self._refuse_size()
            return
        model = self.state.model
        try:
            records = parse_records(b"".join(self.chunks))
            frame, dropped = self.frame_of(records, model)
        except InputError as err:
            body: dict[str, Any] = {"error": str(err)}
            for key in ("column", "record"):
                if getattr(err, key, None) is not None:
                    body[key] = getattr(err, key)
            self.answer(err.status, body)
            return
        try:
            predictions = numpy.asarray(await self.state.batcher.predict(model.model, frame)) \
                if len(frame) else numpy.asarray([])
        except (ValueError, TypeError, KeyError) as err:
            # the records fit the schema but not the model (e.g. a category an encoder
            # refuses): the client's data, so a 422 naming the model's complaint
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            self.answer(422, {"error": f"the model refused these records: {reason}"})
            return
        if dropped is None:
            self.state.metrics.predicted(records, predictions)
            self.answer(200, {"predictions": predictions.tolist(), "run_id": model.run_id,
                              "model": model.name})
            return
        self.state.metrics.predicted(frame.to_dict("records"), predictions)
        answers: list[Any] = predictions.tolist()
        for index in dropped:  # in the records' order: null where the preparation dropped it
            answers.insert(index, None)
        self.answer(200, {"predictions": answers, "dropped": dropped, "run_id": model.run_id,
                          "model": model.name})


class RawPredictHandler(PredictHandler):
    """``POST /predict/raw``: records shaped like the data the notebook loaded, prepared by
    its prepare cells in this process, then predicted."""

    def frame_of(self, records: list[dict[str, Any]], model: RunModel
                 ) -> tuple[Any, list[int] | None]:
        from .preparation import PrepareError

        preparation = model.preparation
        if preparation is None:
            raise InputError(404, f"pipeline `{model.pipeline}` marks no cell prepare, so it "
                             "cannot prepare raw records; send the model's inputs to POST "
                             "/predict, or mark the preparing cells `%%mlops prepare` and "
                             "export again")
        raw = to_frame(records, preparation.columns, preparation.required)
        try:
            prepared, dropped = preparation.apply(raw)
        except PrepareError as err:
            error = InputError(422, f"{err}" + (f" on record {err.record}"
                                                if err.record is not None else ""))
            error.record = err.record  # type: ignore[attr-defined]
            raise error from None
        missing = [f for f in model.features if f not in prepared.columns]
        if missing:
            raise InputError(422, f"after the prepare cells the records have no column "
                             f"{', '.join(missing)}, which the model takes", missing[0])
        return prepared[model.features], dropped


class HealthHandler(_JSONHandler):
    """``GET /health``: up, and which run it serves."""

    def get(self) -> None:
        model = self.state.model
        body = {"status": "ok", "run_id": model.run_id, "pipeline": model.pipeline,
                "model": model.name, "step": model.step,
                "inputs": [c["name"] for c in model.columns],
                "uptime": round(time.time() - self.state.started, 3)}
        if model.preparation is not None:  # raw records: what they must hold, and the check
            body["raw_inputs"] = model.preparation.required
            body["skew_check"] = model.skew
        if self.state.last_error:
            body["warning"] = self.state.last_error
        self.answer(200, body)


class MetricsHandler(_JSONHandler):
    """``GET /metrics``: Prometheus text format."""

    def get(self) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST

        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(self.state.metrics.render())


def make_app(state: ServeState) -> tornado.web.Application:
    """The tornado application of one served model."""
    routes: list[Any] = [
        (r"/predict", PredictHandler, {"state": state}),
        (r"/predict/raw", RawPredictHandler, {"state": state}),
        (r"/health", HealthHandler, {"state": state}),
        (r"/metrics", MetricsHandler, {"state": state}),
    ]
    return tornado.web.Application(routes, default_handler_class=_NotFound,
                                   default_handler_args={"state": state})


def serving_state(target: str, *, store: str | None = None, pipeline_dir: str | None = None,
                  model_name: str | None = None, allow_pickle: bool = False,
                  window: int = 1000) -> ServeState:
    """The state of a server for ``target``: a pipeline folder (follow its served run) or a
    run id (in ``store``, or in ``pipeline_dir``'s store)."""
    from pathlib import Path

    from ..pipeline.spec import PipelineSpec
    from .model import open_store

    follow: str | None = None
    folder = pipeline_dir
    if Path(target).is_dir():
        folder = target
        spec = PipelineSpec.read(target)
        run_store = open_store(target, store)
        follow = spec.name
        run_id = run_store.served_run(spec.name)
        if run_id is None:
            run_store.close()
            raise MlopsError(f"pipeline `{spec.name}` has no succeeded run to serve; run it "
                             f"first with `jupyter mlops run {target}`")
    else:
        from ..run.store import default_store

        where = Path(store) if store else default_store(pipeline_dir or ".")
        if not where.is_file():
            raise MlopsError(f"`{target}` is not a pipeline folder, and there is no run store "
                             f"at {where} to find it in as a run; give a PIPELINE_DIR, or the "
                             "run's pipeline with -C PIPELINE_DIR")
        run_store = open_store(pipeline_dir or ".", store)
        run_id = target
    if folder is not None and not (Path(folder) / "pipeline.yaml").is_file():
        folder = None  # a run id in a store given by path: its model input only
    try:
        model = load_run_model(run_store, run_id, model_name, allow_pickle, folder)
    finally:
        run_store.close()
    return ServeState(model=model, metrics=ServeMetrics(model, window),
                      store_path=str(run_store.path), pipeline=follow, model_name=model_name,
                      allow_pickle=allow_pickle, pipeline_dir=folder)


def serve(state: ServeState, host: str = "127.0.0.1", port: int = 8000,
          check_every: float = 2.0, workers: int = 1) -> None:
    """Serve until SIGINT or SIGTERM; print the address (with the port, when ``port`` is
    0, the one the system chose). With ``workers`` > 1, that many processes forked after
    the model is loaded accept on the same socket; a SIGTERM or SIGINT to this process
    stops them all."""
    logging.getLogger("tornado.access").setLevel(logging.ERROR)
    try:
        sockets = tornado.netutil.bind_sockets(port, host)
    except (OSError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise MlopsError(f"cannot listen on {host}:{port} ({reason}); choose another "
                         "--port or --host") from None
    if workers > 1:
        _announce(state, sockets, host, workers)
        run_forked(workers, lambda: asyncio.run(_serve(state, sockets, host, check_every,
                                                  announce=False)))
        return
    asyncio.run(_serve(state, sockets, host, check_every))


def _announce(state: ServeState, sockets: list[Any], host: str, workers: int = 1) -> None:
    model = state.model
    processes = f" in {workers} processes" if workers > 1 else ""
    print(f"Serving model `{model.name}` of run {model.run_id} (pipeline `{model.pipeline}`) "
          f"at http://{host}:{sockets[0].getsockname()[1]}/{processes}  (POST /predict"
          f"{', POST /predict/raw' if model.preparation is not None else ''}, GET /health, "
          "GET /metrics)", flush=True)


async def _serve(state: ServeState, sockets: list[Any], host: str, check_every: float,
                 announce: bool = True) -> None:
    import signal

    server = tornado.httpserver.HTTPServer(make_app(state), max_body_size=DRAIN_LIMIT,
                                           body_timeout=30, idle_connection_timeout=60)
    server.add_sockets(sockets)
    if announce:
        _announce(state, sockets, host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    follow = None
    if state.pipeline is not None:
        follow = tornado.ioloop.PeriodicCallback(state.refresh, check_every * 1000)
        follow.start()
    await stop.wait()
    if follow is not None:
        follow.stop()
    async with state.checking:  # a check still in its worker thread finishes first
        state.close()
    server.stop()
    await server.close_all_connections()
