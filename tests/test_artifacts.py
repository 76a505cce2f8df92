"""Tests for jupyter_mlops.runtime.artifacts: round trips, manifests, hashes, refusals."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from jupyter_mlops import artifacts
from jupyter_mlops.errors import ArtifactError
from jupyter_mlops.runtime import frames
from jupyter_mlops.runtime._files import sha256_file


def roundtrip(value, tmp_path: Path, name: str = "x", **kwargs):
    manifest = artifacts.save(value, name, tmp_path, **kwargs)
    kwargs.pop("role", None)
    return artifacts.load(name, tmp_path, **kwargs), manifest


def files(folder: Path) -> set[str]:
    """Every entry of the folder, hidden temporary files included."""
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


# --- pandas -----------------------------------------------------------------------------


def rich_frame() -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "cat": pd.Categorical(["a", "b", "a"], categories=["b", "a", "z"]),
            "when": pd.to_datetime(["2024-01-01", None, "2024-03-01"]),
            "utc": pd.to_datetime(["2024-01-01", "2024-02-01", None]).tz_localize("UTC"),
            "n": pd.array([1, None, 3], dtype="Int64"),
            "flag": pd.array([True, None, False], dtype="boolean"),
            "s": ["x", None, "z"],
            "sp": pd.array(["x", None, "z"], dtype="string"),
            "f": [1.5, np.nan, -2.0],
            "f32": np.array([1, 2, 3], dtype="float32"),
            "dt": pd.to_timedelta([1, 2, 3], unit="s"),
        },
        index=pd.Index([10, 20, 30], name="id"),
    )
    frame.columns.name = "features"
    return frame


FRAMES = {
    "rich": rich_frame,
    "default index": lambda: pd.DataFrame({"a": [1, 2, 3]}),
    "string index": lambda: pd.DataFrame({"a": [1, 2]}, index=pd.Index(["u", "v"], name="k")),
    "range index offset": lambda: pd.DataFrame({"a": [1, 2]}, index=pd.RangeIndex(5, 7)),
    "multiindex rows": lambda: pd.DataFrame(
        {"a": [1, 2]}, index=pd.MultiIndex.from_tuples([(1, "a"), (2, "b")], names=["n", None])
    ),
    "datetime index": lambda: pd.DataFrame(
        {"a": [1.0, 2.0]}, index=pd.date_range("2024-01-01", periods=2, name="day")
    ),
    "timedelta index with freq": lambda: pd.DataFrame(
        {"a": [1, 2]}, index=pd.timedelta_range("1h", periods=2, freq="30min")
    ),
    "range column labels": lambda: pd.DataFrame(np.arange(6).reshape(2, 3)),
    "int column labels": lambda: pd.DataFrame([[1, 2]], columns=[5, 3]),
    "mixed column labels": lambda: pd.DataFrame([[1, 2, 3]], columns=[0, "a", 2.5]),
    "bool column labels": lambda: pd.DataFrame([[1, 2]], columns=[True, False]),
    "duplicate column labels": lambda: pd.DataFrame([[1, 2]], columns=["a", "a"]),
    "named int columns": lambda: pd.DataFrame(
        [[1, 2]], columns=pd.Index([3, 4], name="year")
    ),
    "multiindex columns": lambda: pd.DataFrame(
        [[1, 2]], columns=pd.MultiIndex.from_tuples([(1, "a"), (1, "b")], names=["x", "y"])
    ),
    "non-str index name": lambda: pd.DataFrame({"a": [1]}, index=pd.Index([7], name=0)),
    "empty": lambda: pd.DataFrame({"a": pd.Series([], dtype="float64")}),
    # Arrow reads integers with a null as floats unless told: 2**60 + 1 would come back off
    "object ints with a null": lambda: pd.DataFrame(
        {"id": pd.Series([2**60 + 1, None], dtype=object)}),
    # with no rows Arrow writes no categories
    "no rows, categories": lambda: pd.DataFrame(
        {"tier": pd.Categorical([], categories=["lo", "hi"], ordered=True),
         "code": pd.Categorical([], categories=[3, 1]), "x": pd.Series([], dtype="float64")}),
    # pandas cannot read back the name of a nested or dictionary ArrowDtype from the metadata
    "arrow dtypes": lambda: pd.DataFrame({
        "x": pd.array([1.5, None], dtype="double[pyarrow]"),
        "tags": pd.array([[1, 2], None], dtype=pd.ArrowDtype(pa.list_(pa.int64()))),
        "city": pd.array(["a", "b"], dtype=pd.ArrowDtype(pa.dictionary(pa.int32(), pa.string()))),
        "seen": pd.array([[pd.Timestamp("2024-01-01")], []],
                         dtype=pd.ArrowDtype(pa.list_(pa.timestamp("ns")))),
        "pair": pd.array([[1, 2], [3, 4]], dtype=pd.ArrowDtype(pa.list_(pa.int64(), 2)))},
        index=[5, 7]),
    "arrow dtype index": lambda: pd.DataFrame({"b": [1, 2]}, index=pd.MultiIndex.from_arrays(
        [pd.array(["x", "y"], dtype=pd.ArrowDtype(pa.dictionary(pa.int32(), pa.string()))),
         pd.array([0.5, None], dtype="double[pyarrow]"), [3, 4]], names=["city", "w", "n"])),
    "arrow dtype index, one level": lambda: pd.DataFrame(
        {"b": [1, 2]}, index=pd.Index(pd.array([0.5, 1.5], dtype="double[pyarrow]"))),
    "arrow list, int labels": lambda: pd.DataFrame(
        {0: pd.array([[1], []], dtype=pd.ArrowDtype(pa.list_(pa.int64()))), 1: [2, 3]}),
    # Arrow types an object column of one kind of value: it comes back of dtype object
    "object columns": lambda: pd.DataFrame({
        "ints": pd.Series([1, 2], dtype=object), "floats": pd.Series([1.5, None], dtype=object),
        "flags": pd.Series([True, None], dtype=object),
        "when": pd.Series([datetime(2024, 1, 1), None], dtype=object),
        "text": pd.Series(["a", None], dtype=object)}),
    "object index": lambda: pd.DataFrame(
        {"v": [1, 2]}, index=pd.Index([3, None], dtype=object, name="id")),
    "object index level": lambda: pd.DataFrame({"v": [1, 2]}, index=pd.MultiIndex.from_arrays(
        [pd.Index([True, False], dtype=object), ["a", "b"]], names=["flag", "k"])),
    # a messy spreadsheet's column: numbers and strings, which Arrow cannot put in one
    "columns of several types": lambda: pd.DataFrame({
        "code": pd.Series([1, "a", None, 2.5, float("nan")], dtype=object),
        "odd": pd.Series(["x", 3, pd.NA, True, (1, 2)], dtype=object),
        7: pd.Series([[1], "b", pd.NaT, {"k": -1}, 2**70], dtype=object),
        # Arrow would type these, changing them: the ints as floats, or refusing 2**70
        "numbers": pd.Series([1, 2.5, None, 3, 4.0], dtype=object),
        "big": pd.Series([1, 2**70, -1, None, 2**64 - 1], dtype=object)}),
    # Arrow would give these back as numpy arrays (a tuple too), and the dicts with every
    # key any of them had
    "object columns of containers": lambda: pd.DataFrame({
        "tags": pd.Series([["a", "b"], [], pd.NA, ["c", None]], dtype=object),
        "nested": pd.Series([[[1], [2, 3]], [], [[4]], None], dtype=object),
        "pairs": pd.Series([(1, 2), (3, 4), None, (5, float("nan"))], dtype=object),
        "attrs": pd.Series([{"k": 1, "l": [1, 2]}, {"j": "x"}, None, {}], dtype=object),
        "when": pd.Series([[pd.Timestamp("2020-01-01 12:00", tz="Europe/Paris")], [], None,
                           [date(2020, 1, 2), datetime(2020, 1, 3, 4)]], dtype=object)}),
    # Arrow would give the times back all in the first zone, and make the ints times
    "object columns of times": lambda: pd.DataFrame({
        "zones": pd.Series([pd.Timestamp("2024-01-01", tz="UTC"), None,
                            pd.Timestamp("2024-10-27 02:30").tz_localize(
                                "Europe/Paris", ambiguous=True),
                            pd.Timestamp("2024-06-01 12:00:00.123456789",
                                         tz="America/New_York")], dtype=object),
        "sheet": pd.Series([pd.Timestamp("2024-01-02"), "TBD", None, date(2024, 3, 4)],
                           dtype=object),
        "offsets": pd.Series([datetime(2024, 1, 1, 5, tzinfo=timezone(timedelta(hours=2))),
                              3, None, datetime(2020, 1, 1)], dtype=object),
        # Arrow would give every one in the finest unit, cut the datetime to a date
        "units": pd.Series([pd.Timestamp("2020-01-01").as_unit("s"), None, pd.NaT,
                            pd.Timestamp("2020-01-01 00:00:00.000000001")], dtype=object),
        "days": pd.Series([date(2020, 1, 1), datetime(2020, 1, 2, 13, 45), None,
                           date(2020, 1, 3)], dtype=object)}),
    # pandas' metadata calls a decimal ArrowDtype an object column, as it does Decimals
    "arrow decimals": lambda: pd.DataFrame({
        "price": pd.array([Decimal("1.10"), None], dtype=pd.ArrowDtype(pa.decimal128(10, 2))),
        "big": pd.array([Decimal("1.100"), Decimal("-2")],
                        dtype=pd.ArrowDtype(pa.decimal256(40, 3))),
        "objects": [Decimal("1.5"), None]},
        index=pd.Index(pd.array([Decimal("7.0"), Decimal("8.5")],
                                dtype=pd.ArrowDtype(pa.decimal128(5, 1))), name="k")),
}


@pytest.mark.parametrize("make", FRAMES.values(), ids=FRAMES.keys())
def test_dataframe_round_trip(tmp_path, make):
    frame = make()
    back, manifest = roundtrip(frame, tmp_path)
    pd.testing.assert_frame_equal(back, frame, check_column_type=True, check_index_type=True)
    assert list(back.columns) == list(frame.columns)
    assert manifest["kind"] == "parquet"
    assert manifest["file"] == "x.arrow" and manifest["format"] == "arrow"
    # The class's own module and name: "pandas.DataFrame" on pandas 3, which sets __module__.
    assert manifest["python_type"] == f"{pd.DataFrame.__module__}.DataFrame"
    assert manifest["rows"] == len(frame)
    assert manifest["columns"] == [str(c) for c in frame.columns]


@pytest.mark.parametrize("column, says", [
    (pd.to_timedelta([1, 2], unit="s"), "Timedelta"),  # pandas cannot read it back
    ([b"x", b"y"], "different"),  # read back as text
    ([1 + 2j], "float"),  # not JSON
])
def test_a_json_table_that_would_not_read_back_as_it_was_is_refused_at_save(
        tmp_path, monkeypatch, column, says):
    """A kernel without pyarrow writes frames as JSON tables: one the next step could not
    read, or would read changed, is refused as it is saved, in one line saying what to do."""
    monkeypatch.setattr(frames, "frame_format", lambda: "json-table")
    with pytest.raises(ArtifactError) as refused:
        artifacts.save(pd.DataFrame({"c": column}), "df", tmp_path)
    line = str(refused.value)
    assert "\n" not in line and says in line and "install pyarrow" in line
    assert files(tmp_path) == set()


def test_a_json_table_keeps_fifteen_decimals_of_a_float(tmp_path, monkeypatch):
    monkeypatch.setattr(frames, "frame_format", lambda: "json-table")
    frame = pd.DataFrame({"x": [0.123456789012345, 1e-300, -2.5e17, float("nan")]})
    back, manifest = roundtrip(frame, tmp_path)
    assert manifest["format"] == "json-table"
    pd.testing.assert_frame_equal(back, frame, check_exact=False, rtol=1e-14, atol=0)


@pytest.mark.parametrize("frame", [
    pd.DataFrame({"p": [0.99987654321, 0.00012345678912345, 1.2345678901234e-5]}),
    pd.DataFrame({"s": pd.Series(["a", None, "c"], dtype=object)}),  # None read back as NaN
    pd.DataFrame({"c": pd.Categorical([], categories=[False, True])}),
], ids=["small floats", "strings with None", "no rows, categories"])
def test_a_json_table_that_reads_back_as_pandas_compares_it_is_saved(
        tmp_path, monkeypatch, frame):
    monkeypatch.setattr(frames, "frame_format", lambda: "json-table")
    back, manifest = roundtrip(frame, tmp_path)
    assert manifest["format"] == "json-table"
    if "s" in frame:  # a missing string comes back as NaN, which pandas takes as None
        frame = frame.where(frame.notna(), np.nan)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False, atol=1e-15)


def test_a_frame_of_no_rows_whose_categories_are_no_json_values_is_saved(tmp_path):
    frame = pd.DataFrame({"c": pd.Categorical([], categories=pd.to_datetime(["2020-01-01"]))})
    back, manifest = roundtrip(frame, tmp_path)
    assert "empty_categories" not in manifest and list(back.columns) == ["c"]


def test_dataframe_bool_labels_keep_their_values(tmp_path):
    # pyarrow alone would turn the labels [True, False] into [True, True].
    back, _ = roundtrip(pd.DataFrame([[1, 2]], columns=[True, False]), tmp_path)
    assert list(back.columns) == [True, False]


def test_dataframe_with_unrecordable_labels_is_refused_cleanly(tmp_path):
    frame = pd.DataFrame([[1, 2]], columns=pd.date_range("2024-01-01", periods=2))
    with pytest.raises(ArtifactError, match=r"`wide`.*Timestamp"):
        artifacts.save(frame, "wide", tmp_path)
    assert files(tmp_path) == set()


def test_the_values_of_a_column_of_several_types_come_back_as_they_were(tmp_path):
    """Each cell of a column Arrow cannot type comes back of its own type (1 an int, not
    1.0 or "1"; a tuple a tuple); a value the column cannot keep is refused in one line
    that names the column and says what to do, and nothing is written."""
    frame = FRAMES["columns of several types"]()
    back, manifest = roundtrip(frame, tmp_path / "ok")
    assert manifest["mixed_columns"] == [f"__column_{i}__" for i in range(5)]
    for label in frame.columns:
        assert [type(v) for v in back[label]] == [type(v) for v in frame[label]], label
    assert back["odd"].tolist()[4] == (1, 2) and back[7].tolist()[4] == 2**70
    bad = pd.DataFrame({"id": [1, 2], ("raw", 1): pd.Series([1, b"x"], dtype=object)})
    with pytest.raises(ArtifactError) as refused:
        artifacts.save(bad, "df", tmp_path / "bad")
    assert str(refused.value) == (
        "variable `df` (pandas.DataFrame) could not be saved as an Arrow file: its column "
        "('raw', 1) holds values of several types (bytes, int), which a frame file cannot "
        "keep as they are; make it one plain type (for example with .astype(str))")
    mixed_index = pd.DataFrame({"v": [1, 2], "m": pd.Series([1, "a"], dtype=object)},
                               index=pd.Index([1, "a"]))
    with pytest.raises(ArtifactError, match=r"its index holds values of several types, .*"
                       r"make it one type \(for example with \.astype\(str\)\) or make it a "
                       r"column with \.reset_index\(\)$"):
        artifacts.save(mixed_index, "df", tmp_path / "bad")
    assert files(tmp_path / "bad") == set()


def test_cells_of_lists_tuples_and_dicts_come_back_as_they_were(tmp_path):
    """Lists come back lists (not numpy arrays), tuples tuples, and each dict with its own
    keys only, with the times in them; a column of numpy arrays stays one, of the arrays'
    own dtype."""
    frame = FRAMES["object columns of containers"]()
    back, manifest = roundtrip(frame, tmp_path / "ok")
    assert len(manifest["mixed_columns"]) == 5
    for label in frame.columns:
        assert [type(v) for v in back[label]] == [type(v) for v in frame[label]], label
    # times in a list too: each of its own type and zone (Arrow made them datetime64 arrays)
    assert [[(type(t), str(t)) for t in v] for v in back["when"] if v is not None] == [
        [(type(t), str(t)) for t in v] for v in frame["when"] if v is not None]
    assert back["attrs"].tolist()[:2] == [{"k": 1, "l": [1, 2]}, {"j": "x"}]
    assert back["tags"].tolist()[3] == ["c", None] and back["pairs"].tolist()[0] == (1, 2)
    arrays = pd.DataFrame({"v": pd.Series([np.array([1, 2]), np.array([3])], dtype=object)})
    back, manifest = roundtrip(arrays, tmp_path / "arrays")
    assert "mixed_columns" not in manifest
    assert [(type(v), v.dtype, v.tolist()) for v in back["v"]] == [
        (np.ndarray, np.dtype("int64"), [1, 2]), (np.ndarray, np.dtype("int64"), [3])]
    for cells, held in (([{1, 2}, {3}], "set"),
                        ([np.array([1, 2]), [3]], "list and numpy.ndarray")):
        changed = pd.DataFrame({"v": pd.Series(cells, dtype=object)})  # Arrow made arrays
        with pytest.raises(ArtifactError, match=rf"its column 'v' holds {held} values, which a "
                           r"frame file would give back as numpy arrays; make them all lists"):
            artifacts.save(changed, "changed", tmp_path / "changed")
        assert files(tmp_path / "changed") == set()
    kept = pd.DataFrame({"raw": pd.Series([[b"x"], [b"y", b"z"]], dtype=object)})
    back, manifest = roundtrip(kept, tmp_path / "bytes")  # not JSON: Arrow's lists, as before
    assert "mixed_columns" not in manifest
    assert [list(v) for v in back["raw"]] == [[b"x"], [b"y", b"z"]]


@pytest.mark.parametrize("index", [
    pd.Index([1, None], dtype="Int64", name="id"), pd.Index([1, 2], dtype="UInt32"),
    pd.Index([True, None], dtype="boolean"), pd.Index(["a", None], dtype="string"),
    pd.Index([1.5, None], dtype="Float64"),
    pd.MultiIndex.from_arrays([pd.array([1, None], dtype="Int64"), ["x", "y"]],
                              names=["week", 3]),
], ids=["Int64", "UInt32", "boolean", "string", "Float64", "MultiIndex"])
def test_an_index_of_nullable_dtype_comes_back_of_it(tmp_path, index):
    """Arrow gave an index its numpy dtype (an Int64 index with a missing value came back
    float64, [1.0, nan]): the next step's joins and lookups saw another index."""
    frame = pd.DataFrame({"v": [1.0, 2.0]}, index=index)
    for value in (frame, frame["v"]):
        back, _ = roundtrip(value, tmp_path)
        assert back.index.equals(value.index)
        assert [str(back.index.get_level_values(i).dtype) for i in range(index.nlevels)] == [
            str(index.get_level_values(i).dtype) for i in range(index.nlevels)]
        assert list(back.index.names) == list(index.names)


