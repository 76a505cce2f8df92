"""Big frames compress only the columns compression pays for (``runtime.frames``): the file is
then two Arrow IPC files back to back, and what comes back is the frame that was saved."""

from __future__ import annotations

import gc
import hashlib
import json
import os

import numpy as np
import pandas as pd
import pytest
from test_artifacts import FRAMES

from jupyter_mlops.errors import ArtifactError
from jupyter_mlops.runtime import arrowfile, arrowrefs, artifacts
from jupyter_mlops.runtime._files import sha256_file


def _big(rows: int = 1_200_000) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame({
        "noise": rng.normal(size=rows),  # random floats: zstd saves a few percent
        "level": rng.integers(0, 10, size=rows),  # zstd saves most of it
        "word": np.array(["alpha", "beta"])[rng.integers(0, 2, size=rows)],
        "when": pd.Timestamp("2024-01-01", tz="Europe/Paris")
        + pd.to_timedelta(rng.integers(0, 1000, size=rows), unit="s"),
        "small": rng.normal(size=rows).astype("float32"),
        "tier": pd.Categorical.from_codes(rng.integers(0, 3, size=rows), ["lo", "mid", "hi"]),
    }, index=pd.Index(rng.permutation(rows), name="id"))


def test_a_big_frame_keeps_incompressible_columns_plain_and_comes_back_equal(tmp_path):
    frame = _big()
    frame.loc[frame.index[::7], "noise"] = np.nan
    manifest = artifacts.save(frame, "df", tmp_path)
    assert manifest["format"] == "arrow-parts"
    assert manifest["uncompressed"] == ["noise", "small"]
    assert sum(manifest["parts"]) == manifest["bytes"] == (tmp_path / "df.arrow").stat().st_size
    # hashed while written, its blocks of 8 MB and more in a thread beside the writing
    assert manifest["sha256"] == sha256_file(tmp_path / "df.arrow")
    # smaller than the frame in memory: the compressible columns were compressed
    assert manifest["bytes"] < frame.memory_usage(deep=True).sum() * 0.8
    back = artifacts.load("df", tmp_path, sha256=manifest["sha256"])
    pd.testing.assert_frame_equal(back, frame, check_column_type=True, check_index_type=True)
    assert list(back.columns) == list(frame.columns)


def test_a_frame_under_the_split_size_is_one_compressed_file(tmp_path):
    frame = _big(20_000)
    manifest = artifacts.save(frame, "df", tmp_path)
    assert manifest["format"] == "arrow" and "parts" not in manifest
    pd.testing.assert_frame_equal(artifacts.load("df", tmp_path, sha256=manifest["sha256"]),
                                  frame)


def test_a_big_frame_of_random_floats_only_is_one_plain_file(tmp_path):
    frame = pd.DataFrame(np.random.default_rng(1).normal(size=(600_000, 4)), columns=list("abcd"))
    manifest = artifacts.save(frame, "df", tmp_path)
    # one part: an ordinary Arrow file, uncompressed (pyarrow alone reads it)
    assert manifest["format"] == "arrow" and manifest["uncompressed"] == list("abcd")
    import pyarrow.feather as feather

    pd.testing.assert_frame_equal(feather.read_feather(tmp_path / "df.arrow"), frame)


@pytest.mark.parametrize("make", FRAMES.values(), ids=FRAMES.keys())
def test_every_kind_of_frame_round_trips_in_parts(tmp_path, monkeypatch, make):
    """Each frame of test_artifacts, its columns (index columns too) sent alternately to the
    compressed and the plain part, whatever their size."""
    monkeypatch.setattr(arrowfile, "SPLIT_FROM", 0)
    chosen: list[str] = []

    def alternate(table, name):
        chosen.append(name)
        return 1.0 if len(chosen) % 2 else 0.0

    monkeypatch.setattr(arrowfile, "_saving", alternate)
    frame = make()
    manifest = artifacts.save(frame, "x", tmp_path)
    if len(chosen) > 1:
        assert manifest["format"] == "arrow-parts" and len(manifest["parts"]) == 2
    back = artifacts.load("x", tmp_path, sha256=manifest["sha256"])
    pd.testing.assert_frame_equal(back, frame, check_column_type=True, check_index_type=True)


def test_a_series_round_trips_in_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(arrowfile, "SPLIT_FROM", 0)
    monkeypatch.setattr(arrowfile, "_saving", lambda table, name: 1.0 if name == "__series__"
                        else 0.0)
    series = pd.Series([1.5, np.nan, 3.0], name="price", index=pd.Index(["a", "b", "c"],
                                                                           name="k"))
    manifest = artifacts.save(series, "s", tmp_path)
    assert manifest["format"] == "arrow-parts"
    pd.testing.assert_series_equal(artifacts.load("s", tmp_path, sha256=manifest["sha256"]),
                                   series, check_index_type=True)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parts")
    manifest = artifacts.save(_big(), "df", folder)
    assert manifest["format"] == "arrow-parts"
    return folder, manifest


