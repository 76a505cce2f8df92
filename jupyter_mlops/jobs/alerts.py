"""Telling someone how a scheduled run went: a command, a webhook, or both.

An alert is due when the run failed (or was cancelled or skipped because it could not
start), after every run when the job says ``notify: always``, and when a succeeded run's
metric meets one of the job's ``alert_if`` conditions (``accuracy<0.8``). The job's command
runs through the shell (it is the job owner's own command, as a cron line is) with the
run's summary in ``MLOPS_*`` environment variables; the webhook gets the same summary as a
JSON POST. What each did is returned, and the scheduler records it with the slot and logs
it: an alert that could not be sent is never lost silently.
"""

from __future__ import annotations

import json
import operator
import os
import re
import subprocess
from typing import Any

from ..errors import shown
from .store import Job, JobError

__all__ = ["parse_condition", "alert_reasons", "send_alerts", "ALERT_TIMEOUT"]

#: Seconds a command or a webhook may take before it counts as failed.
ALERT_TIMEOUT = 30.0
_CONDITION = re.compile(r"\s*([A-Za-z_][\w.-]*)\s*(<=|>=|<|>)\s*([-+]?[\d.]+(?:e[-+]?\d+)?)\s*",
                        re.IGNORECASE)
_OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def parse_condition(text: str) -> tuple[str, str, float]:
    """``accuracy<0.8`` as (metric, operator, threshold)."""
    match = _CONDITION.fullmatch(str(text))
    if not match:
        raise JobError(f"alert condition `{shown(text)}` is not METRIC<VALUE (or <=, >, >=), "
                       "e.g. accuracy<0.8")
    try:
        threshold = float(match.group(3))
    except ValueError:
        raise JobError(f"alert condition `{shown(text)}`: {match.group(3)} is not a number"
                       ) from None
    return match.group(1), match.group(2), threshold


def alert_reasons(job: Job, summary: dict[str, Any]) -> list[str]:
    """Why an alert is due for this run (empty: none is)."""
    status = summary.get("status")
    if status != "succeeded":
        return [f"run {status}"]
    reasons = ["run succeeded"] if job.notify == "always" else []
    metrics = summary.get("metrics") or {}
    for condition in job.alert_if:
        name, op, threshold = parse_condition(condition)
        value = metrics.get(name)
        if isinstance(value, (int, float)) and _OPERATORS[op](value, threshold):
            reasons.append(f"metric {name} = {value:g} {op} {threshold:g}")
    return reasons


def _environment(summary: dict[str, Any]) -> dict[str, str]:
    fields = ("job", "pipeline", "run_id", "status", "error", "due", "trigger", "folder",
              "reasons")
    values = {f"MLOPS_{key.upper()}": "" if summary.get(key) is None else
              ("; ".join(summary[key]) if isinstance(summary[key], list) else str(summary[key]))
              for key in fields}
    values["MLOPS_SUMMARY"] = json.dumps(summary, default=str)
    return {**os.environ, **values}


def _run_command(command: str, summary: dict[str, Any]) -> str:
    try:
        done = subprocess.run(command, shell=True, env=_environment(summary),
                              capture_output=True, text=True, timeout=ALERT_TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired:
        return f"command timed out after {ALERT_TIMEOUT:.0f} s"
    except OSError as err:
        return f"command could not start: {err.strerror or err}"
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        return f"command exited {done.returncode}" + (f": {shown(said[-1])}" if said else "")
    return "command ran"


def _post(url: str, summary: dict[str, Any]) -> str:
    import urllib.error
    import urllib.request

    body = json.dumps(summary, default=str).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "jupyter-mlops"})
    try:
        with urllib.request.urlopen(request, timeout=ALERT_TIMEOUT) as answer:
            return f"webhook answered {answer.status}"
    except urllib.error.HTTPError as err:
        return f"webhook failed: HTTP {err.code}"
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        return f"webhook failed: {shown(str(reason))}"


def send_alerts(job: Job, summary: dict[str, Any]) -> str | None:
    """Send the alerts due for this run; what each did in one line (None: none was due)."""
    reasons = alert_reasons(job, summary)
    if not reasons or not (job.on_failure or job.webhook):
        return None
    summary = {**summary, "reasons": reasons}
    said = []
    if job.on_failure:
        said.append(_run_command(job.on_failure, summary))
    if job.webhook:
        said.append(_post(job.webhook, summary))
    return f"{'; '.join(reasons)}: {', '.join(said)}"


def alert_failed(outcome: str) -> bool:
    """Whether a recorded alert outcome says some alert could not be sent."""
    return any(word in outcome for word in ("exited", "failed", "timed out", "could not"))
