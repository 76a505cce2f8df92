"""A frame's labels come from its hashed data file, never from its manifest alone.

The run store keeps the sha256 of each artifact's data file, not of its manifest: whoever can
write the artifacts folder can rewrite a manifest without a hash noticing. What restores a
frame's labels (original column labels, index names and frequency, a Series' name, JSON's
dtypes, Series or frame) is therefore written into the data file, and a forged manifest must
change nothing the next step sees. Files written before that (no such record) still read
with the manifest's fields.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_artifacts import FRAMES

from jupyter_mlops.errors import ArtifactError
from jupyter_mlops.runtime import arrowfile, arrowrefs, artifacts, frames
from jupyter_mlops.runtime._files import sha256_file


def _forge(folder: Path, name: str, **fields) -> None:
    """Rewrite artifact ``name``'s manifest: each field set (None deletes it)."""
    path = folder / f"{name}.json"
    manifest = json.loads(path.read_text())
    for key, value in fields.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    path.write_text(json.dumps(manifest))


_FORMATS = ("arrow", "arrow-parts", "json-table")

#: Manifest edits that would rename, reorder or retype what the next step sees, and the
#: frame each is tried on.
FORGERIES = {
    "column labels reversed": ("int column labels", {"column_labels": [3, 5]}),
    "column labels added": ("string index", {"column_labels": ["b"]}),
    "column labels removed": ("mixed column labels", {"column_labels": None}),
    "column range shifted": ("range column labels", {"column_range": [1, 4, 1]}),
    "column range removed": ("range column labels", {"column_range": None}),
    "column name changed": ("named int columns", {"column_names": ["month"]}),
    "multiindex names swapped": ("multiindex columns", {"column_names": ["y", "x"]}),
    "index name changed": ("non-str index name", {"index_names": [1]}),
    "index names added": ("string index", {"index_names": ["other"]}),
    "index freq changed": ("datetime index", {"index_freq": "2D"}),
    "index freq removed": ("datetime index", {"index_freq": None}),
    "timedelta freq changed": ("timedelta index with freq", {"index_freq": "15min"}),
}


@pytest.fixture(params=_FORMATS)
def fmt(request, monkeypatch):
    """Each format a frame is written in: one Arrow file, Arrow parts, a JSON table."""
    if request.param == "arrow-parts":  # parts whatever the frame's size: the first column
        monkeypatch.setattr(arrowfile, "SPLIT_FROM", 0)  # compressed, the others plain
        monkeypatch.setattr(arrowfile, "_saving",
                            lambda table, name: 1.0 if name == table.column_names[0] else 0.0)
    if request.param == "json-table":  # what a kernel without pyarrow writes
        monkeypatch.setattr(frames, "frame_format", lambda: "json-table")
    return request.param


@pytest.mark.parametrize("fmt,case", [
    pytest.param(f, case, id=f"{f}-{name}") for f in _FORMATS for name, case in FORGERIES.items()
    # pandas' JSON tables cannot read a timedelta index back, forged or not
    if not (f == "json-table" and name.startswith("timedelta"))], indirect=["fmt"])
def test_a_forged_manifest_does_not_relabel_the_frame(tmp_path, fmt, case):
    made, fields = case
    frame = FRAMES[made]()
    manifest = artifacts.save(frame, "x", tmp_path)
    assert manifest["format"] == fmt
    # as the format brings it back (a JSON table turns a RangeIndex into integers)
    before = artifacts.load("x", tmp_path, sha256=manifest["sha256"])
    assert list(before.columns) == list(frame.columns)
    assert list(before.index.names) == list(frame.index.names)
    assert getattr(before.index, "freq", None) == getattr(frame.index, "freq", None)
    _forge(tmp_path, "x", **fields)
    back = artifacts.load("x", tmp_path, sha256=manifest["sha256"])
    pd.testing.assert_frame_equal(back, before, check_column_type=True, check_index_type=True)
    assert list(back.columns) == list(frame.columns)
    assert back.columns.names == frame.columns.names
    assert getattr(back.index, "freq", None) == getattr(before.index, "freq", None)


def test_forged_json_dtypes_do_not_retype_columns(tmp_path, monkeypatch):
    monkeypatch.setattr(frames, "frame_format", lambda: "json-table")
    frame = pd.DataFrame({"small": np.array([1, 2], dtype="int8"), "x": [0.5, 1.5]})
    manifest = artifacts.save(frame, "x", tmp_path)
    assert manifest["dtypes"] == {"small": "int8", "x": "float64"}
    _forge(tmp_path, "x", dtypes={"small": "bool", "x": "int64"})
    back = artifacts.load("x", tmp_path, sha256=manifest["sha256"])
    pd.testing.assert_frame_equal(back, frame)


