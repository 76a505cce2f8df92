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
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..errors import MlopsError
from ..run.records import RunRecord
from ..run.store import RunStore
from .preparation import Preparation, _artifact

__all__ = ["SkewError", "skew_check", "checked"]

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
        row = self.db.execute("SELECT figures FROM skew_checks WHERE run_id=? AND "
                              "code_sha256=?", (run_id, code)).fetchone()
        return json.loads(row[0]) if row else None

    def record(self, run_id: str, code: str, figures: dict[str, Any]) -> None:
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
                               preparation.plan.code_sha256}
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
        code = preparation.plan.code_sha256
        figures = checks.recorded(run.run_id, code)
        if figures is None:
            figures = skew_check(run, preparation, model, features)
            checks.record(run.run_id, code, figures)
    finally:
        checks.close()
    if not figures["passed"]:
        what = (f"the prepared {', '.join(figures['differing'])} differ"
                if figures["differing"] else
                f"{figures['mismatches']} of {figures['predicted']} predictions of "
                f"{figures['held_out']} differ")
        raise SkewError(f"run {run.run_id} fails the training/serving skew check: its raw "
                        f"rows prepared by the prepare cells now ({len(preparation.plan.cells)}"
                        f" cells) do not give what the run made: {what}; the prepare cells "
                        "changed since the run: run the pipeline again, or serve its model "
                        "input only")
    return figures