@pytest.mark.parametrize("where", ["first part", "second part", "boundary"])
def test_a_changed_byte_in_either_part_is_refused(tmp_path, saved, where):
    folder, manifest = saved
    data = bytearray((folder / "df.arrow").read_bytes())
    first = manifest["parts"][0]
    data[{"first part": first // 2, "second part": first + manifest["parts"][1] // 2,
          "boundary": first}[where]] ^= 0x01
    (tmp_path / "df.arrow").write_bytes(bytes(data))
    (tmp_path / "df.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"`df`.*changed after it was written.*re-run"):
        artifacts.load("df", tmp_path, sha256=manifest["sha256"])


@pytest.mark.parametrize("parts", [
    "shifted", "one part", "three parts", "negative", "not numbers", "missing"])
def test_a_manifest_whose_parts_do_not_divide_the_file_is_refused(tmp_path, saved, parts):
    """The manifest is not hashed by the run store: a forged split must fail to load, with
    one line naming the artifact, never give a frame."""
    folder, manifest = saved
    (tmp_path / "df.arrow").write_bytes((folder / "df.arrow").read_bytes())
    first, second = manifest["parts"]
    forged = {"shifted": [first + 8, second - 8], "one part": [first + second],
              "three parts": [first, 8, second - 8], "negative": [first + second + 8, -8],
              "not numbers": [str(first), str(second)], "missing": None}[parts]
    (tmp_path / "df.json").write_text(json.dumps({**manifest, "parts": forged}))
    with pytest.raises(ArtifactError, match=r"artifact `df` .*not be loaded as an Arrow file"):
        artifacts.load("df", tmp_path, sha256=manifest["sha256"])


def test_an_older_format_name_cannot_read_a_split_file_silently(tmp_path, saved):
    """A manifest that calls the split file plain "arrow" (or a reader that knows only that)
    would read only the last part's columns: the pandas metadata it carries names them all,
    so the read fails instead."""
    folder, manifest = saved
    (tmp_path / "df.arrow").write_bytes((folder / "df.arrow").read_bytes())
    (tmp_path / "df.json").write_text(json.dumps({**manifest, "format": "arrow"}))
    with pytest.raises(ArtifactError, match=r"artifact `df` .*could not be loaded"):
        artifacts.load("df", tmp_path, sha256=manifest["sha256"])


# --- columns referenced instead of written again ---------------------------------------------


@pytest.fixture(autouse=True)
def _nothing_loaded(monkeypatch):
    """Each test starts with no frame loaded in this process, and leaves none open."""
    monkeypatch.setattr(arrowrefs, "_LOADED", {})
    monkeypatch.setattr(arrowrefs, "_READ", {})
    yield
    for entry in arrowrefs._LOADED.values():
        os.close(entry["fd"])


def _root(run):
    """The artifacts folder of a run folder as `jupyter mlops run` makes it (its run.json
    beside): only there may frames refer to each other."""
    run.mkdir(parents=True, exist_ok=True)
    (run / arrowrefs.RUN_FILE).write_text("{}")
    return run / "artifacts"


def _extended(root, rows: int = 1_200_000):
    """A frame saved by step `build`, loaded back with its hash checked, and extended as a
    `features` step would."""
    built = artifacts.save(_big(rows), "df", root / "build")
    ns: dict = {}
    artifacts.load_inputs(ns, {"df": built["sha256"]}, root / "build")
    frame = ns["df"]
    frame["doubled"] = frame["noise"] * 2  # new
    frame["level"] = frame["level"] + 1  # replaced
    return frame


def _refs(manifest):
    return [(r["step"], r["name"], r["columns"]) for r in manifest.get("references", [])]


def _fresh_load(monkeypatch, folder, sha256):
    monkeypatch.setattr(arrowrefs, "_LOADED", {})
    return artifacts.load("df", folder, sha256=sha256)


def test_a_loaded_frame_handed_on_references_its_unchanged_columns(tmp_path, monkeypatch):
    frame = _extended(_root(tmp_path))
    saved = artifacts.save(frame, "df", _root(tmp_path) / "features")
    assert saved["format"] == "arrow-parts"
    # the columns that did not change are referenced: the plain part's, and of the
    # compressed part's the one the loaded frame holds as Arrow memory (pandas copied the
    # others, which are written again); "doubled" is new and "level" replaced
    assert _refs(saved) == [("build", "df", ["word", "noise", "small"])]
    assert saved["uncompressed"] == ["doubled"]
    first = arrowrefs.open_part(_root(tmp_path) / "features" / "df.arrow", saved["parts"], 0)
    assert sorted(first.column_names) == ["id", "level", "tier", "when"]
    built = json.loads((_root(tmp_path) / "build" / "df.json").read_text())
    assert saved["references"][0]["sha256"] == built["sha256"]
    assert saved["uncompressed"] == ["doubled"]
    # written whole, the frame takes the two plain columns' 14.4 MB more
    monkeypatch.setattr(arrowrefs, "_LOADED", {})
    whole = artifacts.save(frame, "df", _root(tmp_path) / "whole")
    assert "references" not in whole
    assert whole["bytes"] - saved["bytes"] >= 1_200_000 * (8 + 4)
    back = _fresh_load(monkeypatch, _root(tmp_path) / "features", saved["sha256"])
    pd.testing.assert_frame_equal(back, frame, check_column_type=True, check_index_type=True)
    assert list(back.columns) == list(frame.columns)


def test_a_frame_handed_on_twice_references_only_the_file_it_loaded(tmp_path, monkeypatch):
    """The third step's frame takes `doubled` from `features`' own plain part; `noise`,
    which `features` took from `build`'s file, is written again (a reference names the file
    that holds the bytes, and only the files a step itself loaded and hashed are compared)."""
    frame = _extended(_root(tmp_path))
    saved = artifacts.save(frame, "df", _root(tmp_path) / "features")
    monkeypatch.setattr(arrowrefs, "_LOADED", {})
    ns: dict = {}
    artifacts.load_inputs(ns, {"df": saved["sha256"]}, _root(tmp_path) / "features")
    third = ns["df"]
    third["small"] = third["small"] + 1
    again = artifacts.save(third, "df", _root(tmp_path) / "fit")
    # `word`, which `features` took from `build`, is written again
    assert _refs(again) == [("features", "df", ["doubled"])]
    assert "noise" in again["uncompressed"]
    first = arrowrefs.open_part(_root(tmp_path) / "fit" / "df.arrow", again["parts"], 0)
    assert {"word", "when", "tier"} <= set(first.column_names)
    back = _fresh_load(monkeypatch, _root(tmp_path) / "fit", again["sha256"])
    pd.testing.assert_frame_equal(back, third, check_column_type=True, check_index_type=True)


def test_a_column_changed_in_place_is_written_not_referenced(tmp_path, monkeypatch):
    frame = _extended(_root(tmp_path))
    frame.loc[frame.index[10], "noise"] = -0.0  # one value of a plain column
    frame["small"] = frame["small"].copy()  # the same values in new memory: still referenced
    saved = artifacts.save(frame, "df", _root(tmp_path) / "features")
    assert _refs(saved) == [("build", "df", ["word", "small"])]
    assert "noise" in saved["uncompressed"]
    back = _fresh_load(monkeypatch, _root(tmp_path) / "features", saved["sha256"])
    pd.testing.assert_frame_equal(back, frame, check_column_type=True, check_index_type=True)
    assert np.signbit(back.loc[frame.index[10], "noise"])


def test_a_column_with_missing_values_is_written(tmp_path):
    frame = _extended(_root(tmp_path))
    frame.loc[frame.index[::3], "small"] = np.nan
    saved = artifacts.save(frame, "df", _root(tmp_path) / "features")
    assert _refs(saved) == [("build", "df", ["word", "noise"])]


def test_a_compressed_column_changed_anywhere_is_written_not_referenced(tmp_path, monkeypatch):
    """A compressed column the loaded frame holds as Arrow memory is referenced while it is
    those buffers or holds the same values: one string changed, a missing value filled, or
    the categories of a frame of one chunk relabelled on the very codes loaded, makes it be
    written (and read back as saved)."""
    root = _root(tmp_path)
    rows = 60_000  # one chunk a column: pandas keeps the category codes as loaded
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({f"n{i}": rng.normal(size=rows) for i in range(40)})
    frame["word"] = np.array(["alpha", "beta"])[rng.integers(0, 2, size=rows)]
    frame["maybe"] = pd.Series(np.where(rng.random(rows) < 0.1, None, "x"), dtype="str")
    frame["tier"] = pd.Categorical.from_codes(rng.integers(0, 3, size=rows), ["x", "y", "z"])
    built = artifacts.save(frame, "df", root / "build")
    assert {"word", "maybe", "tier"}.isdisjoint(built["uncompressed"])

    def loaded():
        ns: dict = {}
        artifacts.load_inputs(ns, {"df": built["sha256"]}, root / "build")
        return ns["df"]

    same = loaded()
    assert set(arrowrefs._LOADED[(root / "build" / "df.arrow").absolute()]["packed"]) == {
        "word", "maybe", "tier"}
    saved = artifacts.save(same, "df", root / "same")
    assert {"word", "maybe", "tier"} <= {c for _, _, cs in _refs(saved) for c in cs}
    # the same values in new memory: the loaded column, no longer held, was let go
    copied = loaded()
    copied["word"] = copied["word"].copy(deep=True)
    gc.collect()
    saved = artifacts.save(copied, "df", root / "copied")
    referenced = {c for _, _, cs in _refs(saved) for c in cs}
    assert "word" not in referenced and {"maybe", "tier"} <= referenced
    edits = {
        "word": lambda f: f.loc[f.index[5], "word"] + "!",
        "maybe": lambda f: "x",
        "tier": None,
    }
    for column, value in edits.items():
        changed = loaded()
        if column == "tier":  # other labels on the codes as loaded, which pandas shares
            changed["tier"] = pd.Series(pd.Categorical.from_codes(
                changed["tier"].array.codes, ["low", "mid", "high"], validate=False),
                index=changed.index, copy=False)
        else:
            at = changed.index[np.flatnonzero(changed["maybe"].isna().to_numpy())[0]] \
                if column == "maybe" else changed.index[5]
            changed.loc[at, column] = value(changed)
        saved = artifacts.save(changed, "df", root / f"edit_{column}")
        referenced = [c for _, _, columns in _refs(saved) for c in columns]
        assert column not in referenced and len(referenced) >= 40, column
        back = _fresh_load(monkeypatch, root / f"edit_{column}", saved["sha256"])
        pd.testing.assert_frame_equal(back, changed, check_column_type=True)


def test_a_column_is_the_same_only_when_a_reader_would_see_the_same():
    """What decides whether a saved column is the loaded one: its very buffers; else its
    bytes (numbers), its values and nulls (strings), its codes and categories in order."""
    import pyarrow as pa

    same = arrowrefs._same_column
    words = pa.chunked_array([pa.array(["a", None, "c"], type=pa.large_string())])
    assert same(words, words)
    assert same(pa.chunked_array([pa.array(["a", None, "c"], type=pa.large_string())]), words)
    assert not same(pa.chunked_array([pa.array(["a", "b", "c"], type=pa.large_string())]),
                    words)
    assert not same(pa.chunked_array([pa.array(["a", None, "c"])]), words)  # string vs large
    zeros, signed = np.zeros(8), np.zeros(8)
    signed[3] = -0.0
    assert not same(pa.chunked_array([signed]), pa.chunked_array([zeros]))
    codes = pa.array(np.array([0, 1, 2, 0], dtype=np.int8))
    labelled = pa.chunked_array([pa.DictionaryArray.from_arrays(codes, ["x", "y", "z"])])
    for other in (["low", "mid", "high"], ["y", "x", "z"]):  # the very codes, other labels
        assert not same(pa.chunked_array([pa.DictionaryArray.from_arrays(codes, other)]),
                        labelled)
    assert same(pa.chunked_array([pa.DictionaryArray.from_arrays(codes, ["x", "y", "z"])]),
                labelled)
    floats = pa.chunked_array([pa.DictionaryArray.from_arrays(codes, [0.0, 1.0, 2.0])])
    assert not same(floats, floats)  # categories of floats: -0.0 would pass as 0.0
    nested = pa.chunked_array([pa.array([[1.0], [2.0]])])
    assert not same(nested, nested)


def test_a_big_frame_of_one_compressed_file_is_referenced(tmp_path, monkeypatch):
    """A frame of strings alone is one compressed Arrow file: handed on with a new column,
    its columns are referenced, and it reads back whole."""
    root = _root(tmp_path)
    rows = 1_500_000
    rng = np.random.default_rng(8)
    words = np.array(["alpha", "beta", "gamma"])
    frame = pd.DataFrame({"a": words[rng.integers(0, 3, rows)],
                          "b": words[rng.integers(0, 3, rows)]})
    built = artifacts.save(frame, "df", root / "build")
    assert built["format"] == "arrow" and "uncompressed" not in built
    ns: dict = {}
    artifacts.load_inputs(ns, {"df": built["sha256"]}, root / "build")
    ns["df"]["c"] = ns["df"]["a"] + ns["df"]["b"]
    saved = artifacts.save(ns["df"], "df", root / "features")
    assert _refs(saved) == [("build", "df", ["a", "b"])]
    back = _fresh_load(monkeypatch, root / "features", saved["sha256"])
    pd.testing.assert_frame_equal(back, ns["df"], check_column_type=True)


def test_a_failed_load_keeps_nothing_of_the_file(tmp_path, monkeypatch):
    """The columns kept while a file is hashed are dropped when its hash is not the one
    expected: nothing of it is referenced, nor held in memory."""
    root = _root(tmp_path)
    built = artifacts.save(_big(), "df", root / "build")
    with pytest.raises(ArtifactError, match="was changed after it was written"):
        artifacts.load("df", root / "build", sha256="0" * 64)
    assert arrowrefs._READ == {} and arrowrefs._LOADED == {}
    frame = artifacts.load("df", root / "build", sha256=built["sha256"])
    assert arrowrefs._READ == {}
    entry = arrowrefs._LOADED[(root / "build" / "df.arrow").absolute()]
    # of the compressed part, only what the frame holds as loaded (its strings' Arrow arrays)
    assert set(entry["packed"]) == {"word"}
    # and only while it holds them: filtered, the frame is another; the loaded one let go
    frame = frame[frame["level"] > 4]
    gc.collect()
    assert entry["packed"] == {}
    assert entry["part"] is not None  # the plain part, read again from the file, stays


def _forged_references(tmp_path, change):
    """`features`' frame saved, then its file's references edited by ``change`` and the
    manifest's hash made to match (as a writer could): the manifest."""
    import pyarrow as pa
    import pyarrow.feather as feather

    frame = _extended(_root(tmp_path))
    saved = artifacts.save(frame, "df", _root(tmp_path) / "features")
    path = _root(tmp_path) / "features" / "df.arrow"
    first = arrowrefs.open_part(path, saved["parts"], 0)
    meta = dict(first.schema.metadata)
    own = json.loads(meta[b"jupyter_mlops"])
    change(own["references"])
    meta[b"jupyter_mlops"] = json.dumps(own).encode()
    rest = path.read_bytes()[saved["parts"][0]:]
    sink = pa.BufferOutputStream()
    feather.write_feather(first.replace_schema_metadata(meta), sink, compression="zstd")
    head = sink.getvalue().to_pybytes()
    path.write_bytes(head + rest)
    manifest = {**saved, "parts": [len(head), len(rest)], "sha256": sha256_file(path)}
    (_root(tmp_path) / "features" / "df.json").write_text(json.dumps(manifest))
    return manifest


def test_a_file_referred_to_by_two_hashes_is_refused(tmp_path, monkeypatch):
    """Two parts of one file referenced under two hashes: one of them cannot be the file's."""
    def second_hash(references):
        assert len(references) == 2  # the compressed part and the plain one
        references[1]["sha256"] = "0" * 64

    manifest = _forged_references(tmp_path, second_hash)
    with pytest.raises(ArtifactError, match=r"refers to step `build`'s `df` by two hashes"):
        _fresh_load(monkeypatch, _root(tmp_path) / "features", manifest["sha256"])


@pytest.mark.parametrize("beside", [True, False], ids=["hashed while parsed",
                                                     "hashed first (pyarrow < 14.0.1)"])
def test_a_referring_file_reads_back_whichever_way_it_is_hashed(tmp_path, monkeypatch, beside):
    """Hashed before it is parsed (an older pyarrow), a referenced file is read through the
    descriptor that was hashed, still open."""
    monkeypatch.setattr(arrowfile, "parsing_runs_no_code", lambda: beside)
    frame = _extended(_root(tmp_path))
    saved = artifacts.save(frame, "df", _root(tmp_path) / "features")
    back = _fresh_load(monkeypatch, _root(tmp_path) / "features", saved["sha256"])
    pd.testing.assert_frame_equal(back, frame, check_column_type=True, check_index_type=True)


@pytest.mark.parametrize("beside", [True, False], ids=["hashed while parsed",
                                                     "hashed first (pyarrow < 14.0.1)"])
def test_a_referenced_file_changed_afterwards_is_refused(tmp_path, monkeypatch, beside):
    monkeypatch.setattr(arrowfile, "parsing_runs_no_code", lambda: beside)
    frame = _extended(_root(tmp_path))
    saved = artifacts.save(frame, "df", _root(tmp_path) / "features")
    source = _root(tmp_path) / "build" / "df.arrow"
    data = bytearray(source.read_bytes())
    data[-1000] ^= 0x01
    source.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"artifact `df` in .*features could not be loaded.*"
                       r"step `build`'s `df`, whose file .* was changed after it was written"):
        _fresh_load(monkeypatch, _root(tmp_path) / "features", saved["sha256"])
    source.unlink()
    with pytest.raises(ArtifactError, match=r"step `build`'s `df`, whose file .* is missing"):
        _fresh_load(monkeypatch, _root(tmp_path) / "features", saved["sha256"])