def test_a_forged_series_name_does_not_rename_the_series(tmp_path, fmt):
    series = pd.Series([1.0, 2.0], name=("price", 2024))
    manifest = artifacts.save(series, "y", tmp_path)
    _forge(tmp_path, "y", series_name="target")
    back = artifacts.load("y", tmp_path, sha256=manifest["sha256"])
    pd.testing.assert_series_equal(back, series)


@pytest.mark.parametrize("saved,forged", [("frame", "series"), ("series", "parquet")])
def test_a_manifest_whose_kind_was_changed_is_refused_in_one_line(tmp_path, fmt, saved, forged):
    value = (pd.DataFrame({"__series__": [1.0, 2.0]}) if saved == "frame"
             else pd.Series([1.0, 2.0], name="y"))
    manifest = artifacts.save(value, "v", tmp_path)
    _forge(tmp_path, "v", kind=forged)
    with pytest.raises(ArtifactError) as caught:
        artifacts.load("v", tmp_path, sha256=manifest["sha256"])
    message = str(caught.value)
    assert "\n" not in message
    assert "`v`" in message and "manifest was changed after the file was written" in message
    assert "re-run the step that outputs it" in message


def test_the_record_is_inside_the_hashed_file(tmp_path, fmt):
    """What restores the labels is in the bytes the run store hashes: changing it changes
    the hash, and the load is refused."""
    frame = pd.DataFrame([[1, 2]], columns=[5, 3])
    manifest = artifacts.save(frame, "x", tmp_path)
    data = tmp_path / manifest["file"]
    raw = data.read_bytes()
    assert b"column_labels" in raw
    data.write_bytes(raw.replace(b"[5, 3]", b"[3, 5]").replace(b"[5,3]", b"[3,5]"))
    assert sha256_file(data) != manifest["sha256"]
    with pytest.raises(ArtifactError, match="changed after it was written"):
        artifacts.load("x", tmp_path, sha256=manifest["sha256"])


# --- files written before the record was kept in them -------------------------------------


def _legacy_arrow(folder: Path) -> str:
    """An Arrow file and manifest as jupyter-mlops wrote them before: labels in the manifest
    alone. Returns the file's sha256."""
    import pyarrow as pa
    import pyarrow.feather as feather

    plain = pd.DataFrame([[1, 2]], columns=["__column_0__", "__column_1__"])
    feather.write_feather(pa.Table.from_pandas(plain, preserve_index=None), folder / "x.arrow")
    digest = sha256_file(folder / "x.arrow")
    manifest = {"name": "x", "kind": "parquet", "file": "x.arrow", "sha256": digest,
                "format": "arrow", "role": "value", "column_labels": [5, 3],
                "column_names": [None]}
    (folder / "x.json").write_text(json.dumps(manifest))
    return digest


def test_an_arrow_file_written_before_reads_its_labels_from_the_manifest(tmp_path):
    digest = _legacy_arrow(tmp_path)
    back = artifacts.load("x", tmp_path, sha256=digest)
    pd.testing.assert_frame_equal(back, pd.DataFrame([[1, 2]], columns=[5, 3]))


def test_a_json_table_written_before_reads_its_labels_and_dtypes_from_the_manifest(tmp_path):
    plain = pd.DataFrame({"__column_0__": np.array([1, 2], dtype="int8")})
    (tmp_path / "x.table.json").write_text(plain.to_json(orient="table", date_unit="ns"))
    digest = sha256_file(tmp_path / "x.table.json")
    manifest = {"name": "x", "kind": "parquet", "file": "x.table.json", "sha256": digest,
                "format": "json-table", "role": "value", "column_labels": [7],
                "column_names": [None], "dtypes": {"__column_0__": "int8"}}
    (tmp_path / "x.json").write_text(json.dumps(manifest))
    back = artifacts.load("x", tmp_path, sha256=digest)
    expected = pd.DataFrame({7: np.array([1, 2], dtype="int8")})
    pd.testing.assert_frame_equal(back, expected)


# --- a data file read as another kind than it is -------------------------------------------


def _relabel(folder: Path, name: str, kind: str, file: str, **fields) -> None:
    """Copy artifact ``name``'s data file to ``file`` and say ``kind`` in its manifest: the
    bytes, and so the hash the run store keeps, stay the same."""
    manifest = json.loads((folder / f"{name}.json").read_text())
    (folder / file).write_bytes((folder / manifest["file"]).read_bytes())
    _forge(folder, name, kind=kind, file=file, **fields)


