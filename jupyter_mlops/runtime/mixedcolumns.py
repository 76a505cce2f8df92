"""Object columns of several types in a frame file: numbers and strings in one column (as a
messy spreadsheet gives), which an Arrow column cannot hold, or ints and floats, which Arrow
would make all floats, are written as the JSON text of each cell (:mod:`._jsonvalues`'
tagged values) and made the same values again when read. So are object columns of lists,
tuples or dicts, which Arrow would give back as numpy arrays (a tuple too) and as dicts
with every key any of them had; a column of numpy arrays stays an Arrow list, which reads
back as arrays, and so does a column of plain lists of strings, booleans or ints, made lists
again when read. Which columns those are is kept in the frame file's own record, which its
hash covers, never taken from a manifest.

A cell's text is its :mod:`._jsonvalues` value with its dates and times tagged, at any
depth (in a list too): a pandas Timestamp keeps its unit and its time zone's name, a
``datetime.datetime`` its zoneinfo zone's name (else its offset), a ``datetime.date`` is a
date again, a numpy datetime64 keeps its unit, and pandas' NA and NaT are themselves. An
object column Arrow would type as times is written so too where it would change: times of
several zones (Arrow gives them back all in the first) or units, or another value among
them (Arrow makes an int a time, a datetime among dates a date).

An object column's missing values come back as they were: Arrow keeps a null, read back as
None. Where they are all NaN (pandas before 3 marks a missing string so) the column is named
in the same record too, and :func:`unmixed` makes them NaN again; where they are pandas' NA
or NaT, or of several kinds (None and NaN), the column is written as text, as above (as
before, Arrow's None where JSON cannot keep its values)."""

from __future__ import annotations

import json
from typing import Any

from ._jsonvalues import _TAG, NotJSON, decode, encode, type_name

__all__ = ["arrow_table", "unmixed"]


def _refusals() -> tuple[type[Exception], ...]:
    """What pyarrow raises for Python values it cannot put in an Arrow column."""
    import pyarrow as pa

    # TypeError: a numpy datetime64 of days among other values (int() of a date)
    return (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError,
            TypeError)


def arrow_table(frame: Any, shown: list[str]) -> tuple[Any, Any, dict[str, list[str]]]:
    """The Arrow table of ``frame`` (its plain labels), the frame it was made of, and what
    :func:`unmixed` needs to make the same values again, for the frame file's record:
    ``mixed_columns``, written as the JSON text of each cell, ``list_columns``, of plain
    lists Arrow keeps (:func:`_plain_lists`), and ``nan_columns``, object columns whose
    missing values are all NaN (each only where there is one). Written as text: the columns
    Arrow cannot type (numbers and strings in one, as a messy spreadsheet gives) or would
    change (ints among floats, lists, tuples and dicts, times of several zones, units or
    types, missing values NA, NaT or of several kinds; see the module's text). ``shown``:
    each column as a message names it ("its column 'price'"). ValueError naming a column or
    an index level that cannot be kept."""
    import pandas as pd
    import pyarrow as pa

    refused = _refusals()
    # a RangeIndex is kept as metadata (and comes back one), any other index as columns
    try:
        table = pa.Table.from_pandas(frame, preserve_index=None)
    except refused:
        table = None
    objects = [n for n, t in frame.dtypes.items() if pd.api.types.is_object_dtype(t)]
    if table is not None:  # the usual case: only object columns typed as floats or nested
        objects = [n for n in objects if _changed_by_arrow(table.schema.field(n).type)]
    mixed: dict[Any, list[str | None] | None] = {}  # the cells' text, where made already
    lists: list[str] = []
    missing = _missing_kinds(frame)

    def where(name: Any) -> str:
        return shown[list(frame.columns).index(name)]

    for name in objects:
        try:
            data = (pa.array(frame[name], from_pandas=True) if table is None
                    else table.column(name))
        except refused:
            mixed[name] = None
            continue
        typed = data.type
        if pa.types.is_floating(typed) and pd.api.types.infer_dtype(
                frame[name], skipna=True) == "mixed-integer-float":
            mixed[name] = None
        elif pa.types.is_nested(typed) and missing.get(name) != "other" and _plain_lists(
                frame[name], data):
            lists.append(str(name))
        elif pa.types.is_nested(typed) and (cells := _containers_as_text(frame[name],
                                                                         where(name))):
            mixed[name] = cells
        elif _is_time(typed) and _times_changed(frame[name]):
            mixed[name] = None
    for name in [n for n, kind in missing.items() if kind == "other" and n not in mixed]:
        cells = _missing_as_text(frame[name])
        if cells is not None:
            mixed[name] = cells
    restore = {"nan_columns": [str(n) for n, kind in missing.items()
                               if kind == "nan" and n not in mixed],
               "list_columns": lists, "mixed_columns": [str(n) for n in mixed]}
    restore = {key: names for key, names in restore.items() if names}
    if not mixed:
        if table is None:
            _refuse_index(frame)
            return pa.Table.from_pandas(frame, preserve_index=None), frame, restore
        return table, frame, restore
    frame = frame.copy(deep=False)
    for name, cells in mixed.items():
        if cells is None:
            cells = _as_text(frame[name], where(name))
        frame[name] = pd.Series(cells, index=frame.index, dtype=object)
    try:
        table = pa.Table.from_pandas(frame, preserve_index=None)
    except refused:
        _refuse_index(frame)
        raise
    return table, frame, restore


