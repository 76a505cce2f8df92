"""profile_data: every field on real frames, Series and arrays, and the content fingerprint."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from jupyter_mlops.errors import MlopsError
from jupyter_mlops.runtime.profile import profile_data

AGES = [23, 35, 31, 47, 52, 29, 41, 38, 60, 33]


def small_frame() -> pd.DataFrame:
    """Ten rows, one column of each kind, with nulls where the kind has them."""
    return pd.DataFrame({
        "age": np.array(AGES, dtype=np.int64),
        "score": [1.5, np.nan, 2.5, np.inf, -1.0, 4.0, np.nan, 0.5, 3.0, -np.inf],
        "city": ["Oslo", "Rome", "Oslo", None, "Lima", "Rome", "Oslo", "Kyiv", None, "Rome"],
        "member": [True, False, True, True, False, True, True, True, False, True],
        "joined": pd.to_datetime(["2024-03-01", None, "2023-01-15", "2024-12-31", "2024-01-01",
                                  "2022-06-30", "2024-02-29", None, "2023-07-04",
                                  "2024-05-05"]),
        "waited": pd.to_timedelta([1, 2, None, 4, 5, 6, 7, 8, 9, 10], unit="s"),
    })


def column(profile: dict, name: str) -> dict:
    return next(c for c in profile["columns"] if c["name"] == name)


def test_top_level_fields() -> None:
    profile = profile_data(small_frame(), "df")
    assert list(profile) == ["version", "name", "kind", "rows", "columns", "fingerprint",
                             "schema_fingerprint"]
    assert (profile["version"], profile["name"], profile["kind"], profile["rows"]) == (
        1, "df", "DataFrame", 10)
    assert [c["name"] for c in profile["columns"]] == list(small_frame().columns)
    assert [c["kind"] for c in profile["columns"]] == [
        "numeric", "numeric", "categorical", "boolean", "datetime", "other"]
    assert len(profile["fingerprint"]) == 64 and len(profile["schema_fingerprint"]) == 64


def test_numeric_column_against_numpy() -> None:
    age = column(profile_data(small_frame(), "df"), "age")
    values = np.array(AGES, dtype=float)
    assert (age["dtype"], age["nulls"], age["null_rate"], age["infinite"]) == ("int64", 0, 0.0, 0)
    assert (age["min"], age["max"]) == (23, 60)
    assert type(age["min"]) is int  # an int column keeps exact ints
    assert age["mean"] == pytest.approx(38.9)
    assert age["std"] == pytest.approx(np.std(values, ddof=1))
    assert len(age["quantiles"]) == 101
    assert age["quantiles"] == pytest.approx(np.quantile(values, np.linspace(0, 1, 101)))
    assert (age["quantiles"][0], age["quantiles"][50], age["quantiles"][100]) == (23, 36.5, 60)
    counts, edges = np.histogram(values, bins=20)
    assert age["histogram"]["edges"] == pytest.approx(edges.tolist())
    assert age["histogram"]["counts"] == counts.tolist()
    assert age["distinct"] == 10
    assert age["values"] == [[v, 1] for v in sorted(AGES)]


def test_nulls_and_infinities_are_counted_and_left_out() -> None:
    score = column(profile_data(small_frame(), "df"), "score")
    finite = [1.5, 2.5, -1.0, 4.0, 0.5, 3.0]
    assert (score["nulls"], score["null_rate"], score["infinite"]) == (2, 0.2, 2)
    assert (score["min"], score["max"]) == (-1.0, 4.0)
    assert score["mean"] == pytest.approx(np.mean(finite))
    assert score["std"] == pytest.approx(np.std(finite, ddof=1))
    assert score["quantiles"] == pytest.approx(np.quantile(finite, np.linspace(0, 1, 101)))
    assert sum(score["histogram"]["counts"]) == 6
    assert score["values"] == [[-1.0, 1], [0.5, 1], [1.5, 1], [2.5, 1], [3.0, 1], [4.0, 1]]


def test_categorical_boolean_datetime_and_other_columns() -> None:
    profile = profile_data(small_frame(), "df")
    city = column(profile, "city")
    assert (city["nulls"], city["null_rate"], city["distinct"], city["other"]) == (2, 0.2, 4, 0)
    # most frequent first, ties in order of first appearance
    assert city["top"] == [["Oslo", 3], ["Rome", 3], ["Lima", 1], ["Kyiv", 1]]
    member = column(profile, "member")
    assert member == {"name": "member", "dtype": "bool", "kind": "boolean", "nulls": 0,
                      "null_rate": 0.0, "distinct": 2, "top": [["True", 7], ["False", 3]],
                      "other": 0}
    joined = column(profile, "joined")
    assert (joined["nulls"], joined["min"], joined["max"]) == (
        2, "2022-06-30T00:00:00", "2024-12-31T00:00:00")
    waited = column(profile, "waited")
    assert waited == {"name": "waited", "dtype": str(small_frame()["waited"].dtype),
                      "kind": "other", "nulls": 1, "null_rate": 0.1}


def test_top_values_keep_twenty_and_count_the_rest() -> None:
    # level i appears i + 1 times: the 20 most frequent are levels 24 down to 5
    labels = [f"level_{i:02d}" for i in range(25) for _ in range(i + 1)]
    profile = profile_data(pd.DataFrame({"level": labels}), "levels")
    level = column(profile, "level")
    assert level["top"] == [[f"level_{i:02d}", i + 1] for i in range(24, 4, -1)]
    assert level["other"] == 1 + 2 + 3 + 4 + 5
    assert level["distinct"] == 25


def test_pandas_dtypes_nullable_category_and_mixed_objects() -> None:
    frame = pd.DataFrame({
        "count": pd.array([3, None, 1, 7], dtype="Int64"),
        "size": pd.Categorical(["S", "M", "S", "S"], categories=["S", "M", "L"]),
        "mixed": pd.Series([1, "1", 2.5, None], dtype=object),
        "utc": pd.to_datetime(["2024-01-02", "2024-01-01", None, "2024-01-03"], utc=True),
    })
    profile = profile_data(frame, "df")
    count = column(profile, "count")
    assert (count["kind"], count["nulls"], count["min"], count["max"]) == ("numeric", 1, 1, 7)
    assert type(count["max"]) is int
    size = column(profile, "size")
    # the unused category "L" is not a value
    assert (size["kind"], size["top"], size["distinct"]) == (
        "categorical", [["S", 3], ["M", 1]], 2)
    mixed = column(profile, "mixed")
    # 1 and "1" are the same label in a profile
    assert (mixed["top"], mixed["nulls"]) == ([["1", 2], ["2.5", 1]], 1)
    utc = column(profile, "utc")
    assert (utc["kind"], utc["min"], utc["max"]) == (
        "datetime", "2024-01-01T00:00:00+00:00", "2024-01-03T00:00:00+00:00")


def test_series_is_a_one_column_frame() -> None:
    named = profile_data(pd.Series([1.0, 2.0, np.nan], name="price"), "prices")
    assert (named["name"], named["kind"], named["rows"]) == ("prices", "Series", 3)
    assert [c["name"] for c in named["columns"]] == ["price"]
    assert named["columns"][0]["nulls"] == 1
    unnamed = profile_data(pd.Series(["a", "b"]), "labels")
    assert [c["name"] for c in unnamed["columns"]] == ["labels"]
    assert unnamed["columns"][0]["top"] == [["a", 1], ["b", 1]]


def test_arrays_one_and_two_dimensional() -> None:
    one = profile_data(np.array([3, 1, 2]), "y")
    assert (one["kind"], one["rows"], [c["name"] for c in one["columns"]]) == (
        "ndarray", 3, ["y"])
    assert (one["columns"][0]["min"], one["columns"][0]["max"]) == (1, 3)
    grid = np.arange(12, dtype=np.float64).reshape(4, 3)
    two = profile_data(grid, "X")
    assert [c["name"] for c in two["columns"]] == ["0", "1", "2"]
    assert [c["mean"] for c in two["columns"]] == pytest.approx(grid.mean(axis=0).tolist())
    words = profile_data(np.array(["a", "b", "a"], dtype=object), "words")
    assert words["columns"][0]["top"] == [["a", 2], ["b", 1]]


@pytest.mark.parametrize("value, words", [
    (np.zeros((2, 2, 2)), "`cube` is a 3-D array"),
    (np.array(1.0), "`cube` is a 0-D array"),
    ([1, 2, 3], "`cube` is a list; "),
    ({"a": [1]}, "`cube` is a dict; "),
])
def test_values_it_cannot_profile(value: object, words: str) -> None:
    with pytest.raises(MlopsError, match=words):
        profile_data(value, "cube")


@pytest.mark.parametrize("empty", [pd.DataFrame({"a": []}), pd.Series([], dtype=float),
                                   np.zeros((0, 3))])
def test_empty_data_is_an_error(empty: object) -> None:
    with pytest.raises(MlopsError) as err:
        profile_data(empty, "df")
    assert str(err.value).startswith("`df` is empty (0 rows); ")
    assert "\n" not in str(err.value)


def test_profile_is_strict_json_without_nan() -> None:
    frame = small_frame().assign(nothing=[np.nan] * 10, once=[np.nan] * 9 + [1.0])
    profile = profile_data(frame, "df")
    text = json.dumps(profile, allow_nan=False)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == profile
    nothing = column(profile, "nothing")
    assert (nothing["nulls"], nothing["null_rate"]) == (10, 1.0)
    assert all(nothing[k] is None for k in ("min", "max", "mean", "std", "quantiles",
                                            "histogram"))
    once = column(profile, "once")
    assert (once["min"], once["max"], once["mean"], once["std"]) == (1.0, 1.0, 1.0, None)
    # one value: np.histogram's bins around it
    assert once["histogram"]["edges"][0] == 0.5 and once["histogram"]["counts"][10] == 1


def big_frame(rows: int = 200_000) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame({
        "x": rng.normal(size=rows),
        "n": rng.integers(0, 1000, rows),
        "s": np.array(["red", "green", "blue"], dtype=object)[rng.integers(0, 3, rows)],
        "t": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**6, rows), "s"),
    })


def test_fingerprint_sees_one_value_in_the_last_row() -> None:
    frame = big_frame()
    before = profile_data(frame, "df")
    assert profile_data(frame.copy(), "df")["fingerprint"] == before["fingerprint"]
    for col, value in [("x", 0.5), ("n", 1001), ("s", "purple"),
                       ("t", pd.Timestamp("2030-01-01"))]:
        changed = frame.copy()
        changed.iloc[-1, changed.columns.get_loc(col)] = value
        after = profile_data(changed, "df")
        assert after["fingerprint"] != before["fingerprint"], col
        assert after["schema_fingerprint"] == before["schema_fingerprint"]


@pytest.mark.parametrize("kind, first, changed", [
    ("list", [list(range(3000)), [3], None], [[*range(1500), -1, *range(1501, 3000)], [3], None]),
    ("struct", [{"t": 1}, {"t": 2}, None], [{"t": 1}, {"t": 3}, None]),
])
def test_lists_and_structs_of_an_arrow_dtype_are_profiled_and_fingerprinted(
        kind: str, first: list, changed: list) -> None:
    """Their cells are arrays and dicts, which pandas cannot hash: a frame holding them is
    profiled, checked for drift, and a change inside one value (the middle of a long list,
    which a NumPy repr would leave out) changes its fingerprint."""
    import pyarrow as pa

    from jupyter_mlops.runtime.drift import drift_report

    arrow = pa.list_(pa.int64()) if kind == "list" else pa.struct([("t", pa.int64())])

    def frame(values: list) -> pd.DataFrame:
        return pd.DataFrame({"v": pd.array(values, dtype=pd.ArrowDtype(arrow)), "y": [1, 2, 3]})

    before = profile_data(frame(first), "df")
    assert column(before, "v")["nulls"] == 1
    assert profile_data(frame(first), "df")["fingerprint"] == before["fingerprint"]
    assert profile_data(frame(changed), "df")["fingerprint"] != before["fingerprint"]
    drift_report(before, frame(changed))  # compares what it can, without an error


@pytest.mark.parametrize("values", [["lo", "hi", None, "lo"], [3, 1, None, 3]],
                         ids=["strings", "ints"])
def test_a_dictionary_arrow_dtype_is_profiled_and_checked_as_categories(values: list) -> None:
    """An Arrow dictionary column (pandas' categories as Arrow holds them) gets the profile
    of the same values as a pandas categorical, and its drift is tested, not skipped."""
    import pyarrow as pa

    from jupyter_mlops.runtime.drift import drift_report

    arrow = pa.dictionary(pa.int32(), pa.string() if isinstance(values[0], str) else pa.int64())

    def frame(column: list, dtype: Any) -> pd.DataFrame:
        return pd.DataFrame({"c": pd.array(column, dtype=dtype), "y": range(len(column))})

    recorded = column(profile_data(frame(values * 50, pd.ArrowDtype(arrow)), "df"), "c")
    as_pandas = column(profile_data(frame(values * 50, "category"), "df"), "c")
    assert recorded["kind"] == "categorical"
    assert {k: recorded[k] for k in ("nulls", "distinct", "top", "other")} == \
        {k: as_pandas[k] for k in ("nulls", "distinct", "top", "other")}
    profile = profile_data(frame(values * 50, pd.ArrowDtype(arrow)), "df")
    shifted = [values[1]] * 150 + [values[0]] * 50
    report = drift_report(profile, frame(shifted, pd.ArrowDtype(arrow)))
    assert report["columns"]["c"]["drift"] is True and "c" not in report["skipped"], report


def test_fingerprint_sees_dtype_names_and_row_order() -> None:
    frame = big_frame(1000)
    base = profile_data(frame, "df")
    as_float = profile_data(frame.astype({"n": "float64"}), "df")
    assert as_float["fingerprint"] != base["fingerprint"]
    assert as_float["schema_fingerprint"] != base["schema_fingerprint"]
    renamed = profile_data(frame.rename(columns={"x": "y"}), "df")
    assert renamed["fingerprint"] != base["fingerprint"]
    # same index 0..n-1, rows in another order: only the order changed
    shuffled = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    assert profile_data(shuffled, "df")["fingerprint"] != base["fingerprint"]
    swapped = frame.copy()
    swapped.iloc[[0, 1]] = frame.iloc[[1, 0]].to_numpy()
    assert profile_data(swapped, "df")["fingerprint"] != base["fingerprint"]


def test_array_fingerprint_sees_last_value_dtype_and_shape() -> None:
    array = np.random.default_rng(3).normal(size=(200_000, 3))
    base = profile_data(array, "X")["fingerprint"]
    assert profile_data(array.copy(), "X")["fingerprint"] == base
    changed = array.copy()
    changed[-1, -1] += 1e-9
    assert profile_data(changed, "X")["fingerprint"] != base
    assert profile_data(array.astype(np.float32), "X")["fingerprint"] != base
    assert profile_data(np.asfortranarray(array), "X")["fingerprint"] == base
    flat = array.reshape(-1)
    assert profile_data(flat.reshape(100_000, 6), "X")["fingerprint"] != base


# The same data built in a fresh interpreter (its own hash seed) must give the same digest.
_SAME_DATA = textwrap.dedent("""
    import hashlib, json
    import numpy as np, pandas as pd
    from jupyter_mlops.runtime.profile import profile_data
    rng = np.random.default_rng(11)
    frame = pd.DataFrame({
        "x": rng.normal(size=5000),
        "s": np.array(["a", "b", None], dtype=object)[rng.integers(0, 3, 5000)],
        "c": pd.Categorical(rng.choice(["lo", "hi"], 5000)),
        "t": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(5000), "h"),
    })
    profile = profile_data(frame, "df")
    print(profile["fingerprint"])
    # the whole profile file, not only the digest, is the same: no diff in git
    print(hashlib.sha256(json.dumps(profile).encode()).hexdigest())
    print(profile_data(rng.normal(size=(100, 4)), "X")["fingerprint"])
    print(profile_data(np.array(["x", "y"], dtype=object), "w")["fingerprint"])
""")


def test_fingerprint_is_the_same_in_another_process() -> None:
    def run() -> list[str]:
        proc = subprocess.run([sys.executable, "-c", _SAME_DATA], cwd=REPO, check=True,
                              capture_output=True, text=True)
        return proc.stdout.split()

    namespace: dict = {}
    here = _SAME_DATA.replace("print(", "namespace.setdefault('out', []).append(")
    exec(here, {"namespace": namespace})
    assert run() == namespace["out"]


def test_modules_import_without_pandas() -> None:
    code = ("import sys, jupyter_mlops.runtime.profile, jupyter_mlops.runtime.drift; "
            "print(sorted({'pandas', 'numpy', 'scipy'} & set(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True,
                          capture_output=True, text=True)
    assert proc.stdout.strip() == "[]"