def test_complex_and_sparse_columns_are_refused_saying_what_to_do(tmp_path):
    """pyarrow said "Unsupported numpy type 15" of complex numbers, and of a sparse column
    only that it is not supported; nothing is written."""
    for value, said in (
            (pd.DataFrame({"a": [1], "cplx": np.array([1 + 2j])}),
             "its column 'cplx' holds complex numbers, which a frame file cannot keep; keep "
             "their real and imaginary parts as two columns (.real, .imag)"),
            (pd.DataFrame({"sp": pd.arrays.SparseArray([0, 1.0])}),
             "its column 'sp' is sparse, which a frame file cannot keep; make it dense first"),
            (pd.Series(np.array([1j, 2]), name="z"), "it holds complex numbers")):
        with pytest.raises(ArtifactError, match=re.escape(said)):
            artifacts.save(value, "v", tmp_path / "bad")
        assert files(tmp_path / "bad") == set()


def test_plain_lists_go_as_arrows_lists_and_come_back_lists(tmp_path):
    """Lists of strings, booleans or ints (tokens, tags, ids) are written as Arrow's lists,
    at its speed, and read back as lists with the same items (not numpy arrays); what
    Arrow would change goes as text: a list of ints with a None (Arrow reads floats), of
    floats (an int among them would come back a float), a tuple among lists, lists in lists,
    a column with pandas' NA."""
    frame = pd.DataFrame({
        "tokens": pd.Series([["a", "b"], [], None, ["c"]], dtype=object),
        "ids": pd.Series([[1, 2], [3], [], [2**62]], dtype=object),
        "flags": pd.Series([[True], [False], [], [True]], dtype=object),
        "gaps": pd.Series([["a"], np.nan, ["b"], []], dtype=object),
        "empty": pd.Series([[], [], [], []], dtype=object),
        "holes": pd.Series([[1, None], [2], [], [3]], dtype=object),
        # Arrow makes a missing item of any kind None: only text keeps NaN a NaN
        "gapped": pd.Series([["c", None], ["d", np.nan], [True, None], []], dtype=object),
        "floats": pd.Series([[1.5], [2], [], None], dtype=object),
        "tuple": pd.Series([["a"], ("b",), [], None], dtype=object),
        "nested": pd.Series([[[1]], [[2, 3]], [], None], dtype=object),
        "na": pd.Series([["a"], pd.NA, ["b"], []], dtype=object),
    })
    back, manifest = roundtrip(frame, tmp_path)
    assert manifest["list_columns"] == ["tokens", "ids", "flags", "gaps", "empty"]
    assert manifest["mixed_columns"] == ["holes", "gapped", "floats", "tuple", "nested", "na"]
    assert manifest["nan_columns"] == ["gaps"]

    def spelled(values):  # types at every depth; NaN is no NaN's equal
        return [repr(v) if not isinstance(v, (list, tuple)) else
                (type(v).__name__, [(type(i).__name__, repr(i)) for i in v]) for v in values]

    for label in frame.columns:
        assert spelled(back[label]) == spelled(frame[label]), label
        assert back[label].dtype == object
    # the manifest never decides: without its names the file's record still makes lists
    record = json.loads((tmp_path / "x.json").read_text())
    record.pop("list_columns")
    (tmp_path / "x.json").write_text(json.dumps(record))
    assert spelled(artifacts.load("x", tmp_path)["tokens"]) == spelled(frame["tokens"])


