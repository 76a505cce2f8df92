"""``pipeline.yaml`` checked against its JSON schema, published beside this module.

The schema (``pipeline.schema.json``) is the one definition of what a pipeline spec holds;
the reader checks every spec against it before building anything, so a field of the wrong
type is one line naming the field, not an error deep inside a run. The sidebar's
``IPipeline`` wire type is tested to declare the same fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import SpecError

__all__ = ["SCHEMA_FILE", "schema", "validate"]

SCHEMA_FILE = Path(__file__).with_name("pipeline.schema.json")


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON schema of ``pipeline.yaml``."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _validator() -> Callable[[Any], Any]:
    # fastjsonschema (already needed by nbformat) turns the schema into Python, where
    # jsonschema's import alone costs more than `show` itself. Making and compiling that
    # code takes ~45 ms, a fifth of a re-run served from the cache, so it is kept as a
    # module in the user's cache folder, where Python keeps its bytecode like any module's.
    import fastjsonschema

    try:
        return _cached_validator(fastjsonschema)
    except (OSError, SyntaxError, ImportError, AttributeError, ValueError):
        return fastjsonschema.compile(schema())  # no cache folder to write: made each time


def _cached_validator(fastjsonschema: Any) -> Callable[[Any], Any]:
    """The validator from ``CACHE/jupyter-mlops/pipeline_schema_KEY.py``, written first when
    it is not there; KEY is the hash of the schema and fastjsonschema's version."""
    import importlib.util
    import os

    from ..runtime._files import atomic_write, sha256_text

    text = SCHEMA_FILE.read_text(encoding="utf-8")
    key = sha256_text(f"{fastjsonschema.VERSION}\n{text}")[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jupyter-mlops"
    module_file = cache / f"pipeline_schema_{key}.py"
    if not module_file.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        atomic_write(module_file, fastjsonschema.compile_to_code(schema()))
    spec = importlib.util.spec_from_file_location(f"_mlops_pipeline_schema_{key}", module_file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {module_file}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # the schema's own function; its definitions' functions extend its name
    root = min((n for n in vars(module) if n.startswith("validate_")), key=len)
    return getattr(module, root)


def _field(name: str) -> str:
    """``data.steps[0].cells[1]`` -> ``steps[0].cells[1]``; the whole spec for ``data``."""
    return re.sub(r"^data\.?", "", name) or "(the whole spec)"


def _owner(field: str, data: Any) -> str:
    """`` (parameter `n`)`` when ``field`` lies inside a named parameter or step, else ``""``:
    the name the user knows it by."""
    match = re.match(r"(parameters|steps)\[(\d+)\]", field)
    if not match or not isinstance(data, dict):
        return ""
    items = data.get(match[1])
    index = int(match[2])
    item = items[index] if isinstance(items, list) and index < len(items) else None
    name = item.get("name") if isinstance(item, dict) else None
    return f" (of {match[1][:-1]} `{name}`)" if isinstance(name, str) and name.isprintable() \
        and len(name) <= 60 else ""


def validate(data: Any, where: str) -> None:
    """SpecError naming the first field of ``data`` that the schema refuses."""
    import fastjsonschema

    try:
        _validator()(data)
    except fastjsonschema.JsonSchemaValueException as err:
        field = _field(err.name or "")
        if err.rule == "required" and isinstance(err.value, dict):
            missing = next(k for k in err.definition["required"] if k not in err.value)
            inside = "" if field.startswith("(") else f"{field}."
            raise SpecError(f"{where} is malformed (missing field `{inside}{missing}`); export "
                            "the notebook again") from None
        rule = err.message.removeprefix(err.name or "").strip() if err.message else ""
        shown = repr(err.value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise SpecError(f"{where}: `{field}`{_owner(field, data)} is {shown}, which is not "
                        f"valid ({rule}); fix that field or export the notebook again") from None