def test_a_frames_json_table_is_not_read_as_a_json_value(tmp_path, monkeypatch):
    monkeypatch.setattr(frames, "frame_format", lambda: "json-table")
    manifest = artifacts.save(pd.DataFrame({"a": [1, 2]}), "x", tmp_path)
    _relabel(tmp_path, "x", "json", "x.data.json", format=None)
    with pytest.raises(ArtifactError, match=r"x\.data\.json is a frame's JSON table, not a "
                                            r"JSON value \(its manifest's kind was changed\)"):
        artifacts.load("x", tmp_path, sha256=manifest["sha256"])


def test_a_json_value_is_not_read_as_a_frames_table(tmp_path):
    """A value shaped like a table (an earlier pandas table has no record, so its manifest
    would label it) is refused as a frame: a value's JSON is never written compact."""
    table = json.loads(pd.DataFrame({"a": [1, 2]}).to_json(orient="table"))
    manifest = artifacts.save(table, "x", tmp_path)
    _relabel(tmp_path, "x", "series", "x.table.json", format="json-table",
             series_name="refund")
    with pytest.raises(ArtifactError, match="it is not a JSON table of a frame"):
        artifacts.load("x", tmp_path, sha256=manifest["sha256"])


def test_a_model_file_is_not_read_as_an_array(tmp_path):
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
    manifest = artifacts.save(model, "x", tmp_path)
    _relabel(tmp_path, "x", "npy", "x.npy")
    with pytest.raises(ArtifactError, match=r"x\.npy is not a \.npy file"):
        artifacts.load("x", tmp_path, sha256=manifest["sha256"])


def test_the_run_stores_manifest_is_believed_over_the_folders(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    recorded = artifacts.save(frame, "x", tmp_path)
    _relabel(tmp_path, "x", "json", "x.data.json", format=None)
    back = artifacts.load("x", tmp_path, recorded=recorded)
    pd.testing.assert_frame_equal(back, frame)
    with pytest.raises(ArtifactError, match="run store's record of artifact `x` is not a "
                                            "manifest of it"):
        artifacts.load("x", tmp_path, recorded={**recorded, "file": "../x.arrow"})


# --- where data files may be --------------------------------------------------------------


def test_a_fifo_as_data_file_is_refused_at_once(tmp_path):
    manifest = artifacts.save([1, 2], "x", tmp_path)
    (tmp_path / "x.data.json").unlink()
    os.mkfifo(tmp_path / "x.data.json")  # opened for reading, it would wait for a writer
    with pytest.raises(ArtifactError, match=r"x\.data\.json cannot be read \(not a regular "):
        artifacts.load("x", tmp_path, sha256=manifest["sha256"])


def test_a_frame_that_refers_to_other_steps_is_refused_outside_its_run_folder(
        tmp_path, monkeypatch):
    """Copied from a URL (or moved), its references would name files beside the copy."""
    monkeypatch.setattr(arrowfile, "SPLIT_FROM", 0)
    monkeypatch.setattr(arrowfile, "_saving", lambda table, name: 0.0)
    monkeypatch.setattr(arrowrefs, "_LOADED", {})
    run = tmp_path / "run"
    (run / "artifacts").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    frame = pd.DataFrame({"a": np.arange(1000.0)})
    first = artifacts.save(frame, "f", run / "artifacts" / "build")
    artifacts.load("f", run / "artifacts" / "build", sha256=first["sha256"])
    second = artifacts.save(frame.assign(b=1.5), "g", run / "artifacts" / "features")
    assert second["references"]
    (tmp_path / "build").mkdir()  # what a copy's neighbour would be: not the run's folder
    (tmp_path / "build" / "f.arrow").write_bytes((run / "artifacts/build/f.arrow").read_bytes())
    url = "file://" + str(run / "artifacts" / "features")
    with pytest.raises(ArtifactError, match="only its run's folder holds"):
        artifacts.load("g", url, sha256=second["sha256"])


def test_a_download_never_writes_where_a_manifest_says(tmp_path):
    """A data file named with a separator of another system (Windows' backslash) is not
    copied down, so it cannot land outside the temporary folder there; the load then finds
    the manifest corrupt."""
    from jupyter_mlops.runtime import remote

    source = tmp_path / "source"
    manifest = artifacts.save([1, 2], "x", source)
    hostile = "x.data\\..\\..\\escape"
    (source / hostile).write_bytes((source / "x.data.json").read_bytes())
    _forge(source, "x", file=hostile)
    copy = tmp_path / "copy"
    remote.download("file://" + str(source), copy, ["x"])
    assert sorted(p.name for p in copy.iterdir()) == ["x.json"]
    with pytest.raises(ArtifactError, match=r"manifest of artifact `x` .* is corrupt"):
        artifacts.load("x", "file://" + str(source), sha256=manifest["sha256"])
