"""Check mode of the magics: in a pipeline run, hold data and metrics to the notebook's contract.

A step notebook's parameters say where its pipeline is (``mlops_pipeline``); when set, a
``%%mlops data`` cell checks schema and drift against the recorded profile, and a
``%%mlops metrics`` cell checks each metric against its threshold. Every result is appended
to ``ARTIFACTS/STEP/checks.json``; a broken contract fails the step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ContractError
from ._files import atomic_write

CHECKS_FILE = "checks.json"
#: The pipeline spec file, as :mod:`jupyter_mlops.pipeline.spec` writes it.
SPEC_FILE = "pipeline.yaml"


def _append(results_dir: Path | str, entries: list[dict[str, Any]]) -> None:
    """Add ``entries`` to the step's checks.json, in a local folder or at an fsspec URL."""
    if isinstance(results_dir, str):  # an artifacts location given as a URL
        from .remote import join, read_text, write_text

        url = join(results_dir, CHECKS_FILE)
        text = read_text(url)
        existing = json.loads(text) if text else []
        write_text(url, json.dumps(existing + entries, indent=1, allow_nan=False) + "\n")
        return
    path = results_dir / CHECKS_FILE
    existing = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    atomic_write(path, json.dumps(existing + entries, indent=1, allow_nan=False) + "\n")


def _checks(pipeline: Path) -> dict[str, Any]:
    """The ``checks:`` section of the pipeline's ``pipeline.yaml``: what the export recorded."""
    import yaml

    from ..errors import SpecError

    path = pipeline / SPEC_FILE
    try:
        # libyaml's loader where PyYAML has it: the profiles make this file long
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise SpecError(f"cannot read the checks of {path}: {err}; export the notebook "
                        "again") from None
    checks = data.get("checks") if isinstance(data, dict) else None
    return checks if isinstance(checks, dict) else {}


def check_data(ns: Mapping[str, Any], variables: list[str], key: str, pipeline: Path,
               results_dir: Path | str, fail_on_drift: bool) -> str:
    """Schema (fails) and drift (warns, or fails with ``fail_on_drift``) of each variable.

    ``key`` is the code key of the cell that made the variables, which ties each one to the
    profile the notebook recorded.
    """
    from .drift import check_schema, drift_report

    contract = _checks(pipeline).get("data", {})
    lines: list[str] = []
    for variable in variables:
        entry = contract.get(f"{variable}-{key}")
        if entry is None or variable not in ns:
            continue
        profile = json.loads((pipeline / entry["file"]).read_text(encoding="utf-8"))
        problems = check_schema(profile, ns[variable])
        result: dict[str, Any] = {"check": "schema", "variable": variable,
                                  "ok": not problems, "problems": problems}
        if problems:
            _append(results_dir, [result])
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ContractError(f"`{variable}` does not match the data the notebook saw: "
                                f"{problems[0]}{more}")
        report = drift_report(profile, ns[variable])
        drift = {"check": "drift", "variable": variable, "ok": not report["dataset_drift"],
                 **report}
        _append(results_dir, [result, drift])
        drifted = ", ".join(report["drifted"])
        if report["dataset_drift"]:
            message = (f"`{variable}` drifted from the data the notebook saw: "
                       f"{len(report['drifted'])} of {len(report['columns'])} columns "
                       f"({drifted})")
            if fail_on_drift:
                raise ContractError(message + "; the pipeline fails on drift")
            lines.append("warning: " + message)
        elif drifted:  # under the share that counts as dataset drift: still worth a warning
            lines.append(f"warning: `{variable}` matches its schema but drifted in "
                         f"{len(report['drifted'])} of {len(report['columns'])} columns "
                         f"({drifted})")
        else:
            lines.append(f"`{variable}` matches its contract")
    return "; ".join(lines)


def check_metrics(ns: Mapping[str, Any], names: list[str], pipeline: Path,
                  results_dir: Path | str) -> str:
    """Each metric against its threshold; the first one beyond it fails the step."""
    thresholds = _checks(pipeline).get("metrics", {})
    results: list[dict[str, Any]] = []
    failure: str | None = None
    for name in names:
        rule = thresholds.get(name)
        if rule is None or name not in ns:
            continue
        value = float(ns[name])
        low, high = rule.get("min"), rule.get("max")
        ok = (low is None or value >= low) and (high is None or value <= high)
        results.append({"check": "metric", "name": name, "value": value, "min": low,
                        "max": high, "notebook_value": rule.get("value"), "ok": ok})
        if not ok and failure is None:
            side, line = ("under", low) if low is not None and value < low else ("over", high)
            failure = (f"metric `{name}` is {value:.4g}, {side} its threshold {line:.4g} "
                       f"(the notebook had {rule.get('value', float('nan')):.4g})")
    _append(results_dir, results)
    if failure:
        raise ContractError(failure)
    return ", ".join(f"{r['name']} = {r['value']:.4g} ok" for r in results)


def check(ns: Mapping[str, Any], role: str, key: str, variables: list[str]) -> str | None:
    """Run the checks of a cell of ``role`` (data or metrics) in a pipeline step; ``key`` is
    the cell's code key."""
    pipeline = Path(str(ns["mlops_pipeline"]))
    from .remote import is_url, join

    location, step = str(ns.get("mlops_artifacts", "artifacts")), str(ns.get("mlops_step",
                                                                            "step"))
    # a URL stays a string: Path() would fold its `//` and make a stray local folder
    results_dir: Path | str = join(location, step) if is_url(location) else Path(location) / step
    if role == "data":
        return check_data(ns, variables, key, pipeline, results_dir,
                          bool(ns.get("mlops_fail_on_drift", False)))
    if role == "metrics":
        return check_metrics(ns, variables, pipeline, results_dir)
    return None