def test_times_in_object_columns_come_back_in_their_own_zones_and_types(tmp_path):
    """Each time comes back in its own zone, with its own unit (an ambiguous local time
    too), dates as dates, and an int among times as an int (Arrow made it a time)."""
    frame = FRAMES["object columns of times"]()
    back, manifest = roundtrip(frame, tmp_path)
    assert len(manifest["mixed_columns"]) == 5
    for label in frame.columns:
        assert [(type(v), str(v)) for v in back[label]] == [
            (type(v), str(v)) for v in frame[label]], label
    assert [getattr(v, "unit", None) for v in back["zones"]] == [
        getattr(v, "unit", None) for v in frame["zones"]]
    one_zone = pd.DataFrame({"t": pd.Series([pd.Timestamp("2024-01-01", tz="UTC"), None],
                                            dtype=object)})
    back, manifest = roundtrip(one_zone, tmp_path / "one")  # Arrow's own times: as they were
    assert "mixed_columns" not in manifest and back["t"].tolist() == one_zone["t"].tolist()
    numpy_times = pd.DataFrame({"t": pd.Series([np.datetime64("2020-01-01T00:00", "ns")],
                                               dtype=object)})
    back, manifest = roundtrip(numpy_times, tmp_path / "numpy")  # never their ints
    assert "mixed_columns" not in manifest
    assert back["t"].tolist() == [pd.Timestamp("2020-01-01")]
    unnamed = pd.DataFrame({"t": pd.Series([pd.Timestamp("2020-01-01", tz="UTC"),
                                            datetime(2020, 1, 1, tzinfo=_Unnamed())],
                                           dtype=object)})
    with pytest.raises(ArtifactError, match=r"its column 't' holds a time, 2020-01-01 "
                       r"00:00:00\+03:00, which a frame file cannot keep in its zone \(unnamed\); "
                       r"put the times in one zone whose name pandas reads \(for example with "
                       r"pd.to_datetime\(\.\.\., utc=True\)\)$"):
        artifacts.save(unnamed, "df", tmp_path / "bad")
    assert files(tmp_path / "bad") == set()


