"""Retraining: a run of the same pipeline on new data, and the rule that decides whether it
replaces the run in service.

The policy lives in ``pipeline.yaml`` under ``retrain:``, written by hand (a re-export
of the notebook keeps it)::

    retrain:
      drift_share: 0.5          # share of drifted columns that triggers a retraining
      drift_importance: 0.3     # or share of the model's importance that drifted
      metrics:                  # thresholds of metrics recomputed on labelled new data
        accuracy: {min: 0.8}    # (default: the pipeline's own checks)
      data_parameter: data_path # the parameter that names the data (default: found)
      tolerance: 0.0            # how much worse than the served run a new run may score

The promotion rule: the new run is served from now on only if it succeeded (its data and
metric checks passed) and none of the metrics both runs have is worse than the served run's
by more than ``tolerance``, each in its direction (from the checks, else from the metric's
name). Both models are scored on the new run's held-out rows (new data, fitted on by
neither) when it saved them, else each run's own figures are compared. A metric of unknown
direction, or none in common, keeps the served run: jupyter-mlops cannot tell, says so, and
``jupyter mlops promote RUN_ID`` decides by hand. Either way the decision is recorded in the
store with the figures it used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MlopsError, SpecError
from ..pipeline.spec import SPEC_FILE, PipelineSpec
from ..run.records import RunRecord
from .scoring import metric_direction, metric_value

if TYPE_CHECKING:
    from ..run.results import Listener

_DATA_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".json", ".jsonl", ".ndjson", ".feather",
                  ".xlsx", ".txt")


@dataclass
class RetrainPolicy:
    """When to retrain and how to promote; ``defined`` when pipeline.yaml has one."""

    drift_share: float = 0.5
    #: Share of the model's (permutation) importance whose columns drifted that is unhealthy.
    drift_importance: float = 0.3
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    data_parameter: str | None = None
    tolerance: float = 0.0
    defined: bool = False


_KEYS = ("drift_share", "drift_importance", "metrics", "data_parameter", "tolerance")


def read_policy(pipeline_dir: str | Path) -> RetrainPolicy:
    """The ``retrain:`` section of ``pipeline.yaml`` (defaults when there is none)."""
    import yaml

    path = Path(pipeline_dir) / SPEC_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        raw = {}  # PipelineSpec.read has said what is wrong with the file already
    section = raw.get("retrain") if isinstance(raw, dict) else None
    if section is None:
        return RetrainPolicy()
    where = f"{path}: retrain"
    if not isinstance(section, dict):
        raise SpecError(f"{where} must be a mapping ({', '.join(_KEYS)})")
    unknown = set(section) - set(_KEYS)
    if unknown:
        raise SpecError(f"{where} has unknown key `{sorted(unknown)[0]}`; it takes "
                        f"{', '.join(_KEYS)}")
    policy = RetrainPolicy(defined=True)
    for key in ("drift_share", "drift_importance"):
        share = section.get(key, getattr(policy, key))
        if isinstance(share, bool) or not isinstance(share, (int, float)) or \
                not 0 < share <= 1:
            raise SpecError(f"{where}.{key} is {share!r}; give a share between 0 (excluded) "
                            "and 1")
        setattr(policy, key, float(share))
    tolerance = section.get("tolerance", 0.0)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise SpecError(f"{where}.tolerance is {tolerance!r}; give a number >= 0")
    policy.tolerance = float(tolerance)
    metrics = section.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise SpecError(f"{where}.metrics must map metric names to {{min: X}} or {{max: X}}")
    for name, rule in metrics.items():
        if not isinstance(rule, dict) or not rule or set(rule) - {"min", "max"} or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in rule.values()):
            raise SpecError(f"{where}.metrics.{name} is {rule!r}; give {{min: X}} and/or "
                            "{max: X}")
        policy.metrics[str(name)] = {k: float(v) for k, v in rule.items()}
    parameter = section.get("data_parameter")
    if parameter is not None and not isinstance(parameter, str):
        raise SpecError(f"{where}.data_parameter must be a parameter name")
    policy.data_parameter = parameter
    return policy


def data_parameter(spec: PipelineSpec, pipeline_dir: str | Path,
                   policy: RetrainPolicy | None = None) -> str:
    """The parameter that names the pipeline's data file: the policy's, else the only str
    parameter whose default names a data file (one that exists, or has a data suffix)."""
    if policy is not None and policy.data_parameter:
        spec.parameter(policy.data_parameter)  # an unknown name is refused, listing them
        return policy.data_parameter
    workdir = (Path(pipeline_dir) / spec.workdir).resolve()
    found = []
    for parameter in spec.parameters:
        value = parameter.default
        if parameter.type != "str" or not isinstance(value, str) or not value:
            continue
        if (workdir / value).is_file() or Path(value).suffix.lower() in _DATA_SUFFIXES:
            found.append(parameter.name)
    if len(found) > 1:
        named = [n for n in found if "data" in n.lower()]
        found = named if len(named) == 1 else found
    if len(found) == 1:
        return found[0]
    if not found:
        raise MlopsError(f"pipeline `{spec.name}` has no parameter that names its data file, so "
                         "it cannot be retrained on new data; add one to the params cell (e.g. "
                         "data_path = \"data/train.csv\") and export again")
    raise MlopsError(f"pipeline `{spec.name}` has several parameters that name data files "
                     f"({', '.join(found)}); say which with `retrain: {{data_parameter: NAME}}` "
                     "in pipeline.yaml")


def directions(checks: dict[str, Any], names: Any = ()) -> dict[str, str | None]:
    """``{metric: "higher" | "lower" | None}`` for each metric of the checks and each of
    ``names``: from its check, else from its name (:func:`.scoring.metric_direction`)."""
    rules = checks.get("metrics") or {}
    return {name: metric_direction(name, rules.get(name))
            for name in dict.fromkeys([*rules, *names])}


def decide(new: RunRecord, current: RunRecord | None, checks: dict[str, Any],
           tolerance: float = 0.0, *, same_data: dict[str, tuple[float, float]] | None = None,
           basis: str = "") -> tuple[bool, str]:
    """The promotion rule: (promote?, why, with the figures) for ``new`` against ``current``.

    ``new`` is promoted only if it succeeded, passed its checks, and no metric both runs
    have is worse by more than ``tolerance`` in its direction. The figures compared are
    ``same_data`` (``{metric: (new, current)}``, both models scored on the same rows, as
    ``basis`` says) when given, else the metrics each run recorded on its own evaluation.
    A metric whose direction is unknown, or no metric in common, blocks the automatic
    promotion: jupyter-mlops cannot tell, so it says so and keeps the served run.
    """
    if new.status != "succeeded":
        return False, f"run {new.run_id} {new.status}: {new.error or 'see its steps'}"
    failed = [c for s in new.steps for c in s.checks
              if c.get("check") in ("schema", "metric") and c.get("ok") is False]
    if failed:
        return False, f"run {new.run_id} failed {len(failed)} of its checks"
    if current is None:
        return True, "no run was served before"
    by_hand = f"promote it by hand with `jupyter mlops promote {new.run_id}`"
    if same_data:
        pairs, where = dict(same_data), basis or "on the same data"
    else:
        pairs = {n: (new.metrics[n], current.metrics[n]) for n in new.metrics
                 if n in current.metrics}
        where = basis or "each on its own evaluation"
    if not pairs:
        return False, (f"runs {new.run_id} and {current.run_id} record no metric in common, "
                       f"so jupyter-mlops cannot tell which is better; {by_hand}")
    ways = directions(checks, pairs)
    unknown = sorted(n for n in pairs if ways.get(n) is None)
    figures = ", ".join(f"{n} {a:.4g} vs {b:.4g}" for n, (a, b) in pairs.items())
    if unknown:
        return False, (f"metric {', '.join(f'`{n}`' for n in unknown)} has no known direction "
                       "(no check says whether higher is better, nor its name), so "
                       f"jupyter-mlops cannot tell whether the new run is better ({figures}, "
                       f"{where}); {by_hand}, or add a check with --min/--max to the metric")
    worse = [f"{n} {a:.4g} is worse than {b:.4g} ({ways[n]} is better)"
             for n, (a, b) in pairs.items()
             if (ways[n] == "higher" and a < b - tolerance)
             or (ways[n] == "lower" and a > b + tolerance)]
    if worse:
        return False, "; ".join(worse) + f" ({where})"
    return True, f"passed its checks and is not worse ({where}): {figures}"


_HELD_OUT = ("test", "val", "valid", "eval", "holdout", "hold_out")


def evaluation_split(run: RunRecord, features: list[str]) -> tuple[Any, Any, str] | None:
    """``(X, y, "X_test/y_test of step S")``: the held-out rows a run saved, found by name
    (``test``, ``val``, ``eval``, ``holdout``; never ``train``) among its data frames holding
    all of ``features``, with the series of the same rows and name suffix; None if none.

    Each file's hash is checked against the run store, as for every load."""
    from ..runtime.artifacts import load

    frames, series = [], []
    for step in run.steps:
        for name, manifest in step.outputs.items():
            lowered = name.lower()
            if "train" in lowered or not any(h in lowered for h in _HELD_OUT):
                continue
            if manifest.get("kind") == "parquet" and set(features) <= set(
                    manifest.get("columns") or []):
                frames.append((step.step, name, manifest))
            elif manifest.get("kind") == "series":
                series.append((step.step, name, manifest))
    for step, name, manifest in frames:
        suffix = name.lower().partition("_")[2]
        for y_step, y_name, y_manifest in series:
            if y_manifest.get("rows") == manifest.get("rows") and \
                    y_name.lower().partition("_")[2] == suffix:
                folder = Path(run.folder) / "artifacts"
                X = load(name, folder / step, recorded=manifest)
                y = load(y_name, folder / y_step, recorded=y_manifest)
                return X, y, f"{name}/{y_name} of step {step}"
    return None


