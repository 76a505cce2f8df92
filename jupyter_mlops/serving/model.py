"""A run's model and the data it was fitted on: what serve, monitor and retrain start from.

The model is loaded through the artifacts' safe loader (skops, sha256 checked against the
run store). Its input schema and the reference for drift are profiles of the run's own data
artifacts, made with ``profile_data`` and cached beside them, so a retrained run is watched
against the data it was trained on, not the notebook's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MlopsError
from ..run.records import RunRecord
from ..run.store import RunStore, default_store
from ..runtime._files import atomic_write

PROFILES_DIR = "profiles"


@dataclass
class RunModel:
    """A run's fitted model with the profile of the frame it takes as input."""

    run_id: str
    pipeline: str
    step: str
    name: str
    model: Any
    #: The model's input columns, in its order, each with its profile entry.
    columns: list[dict[str, Any]]
    #: The profile the inputs came from (the data artifact the model was fitted on).
    profile: dict[str, Any]
    #: Class labels of a classifier; None for a regressor.
    classes: list[Any] | None = None
    #: The profile of the training labels, when the run saved them (y_train).
    target_profile: dict[str, Any] | None = field(default=None, repr=False)
    #: The pipeline's prepare cells made ready for this run (``serving.preparation``), when
    #: the notebook marked some and the run passed the skew check; raw records need it.
    preparation: Any = field(default=None, repr=False)
    #: The skew check's figures, with the preparation.
    skew: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def features(self) -> list[str]:
        """The model's input columns, in its order."""
        return [c["name"] for c in self.columns]


def open_store(pipeline: str | Path | None, store: str | Path | None) -> RunStore:
    """The run store of ``pipeline`` (or at ``store``); MlopsError when there is none yet."""
    path = Path(store) if store else default_store(pipeline or ".")
    if not path.is_file():
        raise MlopsError(f"no run store at {path}; run the pipeline first (`jupyter mlops run "
                         "PIPELINE_DIR`), or name the store with --store")
    return RunStore(path)


def _folder(run: RunRecord, step: str) -> Path:
    return Path(run.folder) / "artifacts" / step


def model_outputs(run: RunRecord) -> list[tuple[str, str, dict[str, Any]]]:
    """(step, name, manifest) of each model the run saved, in step order."""
    return [(s.step, name, m) for s in run.steps for name, m in s.outputs.items()
            if m.get("role") == "model"]


def pick_model(run: RunRecord, name: str | None) -> tuple[str, str, dict[str, Any]]:
    """The model to serve: ``name``, or the last model in step order (the final one)."""
    models = model_outputs(run)
    if not models:
        raise MlopsError(f"run {run.run_id} saved no model; mark the cell that fits it "
                         "with `%%mlops model VAR` and run the pipeline again")
    if name is None:
        return models[-1]
    for found in models:
        if found[1] == name:
            return found
    known = ", ".join(m[1] for m in models)
    raise MlopsError(f"run {run.run_id} has no model `{name}`; its models are {known}")


def data_profiles(run: RunRecord, *, every_frame: bool = False
                  ) -> list[tuple[str, str, dict[str, Any]]]:
    """(step, name, profile) of each data frame or series the run saved, in step order:
    those marked ``%%mlops data``, or with ``every_frame`` all it passed between steps.

    Each profile is computed once and kept in ``RUN/profiles/`` (named by the artifact's
    hash, so it never describes other data than the artifact's)."""
    from ..runtime.artifacts import load
    from ..runtime.profile import profile_data

    found = []
    for step in run.steps:
        for name, manifest in step.outputs.items():
            if (manifest.get("role") != "data" and not every_frame) or manifest.get(
                    "kind") not in ("parquet", "series"):
                continue
            cache = Path(run.folder) / PROFILES_DIR / (
                f"{step.step}.{name}.{manifest['sha256'][:16]}.json")
            try:
                profile = json.loads(cache.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                value = load(name, _folder(run, step.step), recorded=manifest)
                profile = profile_data(value, name)
                try:
                    atomic_write(cache, json.dumps(profile, allow_nan=False))
                except OSError:
                    pass  # a read-only run folder: profile again next time
            found.append((step.step, name, profile))
    return found


def _input_profile(run: RunRecord, features: list[str]) -> dict[str, Any]:
    """The profile of the frame the model was fitted on: one holding all its features,
    the fewest other columns, and a name with ``train`` in it before others."""
    wanted = set(features)
    candidates = []
    for step, name, profile in data_profiles(run):
        have = {c["name"] for c in profile["columns"]}
        if wanted <= have:
            candidates.append((len(have - wanted), "train" not in name.lower(), step, profile))
    if not candidates:
        raise MlopsError(f"run {run.run_id} saved no data frame with the model's input "
                         f"columns ({', '.join(features)}); mark the training frame with "
                         "`%%mlops data X_train` and run the pipeline again")
    return min(candidates, key=lambda c: c[:2])[3]


def _target_profile(run: RunRecord) -> dict[str, Any] | None:
    series = [(("train" not in name.lower()), p) for _, name, p in data_profiles(run)
              if p.get("kind") == "Series"]
    return min(series, key=lambda s: s[0])[1] if series else None


def load_run_model(store: RunStore, run_id: str, name: str | None = None,
                   allow_pickle: bool = False, pipeline_dir: str | Path | None = None
                   ) -> RunModel:
    """Load the model of run ``run_id`` (hash verified) with its input profile; given the
    pipeline's folder, with its preparation of raw records, which must pass the skew check
    (:mod:`.skew`; SkewError otherwise)."""
    from ..runtime.artifacts import load

    run = store.run(run_id)
    if run.status != "succeeded":
        raise MlopsError(f"run {run.run_id} {run.status}; serve or monitor a run that "
                         "succeeded (`jupyter mlops runs` lists them)")
    step, model_name, manifest = pick_model(run, name)
    # The types its export trusted, as the runner recorded them where steps cannot write.
    trusted = run.environment.get("trust") or []
    model = load(model_name, _folder(run, step), recorded=manifest,
                 allow_pickle=allow_pickle, trusted=[t for t in trusted if isinstance(t, str)])
    if not hasattr(model, "predict"):
        raise MlopsError(f"`{model_name}` of run {run.run_id} is a {type(model).__name__} "
                         "with no predict method; it cannot be served")
    features = getattr(model, "feature_names_in_", None)
    if features is None:
        raise MlopsError(f"model `{model_name}` of run {run.run_id} was fitted without "
                         "column names; fit it on a pandas DataFrame so its inputs can be "
                         "checked by name")
    features = [str(f) for f in features]
    profile = _input_profile(run, features)
    by_name = {c["name"]: c for c in profile["columns"]}
    columns = [by_name[f] for f in features]
    reference = {**profile, "columns": columns}
    classes = getattr(model, "classes_", None)
    served = RunModel(run_id=run.run_id, pipeline=run.pipeline, step=step,
                      name=model_name, model=model, columns=columns, profile=reference,
                      classes=None if classes is None else list(classes.tolist()),
                      target_profile=_target_profile(run))
    if pipeline_dir is not None:
        from .preparation import load_preparation
        from .skew import checked

        served.preparation = load_preparation(pipeline_dir, run, features)
        if served.preparation is not None:
            served.skew = checked(store, run, served.preparation, model, features)
    return served