def test_a_time_in_a_list_that_cannot_be_kept_refuses_the_column(tmp_path):
    """A list column holding a time no zone name brings back is refused, not handed to
    Arrow, which gave every time of the column back in UTC (those it could keep too); a
    naive datetime keeps its fold."""
    zoneless = pd.DataFrame({"t": pd.Series([[pd.Timestamp("2020-01-01", tz="Asia/Tokyo")],
                                             [datetime(2020, 1, 1, tzinfo=_Unnamed())]],
                                            dtype=object)})
    with pytest.raises(ArtifactError, match=r"its column 't' holds a time, 2020-01-01 "
                       r"00:00:00\+03:00, which a frame file cannot keep in its zone "
                       r"\(unnamed\); put the times in one zone whose name pandas reads"):
        artifacts.save(zoneless, "df", tmp_path / "bad")
    assert files(tmp_path / "bad") == set()
    folded = pd.DataFrame({"t": pd.Series([[datetime(2020, 11, 1, 1, 30, fold=1)], []],
                                          dtype=object)})
    back, _ = roundtrip(folded, tmp_path / "fold")
    assert back["t"].tolist()[0][0].fold == 1


def test_missing_values_of_an_object_column_come_back_nan_where_they_were_nan(tmp_path):
    """pandas before 3 marks a missing string NaN: an object column whose missing values are
    all NaN gets them back NaN (Arrow kept nulls, which read back as None), one of None keeps
    None; only the frame file's record says which, as for columns of several types."""
    frame = pd.DataFrame({"city": pd.Series(["Oslo", pd.Series([np.nan]).iloc[0], "Lima"],
                                            dtype=object),  # a NaN that is np.float64
                          "none": pd.Series(["a", None, "b"], dtype=object),
                          "empty": pd.Series([np.nan] * 3, dtype=object)})
    back, manifest = roundtrip(frame, tmp_path)
    assert manifest["nan_columns"] == ["city", "empty"]
    def spelled(values):  # a NaN of numpy's comes back Python's: both float NaN
        return ["nan" if isinstance(v, float) and math.isnan(v) else repr(v) for v in values]

    for label in frame.columns:
        assert spelled(back[label]) == spelled(frame[label]), label
        assert back[label].dtype == object
    assert spelled(back["none"]) == ["'a'", "None", "'b'"]
    series = pd.Series(["x", np.nan], dtype=object, name="s")
    back = artifacts.load("s", tmp_path, sha256=artifacts.save(series, "s", tmp_path)["sha256"])
    assert [repr(v) for v in back] == ["'x'", "nan"]
    record = json.loads((tmp_path / "x.json").read_text())
    record.pop("nan_columns")
    (tmp_path / "x.json").write_text(json.dumps(record))  # the manifest: never what decides
    back = artifacts.load("x", tmp_path)
    assert [repr(v) for v in back["city"]] == ["'Oslo'", "nan", "'Lima'"]


def test_missing_values_na_nat_or_of_several_kinds_come_back_as_they_were(tmp_path):
    """An object column holding pandas' NA (pandas 2 makes ``pd.Series(["x", pd.NA])`` one), NaT, or
    None beside NaN, got None for each; now each missing value comes back itself, the
    other cells as they were. Bytes, which JSON cannot keep, stay Arrow's (None), as
    before."""
    frame = pd.DataFrame({
        "na": pd.Series(["x", pd.NA, "y"], dtype=object),
        "both": pd.Series(["a", None, np.nan], dtype=object),
        "times": pd.Series([pd.Timestamp("2020-01-01", tz="Europe/Oslo"), pd.NaT, None],
                           dtype=object),
        "ints": pd.Series([1, pd.NA, 3], dtype=object),
        "bytes": pd.Series([b"x", pd.NA, None], dtype=object),
        "none": pd.Series(["a", None, "b"], dtype=object),
    })
    back, manifest = roundtrip(frame, tmp_path)
    assert manifest["mixed_columns"] == ["na", "both", "times", "ints"]
    for label in ["na", "both", "times", "ints", "none"]:
        assert [type(v) for v in back[label]] == [type(v) for v in frame[label]], label
        assert [str(v) for v in back[label]] == [str(v) for v in frame[label]], label
        assert back[label].dtype == object
    assert back["na"][1] is pd.NA and back["times"][1] is pd.NaT
    assert back["times"][0] == frame["times"][0] and str(back["times"][0].tz) == "Europe/Oslo"
    assert back["bytes"].tolist() == [b"x", None, None]


def test_a_numpy_time_is_no_metric():
    """A datetime64's or timedelta64's item() is an int: never taken as a measure."""
    from jupyter_mlops.errors import MlopsError
    from jupyter_mlops.runtime.capture import capture_metrics

    for value in (np.datetime64("2020-01-01", "ns"), np.timedelta64(5, "ns")):
        with pytest.raises(MlopsError, match=r"^metric `m` is .*; a metric must be one "
                           r"finite number"):
            capture_metrics(["m"], {"m": value})
    assert capture_metrics(["m"], {"m": np.array(0.25)})["m"]["value"] == 0.25


