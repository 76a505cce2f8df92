"""DataFrames and Series on disk between steps: Arrow, or a JSON table where pyarrow is not.

A kernel with pyarrow writes the Arrow IPC file format (Feather v2) compressed with zstd at
level 1: it keeps every dtype pandas puts in an Arrow schema, as Parquet does, and on a
2,000,000 x 20 frame of numbers, strings, categories and datetimes it wrote in 0.39 s and
read in 0.26 s (memory-mapped, as files were read then) against Parquet's 0.95 s and 0.98 s,
in a smaller file (218 MB against 223). Files are read into the process's own memory, never
mapped: a column read from a map would change with the file, written in place after its hash
was checked; a 5,000,000 x 20 frame (a 550 MB file, 480 MB of it plain) then loads in 1.00 s
against 0.67 s mapped, at the same peak memory. Parquet files of earlier runs are still
read. A kernel without pyarrow (an old or slim environment where it cannot be installed
without changing other versions) writes pandas' JSON table format instead
(``to_json(orient="table")``), whose schema carries the columns' types: integers, floats
(to 15 decimal places), booleans, strings, datetimes (with their time zone) and categories come back
as they were; narrower numbers (float32, int8) are widened by JSON and narrowed back from the
dtypes recorded in the manifest. A frame a JSON table cannot hold (timedeltas, intervals,
complex numbers, bytes) is refused as it is saved, not when the next step reads it. Which
format an artifact has is in its manifest (``format``), so a reader never guesses. An object
column Arrow types (numbers, booleans, datetimes) comes back of dtype object; one of several
types (numbers and strings, as a messy spreadsheet gives), which an Arrow column cannot hold,
is written as the JSON text of each cell and made the same values again.

What restores a frame's labels and types (its original column and index labels, an index's
frequency, a Series' name, JSON's dtypes, the categories of a frame with no rows, which
neither format keeps, and whether it is a Series) is written into the data file itself
(:data:`RESTORE`): the run store hashes that file, not the manifest, and whoever can write
the artifacts folder could otherwise rename or swap the columns of the frame the next step
loads. The manifest keeps a copy for people and tools to read; a reader
takes them from the file, and from the manifest only for files written before they were kept
there (which carry none).

A big frame is written in parts, its columns compressed only where it pays, and columns
that an input file already holds are referenced instead of written again
(:mod:`.arrowfile`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path
from typing import Any

from . import arrowfile, arrowrefs, mixedcolumns
from ._files import write_with
from ._jsonvalues import NotJSON, decode, encode

__all__ = ["FORMATS", "RESTORE", "SERIES_COLUMN", "extension", "frame_format", "is_table",
           "labels", "read_frame", "write_frame"]

#: The formats a frame artifact may have, with its data file's extension.
FORMATS = {"arrow": "arrow", "arrow-parts": "arrow", "parquet": "parquet",
           "json-table": "table.json"}
#: What reading a frame back needs beyond its columns, kept inside its data file.
RESTORE = ("column_labels", "column_range", "column_names", "index_names", "index_freq",
           "series_name", "dtypes", "empty_categories", "mixed_columns", "nan_columns",
           "list_columns", "index_dtypes")
#: What only a frame file's own record says (its hash covers it), never its manifest.
_FILE_ONLY = ("mixed_columns", "nan_columns", "list_columns")
#: pandas' nullable dtypes, which Arrow gives back to an index as numpy's (an Int64 index
#: with a missing value as float64): its levels of these get them back.
_INDEX_DTYPES = frozenset({"Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32",
                           "UInt64", "Float32", "Float64", "boolean", "string"})
#: The one column of a Series kept as a frame.
SERIES_COLUMN = "__series__"
#: How a JSON table written here begins: what restores it comes first, then pandas' table.
_JSON_START = '{"jupyter_mlops":'
#: How pandas begins a JSON table (``to_json(orient="table")``).
_PANDAS_START = '{"schema":{'


def frame_format() -> str:
    """The format this kernel writes frames in: "arrow" with pyarrow, else "json-table"."""
    return "arrow" if importlib.util.find_spec("pyarrow") is not None else "json-table"


def extension(fmt: str) -> str:
    """The data file extension of a frame artifact in format ``fmt``."""
    return FORMATS[fmt]


def labels(values: list[Any]) -> list[Any]:
    """Column or index labels as JSON values, or ValueError naming one that is not."""
    try:
        return [encode(v) for v in values]
    except NotJSON as exc:
        raise ValueError(f"a column or index label is {exc}; rename it to a string") from None


def _plain_labels(frame: Any, extra: dict[str, Any]) -> Any:
    """``frame`` with unique string column names and string index names, the originals
    recorded in ``extra``: both formats need them, and pyarrow turns other labels into
    strings that do not come back (False becomes True)."""
    import pandas as pd

    columns = frame.columns
    if (isinstance(columns, pd.MultiIndex) or columns.has_duplicates
            or not all(type(c) is str for c in columns)):
        if isinstance(columns, pd.RangeIndex):  # compact, and comes back as a RangeIndex
            extra["column_range"] = [columns.start, columns.stop, columns.step]
        else:
            extra["column_labels"] = labels(list(columns))
        extra["column_names"] = labels(list(columns.names))
        frame = frame.set_axis([f"__column_{i}__" for i in range(len(columns))], axis=1)
    if any(n is not None and type(n) is not str for n in frame.index.names):
        extra["index_names"] = labels(list(frame.index.names))
        frame = frame.rename_axis([f"__index_{i}__" for i in range(frame.index.nlevels)])
    if getattr(frame.index, "freq", None) is not None:  # neither format keeps an index freq
        extra["index_freq"] = frame.index.freqstr
    kept = [str(frame.index.get_level_values(i).dtype) for i in range(frame.index.nlevels)]
    for i, dtype in enumerate(kept):
        level = frame.index.get_level_values(i)
        if dtype[:1] in "IU" and dtype in _INDEX_DTYPES and level.hasnans and len(level) > \
                level.isna().sum() and max(abs(int(level.min())), abs(int(level.max()))) > 2**53:
            # read back through floats: such a value would come back another number
            raise ValueError(f"its index{'' if frame.index.nlevels == 1 else f' level {i}'} "
                             "holds integers beyond 2**53 beside a missing value, which a "
                             "frame file would give back rounded; fill the missing value, or "
                             "make the index a column with .reset_index()")
    if any(dtype in _INDEX_DTYPES for dtype in kept):
        extra["index_dtypes"] = [dtype if dtype in _INDEX_DTYPES else None for dtype in kept]
    return frame


def write_frame(value: Any, path: Path, fmt: str, extra: dict[str, Any], *,
                refer: bool = False) -> dict[str, Any]:
    """Write the DataFrame or Series ``value`` to ``path`` in format ``fmt``
    (:func:`frame_format`'s); return ``extra`` with what reading it back needs (original
    labels, a Series' name, the format, and for JSON the dtypes), also written into the file
    (:data:`RESTORE`), and the file's ``sha256`` as hashed while writing. ``refer``: columns a
    loaded file beside ``path``'s folder holds may be referenced (:mod:`.arrowrefs`)."""
    import pandas as pd

    record: dict[str, Any] = {"kind": "frame"}
    if isinstance(value, pd.Series):
        record["kind"] = "series"
        extra["series_name"] = labels([value.name])[0]
        value = value.to_frame(name=SERIES_COLUMN)
    frame = _plain_labels(value, extra)
    extra["format"] = fmt
    if fmt != "arrow":
        extra["dtypes"] = {str(c): str(t) for c, t in frame.dtypes.items()}
    if not len(frame):  # with no rows, neither format keeps a categorical's categories
        empty = {}
        for column, dtype in frame.dtypes.items():
            if isinstance(dtype, pd.CategoricalDtype):
                with contextlib.suppress(ValueError):  # not JSON values: left as they come
                    empty[str(column)] = [labels(list(dtype.categories)), bool(dtype.ordered)]
        if empty:
            extra["empty_categories"] = empty
    record.update({key: extra[key] for key in RESTORE if key in extra})
    if fmt == "arrow":
        shown = ["it"] if record["kind"] == "series" else [
            f"its column {label!r}" for label in value.columns]
        _refuse_unkept(frame, shown)
        table, frame, restore = mixedcolumns.arrow_table(frame, shown)
        extra.update(restore)
        record.update(restore)
        table = arrowfile.name_arrow_dtypes(table, frame)
        folder = path.parent if refer and arrowrefs.may_refer(path.parent) else None
        extra["sha256"] = write_with(
            path, lambda handle: arrowfile.write_table(table, handle, folder, extra, record))
        return extra
    # 15 decimal places, pandas' most (its default, 10, rounds 0.123456789012 to 0.123456789)
    text = frame.to_json(orient="table", date_unit="ns", double_precision=15)
    if not text.startswith("{"):
        raise ValueError(f"pandas wrote a table that is not a JSON object: {text[:40]!r}")
    _check_json(text, record, frame)
    # pandas reads the table's "schema" and "data" and lets other keys be
    head = _JSON_START + json.dumps(record, allow_nan=False, ensure_ascii=False) + ","
    extra["sha256"] = write_with(path, lambda handle: (handle.write(head.encode("utf-8")),
                                                       handle.write(text[1:].encode("utf-8"))))
    return extra


def _check_json(text: str, record: dict[str, Any], frame: Any) -> None:
    """ValueError unless the JSON table ``text`` of ``frame`` reads back as its values (floats
    to 15 decimal places): a step must not save what the next one cannot read (a timedelta,
    an interval, a complex number) or reads changed (bytes as text, infinity as a null)."""
    import pandas as pd

    try:
        back = _categorized(_from_json(text, record), record)
        pd.testing.assert_frame_equal(
            _missing_alike(back), _missing_alike(frame), check_dtype=False,
            check_index_type=False, check_column_type=False, check_names=False,
            check_freq=False, rtol=1e-12, atol=1e-15)
    except (AssertionError, ValueError, TypeError, KeyError, NotImplementedError) as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise ValueError(
            f"a JSON table, the format of frames where the kernel's environment has no "
            f"pyarrow, cannot hold it as it is ({lines[0] if lines else type(err).__name__}); "
            "install pyarrow there (`jupyter mlops kernel PYTHON` does when it can)") from None


def _missing_alike(frame: Any) -> Any:
    """``frame`` with None and NaN alike in its object columns, as pandas takes them (a JSON
    table reads a missing string back as NaN)."""
    import pandas as pd

    objects = [i for i, dtype in enumerate(frame.dtypes) if pd.api.types.is_object_dtype(dtype)]
    if not objects:
        return frame
    frame = frame.copy()
    for i in objects:
        column = frame.iloc[:, i]
        frame.isetitem(i, column.where(column.notna(), None))
    return frame


def is_table(text: str) -> bool:
    """Whether ``text`` begins as a frame's JSON table does, written here or (before what
    restores it was written first) by pandas: compact, where a JSON value's text has a space
    after each colon."""
    return text.startswith((_JSON_START + "{", _PANDAS_START))


def _json_record(text: str) -> dict[str, Any] | None:
    """What restores the JSON table ``text``, written at its start; None for one written
    before it was. ValueError for a text that is no frame's table."""
    if not is_table(text):
        raise ValueError("it is not a JSON table of a frame (its manifest's kind was changed)")
    if not text.startswith(_JSON_START):
        return None
    record, _ = json.JSONDecoder().raw_decode(text, len(_JSON_START))
    return record


def _from_json(text: str, restore: dict[str, Any]) -> Any:
    import pandas as pd

    frame = pd.read_json(io.StringIO(text), orient="table")  # the schema carries the dates
    for column, dtype in (restore.get("dtypes") or {}).items():
        if column in frame.columns and str(frame[column].dtype) != dtype:
            try:  # JSON has one integer and one float type: narrow back what was narrower
                frame[column] = frame[column].astype(dtype)
            except (TypeError, ValueError):
                pass  # kept as JSON gave it; the profile check names a changed dtype
    return frame


def _restoring(record: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    """What restores the frame: the ``record`` its file holds, checked to be the kind its
    manifest says; the manifest's own fields for a file that holds none (written before)."""
    if record is None:  # no file of that age holds a column of several types
        return {key: manifest[key] for key in RESTORE
                if key in manifest and key not in _FILE_ONLY}
    kind = "series" if manifest.get("kind") == "series" else "frame"
    if not isinstance(record, dict) or record.get("kind") not in ("frame", "series"):
        raise ValueError("what restores its labels is not an object of a frame or a series")
    if record["kind"] != kind:
        raise ValueError(f"it holds a {record['kind']}, but its manifest says {kind} (the "
                         "manifest was changed after the file was written)")
    return record


def read_frame(path: Path, manifest: dict[str, Any], source: str | None = None) -> Any:
    """The DataFrame, or Series for a manifest of kind "series", that :func:`write_frame`
    wrote to ``path``, labels and dtypes restored from the file, read through the name
    ``source`` (the open descriptor's whose bytes were hashed) if given."""
    import pandas as pd

    source = source or str(path)
    fmt = manifest.get("format", "parquet")
    if fmt != "json-table" and importlib.util.find_spec("pyarrow") is None:
        raise ValueError(f"it is {fmt.split('-')[0].capitalize()} and this kernel's environment "
                         "has no pyarrow; install pyarrow there (`jupyter mlops kernel PYTHON` "
                         "does when it can), or run every step in one kernel")
    if fmt == "arrow":
        # read into this process's memory, never mapped: a mapped column would change
        # with the file, written in place after its hash was checked
        table = arrowrefs.open_part(source, None, 0)
        restore = _restoring(arrowfile.check_whole(table), manifest)
        frame = arrowfile.to_frame(table)
        arrowfile.note_loaded(path, [table], frame)
    elif fmt == "arrow-parts":
        frame, record = arrowfile.read_frame(path, manifest.get("parts"), source)
        restore = _restoring(record, manifest)
    elif fmt == "parquet":  # runs before Arrow files: what restores it is in the manifest
        frame = pd.read_parquet(source, engine="pyarrow")
        restore = _restoring(None, manifest)
    else:
        text = Path(source).read_text(encoding="utf-8")
        restore = _restoring(_json_record(text), manifest)
        frame = _from_json(text, restore)
    frame = mixedcolumns.unmixed(frame, restore)
    return _labelled(frame, restore, manifest.get("kind") == "series")


def _categorized(frame: Any, restore: dict[str, Any]) -> Any:
    """``frame``, if it has no rows, with the categories ``restore`` records for its
    categorical columns (neither format keeps them without a row)."""
    import pandas as pd

    for column, (categories, ordered) in (restore.get("empty_categories") or {}).items():
        if not len(frame) and column in frame.columns:
            frame[column] = frame[column].astype(
                pd.CategoricalDtype(decode(categories), ordered=bool(ordered)))
    return frame


def _refuse_unkept(frame: Any, shown: list[str]) -> None:
    """ValueError naming the first column of a dtype no frame file keeps, and what to do
    (pyarrow said "Unsupported numpy type 15" of complex numbers)."""
    import pandas as pd

    for index, dtype in enumerate(frame.dtypes):  # one shown name a column (3.9: no strict)
        where = shown[index]
        if isinstance(dtype, pd.SparseDtype):
            raise ValueError(f"{where} is sparse, which a frame file cannot keep; make it "
                             "dense first (df.sparse.to_dense(), or .sparse.to_dense() on "
                             "the column)")
        if pd.api.types.is_complex_dtype(dtype):
            raise ValueError(f"{where} holds complex numbers, which a frame file cannot keep; "
                             "keep their real and imaginary parts as two columns (.real, "
                             ".imag), or pass the values as a numpy array")


def _index_typed(index: Any, dtypes: Any) -> Any:
    """``index`` with its levels of pandas' nullable dtypes of them again (``dtypes``, one
    per level, None for one left as read); ValueError if they do not fit it."""
    import pandas as pd

    if (not isinstance(dtypes, list) or len(dtypes) != index.nlevels
            or any(d is not None and d not in _INDEX_DTYPES for d in dtypes)):
        raise ValueError("its record's index dtypes do not fit its index")
    levels = [index.get_level_values(i) if d is None else index.get_level_values(i).astype(d)
              for i, d in enumerate(dtypes)]
    if index.nlevels == 1:
        return levels[0].rename(index.name)
    return pd.MultiIndex.from_arrays(levels, names=index.names)


def _labelled(frame: Any, restore: dict[str, Any], series: bool) -> Any:
    """``frame`` with the labels ``restore`` records; its one column as a Series if
    ``series``."""
    import pandas as pd

    frame = _categorized(frame, restore)
    names = decode(restore.get("column_names", [None]))
    if "column_range" in restore:
        frame.columns = pd.RangeIndex(*restore["column_range"], name=names[0])
    elif "column_labels" in restore:
        recorded = decode(restore["column_labels"])
        frame.columns = (pd.MultiIndex.from_tuples(recorded, names=names) if len(names) > 1
                         else pd.Index(recorded, name=names[0], tupleize_cols=False))
    if "index_freq" in restore:
        frame.index = type(frame.index)(frame.index, freq=restore["index_freq"])
    if "index_dtypes" in restore:
        frame.index = _index_typed(frame.index, restore["index_dtypes"])
    if "index_names" in restore:
        frame.index = frame.index.set_names(decode(restore["index_names"]))
    if not series:
        return frame
    if list(frame.columns) != [SERIES_COLUMN]:
        raise ValueError(f"it should hold one column {SERIES_COLUMN!r}, not {len(frame.columns)}")
    value = frame[SERIES_COLUMN]
    value.name = decode(restore.get("series_name"))
    return value
