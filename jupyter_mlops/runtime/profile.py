"""Profiles of DataFrames, Series and arrays: schema, statistics and fingerprints, no raw data."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from ..errors import MlopsError

__all__ = [
    "HISTOGRAM_BINS", "PROFILE_VERSION", "QUANTILES", "TOP_VALUES", "as_frame", "column_kind",
    "column_pool", "histogram_edges", "label_counts", "profile_data", "sorted_quantiles",
]

PROFILE_VERSION = 1
"""Bumped whenever a field changes meaning, so a check can tell an old profile from a new one."""

QUANTILES = 101
"""Numeric columns keep their quantiles at 0%, 1%, ..., 100%: enough to rebuild the
distribution for the drift tests to within one percentile."""

HISTOGRAM_BINS = 20
"""Equal-width bins between the column's min and max (21 edges); the drift check's PSI uses
them, and 20 bins keep 5% resolution without many empty bins on small samples."""

TOP_VALUES = 20
"""Categorical and boolean columns keep their 20 most frequent values; the rest are counted
together as ``other``, so a column of IDs does not blow up the profile."""

def profile_data(value: Any, name: str) -> dict[str, Any]:
    """The profile of ``value`` (a pandas DataFrame or Series, or a 1-D or 2-D numpy array).

    The result is plain JSON (no NaN or infinity: a statistic that does not exist is None)
    and holds no raw rows, only aggregates, so it can be committed beside the notebook::

        {"version": 1, "name": "df", "kind": "DataFrame", "rows": 3,
         "columns": [{"name": "age", "dtype": "int64", "kind": "numeric", "nulls": 0,
                      "null_rate": 0.0, "infinite": 0, "min": 20, "max": 40, "mean": 30.0,
                      "std": 10.0, "quantiles": [20.0, 20.2, ..., 40.0],
                      "tail_means": [20.0, 40.0],
                      "histogram": {"edges": [20.0, 21.0, ..., 40.0],
                                    "counts": [1, 0, ..., 1]},
                      "distinct": 3, "values": [[20, 1], [30, 1], [40, 1]]},
                     {"name": "city", "dtype": "str", "kind": "categorical", "nulls": 1,
                      "null_rate": 0.333, "distinct": 2, "top": [["Oslo", 1], ["Rome", 1]],
                      "other": 0},
                     {"name": "when", "dtype": "datetime64[us]", "kind": "datetime",
                      "nulls": 0, "null_rate": 0.0, "min": "2024-01-01T00:00:00",
                      "max": "2024-03-01T00:00:00"}],
         "fingerprint": "<sha256 hex>", "schema_fingerprint": "<sha256 hex>"}

    Per column: ``kind`` is "numeric", "categorical" (strings, objects, pandas categories),
    "boolean", "datetime" or "other" (timedelta, complex, ...: only nulls are counted).
    Numeric columns: ``infinite`` counts +-inf, which like nulls are left out of the rest;
    ``std`` is the sample std (ddof=1, as pandas); ``quantiles`` at 0%, 1%, ..., 100% with
    numpy's linear interpolation; ``tail_means``, the means of the lowest and the highest 1%
    of the values (at least one value each), which say how long the tails are;
    ``histogram``: 20 equal-width bins from min to max, the last one closed (np.histogram's);
    ``distinct`` finite values, and for at most 20 of them ``values``: each value with its
    count. Categorical and boolean columns: ``top``, the 20 most frequent values as
    ``[str(value), count]`` (ties in order of first appearance), ``other``, the count of all
    other non-null values, and ``distinct``. Datetime columns: ``min`` and ``max`` in ISO
    8601.

    ``fingerprint`` is the sha256 of the whole content: every row in order, the index, the
    column names and dtypes (a numpy array: its raw bytes, dtype and shape), so one changed
    value anywhere, reordered rows or a changed dtype all change it. ``schema_fingerprint``
    covers only the column names and dtypes, in order.

    A Series is profiled as a one-column frame (the column is the Series' name, or ``name``
    when it has none); a 1-D array as one column called ``name``; a 2-D array as columns
    ``"0"``, ``"1"``, ... Raises MlopsError for other values, other array shapes and 0 rows.
    """
    frame, kind = as_frame(value, name)
    rows = len(frame)
    if rows == 0:
        raise MlopsError(f"`{name}` is empty (0 rows); a data profile needs at least one row: "
                         f"check the cell that makes `{name}` before marking it with %%mlops data")
    schema = [[str(col), str(frame.iloc[:, i].dtype)] for i, col in enumerate(frame.columns)]
    # the columns, and the fingerprint beside them, on the machine's cores: numpy's sort and
    # pandas' hashing let go of the GIL for most of their time
    with column_pool(len(schema) + 1) as pool:
        fingerprint = pool.submit(_fingerprint, value, frame, kind, schema)
        columns = list(pool.map(lambda i: _profile_column(schema[i][0], frame.iloc[:, i], rows),
                                range(len(schema))))
        digest = fingerprint.result()
    return {
        "version": PROFILE_VERSION,
        "name": name,
        "kind": kind,
        "rows": rows,
        "columns": columns,
        "fingerprint": digest,
        "schema_fingerprint": _sha256_json(schema),
    }


def column_pool(tasks: int) -> Any:
    """Threads for ``tasks`` columns' work (profiles, drift): one per core, at most 8."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=max(1, min(tasks, os.cpu_count() or 1, 8)),
                              thread_name_prefix="mlops-profile")