class _Unnamed(tzinfo):
    """A time zone of a user's own, which no name given back to pandas makes again."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=3)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return "unnamed"

    def __repr__(self) -> str:
        return "unnamed"


def test_only_the_frame_file_says_which_columns_hold_several_types(tmp_path):
    """A file of an earlier run holds no record of its own: its manifest, which whoever can
    write the folder can change, cannot make its text columns be read as encoded values."""
    frame = pd.DataFrame({"x": ["[1, 2]", '{"__jupyter_mlops__": "tuple", "items": [1]}']})
    frame.to_parquet(tmp_path / "old.parquet", engine="pyarrow")
    (tmp_path / "old.json").write_text(json.dumps({
        "name": "old", "kind": "parquet", "file": "old.parquet",
        "sha256": sha256_file(tmp_path / "old.parquet"), "mixed_columns": ["x"]}))
    back = artifacts.load("old", tmp_path, sha256=sha256_file(tmp_path / "old.parquet"))
    assert back["x"].tolist() == frame["x"].tolist()


@pytest.mark.parametrize(
    "series",
    [
        pd.Series([1.0, 2.0, np.nan], name="price"),
        pd.Series([1, 2], name=None),
        pd.Series(["a", None], name=0, index=pd.Index(["p", "q"], name="k")),
        pd.Series(pd.Categorical(["a", "b"]), name=("t", 1)),
        pd.Series(pd.array([1, None], dtype="Int64"), name="__series__"),
        pd.Series([3, "x", None], dtype=object, name="code"),
    ],
    ids=["named", "unnamed", "int name", "tuple name", "reserved name", "several types"],
)
def test_series_round_trip(tmp_path, series):
    back, manifest = roundtrip(series, tmp_path)
    pd.testing.assert_series_equal(back, series, check_index_type=True)
    assert back.name == series.name and type(back.name) is type(series.name)
    assert manifest["kind"] == "series"
    assert manifest["python_type"] == f"{pd.Series.__module__}.Series"
    assert manifest["rows"] == len(series)
    assert manifest["dtype"] == str(series.dtype)


# --- numpy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "array",
    [
        np.arange(5),
        np.arange(12, dtype="float32").reshape(3, 4),
        np.array([[True, False]]),
        np.array(["ab", "c"]),
        np.array(["2024-01-01", "NaT"], dtype="datetime64[ns]"),
        np.array([1 + 2j, np.nan]),
        np.array([(1, 2.5)], dtype=[("a", "i4"), ("b", "f8")]),
        np.asfortranarray(np.arange(6, dtype="uint8").reshape(2, 3)),
        np.array(3.5),
        np.empty((0, 3)),
    ],
    ids=["int 1-D", "float32 2-D", "bool", "unicode", "datetime", "complex", "structured",
         "fortran", "0-d", "empty"],
)
def test_array_round_trip(tmp_path, array):
    back, manifest = roundtrip(array, tmp_path)
    assert type(back) is np.ndarray
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert manifest["kind"] == "npy" and manifest["file"] == "x.npy"
    assert manifest["shape"] == list(array.shape)
    assert manifest["dtype"] == str(array.dtype)
    assert manifest["python_type"] == "numpy.ndarray"


def test_object_array_is_unsupported_without_pickle(tmp_path):
    array = np.array([{"a": 1}, None], dtype=object)
    assert artifacts.kind_of(array) is None
    with pytest.raises(ArtifactError, match=r"variable `arr` is a numpy\.ndarray of dtype object"):
        artifacts.save(array, "arr", tmp_path)
    assert files(tmp_path) == set()
    back, manifest = roundtrip(array, tmp_path, allow_pickle=True)
    assert manifest["kind"] == "pickle"
    assert list(back) == list(array)


# --- scikit-learn -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def training_data():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"color": rng.choice(["red", "green", "blue"], 80), "size": rng.normal(size=80)}
    )
    target = ((frame["size"] > 0) ^ (frame["color"] == "red")).astype(int)
    return frame, target


def test_fitted_pipeline_round_trip(tmp_path, training_data):
    frame, target = training_data
    pre = ColumnTransformer(
        [("onehot", OneHotEncoder(handle_unknown="ignore"), ["color"]),
         ("scale", StandardScaler(), ["size"])]
    )
    model = Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(frame, target)
    back, manifest = roundtrip(model, tmp_path, name="model", role="model")
    assert type(back) is Pipeline
    np.testing.assert_array_equal(back.predict(frame), model.predict(frame))
    np.testing.assert_array_equal(back.predict_proba(frame), model.predict_proba(frame))
    assert manifest["kind"] == "skops" and manifest["file"] == "model.skops"
    assert manifest["role"] == "model"
    assert manifest["python_type"] == "sklearn.pipeline.Pipeline"
    assert isinstance(manifest["trusted"], list)


def fitted_search(training_data) -> GridSearchCV:
    frame, target = training_data
    return GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=3).fit(frame[["size"]], target)


def test_fitted_grid_search_round_trip(tmp_path, training_data):
    search = fitted_search(training_data)
    back, manifest = roundtrip(search, tmp_path, name="search")
    assert back.best_params_ == search.best_params_
    frame = training_data[0][["size"]]
    np.testing.assert_array_equal(back.predict(frame), search.predict(frame))
    # GridSearchCV needs types beyond skops' defaults; the manifest records exactly those.
    assert manifest["trusted"]
    assert all(isinstance(t, str) for t in manifest["trusted"])


def test_skops_trust_does_not_come_from_the_manifest(tmp_path, training_data):
    # Emptying the manifest's list of types changes nothing: load decides trust itself
    # (tests/test_trust.py has the forged-manifest reproduction).
    saved = artifacts.save(fitted_search(training_data), "search", tmp_path)
    manifest_path = tmp_path / "search.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["trusted"] = []
    manifest_path.write_text(json.dumps(manifest))
    back = artifacts.load("search", tmp_path, sha256=saved["sha256"])
    assert back.best_params_ == fitted_search(training_data).best_params_


def test_unfitted_estimator_round_trip(tmp_path):
    back, _ = roundtrip(LogisticRegression(C=0.5), tmp_path)
    assert back.get_params() == LogisticRegression(C=0.5).get_params()


def test_dicts_and_lists_of_estimators_go_as_one_skops_file(tmp_path, training_data):
    """A notebook's ``models = {"lr": ..., "search": ...}`` (or a list of them) could not pass
    between steps; it goes as one skops file and comes back with its keys, order and
    fitted models. A container holding anything else is still refused."""
    frame, target = training_data
    models = {"lr": LogisticRegression().fit(frame[["size"]], target),
              "search": fitted_search(training_data), "note": {"rows": 3, "tags": ["a", None]}}
    back, manifest = roundtrip(models, tmp_path, name="models")
    assert manifest["kind"] == "skops" and manifest["python_type"] == "dict"
    assert list(back) == ["lr", "search", "note"] and back["note"] == models["note"]
    for name in ("lr", "search"):
        np.testing.assert_array_equal(back[name].predict(frame[["size"]]),
                                      models[name].predict(frame[["size"]]))
    pairs = [("lr", LogisticRegression(C=0.5)), ("unfitted", LogisticRegression())]
    back, manifest = roundtrip(pairs, tmp_path, name="pairs")
    assert [(n, type(m), m.C) for n, m in back] == [(n, type(m), m.C) for n, m in pairs]
    assert artifacts.kind_of([1, 2]) == "json"
    assert artifacts.kind_of({"lr": LogisticRegression(), "open": open}) is None
    assert artifacts.kind_of({1: LogisticRegression()}) is None


# --- JSON -------------------------------------------------------------------------------


JSON_VALUES = [
    None, True, False, 0, -7, 10**40, 1.5, -0.0, "héllo ✓", "", [], {},
    [1, "two", 3.0, None, [True]],
    {"a": {"b": [1, {"c": None}]}, "d": "e"},
    (1, "a", (2.5, None)),
    (),
    {"pair": (1, 2), "list": [(3,), [4]]},
    [(1, 2), (3, 4)],
    {"__jupyter_mlops__": "tuple", "items": [1]},  # a user dict that looks like a tag
]


def same(a, b) -> bool:
    """Equal with the same types all the way down (1 is not True, a tuple is not a list)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b))


