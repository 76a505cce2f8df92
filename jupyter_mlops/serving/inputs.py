"""Records sent to ``POST /predict``, checked against the model's input profile, as a frame.

Every problem is an :class:`InputError` with the HTTP status to answer (400 for a body that
is not JSON records, 422 for records that do not fit the schema) and the column it concerns.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..errors import MlopsError
from ..errors import printable as shown

MAX_ROWS = 10_000
"""Records in one request; more is a 413, so one request cannot hold the server for long."""


class InputError(MlopsError):
    """A request the server refuses, with the status to answer and the column concerned."""

    def __init__(self, status: int, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.column = column


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON; send null for a missing value")


def parse_records(body: bytes) -> list[dict[str, Any]]:
    """The records of a request body: a JSON list of objects, ``{"records": [...]}``, or
    one object. InputError(400) for anything else."""
    try:
        payload = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(400, f"the body is not valid JSON ({reason}); send a list of "
                         'records, e.g. [{"age": 41, "region": "West"}]') from None
    if isinstance(payload, dict) and set(payload) == {"records"}:
        payload = payload["records"]
    if isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list) or not payload:
        raise InputError(400, "send a non-empty JSON list of records (objects of column: "
                         'value), or {"records": [...]}')
    if len(payload) > MAX_ROWS:
        raise InputError(413, f"{len(payload)} records in one request; send at most "
                         f"{MAX_ROWS} per request")
    for i, record in enumerate(payload):
        if not isinstance(record, dict):
            raise InputError(400, f"record {i} is a {type(record).__name__}, not an object of "
                             "column: value")
    return payload


def _kind_ok(kind: str, value: Any) -> bool:
    if kind == "numeric":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "categorical":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "datetime":
        return isinstance(value, str)
    return isinstance(value, (str, int, float, bool))


_EXPECTED = {"numeric": "a number", "categorical": "a string", "boolean": "true or false",
             "datetime": "an ISO 8601 date string", "other": "a JSON scalar"}


def to_frame(records: list[dict[str, Any]], columns: list[dict[str, Any]],
             required: list[str] | None = None) -> Any:
    """The records as a DataFrame in the model's column order and training dtypes.

    InputError(422) naming the column for a missing or unknown column, a value of the wrong
    type, or a null where the training data had none. With ``required`` (raw records for
    the preparation), only those columns must be there; a column left out of every record
    is left out of the frame, and one left out of some records is null there."""
    import numpy as np
    import pandas as pd

    names = [c["name"] for c in columns]
    known = set(names)
    needed = names if required is None else required
    what = "the model takes" if required is None else "the preparation and the model need"
    for i, record in enumerate(records):
        if required is not None or len(record) != len(names) or not known.issuperset(record):
            for name in needed:
                if name not in record:
                    raise InputError(422, f"record {i} has no column `{name}`; "
                                     f"{what} {', '.join(needed)}", name)
            extra = next((str(k) for k in record if k not in known), None)
            if extra is not None:
                raise InputError(422, f"record {i} has column `{shown(extra)}`, which is not "
                                 f"a column of the data; {what} {', '.join(needed)}",
                                 shown(extra))
    sent = set().union(*records) if required is not None else known
    data: dict[str, Any] = {}
    for column in [c for c in columns if c["name"] in sent]:
        name, kind, dtype = column["name"], column["kind"], column["dtype"]
        values = [record.get(name) for record in records]
        # a column some records leave out may be null there, whatever training held
        nullable = bool(column.get("nulls")) or any(name not in r for r in records)
        for i, value in enumerate(values):
            if value is None:
                if not nullable:
                    raise InputError(422, f"column `{name}` is null in record {i}; the model "
                                     "was trained without missing values in it", name)
            elif not _kind_ok(kind, value):
                raise InputError(422, f"column `{name}` is {type(value).__name__} "
                                 f"{_short(value)} in record {i}; it takes {_EXPECTED[kind]} "
                                 f"(trained as {dtype})", name)
        data[name] = _series(name, kind, dtype, values, pd, np)
    return pd.DataFrame(data, columns=[n for n in names if n in sent])


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _series(name: str, kind: str, dtype: str, values: list[Any], pd: Any, np: Any) -> Any:
    if kind == "numeric":
        integral = dtype.startswith(("int", "uint")) and all(
            isinstance(v, int) for v in values)
        try:
            array = np.array([math.nan if v is None else v for v in values],
                             dtype=np.int64 if integral else np.float64)
        except OverflowError:
            array = np.array([math.inf], dtype=np.float64)  # reported just below
        if array.dtype.kind == "f" and not np.all(np.isfinite(array[~np.isnan(array)])):
            raise InputError(422, f"column `{name}` holds a number out of range",
                             name)
        return array
    if kind == "datetime":
        try:
            return pd.to_datetime(pd.Series(values, dtype=object))
        except (ValueError, TypeError, OverflowError):
            raise InputError(422, f"column `{name}` holds a value that is not an ISO 8601 "
                             "date", name) from None
    if kind == "boolean" and None not in values:
        return np.array(values, dtype=bool)
    return pd.Series(values, dtype=object)
