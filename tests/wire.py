"""The sidebar's TypeScript wire types (labextension/src/types.ts), read here so that tests
can hold the JSON the server really sends to them."""

from __future__ import annotations

import functools
import re
from typing import Any

from conftest import REPO

TYPES = REPO / "labextension" / "src" / "types.ts"
#: Interfaces that mirror a Python shape field for field: no key may be missing or extra.
EXACT = {"IAnalysis", "IPipeline", "IStep", "IParameter", "IOutput", "ICellInfo", "IProblem",
         "IExportReply", "IRunSummary", "IRunsReply", "IRunStarted", "ICaptured",
         "IJob", "IJobSchedule", "ISlot", "IJobsReply", "IRunComparison", "ICompared",
         "IDeployReply"}


@functools.cache
def interfaces() -> dict[str, dict[str, tuple[bool, str]]]:
    """Each exported interface: field -> (optional, TypeScript type)."""
    found: dict[str, dict[str, tuple[bool, str]]] = {}
    text = TYPES.read_text(encoding="utf-8")
    for match in re.finditer(r"export interface (\w+) \{\n(.*?)\n\}", text, re.S):
        fields: dict[str, tuple[bool, str]] = {}
        for line in match.group(2).splitlines():
            field = re.match(r"\s{2}(\w+)(\??): (.+);$", line)
            if field:
                fields[field.group(1)] = (field.group(2) == "?", field.group(3))
        found[match.group(1)] = fields
    return found


def _fits(value: Any, kind: str, where: str) -> None:
    kinds = [k.strip() for k in kind.split(" | ")]
    if value is None:
        assert "null" in kinds or "unknown" in kinds, f"{where} is null, not {kind}"
        return
    kinds = [k for k in kinds if k != "null"]
    kind = kinds[0]
    if kind == "unknown":
        return
    if kind.endswith("[]"):
        assert isinstance(value, list), f"{where} is not a list ({kind})"
        for i, item in enumerate(value):
            _fits(item, kind[:-2], f"{where}[{i}]")
        return
    if kind.startswith("I") and kind in interfaces():
        assert_wire(value, kind, where)
        return
    simple = {"string": str, "number": (int, float), "boolean": bool}
    if kind in simple:
        assert isinstance(value, simple[kind]) and not (
            kind == "number" and isinstance(value, bool)), f"{where} = {value!r} is not {kind}"
    elif kind.startswith(("Record<", "{")):
        assert isinstance(value, dict), f"{where} is not an object ({kind})"
    elif kind.startswith("["):
        assert isinstance(value, list), f"{where} is not a tuple ({kind})"


def assert_wire(data: Any, interface: str, where: str = "") -> None:
    """``data`` has every field ``interface`` requires, each of its type; an interface in
    :data:`EXACT` also declares every key ``data`` has."""
    where = where or interface
    fields = interfaces()[interface]
    assert isinstance(data, dict), f"{where} is not an object"
    for name, (optional, kind) in fields.items():
        if name in data:
            _fits(data[name], kind, f"{where}.{name}")
        else:
            assert optional, f"{where} lacks `{name}`, which {interface} requires"
    if interface in EXACT:
        extra = set(data) - set(fields)
        assert not extra, f"{where} sends {sorted(extra)}, which {interface} does not declare"