@pytest.mark.parametrize("value", JSON_VALUES, ids=[repr(v)[:30] for v in JSON_VALUES])
def test_json_round_trip(tmp_path, value):
    assert artifacts.kind_of(value) == "json"
    back, manifest = roundtrip(value, tmp_path)
    assert same(back, value)
    assert manifest["kind"] == "json" and manifest["file"] == "x.data.json"
    assert manifest["python_type"] == type(value).__name__


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, [1.0, math.nan]])
def test_json_non_finite_floats_round_trip_as_strict_json(tmp_path, value):
    back, manifest = roundtrip(value, tmp_path)
    assert same(back, value)
    # The file is strict JSON (no NaN/Infinity tokens); other tools can read it.
    json.loads((tmp_path / "x.data.json").read_text(), parse_constant=pytest.fail)
    json.loads((tmp_path / "x.json").read_text(), parse_constant=pytest.fail)
    assert manifest["value"] == (repr(value) if isinstance(value, float) else [1.0, "nan"])


def test_numpy_scalars_become_python_values(tmp_path):
    value = {"acc": np.float64(0.93), "n": np.int64(12), "ok": np.bool_(True), "s": np.str_("a")}
    assert artifacts.kind_of(value) == "json"
    back, manifest = roundtrip(value, tmp_path)
    assert same(back, {"acc": 0.93, "n": 12, "ok": True, "s": "a"})
    assert manifest["value"] == {"acc": 0.93, "n": 12, "ok": True, "s": "a"}
    back, manifest = roundtrip(np.int32(5), tmp_path)
    assert same(back, 5) and manifest["python_type"] == "numpy.int32"


def test_json_value_shown_in_manifest_only_when_small(tmp_path):
    small = artifacts.save({"pair": (1, 2), "acc": 0.5}, "small", tmp_path)
    assert small["value"] == {"pair": [1, 2], "acc": 0.5}
    big = artifacts.save(list(range(2000)), "big", tmp_path)
    assert "value" not in big
    assert artifacts.load("big", tmp_path) == list(range(2000))


@pytest.mark.parametrize(
    "value",
    [{1: "a"}, {"k": {1, 2}}, [1, b"bytes"], {1.5}, Fraction(1, 3), 1 + 2j, np.datetime64(1, "D")],
    ids=["int key", "nested set", "bytes in list", "set", "fraction", "complex", "datetime64"],
)
def test_values_that_would_not_come_back_equal_are_not_json(tmp_path, value):
    assert artifacts.kind_of(value) is None
    with pytest.raises(ArtifactError, match=r"variable `v` is a "):
        artifacts.save(value, "v", tmp_path)
    assert artifacts.kind_of(value, allow_pickle=True) == "pickle"


def test_self_containing_list_is_not_json(tmp_path):
    loop: list = [1]
    loop.append(loop)
    assert artifacts.kind_of(loop) is None
    with pytest.raises(ArtifactError, match="contains itself"):
        artifacts.save(loop, "loop", tmp_path)


def test_dict_holding_a_frame_says_what_is_inside(tmp_path):
    pattern = r"`d` is a dict holding a pandas\.(core\.frame\.)?DataFrame"
    with pytest.raises(ArtifactError, match=pattern):
        artifacts.save({"df": pd.DataFrame()}, "d", tmp_path)
    with pytest.raises(ArtifactError, match=r"`d` is a dict holding a key of type int"):
        artifacts.save({1: "a"}, "d", tmp_path)


# --- manifests and files ----------------------------------------------------------------


def test_manifest_fields(tmp_path):
    manifest = artifacts.save([1, 2], "xs", tmp_path, role="metrics")
    assert manifest == {
        "name": "xs",
        "kind": "json",
        "file": "xs.data.json",
        "sha256": sha256_file(tmp_path / "xs.data.json"),
        "bytes": (tmp_path / "xs.data.json").stat().st_size,
        "python_type": "list",
        "role": "metrics",
        "value": [1, 2],
    }
    assert artifacts.read_manifest("xs", tmp_path) == manifest
    assert json.loads((tmp_path / "xs.json").read_text()) == manifest


@pytest.mark.parametrize(
    "value, data_file",
    [
        (pd.DataFrame({"a": [1]}), "v.arrow"),
        (pd.Series([1]), "v.arrow"),
        (np.zeros(3), "v.npy"),
        (StandardScaler(), "v.skops"),
        ({"a": 1}, "v.data.json"),
    ],
    ids=["frame", "series", "array", "estimator", "json"],
)
def test_save_leaves_only_data_and_manifest(tmp_path, value, data_file):
    folder = tmp_path / "new" / "folder"
    artifacts.save(value, "v", folder)
    assert files(folder) == {data_file, "v.json"}


def test_pickle_leaves_only_data_and_manifest(tmp_path):
    artifacts.save({1, 2}, "v", tmp_path, allow_pickle=True)
    assert files(tmp_path) == {"v.pkl", "v.json"}


def test_saving_a_new_kind_replaces_the_old_file(tmp_path):
    artifacts.save(pd.DataFrame({"a": [1]}), "v", tmp_path)
    artifacts.save(np.arange(3), "v", tmp_path)
    assert files(tmp_path) == {"v.npy", "v.json"}
    np.testing.assert_array_equal(artifacts.load("v", tmp_path), np.arange(3))


def test_tampered_data_file_is_refused(tmp_path):
    artifacts.save(np.arange(4), "arr", tmp_path)
    path = tmp_path / "arr.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"`arr`.*changed after it was written.*re-run"):
        artifacts.load("arr", tmp_path)


@pytest.mark.parametrize("where", ["middle", "header"])
def test_a_big_frame_hashed_while_it_is_read_is_refused_when_changed(tmp_path, where):
    """Files of 8 MB and more are parsed while a thread hashes them: the parsed value is
    dropped when the hash differs, and a change that also breaks the parsing (the header)
    is still reported as a change, not as a file that cannot be read."""
    frame = pd.DataFrame({"a": np.random.default_rng(0).normal(size=1_200_000), "b": 1})
    manifest = artifacts.save(frame, "df", tmp_path)
    path = tmp_path / manifest["file"]
    assert path.stat().st_size >= artifacts.HASH_BESIDE
    assert artifacts._parsing_runs_no_code("parquet")  # the pyarrow the package requires
    pd.testing.assert_frame_equal(artifacts.load("df", tmp_path, sha256=manifest["sha256"]),
                                  frame)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if where == "middle" else 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"`df`.*changed after it was written.*re-run"):
        artifacts.load("df", tmp_path, sha256=manifest["sha256"])


def test_models_and_pickles_are_hashed_before_they_are_read():
    """Reading them can run code: they are never parsed before their hash is known."""
    assert not artifacts._parsing_runs_no_code("skops")
    assert not artifacts._parsing_runs_no_code("pickle")
    assert artifacts._parsing_runs_no_code("npy") and artifacts._parsing_runs_no_code("json")


def test_expected_sha256_mismatch_is_refused(tmp_path):
    manifest = artifacts.save({"a": 1}, "cfg", tmp_path)
    assert artifacts.load("cfg", tmp_path, sha256=manifest["sha256"]) == {"a": 1}
    with pytest.raises(ArtifactError, match=r"`cfg`.*changed after it was written"):
        artifacts.load("cfg", tmp_path, sha256="0" * 64)


