"""When a job runs: a cron expression in a time zone, or a fixed interval.

Cron expressions are parsed and stepped by croniter, time zones come from :mod:`zoneinfo`;
this module only checks what the user wrote, so that a mistake is named by its field
("the hour field `25` is out of range"), and answers the scheduler's one question: which
slot is due now, and how many were missed since the last one that ran.

Slots of an interval job are counted from the moment the job was made (or resumed), so an
``--every 15m`` job made at 10:07 runs at 10:22, 10:37, ...; a cron job runs on its
expression's times in its zone, daylight-saving changes included: a time that does not
exist that day (02:30 in a spring change) runs at the first time after it, and a fixed time
the autumn change repeats runs once, at its first pass.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..errors import MlopsError, shown

__all__ = ["Schedule", "ScheduleError", "parse_every"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"\s*(-?\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*", re.IGNORECASE)
#: The five fields of a cron expression, in order, as messages name them.
CRON_FIELDS = ("minute", "hour", "day of month", "month", "day of week")
_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
#: A cron job's catch-up counts missed slots up to this many (a minutely job down for a
#: year is "more than 10,000 missed", not a year of croniter steps).
MAX_COUNTED = 10_000


class ScheduleError(MlopsError):
    """A schedule that cannot be used: a bad cron field, time zone or interval."""


def parse_every(text: str) -> float:
    """Seconds in an interval such as ``10s``, ``15m``, ``1h``, ``2d`` or ``90`` (seconds)."""
    match = _DURATION.fullmatch(str(text))
    if not match:
        raise ScheduleError(f"`{shown(text)}` is not an interval; write a number and a unit, "
                            "such as 10s, 15m, 1h or 1d")
    seconds = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ScheduleError(f"an interval must be more than 0 seconds, got `{shown(text)}`")
    return seconds


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ScheduleError(f"unknown time zone `{shown(name)}`; use an IANA name such as "
                            "UTC, Europe/Berlin or America/New_York") from None


def check_cron(expr: str) -> str:
    """``expr`` tidied (single spaces); a bad expression raises naming its field."""
    from croniter import croniter

    text = " ".join(str(expr).split())
    if text.lower() in _MACROS:
        return text.lower()
    fields = text.split(" ")
    if len(fields) != 5:
        raise ScheduleError(f"cron expression `{shown(expr)}` has {len(fields)} field(s); "
                            "write five: minute hour day-of-month month day-of-week, "
                            "such as `0 2 * * *` for 02:00 every day")
    for index, value in enumerate(fields):
        # one field at a time, the others `*`, so the message can say which field is wrong
        probe = ["*"] * 5
        probe[index] = value
        if not croniter.is_valid(" ".join(probe)):
            raise ScheduleError(f"cron expression `{shown(expr)}`: the {CRON_FIELDS[index]} "
                                f"field `{shown(value)}` is not valid")
    if not croniter.is_valid(text):
        raise ScheduleError(f"cron expression `{shown(expr)}` is not valid")
    return text


@dataclass(frozen=True)
class Schedule:
    """A job's timing: ``cron`` in ``tz``, or every ``every`` seconds."""

    cron: str | None = None
    tz: str = "UTC"
    every: float | None = None

    @classmethod
    def of(cls, *, cron: str | None = None, tz: str | None = None,
           every: str | float | None = None) -> Schedule:
        """A checked schedule from what the user wrote: exactly one of ``cron``/``every``."""
        if (cron is None) == (every is None):
            raise ScheduleError("give a schedule: a cron expression or an interval, not both "
                                "and not neither")
        if every is not None:
            if tz is not None:
                raise ScheduleError("a time zone goes with a cron expression; an interval "
                                    "runs the same in every zone")
            seconds = every if isinstance(every, (int, float)) else parse_every(every)
            if not math.isfinite(seconds) or seconds <= 0:
                raise ScheduleError(f"an interval must be more than 0 seconds, got {every}")
            return cls(every=float(seconds))
        zone = tz or "UTC"
        _zone(zone)
        return cls(cron=check_cron(str(cron)), tz=zone)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Schedule:
        """The schedule a job record holds."""
        return cls(cron=data.get("cron"), tz=data.get("tz") or "UTC", every=data.get("every"))

    def to_json(self) -> dict[str, Any]:
        """What a job record holds."""
        return {"cron": self.cron, "tz": self.tz} if self.cron else {"every": self.every}

    def describe(self) -> str:
        """``every 15m`` or ``cron 0 2 * * * (Europe/Berlin)``."""
        if self.cron:
            return f"cron {self.cron} ({self.tz})"
        seconds = float(self.every or 0)
        for unit in ("d", "h", "m"):
            if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
                return f"every {int(seconds // _UNITS[unit])}{unit}"
        return f"every {seconds:g}s"

    def next_after(self, moment: float, anchor: float) -> float:
        """The first slot strictly after ``moment`` (interval slots count from ``anchor``)."""
        if self.every:
            steps = max(math.floor((moment - anchor) / self.every) + 1, 1)
            while anchor + steps * self.every <= moment:  # the division's rounding
                steps += 1
            return anchor + steps * self.every
        from croniter import croniter

        start = datetime.fromtimestamp(moment, tz=timezone.utc).astimezone(_zone(self.tz))
        it = croniter(self.cron, start)
        slot = float(it.get_next(float))
        while self._repeated(slot):
            slot = float(it.get_next(float))
        return slot

    def _repeated(self, slot: float) -> bool:
        """Whether ``slot`` is the second pass of a wall-clock time the autumn change of
        clocks repeats (02:30 twice in one night): a job at a fixed hour runs once that
        night, at the first pass, as cron does; one whose hour field is ``*`` runs each hour."""
        if datetime.fromtimestamp(slot, _zone(self.tz)).fold != 1:
            return False
        text = str(self.cron)
        hour = "*" if text == "@hourly" else ("0" if text.startswith("@") else text.split()[1])
        return not hour.startswith("*")

    def latest(self, now: float, anchor: float) -> float | None:
        """The last slot at or before ``now`` and after ``anchor``, or None."""
        if self.every:
            steps = math.floor((now - anchor) / self.every)
            while steps >= 1 and anchor + steps * self.every > now:  # the division's rounding
                steps -= 1
            return anchor + steps * self.every if steps >= 1 else None
        from croniter import croniter

        # croniter's get_prev is strictly before its start: a slot exactly at `now` is due
        start = datetime.fromtimestamp(now + 0.001, tz=timezone.utc).astimezone(_zone(self.tz))
        it = croniter(self.cron, start)
        slot = float(it.get_prev(float))
        while self._repeated(slot):
            slot = float(it.get_prev(float))
        return slot if slot > anchor else None

    def slots_between(self, after: float, until: float) -> int:
        """How many slots lie in (``after``, ``until``], counted up to :data:`MAX_COUNTED`."""
        if until <= after:
            return 0
        if self.every:
            return min(int((until - after) // self.every), MAX_COUNTED)
        count, slot = 0, after
        while count < MAX_COUNTED:
            slot = self.next_after(slot, after)
            if slot > until:
                break
            count += 1
        return count