def same_data_metrics(store: Any, new: RunRecord, current: RunRecord,
                      names: list[str]) -> tuple[dict[str, tuple[float, float]], str]:
    """Both runs' models scored on the new run's held-out rows (new data neither model was
    fitted on): ``({metric: (new, current)}, basis)``; empty, with the reason, when that
    cannot be done."""
    from .model import load_run_model

    try:
        models = [load_run_model(store, run.run_id) for run in (new, current)]
    except MlopsError as err:
        return {}, f"each on its own evaluation: {err}"
    features = sorted({c["name"] for m in models for c in m.columns})
    split = evaluation_split(new, features)
    if split is None:
        return {}, ("each on its own evaluation: the new run saved no held-out frame (such "
                    "as X_test with y_test) holding both models' input columns")
    X, y, which = split
    scored: dict[str, tuple[float, float]] = {}
    for name in names:
        values = []
        for model in models:
            columns = [c["name"] for c in model.columns]
            try:
                values.append(metric_value(name, y, model.model, X[columns]))
            except (ValueError, TypeError):
                values.append(None)
        if values[0] is not None and values[1] is not None:
            scored[name] = (values[0], values[1])
    if not scored:
        return {}, "each on its own evaluation: no metric both runs record can be recomputed"
    return scored, f"both models on the new run's held-out rows, {which} ({len(X):,} rows)"