def test_missing_artifact_names_variable_and_folder(tmp_path):
    with pytest.raises(ArtifactError) as info:
        artifacts.load("df", tmp_path)
    message = str(info.value)
    assert "`df`" in message and str(tmp_path) in message
    assert "re-run the step that outputs it" in message


def test_missing_data_file_is_refused(tmp_path):
    artifacts.save(np.arange(2), "arr", tmp_path)
    (tmp_path / "arr.npy").unlink()
    with pytest.raises(ArtifactError, match=r"`arr`.*re-run"):
        artifacts.load("arr", tmp_path)


@pytest.mark.parametrize(
    "text",
    [
        "not json{",
        "[1, 2]",
        '{"kind": "json", "file": "x.data.json"}',
        '{"kind": "marshal", "file": "x.marshal", "sha256": ""}',
        '{"kind": "json", "file": "../outside.data.json", "sha256": ""}',
        '{"kind": "json", "file": "other.data.json", "sha256": ""}',
    ],
    ids=["garbage", "not an object", "no hash", "unknown kind", "escapes folder", "other file"],
)
def test_corrupt_manifest_is_refused(tmp_path, text):
    (tmp_path / "x.json").write_text(text)
    with pytest.raises(ArtifactError, match=r"manifest of artifact `x`.*corrupt"):
        artifacts.load("x", tmp_path)