def as_frame(value: Any, name: str) -> tuple[Any, str]:
    """``value`` as a pandas DataFrame, with its kind ("DataFrame", "Series" or "ndarray").

    The drift check converts new data with this same function, so a profile and the data it
    is checked against always name their columns the same way.
    """
    import numpy as np
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return value, "DataFrame"
    if isinstance(value, pd.Series):
        column = value.name if value.name is not None else name
        return value.to_frame(name=column), "Series"
    if isinstance(value, np.ndarray):
        if value.ndim == 1:
            return pd.DataFrame({name: value}, copy=False), "ndarray"
        if value.ndim == 2:
            columns = [str(i) for i in range(value.shape[1])]
            return pd.DataFrame(value, columns=columns, copy=False), "ndarray"
        raise MlopsError(f"`{name}` is a {value.ndim}-D array of shape {value.shape}; "
                         f"%%mlops data profiles 1-D and 2-D arrays: reshape `{name}` to 1-D "
                         f"or 2-D first (e.g. np.atleast_1d, or .reshape(len({name}), -1))")
    kind = type(value).__qualname__
    if type(value).__module__ != "builtins":
        kind = f"{type(value).__module__}.{kind}"
    raise MlopsError(f"`{name}` is a {kind}; %%mlops data profiles pandas DataFrames and "
                     f"Series and numpy arrays: convert it first, e.g. pd.DataFrame({name})")


def column_kind(dtype: Any) -> str:
    """The kind of a pandas dtype: "numeric", "categorical", "boolean", "datetime" or
    "other"."""
    from pandas.api import types

    # bool first: pandas counts bool as numeric, but its profile is the categorical one
    if types.is_bool_dtype(dtype):
        return "boolean"
    if types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if types.is_numeric_dtype(dtype) and not types.is_complex_dtype(dtype):
        return "numeric"
    if isinstance(dtype, _categorical_dtype()) or types.is_string_dtype(dtype):
        return "categorical"  # is_string_dtype covers object columns too
    if _arrow_dictionary(dtype):
        return "categorical"  # pandas' categories as Arrow holds them
    return "other"


def _arrow_dictionary(dtype: Any) -> bool:
    """Whether ``dtype`` is an ``ArrowDtype`` of a dictionary (codes and their values)."""
    return _arrow_is(dtype, "is_dictionary")


def _arrow_is(dtype: Any, test: str) -> bool:
    """Whether ``dtype`` is an ``ArrowDtype`` whose Arrow type passes ``pyarrow.types``'
    ``test`` (pyarrow is imported only for one)."""
    arrow = getattr(dtype, "pyarrow_dtype", None)
    if arrow is None:
        return False
    import pyarrow as pa

    return bool(getattr(pa.types, test)(arrow))


def label_counts(series: Any) -> tuple[list[str], Any]:
    """The distinct non-null values of ``series`` as strings, with their counts (an int64
    array), in order of first appearance; values with the same ``str`` are counted together.

    Profiles store values as strings (JSON keys are strings, and a profile holds no typed
    raw data), so the drift check counts new data with this same function.
    """
    import numpy as np
    import pandas as pd
    from pandas.api import types

    counts = series.value_counts(dropna=True, sort=False)
    # a categorical dtype lists its unused categories with a count of 0
    counts = counts[counts.to_numpy() > 0]
    dtype = series.dtype
    if types.is_string_dtype(dtype) and not types.is_object_dtype(dtype) and not isinstance(
            dtype, _categorical_dtype()):
        return counts.index.tolist(), counts.to_numpy(dtype=np.int64)
    labels = [str(v) for v in counts.index.tolist()]
    if len(set(labels)) == len(labels):
        return labels, counts.to_numpy(dtype=np.int64)
    # 1 and "1" in one object column: one label, one count
    merged = pd.Series(counts.to_numpy(dtype=np.int64)).groupby(labels, sort=False).sum()
    return [str(v) for v in merged.index.tolist()], merged.to_numpy(dtype=np.int64)