def retrain(pipeline_dir: str | Path, data: str | Path, trigger: dict[str, Any], *,
            store: str | Path | None = None, policy: RetrainPolicy | None = None,
            listener: Listener | None = None) -> dict[str, Any]:
    """Run the pipeline on ``data`` (as its data parameter), record why and what it would
    replace, then apply the promotion rule and record the decision. Both models are
    compared on the new run's held-out rows where it saved them (:func:`evaluation_split`).

    Returns ``{"run_id", "status", "replaces", "promoted", "reason", "served"}``.
    """
    from ..run.runner import run_pipeline
    from ..run.store import RunStore, default_store

    spec = PipelineSpec.read(pipeline_dir)
    policy = policy or read_policy(pipeline_dir)
    parameter = data_parameter(spec, pipeline_dir, policy)
    path = Path(data).resolve()
    if not path.is_file():
        raise MlopsError(f"no data file {data} to retrain on")
    store_path = Path(store) if store else default_store(pipeline_dir)
    run_store = RunStore(store_path)
    try:
        current = run_store.served_run(spec.name)
    finally:
        run_store.close()
    recorded: list[str] = []

    def on_event(event: str, result: Any, step: Any) -> None:
        # recorded at the run's first event, so even a run killed midway says why it began
        if not recorded:
            recorded.append(result.run_id)
            _set_trigger(store_path, result.run_id, trigger, current)
        if listener is not None:
            listener(event, result, step)

    result = run_pipeline(pipeline_dir, {parameter: str(path)}, store=store_path,
                          listener=on_event, started_by=f"retrain:{trigger.get('trigger')}")
    if not recorded:
        _set_trigger(store_path, result.run_id, trigger, current)
    run_store = RunStore(store_path)
    try:
        new = run_store.run(result.run_id)
        served = run_store.run(current) if current else None
        same, basis = {}, ""
        if served is not None and new.status == "succeeded":
            names = [n for n in new.metrics if n in served.metrics]
            same, basis = same_data_metrics(run_store, new, served, names)
        promoted, reason = decide(new, served, spec.checks, policy.tolerance,
                                  same_data=same, basis=basis)
        now_served = new.run_id if promoted else (current or "")
        if now_served:
            run_store.record_promotion(spec.name, now_served, candidate=new.run_id,
                                       previous=current, promoted=promoted, reason=reason)
    finally:
        run_store.close()
    return {"run_id": result.run_id, "status": result.status, "replaces": current,
            "promoted": promoted, "reason": reason, "served": now_served or None}


