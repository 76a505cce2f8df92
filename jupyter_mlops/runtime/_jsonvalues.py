"""Plain values as strict JSON that comes back equal: tuples, nan and inf kept by tags."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Any

_TAG = "__jupyter_mlops__"  # marks values plain JSON has no spelling for (tuple, nan, ...)


class NotJSON(Exception):
    """A value that would not come back equal from JSON; the message says what it is."""


def type_name(value: Any) -> str:
    """The type of ``value`` as a message names it (``pandas.core.frame.DataFrame``)."""
    module, name = type(value).__module__, type(value).__qualname__
    name = name if module == "builtins" else f"{module}.{name}"
    if name == "numpy.ndarray" and value.dtype.hasobject:
        return f"{name} of dtype {value.dtype}"
    return name


def encode(x: Any, other: Callable[[Any], Any] | None = None) -> Any:
    """``x`` as strict JSON data, with tags for what JSON cannot say; NotJSON otherwise.
    ``other``: how a value of another type is said (tagged), at any depth; it raises
    NotJSON for one it cannot say."""
    kind = type(x)
    if x is None or kind in (bool, int, str):
        return x
    if kind is float:  # strict JSON has no nan/inf: keep them as tagged strings
        return x if math.isfinite(x) else {_TAG: "float", "value": repr(x)}
    if kind is list:
        return [encode(v, other) for v in x]
    if kind is tuple:
        return {_TAG: "tuple", "items": [encode(v, other) for v in x]}
    if kind is dict:
        for key in x:
            if type(key) is not str:
                raise NotJSON(f"a key of type {type_name(key)}")
        items = {k: encode(v, other) for k, v in x.items()}
        return {_TAG: "dict", "items": items} if _TAG in x else items
    np = sys.modules.get("numpy")  # a numpy scalar implies numpy is imported already
    # numbers, booleans and strings only: a datetime64's or timedelta64's item() is an int
    if (np is not None and isinstance(x, (np.bool_, np.number, np.str_))
            and not isinstance(x, (np.datetime64, np.timedelta64))
            and type(x.item()) in (bool, int, float, str)):
        return encode(x.item())
    if other is not None:
        return other(x)
    raise NotJSON(f"a {type_name(x)}")


def decode(x: Any, other: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """The inverse of :func:`encode`; ``other`` makes the values of the tags it does not
    know (those :func:`encode`'s ``other`` gave)."""
    if type(x) is list:
        return [decode(v, other) for v in x]
    if type(x) is not dict:
        return x
    if _TAG not in x:
        return {k: decode(v, other) for k, v in x.items()}
    tag = x[_TAG]
    if tag == "tuple":
        return tuple(decode(v, other) for v in x["items"])
    if tag == "float":
        return float(x["value"])
    if tag == "dict":
        return {k: decode(v, other) for k, v in x["items"].items()}
    if other is not None:
        return other(x)
    raise ValueError(f"unknown tag {tag!r}")


def display(x: Any) -> Any:
    """A plain JSON copy for run summaries: tuples as lists, nan/inf as strings."""
    if type(x) in (list, tuple):
        return [display(v) for v in x]
    if type(x) is dict:
        return {k: display(v) for k, v in x.items()}
    return repr(x) if type(x) is float and not math.isfinite(x) else x


def json_text(value: Any) -> str | None:
    """The JSON file text for ``value``, or None if it would not round-trip exactly."""
    # encode spells every type differently (1 vs true, tuple vs list, nan as a tag), so
    # reading the text back and writing it again gives the same text only if the value
    # came back equal and of the same types all the way down.
    try:
        text = dumps(encode(value))
        ok = dumps(encode(decode(json.loads(text)))) == text
    except (NotJSON, RecursionError, ValueError):  # RecursionError: a list that holds itself
        return None
    return text if ok else None


def dumps(data: Any) -> str:
    """Strict JSON text of already encoded ``data``."""
    return json.dumps(data, allow_nan=False, ensure_ascii=False)


def json_like(value: Any) -> bool:
    """True for values a parameter can hold: None, bool, numbers, str, and lists and dicts
    (with str keys) of those."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and json_like(v) for k, v in value.items())
    if isinstance(value, list):
        return all(json_like(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))
