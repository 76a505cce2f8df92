"""Artifacts at fsspec URLs: real fsspec filesystems (``file://`` on disk, and ``memory://``,
which lives in this process), the same manifests and sha256 checks as local folders."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from jupyter_mlops import artifacts
from jupyter_mlops.errors import ArtifactError
from jupyter_mlops.runtime.remote import is_url, join, output_hashes, staged_run


@pytest.fixture
def memory_url(request: pytest.FixtureRequest) -> str:
    """A fresh folder of fsspec's in-memory filesystem, removed afterwards."""
    fs = fsspec.filesystem("memory")
    root = f"/mlops-test/{request.node.name}"
    yield f"memory://{root}"
    if fs.exists(root):
        fs.rm(root, recursive=True)


def _everything(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_is_url() -> None:
    assert is_url("s3://bucket/runs") and is_url("file:///tmp/x")
    assert is_url("simplecache::s3://bucket/x")
    assert not is_url("/tmp/x") and not is_url("runs/x") and not is_url(Path("/tmp/x"))
    assert join("s3://b/runs/", "r1", "step") == "s3://b/runs/r1/step"


def test_values_round_trip_through_a_file_url(tmp_path: Path) -> None:
    url = (tmp_path / "shared" / "make").as_uri()
    frame = pd.DataFrame({"a": [1.5, 2.0], "b": ["x", "y"]})
    model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    saved = artifacts.save_outputs(
        {"frame": frame, "model": model, "n": (1, 2.5)},
        [{"name": "frame"}, {"name": "model", "role": "model"}, {"name": "n"}], url)
    shared = tmp_path / "shared" / "make"
    # the same files a local folder holds, and nothing left under a temporary name
    assert _everything(shared) == ["frame.arrow", "frame.json", "model.json", "model.skops",
                                   "n.data.json", "n.json"]
    assert json.loads((shared / "model.json").read_text())["sha256"] == saved["model"]["sha256"]
    ns: dict = {}
    artifacts.load_inputs(ns, {"frame": saved["frame"]["sha256"], "model": "", "n": ""}, url)
    pd.testing.assert_frame_equal(ns["frame"], frame)
    assert ns["n"] == (1, 2.5)
    assert ns["model"].predict([[3.0]]).tolist() == [1]
    assert artifacts.read_manifest("frame", url)["rows"] == 2
    assert output_hashes(shared) == {n: m["sha256"] for n, m in saved.items()}


def test_values_round_trip_through_memory(memory_url: str) -> None:
    manifest = artifacts.save(np.arange(6).reshape(2, 3), "grid", memory_url)
    assert manifest["kind"] == "npy"
    fs = fsspec.filesystem("memory")
    root = memory_url.removeprefix("memory://")
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(root, detail=False)) == [
        "grid.json", "grid.npy"]
    loaded = artifacts.load("grid", memory_url, sha256=manifest["sha256"])
    assert loaded.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_a_changed_file_at_a_url_is_refused_naming_the_url(tmp_path: Path) -> None:
    url = (tmp_path / "shared").as_uri()
    artifacts.save([1, 2, 3], "values", url)
    (tmp_path / "shared" / "values.data.json").write_text("[1, 2, 4]")
    with pytest.raises(ArtifactError, match="changed after it was written") as err:
        artifacts.load("values", url)
    assert url in str(err.value) and "\n" not in str(err.value)


def test_the_pipeline_hash_is_checked_at_a_url(memory_url: str) -> None:
    artifacts.save({"k": 1}, "d", memory_url)
    artifacts.save({"k": 2}, "d", memory_url)  # saved again: a different file
    with pytest.raises(ArtifactError, match="the pipeline expects") as err:
        artifacts.load("d", memory_url, sha256="0" * 64)
    assert memory_url in str(err.value)
    assert artifacts.load("d", memory_url) == {"k": 2}


def test_a_missing_artifact_at_a_url(tmp_path: Path) -> None:
    url = (tmp_path / "nothing").as_uri()
    with pytest.raises(ArtifactError, match=f"no artifact `x` in {url}: re-run"):
        artifacts.load("x", url)


def test_an_unsupported_value_writes_nothing_at_a_url(tmp_path: Path) -> None:
    url = (tmp_path / "shared").as_uri()
    with pytest.raises(ArtifactError, match="cannot pass between steps"):
        artifacts.save_outputs({"ok": 1, "bad": object()},
                               [{"name": "ok"}, {"name": "bad"}], url)
    assert not (tmp_path / "shared").exists()


def test_an_unknown_protocol_is_one_line() -> None:
    with pytest.raises(ArtifactError, match="cannot open the artifacts location nope://x") as err:
        artifacts.save(1, "n", "nope://x")
    assert "\n" not in str(err.value)