def test_nothing_is_referenced_in_the_folder_it_was_loaded_from(tmp_path):
    frame = _extended(_root(tmp_path))
    saved = artifacts.save(frame, "again", _root(tmp_path) / "build")
    assert "references" not in saved


def test_nothing_is_referenced_across_artifact_folders(tmp_path):
    frame = _extended(_root(tmp_path / "run1"))
    saved = artifacts.save(frame, "df", _root(tmp_path / "run2") / "features")
    assert "references" not in saved


def test_nothing_is_referenced_at_a_url(tmp_path, monkeypatch):
    """A frame loaded from or saved to a URL goes through a temporary local copy: a
    reference would point into it."""
    built = artifacts.save(_big(), "df", (_root(tmp_path) / "build").as_uri())
    ns: dict = {}
    artifacts.load_inputs(ns, {"df": built["sha256"]}, (_root(tmp_path) / "build").as_uri())
    assert arrowrefs._LOADED == {}
    artifacts.load_inputs(ns, {"df": built["sha256"]}, _root(tmp_path) / "build")
    saved = artifacts.save(ns["df"], "df", (_root(tmp_path) / "features").as_uri())
    assert "references" not in saved


@pytest.mark.parametrize("step", ["../../etc", "build/../build", ".", "", 5])
def test_a_reference_that_names_no_step_is_refused(tmp_path, monkeypatch, step):
    """A file whose references name a folder no step could have is not followed, whatever
    its hash (a folder the run store never vouched for)."""
    manifest = _forged_references(tmp_path, lambda references: references[0].update(step=step))
    with pytest.raises(ArtifactError, match=r"refers to a frame named .*which no step makes"):
        _fresh_load(monkeypatch, _root(tmp_path) / "features", manifest["sha256"])


