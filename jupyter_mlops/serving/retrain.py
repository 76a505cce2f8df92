"""Retraining: a run of the same pipeline on new data, and the rule that decides whether it
replaces the run in service.

The policy lives in ``pipeline.yaml`` under ``retrain:``, written by hand (a re-export
of the notebook keeps it)::

    retrain:
      drift_share: 0.5          # share of drifted columns that triggers a retraining
      metrics:                  # thresholds of metrics recomputed on labelled new data
        accuracy: {min: 0.8}    # (default: the pipeline's own checks)
      data_parameter: data_path # the parameter that names the data (default: found)
      tolerance: 0.0            # how much worse than the served run a new run may score

The promotion rule: the new run is served from now on only if it succeeded (its data and
metric checks passed) and none of its metrics with a known direction is worse than the
served run's by more than ``tolerance``. Either way the decision is recorded in the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MlopsError, SpecError
from ..pipeline.spec import SPEC_FILE, PipelineSpec
from ..run.records import RunRecord

if TYPE_CHECKING:
    from ..run.results import Listener

_DATA_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".json", ".jsonl", ".ndjson", ".feather",
                  ".xlsx", ".txt")


@dataclass
class RetrainPolicy:
    """When to retrain and how to promote; ``defined`` when pipeline.yaml has one."""

    drift_share: float = 0.5
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    data_parameter: str | None = None
    tolerance: float = 0.0
    defined: bool = False


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
        raise SpecError(f"{where} must be a mapping (drift_share, metrics, data_parameter, "
                        "tolerance)")
    unknown = set(section) - {"drift_share", "metrics", "data_parameter", "tolerance"}
    if unknown:
        raise SpecError(f"{where} has unknown key `{sorted(unknown)[0]}`; it takes "
                        "drift_share, metrics, data_parameter and tolerance")
    policy = RetrainPolicy(defined=True)
    share = section.get("drift_share", policy.drift_share)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise SpecError(f"{where}.drift_share is {share!r}; give a share between 0 (excluded) "
                        "and 1")
    policy.drift_share = float(share)
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


def directions(checks: dict[str, Any]) -> dict[str, str]:
    """``{metric: "higher" | "lower"}`` for each metric whose checks say which way is better."""
    found = {}
    for name, rule in (checks.get("metrics") or {}).items():
        if not isinstance(rule, dict):
            continue
        direction = rule.get("direction")
        if direction not in ("higher", "lower"):
            direction = "higher" if "min" in rule else "lower" if "max" in rule else None
        if direction is not None:
            found[name] = direction
    return found


def decide(new: RunRecord, current: RunRecord | None, checks: dict[str, Any],
           tolerance: float = 0.0) -> tuple[bool, str]:
    """The promotion rule: (promote?, why) for run ``new`` against the served ``current``."""
    if new.status != "succeeded":
        return False, f"run {new.run_id} {new.status}: {new.error or 'see its steps'}"
    failed = [c for s in new.steps for c in s.checks
              if c.get("check") in ("schema", "metric") and c.get("ok") is False]
    if failed:
        return False, f"run {new.run_id} failed {len(failed)} of its checks"
    if current is None:
        return True, "no run was served before"
    worse, compared = [], []
    for name, direction in directions(checks).items():
        a, b = new.metrics.get(name), current.metrics.get(name)
        if a is None or b is None:
            continue
        compared.append(f"{name} {a:.4g} vs {b:.4g}")
        if (direction == "higher" and a < b - tolerance) or (
                direction == "lower" and a > b + tolerance):
            worse.append(f"{name} {a:.4g} is worse than {b:.4g} ({direction} is better)")
    if worse:
        return False, "; ".join(worse)
    if not compared:
        return True, "passed its checks; no metric with a known direction to compare"
    return True, "passed its checks and is not worse: " + ", ".join(compared)


def retrain(pipeline_dir: str | Path, data: str | Path, trigger: dict[str, Any], *,
            store: str | Path | None = None, policy: RetrainPolicy | None = None,
            listener: Listener | None = None) -> dict[str, Any]:
    """Run the pipeline on ``data`` (as its data parameter), record why and what it would
    replace, then apply the promotion rule and record the decision.

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
        promoted, reason = decide(new, served, spec.checks, policy.tolerance)
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