def test_a_staged_run_copies_inputs_down_and_the_step_up(tmp_path: Path) -> None:
    location = (tmp_path / "runs" / "r1").as_uri()
    made = artifacts.save_outputs({"base": [1, 2]}, [{"name": "base"}], join(location, "make"))
    hashes = {"base": made["base"]["sha256"]}
    with staged_run(location, "double", {"base": "make"}, hashes) as local:
        assert local != tmp_path and _everything(local) == ["make/base.data.json",
                                                            "make/base.json"]
        ns: dict = {}
        artifacts.load_inputs(ns, hashes, local / "make")
        artifacts.save_outputs({"twice": [b * 2 for b in ns["base"]]}, [{"name": "twice"}],
                               local / "double")
        (local / "double" / "02_double.ipynb").write_text("{}")
    assert artifacts.load("twice", join(location, "double")) == [2, 4]
    assert (tmp_path / "runs" / "r1" / "double" / "02_double.ipynb").is_file()
    assert not local.exists()  # the local copy is gone


def test_a_failed_staged_step_still_uploads_what_it_left(tmp_path: Path) -> None:
    location = (tmp_path / "runs" / "r1").as_uri()
    with pytest.raises(ZeroDivisionError), staged_run(location, "broken", {}, {}) as local:
        (local / "broken").mkdir()
        (local / "broken" / "01_broken.ipynb").write_text("{}")
        1 / 0  # noqa: B018 - the step's failure
    assert (tmp_path / "runs" / "r1" / "broken" / "01_broken.ipynb").is_file()


def test_a_staged_input_that_differs_from_its_producer_fails_first(tmp_path: Path) -> None:
    location = (tmp_path / "runs" / "r1").as_uri()
    artifacts.save([1, 2], "base", join(location, "make"))
    with pytest.raises(ArtifactError, match="the pipeline expects sha256 aaaaaaaaaaaa") as err, \
            staged_run(location, "double", {"base": "make"}, {"base": "a" * 64}):
        pytest.fail("the step must not start")
    assert join(location, "make") in str(err.value)


def test_a_local_location_is_used_in_place(tmp_path: Path) -> None:
    with staged_run(str(tmp_path), "s", {"x": "make"}, {}) as local:
        assert local == tmp_path


@pytest.mark.kernel
def test_step_notebooks_pass_artifacts_through_a_url(tmp_path: Path) -> None:
    """Run by hand with papermill, step notebooks save and load at the URL they are given."""
    import subprocess
    import sys

    from conftest import write_notebook

    from jupyter_mlops.pipeline.export import export

    write_notebook(tmp_path / "u.ipynb", "%%mlops step make\nimport numpy as np\n"
                   "base = np.arange(4)", "%%mlops step total\nsum_ = int(base.sum())",
                   "%%mlops step show\nprint(sum_)")
    folder = export(tmp_path / "u.ipynb").folder
    url = (tmp_path / "shared").as_uri()
    for notebook in ("01_make.ipynb", "02_total.ipynb"):
        done = subprocess.run([sys.executable, "-m", "papermill", str(folder / "steps" / notebook),
                               str(tmp_path / notebook), "-r", "mlops_artifacts", url,
                               "--cwd", str(tmp_path), "--no-progress-bar"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    assert artifacts.load("sum_", f"{url}/total") == 6
    assert (tmp_path / "shared" / "make" / "base.npy").is_file()
    assert not (tmp_path / "file:").exists()


@pytest.mark.kernel
def test_checks_of_a_step_run_by_hand_land_at_the_url(tmp_path: Path) -> None:
    """The metric check's record goes to checks.json at the URL, not to a stray folder."""
    import subprocess
    import sys

    from conftest import write_notebook

    from jupyter_mlops.pipeline.export import export

    write_notebook(tmp_path / "m.ipynb", "%load_ext jupyter_mlops",
                   "%%mlops step make\nscore = 0.9", "%%mlops metrics score --min score=0.5")
    folder = export(tmp_path / "m.ipynb").folder
    url = (tmp_path / "shared").as_uri()
    step = folder / "steps" / "01_make.ipynb"
    done = subprocess.run([sys.executable, "-m", "papermill", str(step), str(tmp_path / "o.ipynb"),
                           "-r", "mlops_artifacts", url,
                           "-r", "mlops_pipeline", str(folder), "--cwd", str(tmp_path),
                           "--no-progress-bar"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # (no threshold was captured, so the list is empty; where it lands is the point)
    assert json.loads((tmp_path / "shared" / "make" / "checks.json").read_text()) == []
    assert not (tmp_path / "file:").exists()