def test_a_pipeline_hands_a_big_frame_on_by_reference_and_a_cached_rerun_reads_it(tmp_path):
    """A real run: `features` extends the frame `build` made and saves only the new column;
    `fit` reads the whole frame. A re-run with another `scale` reuses `build` and `features`
    from the cache (their files placed in the new run's folder) and runs `fit` alone, whose
    frame's reference now resolves to the new run's copy of `build`'s file."""
    import re

    from conftest import run_cli, write_notebook

    nb = write_notebook(
        tmp_path / "big.ipynb", "%%mlops params\nscale = 1.0",
        "%%mlops step build\nimport numpy as np\nimport pandas as pd\n"
        "rng = np.random.default_rng(3)\n"
        "df = pd.DataFrame({c: rng.normal(size=1_000_000) for c in 'abc'})",
        "%%mlops step features\ndf['s'] = df['a'] + df['b']",
        "%%mlops step fit\ntotal = float((df['s'] - df['c']).sum() * scale)",
        "%%mlops metrics\nresult = total")
    assert run_cli("export", str(nb)).returncode == 0
    pipeline = tmp_path / "big_pipeline"
    rng = np.random.default_rng(3)
    a, b, c = (rng.normal(size=1_000_000) for _ in "abc")
    expected = float(((a + b) - c).sum())

    def run(*args):
        done = run_cli("run", str(pipeline), *args)
        assert done.returncode == 0, done.stdout + done.stderr
        run_id = re.search(r"^Run (\S+) succeeded", done.stdout, re.M).group(1)
        folder = pipeline / "runs" / run_id
        return json.loads((folder / "run.json").read_text()), folder

    first, folder = run()
    features = json.loads((folder / "artifacts" / "features" / "df.json").read_text())
    assert [(r["step"], r["columns"]) for r in features["references"]] == [
        ("build", ["a", "b", "c"])]
    assert features["bytes"] < 8_000_000 + 1_000_000  # the new column, not the 32 MB frame
    assert first["steps"][-1]["outputs"]["result"]["value"] == pytest.approx(expected)

    second, folder = run("-p", "scale=2.0")
    steps = {s["name"]: s for s in second["steps"]}
    assert steps["build"]["cached_from"] and steps["features"]["cached_from"]
    assert not steps["fit"].get("cached_from")
    assert (folder / "artifacts" / "build" / "df.arrow").is_file()
    assert second["steps"][-1]["outputs"]["result"]["value"] == pytest.approx(2 * expected)