def _set_trigger(store_path: Path, run_id: str, trigger: dict[str, Any],
                 replaces: str | None) -> None:
    from ..run.store import RunStore

    run_store = RunStore(store_path)
    try:
        run_store.set_trigger(run_id, trigger, replaces)
    finally:
        run_store.close()


def promote(pipeline_dir: str | Path, run_id: str, *, store: str | Path | None = None,
            by: str = "hand") -> str:
    """Serve run ``run_id`` of the pipeline in ``pipeline_dir`` from now on, whatever the
    rule would say (the author has looked at the figures), and record the decision.

    Returns the reason recorded; MlopsError for a run that is not of this pipeline, did not
    succeed, or is served already.
    """
    from .model import open_store

    spec = PipelineSpec.read(pipeline_dir)
    run_store = open_store(pipeline_dir, store)
    try:
        run = run_store.run(run_id)
        if run.pipeline != spec.name:
            raise MlopsError(f"run {run.run_id} is of pipeline `{run.pipeline}`, not "
                             f"`{spec.name}`")
        if run.status != "succeeded":
            raise MlopsError(f"run {run.run_id} {run.status}; only a run that succeeded can be "
                             "served")
        current = run_store.served_run(spec.name)
        if current == run.run_id:
            raise MlopsError(f"run {run.run_id} is served already")
        figures = ""
        if current:
            served = run_store.run(current)
            common = [n for n in run.metrics if n in served.metrics]
            figures = ", ".join(f"{n} {run.metrics[n]:.4g} vs {served.metrics[n]:.4g}"
                                for n in common)
        reason = f"promoted by {by}" + (f" over run {current}" if current else "") + (
            f" ({figures})" if figures else "")
        run_store.record_promotion(spec.name, run.run_id, candidate=run.run_id,
                                   previous=current, promoted=True, reason=reason)
    finally:
        run_store.close()
    return reason