def _categorical_dtype() -> type:
    from pandas import CategoricalDtype

    return CategoricalDtype


def _profile_column(name: str, series: Any, rows: int) -> dict[str, Any]:
    kind = column_kind(series.dtype)
    stats: dict[str, Any]
    if kind == "numeric":
        stats = _numeric(series)
    elif kind in ("categorical", "boolean"):
        try:
            stats = _categorical(series, rows)
        except TypeError:
            # unhashable values (lists, dicts) cannot be counted: keep only the null count
            kind, stats = "other", {"nulls": int(series.isna().sum())}
    elif kind == "datetime":
        low, high = series.min(), series.max()
        stats = {"nulls": int(series.isna().sum()),
                 "min": None if _is_missing(low) else low.isoformat(),
                 "max": None if _is_missing(high) else high.isoformat()}
    else:
        stats = {"nulls": int(series.isna().sum())}
    nulls = stats.pop("nulls")
    return {"name": name, "dtype": str(series.dtype), "kind": kind, "nulls": nulls,
            "null_rate": nulls / rows, **stats}


def _is_missing(value: Any) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def _numeric(series: Any) -> dict[str, Any]:
    """Null and infinite counts, min/max/mean/std, quantiles and histogram of a numeric column.

    One sort per column gives all of them: NaN sorts last and infinities sit at the ends, so
    the finite values are one slice, and quantiles, min and max are reads from it.
    """
    import numpy as np

    nulls = 0
    if isinstance(series.dtype, np.dtype):
        values = series.to_numpy()
    else:
        # nullable and Arrow-backed dtypes: drop NA, then keep their numpy type (ints stay
        # exact ints); anything else numeric is read as float64
        present = series.dropna()
        nulls = len(series) - len(present)
        target = np.dtype(getattr(series.dtype, "numpy_dtype", np.float64))
        values = present.to_numpy(dtype=target if target.kind in "iuf" else np.float64)
    ordered = np.sort(values)
    finite = ordered
    if ordered.dtype.kind == "f":
        # NaN sorts last, and searchsorted orders NaN the same way: one binary search
        valid = int(np.searchsorted(ordered, np.nan, side="left"))
        nulls += len(ordered) - valid
        low = int(np.searchsorted(ordered[:valid], -np.inf, side="right"))
        high = int(np.searchsorted(ordered[:valid], np.inf, side="left"))
        finite = ordered[low:high]
    result: dict[str, Any] = {"nulls": nulls,
                              "infinite": len(series) - nulls - len(finite)}
    count = len(finite)
    if count == 0:
        result.update(min=None, max=None, mean=None, std=None, quantiles=None,
                      tail_means=None, histogram=None, distinct=0, values=[])
        return result
    integer = finite.dtype.kind in "iu"
    result["min"] = int(finite[0]) if integer else float(finite[0])
    result["max"] = int(finite[-1]) if integer else float(finite[-1])
    result["mean"] = _float(np.mean(finite, dtype=np.float64))
    result["std"] = _float(np.std(finite, dtype=np.float64, ddof=1)) if count > 1 else None
    result["quantiles"] = [float(q) for q in sorted_quantiles(finite, QUANTILES)]
    # what lies beyond the 1st and 99th percentiles is the part quantiles describe worst (a
    # long tail up to one extreme max); the mean of each end lets the drift check rebuild it
    tail = max(1, round(count / 100))
    result["tail_means"] = [_float(np.mean(finite[:tail], dtype=np.float64)),
                            _float(np.mean(finite[-tail:], dtype=np.float64))]
    result["histogram"] = _histogram(finite)
    # distinct values are where the sorted array changes; a column of a few values (a 0/1
    # label, a rating) also keeps their counts, which the drift check tests as categories
    starts = np.flatnonzero(np.concatenate(([True], finite[1:] != finite[:-1])))
    result["distinct"] = len(starts)
    if len(starts) <= TOP_VALUES:
        counts = np.diff(np.append(starts, count))
        result["values"] = [[int(v) if integer else float(v), int(c)]
                            for v, c in zip(finite[starts].tolist(), counts.tolist())]  # noqa: B905 (3.9)
    return result