def _plain_lists(column: Any, data: Any) -> bool:
    """Whether an object ``column`` Arrow typed as lists (``data``, its Arrow column) holds
    Python lists alone (missing ones None or NaN) of items Arrow keeps as they are, none of
    them missing: strings, booleans, ints, or none (empty lists). Arrow writes them at its
    own speed (a column of 1,000,000 short lists took 2.8 s as text), and :func:`unmixed`
    makes its arrays lists again. A tuple, a dict, a list in a list, floats (ints among them
    would come back floats), a missing item (Arrow makes NaN, NA and NaT all None) go as
    text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_list(data.type) or pa.types.is_large_list(data.type)):
        return False
    item = data.type.value_type
    if not (pa.types.is_string(item) or pa.types.is_large_string(item)
            or pa.types.is_boolean(item) or pa.types.is_int64(item) or pa.types.is_null(item)):
        return False
    # a float among lists is NaN here: another float would have kept Arrow from typing it
    if not set(map(type, column.tolist())) <= {list, type(None), float}:
        return False
    # a missing item (None, NaN, NA, NaT) is a null to Arrow: only text keeps which it was
    return not pc.list_flatten(data).null_count


def _changed_by_arrow(typed: Any) -> bool:
    """Whether an object column Arrow typed ``typed`` may not read back as it was: floats
    (ints among them), or lists, structs and maps."""
    import pyarrow as pa

    return pa.types.is_floating(typed) or pa.types.is_nested(typed) or _is_time(typed)


def _is_time(typed: Any) -> bool:
    """Whether ``typed`` is an Arrow type of timestamps or dates."""
    import pyarrow as pa

    return pa.types.is_timestamp(typed) or pa.types.is_date(typed)


def _times_changed(column: Any) -> bool:
    """Whether Arrow changes an object ``column`` it typed as timestamps or dates: values
    of several types (Arrow makes an int among them a time, a datetime among dates a date,
    a datetime a Timestamp), or Timestamps of several zones (all given back in the first)
    or units (all in the finest). Dates alone, or numpy datetime64 values, come back as
    before."""
    import datetime
    from operator import attrgetter

    import pandas as pd

    values = column.dropna().tolist()  # set(map(...)): no Python loop of ours per cell
    kinds = set(map(type, values))
    if len(kinds) != 1:
        return bool(kinds)
    if pd.Timestamp in kinds:
        return _several(map(attrgetter("tz"), values)) or len(
            set(map(attrgetter("unit"), values))) > 1
    if datetime.datetime in kinds:
        return _several(map(attrgetter("tzinfo"), values))
    return False


def _several(zones: Any) -> bool:
    """Whether ``zones`` holds more than one time zone, told apart by name (pytz gives one
    zone's summer and winter times two objects; dateutil's cannot be hashed)."""
    zones = list(zones)
    try:
        found: Any = set(zones)  # most columns: one object, or a few
    except TypeError:  # dateutil's
        found = zones
    if len(found) < 2:
        return False
    return len({getattr(z, "key", None) or getattr(z, "zone", None) or str(z)
                for z in found}) > 1


def _containers_as_text(column: Any, where: str) -> list[str | None] | None:
    """The JSON text of each cell of an object ``column`` Arrow typed as lists or structs,
    or None where it reads back as it was (numpy arrays alone) or JSON cannot keep a value
    (bytes in a list): Arrow's own column then, as before. A time it cannot keep is refused
    (:func:`_refuse_time`): Arrow would give every time of the column back in UTC."""
    import numpy as np

    values = column.tolist()
    if all(v is None or isinstance(v, np.ndarray) for v in values):
        return None
    try:
        return _texts(values)
    except NotJSON as err:
        _refuse_time(err, where)
        _refuse_arrays(values, where)
        return None
    except (RecursionError, ValueError):
        return None


def _refuse_arrays(values: list[Any], where: str) -> None:
    """ValueError, saying ``where`` it is, if Arrow would give cells of ``values`` back as
    numpy arrays that were not (sets, or lists beside arrays); else nothing."""
    import numpy as np

    kinds = {type(v) for v in values if isinstance(v, (set, frozenset, list, tuple, np.ndarray))}
    if kinds & {set, frozenset} or (np.ndarray in kinds and len(kinds) > 1):
        names = " and ".join(sorted("numpy.ndarray" if k is np.ndarray else k.__name__
                                    for k in kinds))
        raise ValueError(f"{where} holds {names} values, which a frame file would give back "
                         "as numpy arrays; make them all lists (for example with "
                         ".map(list), or .map(sorted) for sets)")


def _refuse_time(err: NotJSON, where: str) -> None:
    """ValueError, saying ``where`` it is, if what ``err`` could not keep is an aware time
    (its zone has no name pandas reads, or the time is not one of its zone's); else
    nothing."""
    import datetime

    kept = err.args[1] if len(err.args) > 1 else None
    if isinstance(kept, datetime.datetime) and kept.tzinfo is not None:
        raise ValueError(f"{where} holds a time, {kept}, which a frame file cannot keep in "
                         f"its zone ({kept.tzinfo}); put the times in one zone whose name "
                         "pandas reads (for example with pd.to_datetime(..., utc=True))"
                         ) from None


def _texts(values: list[Any]) -> list[str | None]:
    """The JSON text of each of ``values`` (:func:`_cell`; None for None); NotJSON for one
    JSON cannot keep."""
    return [None if value is None else _cell(value) for value in values]


def _cell(value: Any) -> str:
    """The JSON text of one cell (not None): its :mod:`._jsonvalues` value, its dates,
    times and pandas' NA at any depth tagged (:func:`_time`), which :func:`_value` makes the
    same again; NotJSON, with the value it cannot keep, where it cannot."""
    try:
        return json.dumps(encode(value, _time))
    except NotJSON as err:
        raise NotJSON(err.args[0], err.args[1] if len(err.args) > 1 else value) from None


def _time(value: Any) -> dict[str, Any]:
    """A date, a time, pandas' NA or NaT as tagged JSON data, proved to come back equal, of
    its type, zone and unit (:func:`_untime`); NotJSON, with the value, for another value or
    one it would change (a zone without a name pandas reads)."""
    import datetime

    import numpy as np
    import pandas as pd

    if value is pd.NA or value is pd.NaT:
        return {_TAG: "NA" if value is pd.NA else "NaT"}
    if isinstance(value, pd.Timestamp):
        # an aware one as its UTC time: a local time of a zone can be ambiguous
        zone = None if value.tz is None else str(value.tz)
        wall = value if zone is None else value.tz_convert("UTC").tz_localize(None)
        found = {_TAG: "Timestamp", "iso": wall.isoformat(), "unit": value.unit, "tz": zone}
    elif isinstance(value, datetime.datetime) and hasattr(value.tzinfo, "key"):
        # a zoneinfo zone, by its name (an offset alone is another zone)
        try:
            utc = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        except (OverflowError, ValueError):  # a time its zone cannot say in UTC
            raise NotJSON(f"a {type_name(value)}", value) from None
        found = {_TAG: "datetime", "iso": utc.isoformat(), "tz": value.tzinfo.key,
                 "fold": value.fold}
    elif isinstance(value, datetime.datetime):
        found = {_TAG: "datetime", "iso": value.isoformat(), "fold": value.fold}
    elif isinstance(value, datetime.date):
        found = {_TAG: "date", "iso": value.isoformat()}
    elif isinstance(value, np.datetime64):
        found = {_TAG: "datetime64", "text": str(value), "dtype": str(value.dtype)}
    else:
        raise NotJSON(f"a {type_name(value)}", value)
    try:
        back = _untime(found)
    except (ValueError, TypeError, KeyError, OverflowError) as err:
        raise NotJSON(f"a {type_name(value)}", value) from err
    if (type(back) is not type(value) or str(back) != str(value)
            or getattr(back, "fold", 0) != getattr(value, "fold", 0)
            or (back != value and str(value) != "NaT")  # NaT is no NaT's equal
            or str(getattr(back, "tzinfo", None)) != str(getattr(value, "tzinfo", None))
            or getattr(back, "unit", None) != getattr(value, "unit", None)
            or getattr(back, "dtype", None) != getattr(value, "dtype", None)):
        raise NotJSON(f"a {type_name(value)}", value)
    return found


def _untime(found: dict[str, Any]) -> Any:
    """The value of a tag :func:`_time` gave; ValueError for another tag."""
    import datetime

    import pandas as pd

    tag = found[_TAG]
    if tag in ("NA", "NaT"):
        return pd.NA if tag == "NA" else pd.NaT
    if tag == "Timestamp":
        stamp = pd.Timestamp(found["iso"]).as_unit(found["unit"])
        zone = found["tz"]
        return stamp if zone is None else stamp.tz_localize("UTC").tz_convert(zone)
    if tag == "datetime" and "tz" in found:
        from zoneinfo import ZoneInfo

        utc = datetime.datetime.fromisoformat(found["iso"]).replace(tzinfo=datetime.timezone.utc)
        return utc.astimezone(ZoneInfo(found["tz"])).replace(fold=found["fold"])
    if tag == "datetime":
        return datetime.datetime.fromisoformat(found["iso"]).replace(fold=found.get("fold", 0))
    if tag == "date":
        return datetime.date.fromisoformat(found["iso"])
    if tag == "datetime64":
        import numpy as np

        return np.datetime64(found["text"]).astype(found["dtype"])
    raise ValueError(f"unknown tag {tag!r}")


def _value(text: str) -> Any:
    """The value of a cell's text (:func:`_cell`)."""
    found = json.loads(text)
    if _TAG not in text:  # plain JSON: lists, dicts, strings and numbers as they are
        return found
    return decode(found, _untime)


def _as_text(column: Any, where: str) -> list[str | None]:
    """The JSON text of each cell of an object ``column`` of several types (None for None);
    ValueError, saying ``where`` it is, for a value JSON cannot keep."""
    values = column.tolist()
    try:
        return _texts(values)
    except NotJSON as err:
        _refuse_time(err, where)
        kept = err.args[1] if len(err.args) > 1 else None
        kinds = sorted({type_name(v) for v in values if v is not None})
        holds = (f"values of several types ({', '.join(kinds[:5])})" if len(kinds) > 1
                 else f"{type_name(values[0] if kept is None else kept)} values")
        raise ValueError(f"{where} holds {holds}, which a frame file cannot keep as they "
                         "are; make it one plain type (for example with .astype(str))"
                         ) from None


def _refuse_index(frame: Any) -> None:
    """ValueError naming an index level Arrow cannot type, and what to do; nothing if none."""
    import pyarrow as pa

    for i in range(frame.index.nlevels):
        level = frame.index.get_level_values(i)
        if level.dtype != object:
            continue
        try:
            pa.array(level, from_pandas=True)
        except _refusals():
            raise ValueError(
                f"its index{'' if frame.index.nlevels == 1 else f' level {i}'} holds values "
                "of several types, which a frame file cannot keep; make it one type (for "
                "example with .astype(str)) or make it a column with .reset_index()") from None


def _missing_kinds(frame: Any) -> dict[Any, str]:
    """The object columns of ``frame`` with missing values other than None alone, by what
    those are: "nan" (all NaN, a numpy float's too: one taken out of a Series is
    np.float64), or "other" (pandas' NA or NaT, or several kinds, as None and NaN)."""
    import math

    import pandas as pd

    found = {}
    for name, dtype in frame.dtypes.items():
        if not pd.api.types.is_object_dtype(dtype):
            continue
        column = frame[name]
        missing = column[column.isna()].tolist()
        if all(v is None for v in missing):
            continue
        nan = all(isinstance(v, float) and math.isnan(v) for v in missing)
        found[name] = "nan" if nan else "other"
    return found


def _missing_as_text(column: Any) -> list[str | None] | None:
    """The JSON text of each cell of an object ``column`` whose missing values Arrow would
    make None (:func:`_missing_kinds`), or None where JSON cannot keep a value: Arrow's
    column then, as before."""
    try:
        return _texts(column.tolist())
    except (NotJSON, RecursionError, ValueError):
        return None


def unmixed(frame: Any, restore: dict[str, Any]) -> Any:
    """``frame`` with the columns :func:`arrow_table` wrote as text made values again, its
    plain lists lists again (Arrow reads numpy arrays), and the missing values of the
    columns it named as NaN alone NaN again."""
    import numpy as np
    import pandas as pd

    for name in restore.get("nan_columns") or []:
        if name not in frame.columns:
            raise ValueError(f"its column {name!r} of missing NaN values is missing")
        column = frame[name]
        frame[name] = column.where(column.notna(), np.nan).astype(object)
    for name in restore.get("list_columns") or []:
        if name not in frame.columns:
            raise ValueError(f"its column {name!r} of lists is missing")
        arrays = frame[name].tolist()
        try:  # no list missing: at numpy's own pace (a third of the time)
            cells = list(map(np.ndarray.tolist, arrays))
        except TypeError:  # None or NaN among them
            cells = [v.tolist() if isinstance(v, np.ndarray) else v for v in arrays]
        frame[name] = pd.Series(cells, index=frame.index, dtype=object)
    mixed = restore.get("mixed_columns") or []
    for name in mixed:
        if name not in frame.columns:
            raise ValueError(f"its column {name!r} written as text is missing")
        frame[name] = pd.Series([_value(text) if isinstance(text, str) else None
                                 for text in frame[name].tolist()],
                                index=frame.index, dtype=object)
    return frame
