"""The training/serving skew check: raw rows through the served preparation give exactly the
frame and the predictions the run made.

For a run of a pipeline with prepare cells, the check takes the run's own raw frame (the
input step's artifact), prepares it with the code ``pipeline.yaml`` holds now, and compares
the result with the prepared frame the run saved, cell by cell; then it predicts the run's
held-out rows (``X_test``) both ways, from the run's saved rows and from the rows prepared
now, and counts the predictions that differ. Any difference fails the check, and ``serve``
and ``predict`` refuse the run: the preparation they would apply is not the one the model
was evaluated with (a prepare cell changed after the run, say).

The outcome is recorded in the run store with its figures, once per run and version of
the preparation code (its sha256), so a second ``serve`` reads it instead of checking again.
Each run of such a pipeline is checked as it ends (:func:`after_run`, called by the faces
that run pipelines: ``jupyter mlops run``, JupyterLab's runs, scheduled jobs), so ``runs
show`` says whether the run can be served before anyone tries.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from ..errors import MlopsError
from ..notebook.inference import InferencePlan
from ..run.records import RunRecord
from ..run.store import RunStore
from .preparation import Preparation, _artifact

__all__ = ["SkewError", "skew_check", "checked", "after_run", "recorded_checks",
           "describe"]

_SCHEMA = """CREATE TABLE IF NOT EXISTS skew_checks (
    run_id TEXT NOT NULL, code_sha256 TEXT NOT NULL, passed INTEGER NOT NULL,
    figures TEXT NOT NULL, checked REAL NOT NULL, PRIMARY KEY (run_id, code_sha256))"""


class SkewError(MlopsError):
    """The served preparation does not give what the run's model was evaluated on."""


class _CheckStore(RunStore):
    """The run store with its table of skew checks."""

    def __init__(self, path: Any) -> None:
        super().__init__(path)
        with self._tx() as db:
            db.execute(_SCHEMA)

    def recorded(self, run_id: str, code: str) -> dict[str, Any] | None:
        """The figures of the check of ``run_id`` with this preparation code, if any."""
        row = self.db.execute("SELECT figures FROM skew_checks WHERE run_id=? AND "
                              "code_sha256=?", (run_id, code)).fetchone()
        return json.loads(row[0]) if row else None

    def same_inputs(self, code: str, inputs: str) -> dict[str, Any] | None:
        """The figures of a check of other runs with the same code on the same artifacts."""
        for (text,) in self.db.execute("SELECT figures FROM skew_checks WHERE code_sha256=? "
                                       "ORDER BY checked DESC", (code,)):
            figures = json.loads(text)
            if figures.get("inputs") == inputs:
                return figures
        return None

    def record(self, run_id: str, code: str, figures: dict[str, Any]) -> None:
        """Keep the figures of a check (a second check of the same code replaces them)."""
        with self._tx(run_id) as db:
            db.execute("INSERT OR REPLACE INTO skew_checks VALUES (?,?,?,?,?)",
                       (run_id, code, int(figures["passed"]), json.dumps(figures, default=str),
                        time.time()))


def _prepared_saved(run: RunRecord, preparation: Preparation) -> Any:
    """The frame the run's last prepare step saved as the preparation's output."""
    plan = preparation.plan
    step = plan.cells[-1].get("step")
    return _artifact(run, step, plan.output)


def _differing(now: Any, saved: Any) -> list[str]:
    """Columns whose values differ between two frames of the same rows (or why they do)."""
    if list(now.index) != list(saved.index):
        return [f"the rows ({len(now)} prepared now, {len(saved)} saved by the run)"]
    if list(now.columns) != list(saved.columns):
        return [f"the columns ({', '.join(map(str, now.columns))} now, "
                f"{', '.join(map(str, saved.columns))} saved)"]
    return [str(c) for c in now.columns if not now[c].equals(saved[c])
            and not now[c].astype(object).equals(saved[c].astype(object))]


def skew_check(run: RunRecord, preparation: Preparation, model: Any,
               features: list[str]) -> dict[str, Any]:
    """Run the check; its figures (``passed``, ``rows``, ``differing``, ``mismatches``,
    ``held_out``)."""
    from .retrain import evaluation_split

    raw = _artifact(run, preparation.plan.input_step, preparation.plan.input)
    now, dropped = preparation.apply(raw)
    saved = _prepared_saved(run, preparation)
    differing = _differing(now, saved)
    figures: dict[str, Any] = {"rows": len(raw), "dropped": len(dropped),
                               "differing": differing, "code_sha256":
                               preparation.plan.code_sha256, "run_id": run.run_id}
    split = evaluation_split(run, features)
    if split is not None and not differing:
        X, _, basis = split
        rows = now.loc[X.index, features]
        mismatches = int((model.predict(rows) != model.predict(X[features])).sum())
        figures.update(held_out=basis, predicted=len(X), mismatches=mismatches)
    figures["passed"] = not differing and not figures.get("mismatches")
    return figures


