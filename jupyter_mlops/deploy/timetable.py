"""A job's schedule and parameter values, as the engines' exports need them.

The jobs package keeps jobs; this layer may not import it (deploy and jobs are siblings), so
the CLI hands each export this small frozen value instead, built from a job. It carries what
an engine needs to run the job's pipeline on the job's timing: a cron expression in an IANA
time zone or a fixed interval, and the job's parameter values.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import MlopsError, shown
from ..pipeline.spec import PipelineSpec

__all__ = ["Timetable", "job_parameters", "with_default"]

#: The job names the jobs package accepts; names become DAG ids and file names here.
_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: Each cron macro croniter knows, as five fields: engines know fewer of them (Airflow has
#: no @midnight, KFP's robfig cron wants six fields), so exports write the fields.
MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
          "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@hourly": "0 * * * *"}
_UNITS = (("d", 86400), ("h", 3600), ("m", 60))


@dataclass(frozen=True)
class Timetable:
    """When a job runs and with what: ``cron`` (five fields or a macro) evaluated in ``tz``,
    or every ``every`` seconds; ``parameters`` are the job's values by parameter name;
    ``enabled`` is False for a paused job, whose export is paused too.

    Checked when made, so that an export never writes a schedule an engine cannot read; the
    jobs package checked the cron expression field by field already.
    """

    name: str
    cron: str | None = None
    tz: str = "UTC"
    every: float | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _JOB_NAME.fullmatch(self.name):
            raise MlopsError(f"job name `{shown(self.name)}` cannot name a DAG or a recurring "
                             "run; use letters, digits, `_`, `.` or `-`")
        if (self.cron is None) == (self.every is None):
            raise MlopsError(f"job `{self.name}` needs a cron expression or an interval, "
                             "exactly one of them; make it again with `jupyter mlops schedule`")
        if self.every is not None:
            if isinstance(self.every, bool) or not isinstance(self.every, (int, float)) or \
                    not math.isfinite(self.every) or self.every <= 0:
                raise MlopsError(f"job `{self.name}`: its interval must be a positive number "
                                 f"of seconds, not {shown(self.every)}")
        else:
            self._check_cron()
        self._check_zone()

    def _check_cron(self) -> None:
        if not isinstance(self.cron, str) or self.fields() is None:
            raise MlopsError(f"job `{self.name}`: cron expression `{shown(self.cron)}` needs "
                             "five fields (minute hour day-of-month month day-of-week) or a "
                             "macro such as @daily")

    def _check_zone(self) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise MlopsError(f"job `{self.name}`: unknown time zone `{shown(self.tz)}`; use an "
                             "IANA name such as UTC or Europe/Berlin") from None

    def fields(self) -> list[str] | None:
        """The cron expression's five fields (a macro's, for a macro); None when it has
        some other number of fields, or the job runs on an interval."""
        if self.cron is None:
            return None
        words = str(self.cron).split()
        if len(words) == 1 and words[0].lower() in MACROS:
            return MACROS[words[0].lower()].split()
        return words if len(words) == 5 else None

    def cron_text(self) -> str:
        """The five fields of the cron expression, single-spaced (a macro's, for a macro)."""
        return " ".join(self.fields() or [])

    def describe(self) -> str:
        """``cron 0 2 * * * (Europe/Berlin)`` or ``every 15m``, as ``jupyter mlops jobs``
        says it."""
        if self.cron is not None:
            return f"cron {' '.join(str(self.cron).split())} ({self.tz})"
        seconds = float(self.every or 0)
        for unit, size in _UNITS:
            if seconds >= size and seconds % size == 0:
                return f"every {int(seconds // size)}{unit}"
        return f"every {seconds:g}s"

    def said(self) -> str:
        """`` (schedule: cron 0 2 * * * (Europe/Berlin), parameters n=300)``: what an export
        of the job says after the file it wrote."""
        paused = "" if self.enabled else ", paused like the job"
        return f" (schedule: {self.describe()}, {self.describe_parameters()}{paused})"

    def describe_parameters(self) -> str:
        """``parameters n_estimators=300, label='x'`` (each value on one line), or
        ``parameters the defaults``."""
        if not self.parameters:
            return "parameters the defaults"
        # strings quoted, so `label=''` and `label=' '` read differently
        return "parameters " + ", ".join(f"{name}={shown(repr(v) if isinstance(v, str) else v)}"
                                         for name, v in self.parameters.items())


def job_parameters(timetable: Timetable, spec: PipelineSpec) -> dict[str, Any]:
    """The job's parameters as the pipeline types them, each one the pipeline still has.

    A job's values were checked against the pipeline when it was made; the pipeline may have
    been exported again since, without one of them.
    """
    known = {p.name: p for p in spec.parameters}
    values: dict[str, Any] = {}
    for name, value in timetable.parameters.items():
        parameter = known.get(name)
        if parameter is None:
            raise MlopsError(f"job `{timetable.name}` sets parameter `{shown(name)}`, which "
                             f"pipeline `{spec.name}` does not have; make the job again with "
                             "`jupyter mlops schedule`")
        if parameter.type == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # a float parameter the job gave as 300
        if isinstance(value, float) and not math.isfinite(value):
            # no engine takes it: Python has no literal for it, JSON no number
            raise MlopsError(f"job `{timetable.name}` sets parameter `{name}` to {value}, which "
                             "an engine cannot take; make the job again with a finite number")
        values[name] = value
    return values


def with_default(parameter: Any, value: Any) -> Any:
    """A copy of the spec parameter ``parameter`` whose default is ``value``."""
    return dataclasses.replace(parameter, default=value)
