"""How to run a pipeline: every setting of one run in one object, checked once.

Each face builds a :class:`RunOptions` from its own words (the CLI from flags, the sidebar
from its form, a generated test from keywords) and hands it to
:func:`~jupyter_mlops.run.runner.run_pipeline`. A setting that cannot be used raises
:class:`~jupyter_mlops.errors.OptionError` naming the field, which each face turns into its
own name for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import OptionError, shown
from ..pipeline.spec import KERNEL_NAME


@dataclass(frozen=True)
class RunOptions:
    """Every setting of one run. The defaults run every step locally, on this machine's
    cores, with kernels started ahead, recording into the pipeline's own store."""

    #: Typed values by parameter name (see ``PipelineSpec.parse_parameters``).
    parameters: Mapping[str, Any] = field(default_factory=dict)
    #: Where run folders go; default ``PIPELINE/runs``.
    runs_dir: str | Path | None = None
    #: Steps at once; None: the executor's choice (this machine's cores, a cluster's workers).
    jobs: int | None = None
    #: Seconds a cell may run before it is interrupted and its step fails.
    cell_timeout: float | None = None
    run_id: str | None = None
    #: Fail a step whose data drifted; None: as the pipeline's ``checks:`` say.
    fail_on_drift: bool | None = None
    #: The run store; default ``PIPELINE/.mlops/store.sqlite``.
    store: str | Path | None = None
    #: Run these steps (True: all) even when the store has their result.
    force: bool | tuple[str, ...] = False
    #: Run only these steps (their inputs come from the store) ...
    only: tuple[str, ...] = ()
    #: ... or this step and every step after it.
    start: str | None = None
    #: Re-run the failed and unfinished steps of this earlier run, in its folder.
    resume: str | None = None
    #: Who started the run, as the store records it (cli, lab, retrain, api).
    started_by: str = "api"
    #: Trackers the finished run is mirrored to, by mirror name (``{"mlflow": URI}``).
    mirrors: Mapping[str, str] = field(default_factory=dict)
    #: Where steps execute: an executor's name (local, dask, or an entry point's).
    executor: str = "local"
    #: The executor's address, for a cluster (a Dask scheduler).
    address: str | None = None
    #: Start each step's kernel ahead of the step (the local executor).
    kernel_pool: bool = True
    #: The kernelspec the steps run in; None: the pipeline's (its notebook's).
    kernel: str | None = None
    #: Why the run starts (``{"trigger": "schedule", "job": ...}``), recorded with it.
    trigger: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, **settings: Any) -> RunOptions:
        """Options from keywords, as :func:`run_pipeline` has always taken them; an unknown
        keyword is refused by name, and ``mlflow=URI`` means ``mirrors={"mlflow": URI}``."""
        known = {f.name for f in fields(cls)}
        if settings.get("mlflow") is not None:
            settings["mirrors"] = {**settings.get("mirrors", {}), "mlflow": settings["mlflow"]}
        settings.pop("mlflow", None)
        if "scheduler" in settings:
            settings["address"] = settings.pop("scheduler")
        unknown = sorted(set(settings) - known)
        if unknown:
            raise TypeError(f"unknown run option(s): {', '.join(unknown)}")
        force = settings.get("force", False)
        if not isinstance(force, bool):
            settings["force"] = tuple(force or ())
        settings["only"] = tuple(settings.get("only") or ())
        return cls(**settings)

    @property
    def cell_limit(self) -> int | None:
        """The cell timeout in the whole seconds papermill's client counts, rounded up (a
        limit of 2.5 s is 3 s), or None."""
        return None if self.cell_timeout is None else math.ceil(self.cell_timeout)

    def validate(self) -> RunOptions:
        """Refuse settings that cannot be used, before anything starts; return ``self``."""
        if self.jobs is not None and self.jobs < 1:
            raise OptionError(f"a run needs at least 1 step at a time, got {self.jobs}",
                              option="jobs")
        if self.cell_timeout is not None and not (
                isinstance(self.cell_timeout, (int, float)) and math.isfinite(self.cell_timeout)
                and self.cell_timeout > 0):
            raise OptionError("a cell timeout needs a positive number of seconds, got "
                              f"{self.cell_timeout}", option="cell_timeout")
        if self.only and self.start:
            raise OptionError("choose the steps to run by name or by the first one, not "
                              "both", option="only")
        if self.kernel is not None and not (isinstance(self.kernel, str)
                                            and KERNEL_NAME.fullmatch(self.kernel)):
            raise OptionError(f"{shown(self.kernel)} is not a kernel name (letters, digits, "
                              "`_`, `.`, `-`; `jupyter kernelspec list` shows them)",
                              option="kernel")
        if self.resume is not None and self.parameters:
            raise OptionError("a resumed run keeps its own parameters; give none",
                              option="parameters")
        return self