def sorted_quantiles(ordered: Any, points: int) -> Any:
    """``points`` evenly spaced quantiles (0% to 100%) of a sorted non-empty array, with
    numpy's default (linear) interpolation, read straight from the array instead of
    partitioning it again as ``np.quantile`` would."""
    import numpy as np

    position = np.linspace(0.0, 1.0, points) * (len(ordered) - 1)
    below = np.floor(position).astype(np.intp)
    above = np.minimum(below + 1, len(ordered) - 1)
    fraction = position - below
    a = ordered[below].astype(np.float64)
    b = ordered[above].astype(np.float64)
    # numpy's symmetric lerp: exact at both ends, monotone in between
    return np.where(fraction < 0.5, a + (b - a) * fraction, b - (b - a) * (1.0 - fraction))


def histogram_edges(low: float, high: float) -> Any:
    """The profile's bin edges from ``low`` to ``high`` (np.histogram's, also when they are
    equal: then the bins span low - 0.5 to high + 0.5)."""
    import numpy as np

    if low == high:
        low, high = low - 0.5, high + 0.5
    return np.linspace(float(low), float(high), HISTOGRAM_BINS + 1)


def _histogram(ordered: Any) -> dict[str, list[Any]]:
    import numpy as np

    edges = histogram_edges(ordered[0], ordered[-1])
    # bins are [e_i, e_i+1) and the last one is closed, as np.histogram counts them
    cuts = np.searchsorted(ordered, edges[1:-1], side="left")
    counts = np.diff(np.concatenate(([0], cuts, [len(ordered)])))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def _categorical(series: Any, rows: int) -> dict[str, Any]:
    import numpy as np

    labels, counts = label_counts(series)
    # most frequent first; ties keep their order of first appearance, so the profile of the
    # same data is the same file every time
    order = np.argsort(-counts, kind="stable")
    top = order[:TOP_VALUES]
    listed = int(counts[top].sum())
    present = int(counts.sum())
    return {
        "nulls": rows - present,
        "distinct": len(labels),
        "top": [[labels[i], int(counts[i])] for i in top.tolist()],
        "other": present - listed,
    }


def _float(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _sha256_json(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, separators=(",", ":")).encode()).hexdigest()


def _fingerprint(value: Any, frame: Any, kind: str, schema: list[list[str]]) -> str:
    """sha256 of every row (in order) and of the schema, so any change of a value, of the row
    order, of a column name or of a dtype changes it."""
    import numpy as np

    digest = hashlib.sha256()
    if kind == "ndarray" and not value.dtype.hasobject:
        # the raw bytes are the content; dtype (with byte order) and shape say how to read them
        digest.update(_sha256_json({"kind": kind, "dtype": value.dtype.str,
                                    "shape": list(value.shape)}).encode())
        digest.update(np.ascontiguousarray(value).reshape(-1).view(np.uint8))
        return digest.hexdigest()
    digest.update(_sha256_json({"kind": kind, "rows": len(frame), "schema": schema}).encode())
    digest.update(_row_hashes(frame).astype("<u8", copy=False).tobytes())
    return digest.hexdigest()


def _row_hashes(frame: Any) -> Any:
    """One 64-bit hash per row (index included), vectorised by pandas; its hash key is fixed,
    so the same content gives the same hashes in every process."""
    import pandas as pd

    try:
        return pd.util.hash_pandas_object(frame, index=True).to_numpy()
    except TypeError:
        # unhashable cells (lists, dicts) are hashed by their repr
        fixed = frame.copy(deep=False)
        for i in range(fixed.shape[1]):
            column = fixed.iloc[:, i]
            if column.dtype == object:
                fixed.isetitem(i, column.map(repr).astype(object))
            elif _nested_arrow(column.dtype):  # a list or struct ArrowDtype: whole values
                import pyarrow as pa

                values = pa.array(column.array).to_pylist()  # Python lists and dicts, whole
                fixed.isetitem(i, pd.Series([repr(v) for v in values], index=column.index,
                                            dtype=object))
        return pd.util.hash_pandas_object(fixed, index=True).to_numpy()


def _nested_arrow(dtype: Any) -> bool:
    """Whether ``dtype`` is an ``ArrowDtype`` of lists, structs or maps, whose cells pandas
    gives as arrays and dicts (neither hashable)."""
    return _arrow_is(dtype, "is_nested")
