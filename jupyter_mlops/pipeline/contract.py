"""The contract a pipeline inherits from its notebook: what the magics captured, as checks.

At export, the capture record beside the notebook becomes ``checks`` in pipeline.yaml (metric
thresholds, which data each step must match) and one profile file per data cell in
``contract/``. Every pipeline run is held to it by the same magics, in check mode.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import Problem
from ..notebook.analysis import Analysis
from ..notebook.captures import read_record, record_path
from ..notebook.reader import code_key

CONTRACT_DIR = "contract"


def profile_file(variable: str, key: str) -> str:
    """The contract file of ``variable`` as made by the cell whose code key is ``key``."""
    return f"{CONTRACT_DIR}/{variable}-{key}.json"


def build_contract(analysis: Analysis) -> tuple[dict[str, Any], dict[str, bytes], list[Problem]]:
    """(``checks`` for the spec, the contract files, warnings) from the notebook's record."""
    notebook = analysis.notebook
    if not record_path(notebook.path).is_file():
        return {}, {}, []
    record = read_record(notebook.path)
    checks: dict[str, Any] = {"fail_on_drift": False, "data": {}, "metrics": {}}
    files: dict[str, bytes] = {}
    warnings: list[Problem] = []
    for plan in analysis.steps:
        for cell in plan.cells:
            if cell.role != "data":
                continue
            key = code_key(cell.code)
            found = {e["variable"]: e for e in record["data"].values()
                     if e.get("cell_key") == key}
            wanted = list(cell.mark.variables) if cell.mark and cell.mark.variables else \
                list(found)
            for variable in wanted:
                entry = found.get(variable)
                if entry is None:
                    warnings.append(Problem(
                        f"{notebook.name}, cell {cell.number}: no data profile of `{variable}` "
                        "was captured from this cell as it is now; run the cell again to "
                        "record its data contract", cell.number, "warning"))
                    continue
                name = profile_file(variable, key)
                files[name] = (json.dumps(entry["profile"], indent=1, sort_keys=True,
                                          allow_nan=False) + "\n").encode("utf-8")
                checks["data"][f"{variable}-{key}"] = {
                    "step": plan.name, "variable": variable, "cell": cell.number,
                    "file": name, "rows": entry["profile"].get("rows"),
                    "fingerprint": entry["profile"].get("fingerprint"),
                }
    metrics: set[str] = set()
    for plan in analysis.steps:
        metrics |= {name for name, out in plan.outputs.items() if out.role == "metrics"}
    for name in sorted(metrics):
        if name in record["metrics"]:
            checks["metrics"][name] = dict(record["metrics"][name])
    return checks, files, warnings