def test_columns_are_the_same_only_when_their_bytes_are():
    import pyarrow as pa

    values = np.random.default_rng(5).normal(size=100_003)
    one = pa.chunked_array([values])
    # chunked differently, and from an offset into a bigger array
    split = pa.chunked_array([pa.array(values[:40_000]),
                              pa.array(np.concatenate([[9.0], values[40_000:]])).slice(1)])
    assert arrowrefs.same_bytes(one, split) and arrowrefs.same_bytes(split, one)
    zeros, signed = np.zeros(8), np.zeros(8)
    signed[3] = -0.0
    assert not arrowrefs.same_bytes(pa.chunked_array([zeros]), pa.chunked_array([signed]))
    quiet = np.array([np.nan] * 8)
    payload = quiet.copy()
    payload.view(np.uint64)[2] ^= 1  # another NaN
    assert not arrowrefs.same_bytes(pa.chunked_array([quiet]), pa.chunked_array([payload]))
    assert not arrowrefs.same_bytes(pa.chunked_array([np.arange(8)]),
                                     pa.chunked_array([np.arange(8).astype("float64")]))
    assert not arrowrefs.same_bytes(pa.chunked_array([pa.array([1.0, None])]),
                                     pa.chunked_array([pa.array([1.0, None])]))
    assert not arrowrefs.same_bytes(pa.chunked_array([["a", "b"]]),
                                     pa.chunked_array([["a", "b"]]))