def test_undecodable_manifest_is_refused(tmp_path):
    (tmp_path / "x.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ArtifactError, match="corrupt"):
        artifacts.read_manifest("x", tmp_path)


@pytest.mark.parametrize("name", ["a/b", "../x", ".hidden", "..", "a\\b", "", "x.y", "a b"])
def test_names_that_could_escape_the_folder_are_refused(tmp_path, name):
    folder = tmp_path / "out"
    refusal = "not a valid artifact name: use a Python variable name"
    with pytest.raises(ArtifactError, match=refusal):
        artifacts.save(1, name, folder)
    with pytest.raises(ArtifactError, match=refusal):
        artifacts.load(name, folder)
    assert files(tmp_path) == set()


# --- unsupported values and pickle ------------------------------------------------------


def generator():
    yield 1


def refused_message(value, folder: Path) -> str:
    """Check that saving ``value`` as `thing` is refused in one line; return the line."""
    assert artifacts.kind_of(value) is None
    with pytest.raises(ArtifactError) as info:
        artifacts.save(value, "thing", folder)
    message = str(info.value)
    assert "supported: pandas DataFrame and Series" in message
    assert "create it in the step that uses it, or export with --allow-pickle (" in message
    assert "\n" not in message
    assert not folder.exists()
    return message


@pytest.mark.parametrize(
    "make, type_name",
    [
        (generator, "generator"),
        (lambda: (lambda: 1), "function"),
        (lambda: np.array([1, "a"], dtype=object), "numpy.ndarray of dtype object"),
        (lambda: np.ma.masked_array([1, 2], mask=[0, 1]), "numpy.ma.MaskedArray"),
        (lambda: pd.DataFrame().style, "pandas.io.formats.style.Styler"),
    ],
    ids=["generator", "lambda", "object array", "masked array", "styler"],
)
def test_unsupported_value_is_refused_with_one_line(tmp_path, make, type_name):
    message = refused_message(make(), tmp_path / "out")
    assert message.startswith(f"variable `thing` is a {type_name}, which jupyter-mlops ")


def test_open_file_is_refused(tmp_path):
    with open(__file__) as handle:
        message = refused_message(handle, tmp_path / "out")
    assert message.startswith("variable `thing` is a _io.TextIOWrapper, which jupyter-mlops ")


def test_figure_message_matches_the_documented_line(tmp_path):
    figure_module = pytest.importorskip("matplotlib.figure")
    outputs = [{"name": "fig", "role": "value", "required": True}]
    with pytest.raises(ArtifactError) as info:
        artifacts.save_outputs({"fig": figure_module.Figure()}, outputs, tmp_path, step="train")
    assert str(info.value) == (
        "step `train`: variable `fig` is a matplotlib.figure.Figure, which jupyter-mlops cannot "
        "pass between steps safely; create it in the step that uses it, or export with "
        "--allow-pickle (supported: pandas DataFrame and Series, numpy arrays, scikit-learn "
        "estimators (alone, or in lists and dicts), JSON values: numbers, strings, lists, "
        "dicts)"
    )


def test_allow_pickle_opt_in(tmp_path):
    value = {"ids": {1, 2, 3}, "ratio": Fraction(1, 3)}
    manifest = artifacts.save(value, "misc", tmp_path, allow_pickle=True)
    assert manifest["kind"] == "pickle" and manifest["file"] == "misc.pkl"
    assert artifacts.load("misc", tmp_path, allow_pickle=True) == value
    with pytest.raises(ArtifactError, match=r"`misc`.*--allow-pickle.*opt in"):
        artifacts.load("misc", tmp_path)


def test_allow_pickle_does_not_change_supported_kinds(tmp_path):
    assert artifacts.kind_of([1, 2], allow_pickle=True) == "json"
    assert artifacts.kind_of(np.zeros(2), allow_pickle=True) == "npy"
    assert artifacts.kind_of(LogisticRegression(), allow_pickle=True) == "skops"


# --- save_outputs / load_inputs ---------------------------------------------------------


def test_save_outputs_and_load_inputs(tmp_path):
    namespace = {"df": pd.DataFrame({"a": [1, 2]}), "acc": np.float64(0.9), "other": 1}
    outputs = [
        {"name": "df", "role": "data", "required": True},
        {"name": "acc", "role": "metrics", "required": True},
        {"name": "maybe", "role": "value", "required": False},
    ]
    saved = artifacts.save_outputs(namespace, outputs, tmp_path, step="train")
    assert set(saved) == {"df", "acc"}
    assert saved["df"]["role"] == "data" and saved["acc"]["role"] == "metrics"
    assert files(tmp_path) == {"df.arrow", "df.json", "acc.data.json", "acc.json"}

    target: dict = {}
    artifacts.load_inputs(
        target, {"df": saved["df"]["sha256"], "acc": ""}, tmp_path
    )
    assert set(target) == {"df", "acc"}
    pd.testing.assert_frame_equal(target["df"], namespace["df"])
    assert target["acc"] == 0.9


def test_save_outputs_missing_required_output(tmp_path):
    outputs = [{"name": "x", "required": True}, {"name": "df", "role": "data", "required": True}]
    with pytest.raises(ArtifactError) as info:
        artifacts.save_outputs({"x": 1}, outputs, tmp_path, step="train")
    assert str(info.value).startswith(
        "step `train` should output `df`, but the notebook has no variable `df` when the step ends;"
    )
    assert files(tmp_path) == set()  # nothing is written when a required output fails


def test_save_outputs_unsupported_required_output(tmp_path):
    outputs = [{"name": "x", "required": True}, {"name": "fig", "required": True}]
    with pytest.raises(ArtifactError) as info:
        artifacts.save_outputs({"x": 1, "fig": generator()}, outputs, tmp_path, step="plot")
    assert str(info.value).startswith("step `plot`: variable `fig` is a generator, which ")
    assert files(tmp_path) == set()


def test_save_outputs_skips_unsupported_optional_output(tmp_path):
    outputs = [{"name": "fig", "required": False}, {"name": "n", "required": False}]
    saved = artifacts.save_outputs({"fig": generator(), "n": 3}, outputs, tmp_path)
    assert set(saved) == {"n"}
    saved = artifacts.save_outputs({"fig": {1}}, outputs[:1], tmp_path, allow_pickle=True)
    assert saved["fig"]["kind"] == "pickle"


def test_load_inputs_refuses_wrong_hash_and_leaves_namespace_alone(tmp_path):
    artifacts.save(1, "a", tmp_path)
    artifacts.save(2, "b", tmp_path)
    namespace: dict = {}
    with pytest.raises(ArtifactError, match=r"`b`.*changed after it was written"):
        artifacts.load_inputs(namespace, {"a": "", "b": "f" * 64}, tmp_path)
    assert namespace == {}
    with pytest.raises(ArtifactError, match="no artifact `c`"):
        artifacts.load_inputs(namespace, {"c": ""}, tmp_path)


def test_load_inputs_pickle_needs_opt_in(tmp_path):
    artifacts.save({1}, "s", tmp_path, allow_pickle=True)
    namespace: dict = {}
    with pytest.raises(ArtifactError, match="--allow-pickle"):
        artifacts.load_inputs(namespace, {"s": ""}, tmp_path)
    artifacts.load_inputs(namespace, {"s": ""}, tmp_path, allow_pickle=True)
    assert namespace == {"s": {1}}


# --- import cost ------------------------------------------------------------------------


def test_import_does_not_pull_heavy_libraries():
    code = (
        "import sys, jupyter_mlops.runtime.artifacts as a; "
        "print(sorted(m for m in ('pandas', 'numpy', 'sklearn', 'skops', 'pyarrow') "
        "if m in sys.modules)); print(a.kind_of(3))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["[]", "json"]



def _printed_by(code: str) -> list[str]:
    """The words a fresh Python process running ``code`` prints (it must succeed)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split()


def test_cli_processes_skip_jsonschemas_grammar_compiling_but_still_validate_notebooks():
    # `jupyter mlops show` imports nbformat (and so jsonschema) and validates the notebook;
    # the CLI marks rfc3987_syntax missing first
    code = (
        "import sys\n"
        "from jupyter_mlops.run.startup import skip_slow_optional_imports\n"
        "skip_slow_optional_imports()\n"
        "import nbformat\n"
        "nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('x = 1')])\n"
        "nbformat.validate(nb)\n"
        "del nb.cells[0]['source']\n"
        "try:\n    nbformat.validate(nb)\nexcept nbformat.ValidationError:\n    print('invalid')\n"
        "print([m for m in ('rfc3987_syntax', 'rfc3986_validator', 'isoduration') "
        "if sys.modules.get(m) is not None])"
    )
    out = _printed_by(code)
    assert out == ["invalid", "[]"]


def test_a_library_process_defers_the_iri_grammars_and_keeps_jsonschemas_iri_checker():
    # a Dask worker imports papermill through jupyter-mlops as a library: rfc3987_syntax
    # (installed with JupyterLab) is deferred, not left out, so jsonschema still checks
    # `iri` strings, compiling the grammars only then
    pytest.importorskip("rfc3987_syntax")  # installed with the test extras (JupyterLab)
    code = (
        "import sys\n"
        "from jupyter_mlops.execution.imports import papermill_and_engine\n"
        "papermill_and_engine()\n"
        "print('jsonschema' in sys.modules, 'rfc3987_syntax.syntax_helpers' in sys.modules)\n"
        "from jsonschema import Draft7Validator\n"
        "check = Draft7Validator.FORMAT_CHECKER\n"
        "print(check.conforms('https://example.org/caf\u00e9', 'iri'),\n"
        "      check.conforms('no scheme here', 'iri'),\n"
        "      check.conforms('a b', 'iri-reference'))\n"
        "print('rfc3987_syntax.syntax_helpers' in sys.modules)\n"
        "import rfc3987_syntax\n"
        "print(type(rfc3987_syntax).__name__, callable(rfc3987_syntax.is_valid_syntax))"
    )
    assert _printed_by(code) == ["True", "False", "True", "False", "False", "True",
                                 "module", "True"]


def test_deferring_the_iri_grammars_leaves_a_process_that_has_them_alone() -> None:
    """Where jsonschema is already imported (a server), or the CLI left rfc3987_syntax out,
    nothing is deferred."""
    code = (
        "import sys\n"
        "import jsonschema\n"
        "from jupyter_mlops.execution.imports import defer_iri_grammars\n"
        "before = sys.modules.get('rfc3987_syntax')\n"
        "defer_iri_grammars()\n"
        "print(sys.modules.get('rfc3987_syntax') is before)\n"
    )
    assert _printed_by(code) == ["True"]
    left_out = ("import sys\n"
                "from jupyter_mlops.run.startup import skip_slow_optional_imports\n"
                "skip_slow_optional_imports()\n"
                "from jupyter_mlops.execution.imports import defer_iri_grammars\n"
                "defer_iri_grammars()\n"
                "print(sys.modules['rfc3987_syntax'])")
    assert _printed_by(left_out) == ["None"]
    # a checker that cannot be imported when first called passes every value, as jsonschema
    # does where none is installed, rather than failing the validation
    broken = ("import sys\n"
              "from jupyter_mlops.execution.imports import defer_iri_grammars\n"
              "defer_iri_grammars()\n"
              "from jsonschema import Draft7Validator\n"
              "sys.modules['lark'] = None\n"
              "print(Draft7Validator.FORMAT_CHECKER.conforms('a b', 'iri'))")
    assert _printed_by(broken) == ["True"]


def test_only_the_thread_importing_papermill_is_told_pyarrow_is_missing() -> None:
    """Another thread of the process may import pyarrow meanwhile (a frame's Parquet file):
    the finder that leaves pyarrow out refuses it to the importing thread only."""
    import threading

    from jupyter_mlops.execution.imports import _NoPyarrowInThisThread

    finder = _NoPyarrowInThisThread()
    with pytest.raises(ModuleNotFoundError, match=r"pyarrow\.fs"):
        finder.find_spec("pyarrow.fs")
    assert finder.find_spec("pandas") is None
    elsewhere: list[object] = []
    thread = threading.Thread(target=lambda: elsewhere.append(finder.find_spec("pyarrow.fs")))
    thread.start()
    thread.join()
    assert elsewhere == [None]


@pytest.mark.parametrize("cli", [True, False], ids=["cli", "library"])
def test_cli_processes_import_papermill_without_pyarrow(cli: bool) -> None:
    """A run's process gives papermill local paths only: it imports papermill without its
    HDFS handler (pyarrow and numpy, a third of papermill's import), and pyarrow stays
    importable; a process that only imports jupyter-mlops keeps papermill whole."""
    code = (
        "import sys\n"
        + ("from jupyter_mlops.run.startup import skip_slow_optional_imports\n"
           "skip_slow_optional_imports()\n" if cli else "")
        + "from jupyter_mlops.execution.imports import papermill_and_engine\n"
        "papermill_and_engine()\n"
        "print(sorted(m for m in ('pyarrow', 'numpy') if m in sys.modules))\n"
        "import papermill.iorw, pyarrow.fs\n"
        "print(papermill.iorw.HadoopFileSystem is pyarrow.fs.HadoopFileSystem)\n"
        "print(pyarrow.fs.LocalFileSystem.__name__)"
    )
    out = _printed_by(code)
    if cli:
        assert out == ["[]", "False", "LocalFileSystem"]
    else:
        assert out == ["['numpy',", "'pyarrow']", "True", "LocalFileSystem"]