def checked(store: RunStore, run: RunRecord, preparation: Preparation, model: Any,
            features: list[str]) -> dict[str, Any]:
    """The check's figures for this run and preparation code: recorded ones, else checked
    now and recorded. SkewError (one line, with the figures) when it fails."""
    checks = _CheckStore(store.path)
    try:
        figures = _reused(checks, run, preparation.plan)
        if figures is None:
            figures = {**skew_check(run, preparation, model, features),
                       "inputs": _inputs(run, preparation.plan)}
            checks.record(run.run_id, preparation.plan.code_sha256, figures)
    finally:
        checks.close()
    if not figures["passed"]:
        raise SkewError(f"run {run.run_id} fails the training/serving skew check: its raw "
                        f"rows prepared by the prepare cells now ({len(preparation.plan.cells)}"
                        f" cells) do not give what the run made: {_what(figures)}; the prepare "
                        "cells changed since the run, or give other results on the same rows "
                        "(a random sample?): run the pipeline again, or serve its model input "
                        "only")
    return figures


def _inputs(run: RunRecord, plan: InferencePlan) -> str:
    """A fingerprint of everything a check of ``run`` reads besides the code: every
    artifact's sha256 (raw frame, prepared frame, fitted values, model, held-out rows) and
    the parameters the prepare cells use. Runs with the same fingerprint and code (a re-run
    served from the cache) get the same outcome, so it is checked once."""
    shas = sorted((s.step, name, m.get("sha256")) for s in run.steps
                  for name, m in s.outputs.items())
    parameters = {name: run.parameters.get(name) for name in plan.parameters}
    return hashlib.sha256(json.dumps({"artifacts": shas, "parameters": parameters},
                                     sort_keys=True, default=str).encode()).hexdigest()


def _reused(checks: _CheckStore, run: RunRecord, plan: InferencePlan) -> dict[str, Any] | None:
    """The check's figures recorded for this run, or copied to it from a run whose check
    read the same code and artifacts (``same_as`` names that run); None if neither."""
    figures = checks.recorded(run.run_id, plan.code_sha256)
    if figures is None:
        figures = checks.same_inputs(plan.code_sha256, _inputs(run, plan))
        if figures is not None:
            figures = {**figures, "same_as": figures.get("same_as") or figures.get("run_id")}
            checks.record(run.run_id, plan.code_sha256, {**figures, "run_id": run.run_id})
    return figures


def _what(figures: dict[str, Any]) -> str:
    """What differed, in words."""
    if figures["differing"]:
        return f"the prepared {', '.join(figures['differing'])} differ"
    return (f"{figures['mismatches']} of {figures['predicted']} predictions of "
            f"{figures['held_out']} differ")


def describe(figures: dict[str, Any]) -> str:
    """One line of a check's outcome and the figures it rests on."""
    prepared = f"{figures['rows']:,} raw rows of the run prepared again ({figures['dropped']:,} " \
        "dropped)"
    if figures.get("same_as"):
        prepared += f", as checked for run {figures['same_as']} (same code and artifacts)"
    if not figures["passed"]:
        return f"failed: {prepared}: {_what(figures)}; serve and predict refuse this run"
    if "predicted" not in figures:
        return (f"passed: {prepared}, the same frame as the run's; no held-out rows "
                "(X_test/y_test) to predict both ways")
    return (f"passed: {prepared}, the same frame as the run's; all {figures['predicted']:,} "
            f"predictions of {figures['held_out']} the same")


def recorded_checks(store: RunStore, run_id: str) -> list[dict[str, Any]]:
    """The checks recorded for ``run_id``, newest first, each with ``checked`` (a time)."""
    have = store.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                            "name='skew_checks'").fetchone()
    if not have:  # nothing was ever checked in this store; reading writes nothing
        return []
    rows = store.db.execute("SELECT figures, checked FROM skew_checks WHERE run_id=? ORDER "
                            "BY checked DESC", (run_id,)).fetchall()
    return [{**json.loads(figures), "checked": when} for figures, when in rows]


def after_run(pipeline_dir: str | Path, run_id: str, store: str | Path | None = None,
              reuse_only: bool = False) -> str | None:
    """Check a run that just succeeded and record the outcome; the line to tell the user
    (None when the pipeline has no prepare cells, or with ``reuse_only`` when no check of the
    same code on the same artifacts was recorded: then the run needs one). Never raises: the
    run itself stands."""
    from ..pipeline.spec import PipelineSpec
    from ..run.store import default_store
    from .model import load_run_model

    try:
        inference = PipelineSpec.read(pipeline_dir).inference
        if inference is None:
            return None
        runs = _CheckStore(Path(store) if store else default_store(pipeline_dir))
    except MlopsError:
        return None  # the run's own report says what is wrong with the folder
    try:
        # a re-run from the cache: the same code on the same artifacts, checked already
        figures = _reused(runs, runs.run(run_id), InferencePlan.from_dict(inference))
        if figures is not None:
            return f"{'' if figures['passed'] else 'warning: '}skew check {describe(figures)}"
        if reuse_only:
            return None
        served = load_run_model(runs, run_id, pipeline_dir=pipeline_dir)
    except SkewError:
        figures = recorded_checks(runs, run_id)
        return f"warning: skew check {describe(figures[0])}" if figures else None
    except MlopsError as err:
        return (f"warning: the training/serving skew check could not run: "
                f"{str(err).splitlines()[0]}; serve and predict will refuse raw records")
    except Exception as err:  # a bug of ours: the run stands, and the user gets one line
        return (f"warning: the training/serving skew check failed ({type(err).__name__}: "
                f"{(str(err).splitlines() or [''])[0]}); please report this")
    finally:
        runs.close()
    return None if served.skew is None else f"skew check {describe(served.skew)}"