def test_nothing_is_referenced_outside_a_run_of_the_local_runner(tmp_path):
    """A task of Airflow or Kubeflow sees only its producers' folders (no run.json beside
    its artifacts): a reference there could not be read by the step after."""
    built = artifacts.save(_big(), "df", tmp_path / "artifacts" / "build")
    ns: dict = {}
    artifacts.load_inputs(ns, {"df": built["sha256"]}, tmp_path / "artifacts" / "build")
    saved = artifacts.save(ns["df"], "df", tmp_path / "artifacts" / "features")
    assert "references" not in saved and saved["format"] == "arrow-parts"


def test_a_manifest_that_calls_a_referring_file_plain_arrow_is_refused(tmp_path, monkeypatch):
    """The manifest is not hashed: read as one Arrow file, a file that refers to others
    would give its own columns alone (here one plain part, which parses as a whole)."""
    root = _root(tmp_path)
    rng = np.random.default_rng(2)
    built = artifacts.save(pd.DataFrame(rng.normal(size=(600_000, 4)), columns=list("abcd")),
                           "df", root / "build")
    ns: dict = {}
    artifacts.load_inputs(ns, {"df": built["sha256"]}, root / "build")
    frame = ns["df"]
    frame["e"] = rng.normal(size=len(frame))
    saved = artifacts.save(frame, "df", _root(tmp_path) / "features")
    assert len(saved["parts"]) == 1 and _refs(saved) == [("build", "df", list("abcd"))]
    (_root(tmp_path) / "features" / "df.json").write_text(json.dumps({**saved,
                                                                     "format": "arrow"}))
    with pytest.raises(ArtifactError, match=r"could not be loaded as an Arrow file: it refers to "
                       r"other files"):
        _fresh_load(monkeypatch, _root(tmp_path) / "features", saved["sha256"])


def test_a_frame_is_compared_with_the_file_that_was_hashed_not_the_name(tmp_path, monkeypatch):
    """Swapping the loaded file for one whose column already equals the step's result, then
    swapping it back, must not make the saved frame refer to the swapped-in bytes."""
    root = _root(tmp_path)
    frame = _extended(root)
    frame["noise"] = frame["noise"] * 3
    swapped = _big()
    swapped["noise"] = frame["noise"].to_numpy()
    source = root / "build" / "df.arrow"
    original = source.read_bytes()
    monkeypatch.setattr(arrowrefs, "_LOADED", dict(arrowrefs._LOADED))  # kept as loaded
    artifacts.save(swapped, "df", tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "df.arrow").replace(source)
    saved = artifacts.save(frame, "df", root / "features")
    source.write_bytes(original)
    assert "noise" not in [c for _, _, columns in _refs(saved) for c in columns]
    back = _fresh_load(monkeypatch, root / "features", saved["sha256"])
    pd.testing.assert_frame_equal(back, frame, check_column_type=True, check_index_type=True)


def test_a_descriptor_reads_the_file_it_was_opened_on_after_a_rename(tmp_path):
    from jupyter_mlops.runtime._files import open_once, sha256_fd, through

    path = tmp_path / "f"
    path.write_bytes(b"first")
    fd = open_once(path)
    try:
        (tmp_path / "g").write_bytes(b"other")
        (tmp_path / "g").replace(path)
        assert sha256_fd(fd) == hashlib.sha256(b"first").hexdigest()
        with open(through(fd, path), "rb") as handle:
            assert handle.read() == b"first"
    finally:
        import os

        os.close(fd)


def test_a_step_whose_frame_refers_to_a_renamed_producer_is_run_again(tmp_path):
    """Cache keys name no producer: after `build` is renamed `make`, `features` has the same
    key, but its frame refers to `build`'s file, which the new run has not. It runs again
    instead of being reused, and `fit` reads its frame."""
    import re

    from conftest import run_cli, write_notebook

    cells = ["%%mlops step build\nimport numpy as np\nimport pandas as pd\n"
             "rng = np.random.default_rng(4)\n"
             "df = pd.DataFrame({c: rng.normal(size=1_000_000) for c in 'abc'})",
             "%%mlops step features\ndf['s'] = df['a'] + df['b']",
             "%%mlops step fit\ntotal = float(df['s'].sum())", "%%mlops metrics\nresult = total"]
    nb = write_notebook(tmp_path / "big.ipynb", *cells)
    pipeline = tmp_path / "big_pipeline"
    results = []
    for _ in range(2):
        assert run_cli("export", str(nb)).returncode == 0
        done = run_cli("run", str(pipeline))
        assert done.returncode == 0, done.stdout + done.stderr
        run_id = re.search(r"^Run (\S+) succeeded", done.stdout, re.M).group(1)
        results.append(json.loads((pipeline / "runs" / run_id / "run.json").read_text()))
        nb = write_notebook(tmp_path / "big.ipynb",
                            cells[0].replace("step build", "step make"), *cells[1:])
    first = {s["name"]: s for s in results[0]["steps"]}
    assert first["features"]["outputs"]["df"]["references"][0]["step"] == "build"
    steps = {s["name"]: s for s in results[1]["steps"]}
    assert steps["make"]["cached_from"]  # the same code and outputs as `build`
    assert not steps["features"].get("cached_from")
    assert steps["fit"]["outputs"]["result"]["value"] == pytest.approx(
        results[0]["steps"][-1]["outputs"]["result"]["value"])


def test_every_descriptor_is_closed_when_a_referenced_file_cannot_be_hashed(tmp_path):
    """A hash that fails (an unreadable file) does not leave the other files open."""
    from concurrent.futures import Future

    fds = [os.open(tmp_path, os.O_RDONLY) for _ in range(3)]
    failed: Future = Future()
    failed.set_exception(OSError(5, "Input/output error"))
    done: Future = Future()
    done.set_result("abc")
    pending = [[failed, "abc", "first", fds[0]], [done, "abc", "second", fds[1]],
               [done, "xyz", "third", fds[2]]]
    with pytest.raises(OSError, match="Input/output error"):
        arrowrefs.verify(pending)
    assert pending == []
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_a_column_arrow_cannot_take_back_is_written_and_the_load_goes_on(tmp_path,
                                                                         monkeypatch):
    """Whether the loaded frame holds a column as Arrow memory is only worth knowing: a
    column that cannot be made a table of again (here every one, as an extension type of
    another library might refuse) leaves the frame loaded and nothing kept."""
    root = _root(tmp_path)
    built = artifacts.save(_big(), "df", root / "build")

    def refuse(*_args, **_kwargs):
        raise NotImplementedError("no conversion for this type")

    monkeypatch.setattr(pd.Series, "to_frame", refuse)
    frame = artifacts.load("df", root / "build", sha256=built["sha256"])
    assert len(frame) == 1_200_000
    assert arrowrefs._LOADED[(root / "build" / "df.arrow").absolute()]["packed"] == {}


@pytest.mark.parametrize("split", [False, True], ids=["one plain file", "parts"])
def test_a_file_written_in_place_after_its_load_does_not_change_the_frame(
        tmp_path, monkeypatch, split):
    """A loaded frame holds its own copy of the file's bytes: a plain (uncompressed) column,
    Arrow-backed, written over in place once its hash was checked (by whoever can write
    the artifacts folder), stays as it was loaded."""
    monkeypatch.setattr(arrowfile, "SPLIT_FROM", 0)  # as for a big frame
    # every column plain (one file), or "code" compressed and the others plain (parts)
    monkeypatch.setattr(arrowfile, "_saving",
                        lambda table, name: 1.0 if split and name == "code" else 0.0)
    frame = pd.DataFrame({"token": pd.array(["APPROVED_X91", "REJECTED_Q07"],
                                            dtype="string[pyarrow]"),
                          "amount": pd.array([1.0, 2.5], dtype="float64[pyarrow]"),
                          "code": [7, 8]})
    manifest = artifacts.save(frame, "df", tmp_path)
    assert manifest["format"] == ("arrow-parts" if split else "arrow")
    got = artifacts.load("df", tmp_path, sha256=manifest["sha256"])
    path = tmp_path / manifest["file"]
    data = path.read_bytes()
    at = data.index(b"REJECTED_Q07")
    assert data.count(np.float64(2.5).tobytes()) == 1
    with open(path, "r+b") as handle:  # the same file, not one renamed over it
        handle.seek(at)
        handle.write(b"APPROVED_Q07")
        handle.seek(data.index(np.float64(2.5).tobytes()))
        handle.write(np.float64(99.0).tobytes())
    assert list(got["token"]) == ["APPROVED_X91", "REJECTED_Q07"]
    assert list(got["amount"]) == [1.0, 2.5]
    with pytest.raises(ArtifactError, match="changed after it was written"):
        artifacts.load("df", tmp_path, sha256=manifest["sha256"])


def test_a_plain_string_column_does_not_keep_its_whole_part_in_memory(tmp_path, monkeypatch):
    """pandas keeps a string column as the Arrow memory it was read into: a plain one is
    copied out of the part it was read with, which then goes (the numbers beside it, which
    pandas copies into its own blocks, are not held twice)."""
    monkeypatch.setattr(arrowfile, "SPLIT_FROM", 0)
    monkeypatch.setattr(arrowfile, "_saving", lambda table, name: 0.0)  # all plain
    rows = 1_000_000
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.random(rows), "b": rng.random(rows),
                          "token": pd.Series([f"t{i % 97}" for i in range(rows)],
                                             dtype=pd.StringDtype("pyarrow", np.nan))})
    back, held, own = _loaded_and_held(frame, tmp_path)
    del frame
    assert held < 1.2 * own + 1_000_000, (held, own)  # not the part besides
    assert list(back["token"][:2]) == ["t0", "t1"]


def _loaded_and_held(frame: pd.DataFrame, folder) -> tuple[pd.DataFrame, int, int]:
    """``frame`` saved and loaded back; the Arrow memory the loaded frame holds (pyarrow
    makes pandas' blocks too), and its columns' own size."""
    manifest = artifacts.save(frame, "df", folder)
    back, held = _held_by(folder, manifest["sha256"])
    return back, held, int(back.memory_usage(index=False, deep=False).sum())


def _held_by(folder, sha256: str) -> tuple[pd.DataFrame, int]:
    """The frame `df` in ``folder`` loaded, and the Arrow memory it holds."""
    import pyarrow as pa

    gc.collect()
    before = pa.total_allocated_bytes()
    back = artifacts.load("df", folder, sha256=sha256)
    gc.collect()
    return back, pa.total_allocated_bytes() - before


@pytest.mark.parametrize("dtype", ["double[pyarrow]", "dictionary"])
def test_an_arrow_dtype_column_does_not_keep_its_whole_part_in_memory(tmp_path, monkeypatch,
                                                                      dtype):
    """A column of an ``ArrowDtype`` (``double[pyarrow]``; a dictionary's, whose values are
    no buffer of its chunks) is kept by pandas as the Arrow memory it was read into, as
    strings are: it is copied out of its part too, and comes back with its dtype and
    values."""
    import pyarrow as pa

    monkeypatch.setattr(arrowfile, "SPLIT_FROM", 0)
    monkeypatch.setattr(arrowfile, "_saving", lambda table, name: 0.0)  # all plain
    rows = 1_000_000
    rng = np.random.default_rng(4)
    column = (pd.array(rng.random(rows), dtype=dtype) if dtype != "dictionary" else
              pd.array([f"city {i % 5000}" for i in range(rows)],
                       dtype=pd.ArrowDtype(pa.dictionary(pa.int32(), pa.string()))))
    frame = pd.DataFrame({"a": rng.random(rows), "b": rng.random(rows), "x": column})
    expected = frame["x"].iloc[:3].tolist()
    back, held, own = _loaded_and_held(frame, tmp_path)
    assert held < 1.2 * own + 1_000_000, (held, own)  # not the 20-24 MB part besides
    assert back["x"].dtype == frame["x"].dtype and back["x"].iloc[:3].tolist() == expected


def test_an_arrow_dtype_index_does_not_keep_its_whole_part_in_memory(tmp_path, monkeypatch):
    """An index level of an ``ArrowDtype`` comes back as one, copied out of its part as a
    column of one is: the index alone, kept, holds its own size."""
    import pyarrow as pa

    monkeypatch.setattr(arrowfile, "SPLIT_FROM", 0)
    monkeypatch.setattr(arrowfile, "_saving", lambda table, name: 0.0)  # all plain
    rows = 1_000_000
    rng = np.random.default_rng(6)
    index = pd.Index(pd.array([f"k{i % 5000}" for i in range(rows)],
                              dtype=pd.ArrowDtype(pa.dictionary(pa.int32(), pa.string()))))
    frame = pd.DataFrame({"a": rng.random(rows), "b": rng.random(rows)}, index=index)
    manifest = artifacts.save(frame, "df", tmp_path)
    del frame
    gc.collect()
    before = pa.total_allocated_bytes()
    kept = artifacts.load("df", tmp_path, sha256=manifest["sha256"]).index
    gc.collect()
    held = pa.total_allocated_bytes() - before
    assert kept.dtype == index.dtype and kept[:2].tolist() == ["k0", "k1"]
    assert held < 1.2 * kept.memory_usage() + 1_000_000, held  # not the 20 MB part


def test_a_column_made_an_arrow_dtype_and_referenced_does_not_keep_the_siblings_part(
        tmp_path, monkeypatch):
    """A step turns a plain float column into ``double[pyarrow]`` with the same values: its
    frame refers to the column in the step before's file, whose metadata says float64. The
    frame being loaded is the one that says ArrowDtype: the column is copied out of the
    sibling's part all the same."""
    monkeypatch.setattr(arrowfile, "SPLIT_FROM", 0)
    monkeypatch.setattr(arrowfile, "_saving", lambda table, name: 0.0)  # all plain
    rows = 1_000_000
    rng = np.random.default_rng(5)
    root = _root(tmp_path)
    frame = pd.DataFrame({"a": rng.random(rows), "b": rng.random(rows), "x": rng.random(rows)})
    built = artifacts.save(frame, "df", root / "build")
    ns: dict = {}
    artifacts.load_inputs(ns, {"df": built["sha256"]}, root / "build")
    typed = ns.pop("df")[["x"]].astype("double[pyarrow]")
    saved = artifacts.save(typed, "df", root / "features")
    assert [r["columns"] for r in saved["references"]] == [["x"]]  # taken from build's file
    del frame, typed
    arrowrefs._LOADED.clear()  # what this process loaded before holds nothing then
    back, held = _held_by(root / "features", saved["sha256"])
    assert held < 1.2 * 8_000_000 + 1_000_000, held  # not build's 24 MB part
    assert str(back["x"].dtype) == "double[pyarrow]"
