"""The kernel runtime on its own: the wheel's files, what they import, the Python they run
on, frames without pyarrow, and export saying when a kernel cannot save a model."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import run_cli, write_notebook

from jupyter_mlops.deploy.runtime_wheel import (
    DIST,
    KERNEL_FILES,
    build_runtime_wheel,
    wheel_name,
)

PACKAGE = Path(__file__).resolve().parents[1] / "jupyter_mlops"
#: What a step's kernel must never need (the authoring tool's own dependencies).
AUTHORING = ("jupyter_server", "tornado", "ipywidgets", "matplotlib", "prometheus_client",
             "nbformat", "nbconvert", "nbclient", "papermill", "psutil", "fastjsonschema")


def test_the_wheel_holds_the_kernel_files_and_a_valid_record(tmp_path: Path) -> None:
    wheel = build_runtime_wheel(tmp_path)
    assert wheel.name == wheel_name()
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        package = sorted(n.removeprefix("jupyter_mlops/") for n in names
                         if n.startswith("jupyter_mlops/"))
        assert package == sorted(KERNEL_FILES)
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(f"{info}/METADATA").decode()
        assert f"Name: {DIST}" in metadata and "Requires-Python: >=3.9" in metadata
        assert "Requires-Dist: pandas>=1.3" in metadata
        assert 'Requires-Dist: pyarrow>=7; extra == "arrow"' in metadata
        assert not any(f"Requires-Dist: {m}" in metadata for m in AUTHORING)
        # every file's hash and size, as pip checks them
        for line in archive.read(f"{info}/RECORD").decode().splitlines():
            name, digest, size = line.split(",")
            if name.endswith("RECORD"):
                continue
            data = archive.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == f"sha256={expected.decode()}" and int(size) == len(data), name
        for relative in KERNEL_FILES:
            if (PACKAGE / relative).is_file():
                assert archive.read(f"jupyter_mlops/{relative}") == (
                    PACKAGE / relative).read_bytes()
    again = build_runtime_wheel(tmp_path / "again")
    assert again.read_bytes() == wheel.read_bytes()  # same installation, same bytes


def test_the_kernel_files_import_nothing_of_the_authoring_tool(tmp_path: Path) -> None:
    """Only the wheel's files on the path (the installed package hidden): importing what a
    step kernel runs, and saving and checking data there, pulls in none of the authoring
    tool's modules or dependencies."""
    with zipfile.ZipFile(build_runtime_wheel(tmp_path)) as archive:
        archive.extractall(tmp_path / "site")
    code = f"""
import sys
sys.path.insert(0, {str(tmp_path / 'site')!r})
import jupyter_mlops
assert jupyter_mlops.__file__.startswith({str(tmp_path / 'site')!r}), jupyter_mlops.__file__
import jupyter_mlops.runtime.artifacts, jupyter_mlops.runtime.checks, jupyter_mlops.ipython.magics
import jupyter_mlops.execution.zygote_main
import pandas as pd
from jupyter_mlops.runtime.artifacts import save, load
saved = save(pd.DataFrame({{'a': [1, 2]}}), 'df', {str(tmp_path / 'out')!r})
load('df', {str(tmp_path / 'out')!r}, sha256=saved['sha256'])
from jupyter_mlops.runtime.profile import profile_data
profile_data(pd.DataFrame({{'a': [1.0, 2.0]}}), 'df')
bad = sorted(m for m in sys.modules if m.split('.')[0] in {AUTHORING!r})
print(bad)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_the_kernel_files_run_on_python_3_9() -> None:
    """vermin reads each file for the oldest Python its syntax and library calls need."""
    files = [str(PACKAGE / f) for f in KERNEL_FILES if (PACKAGE / f).is_file()]
    done = subprocess.run([str(Path(sys.executable).parent / "vermin"), "--target=3.9-",
                           "--violations", "--no-tips", "--eval-annotations", *files],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


#: A frame of every column kind JSON has to carry, built the same way in both processes.
_FRAME = """
import numpy as np, pandas as pd
frame = pd.DataFrame({
    "i8": np.array([1, 2, 3], dtype="int8"), "f32": np.array([0.5, 1.5, 2.5], "float32"),
    "f": [1.0, float("nan"), 3.25], "b": [True, False, True], "s": ["a", "b", None],
    "c": pd.Categorical(["x", "y", "x"]),
    "t": pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC"),
}, index=pd.Index([10, 20, 30], name="id"))
"""
_NO_PYARROW = """
import sys
sys.modules["pyarrow"] = None  # this kernel's environment has no pyarrow
import json
from jupyter_mlops.runtime.artifacts import load, save
""" + _FRAME + """
folder = sys.argv[1]
saved = save(frame, "frame", folder)
series = save(frame["f"], "series", folder)
numbers = save(pd.DataFrame([[1, 2]], columns=[0, 1]), "numbers", folder)
pd.testing.assert_frame_equal(load("frame", folder, sha256=saved["sha256"]), frame)
pd.testing.assert_series_equal(load("series", folder, sha256=series["sha256"]), frame["f"])
pd.testing.assert_frame_equal(load("numbers", folder, sha256=numbers["sha256"]),
                              pd.DataFrame([[1, 2]], columns=[0, 1]))
print(json.dumps([saved["format"], saved["file"]]))
"""


def test_frames_go_as_json_tables_where_pyarrow_is_missing(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _NO_PYARROW, str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == ["json-table", "frame.table.json"]
    # a kernel with pyarrow reads them too (the run's checks, serve, monitor)
    import pandas as pd

    from jupyter_mlops.runtime.artifacts import load, read_manifest

    made: dict = {}
    exec(_FRAME, made)
    manifest = read_manifest("frame", tmp_path)
    pd.testing.assert_frame_equal(load("frame", tmp_path, sha256=manifest["sha256"]),
                                  made["frame"])


def test_an_arrow_frame_in_a_kernel_without_pyarrow_is_one_line(tmp_path: Path) -> None:
    import pandas as pd

    from jupyter_mlops.runtime.artifacts import save

    saved = save(pd.DataFrame({"a": [1]}), "frame", tmp_path)
    code = ("import sys; sys.modules['pyarrow'] = None\n"
            "from jupyter_mlops.runtime.artifacts import load\n"
            f"load('frame', {str(tmp_path)!r}, sha256={saved['sha256']!r})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "it is Arrow and this kernel's environment has no pyarrow" in last
    assert "jupyter mlops kernel PYTHON" in last


def _kernel(root: Path, name: str, abilities: dict | None, argv: list[str] | None = None
            ) -> dict[str, str]:
    """A kernelspec ``name`` (this interpreter) under ``root``; the environment that sees it."""
    folder = root / "kernels" / name
    folder.mkdir(parents=True)
    spec = {"argv": argv or [sys.executable, "-m", "ipykernel_launcher", "-f",
                             "{connection_file}"],
            "display_name": name, "language": "python", "metadata": {}}
    if abilities is not None:
        spec["metadata"]["jupyter_mlops"] = abilities
    (folder / "kernel.json").write_text(json.dumps(spec))
    return {"JUPYTER_PATH": str(root)}


def test_export_says_when_the_kernel_cannot_save_the_model_without_pickle(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in _kernel(tmp_path / "jupyter", "no-skops", {
            "frames": "arrow", "models": "pickle",
            "why": {"models": "skops is not installed"}}).items():
        monkeypatch.setenv(key, value)
    notebook = write_notebook(
        tmp_path / "nb.ipynb",
        "%%mlops step fit\nfrom sklearn.linear_model import LinearRegression\n"
        "model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])",
        "%%mlops model model\nmodel = model",
        "%%mlops step use\nprint(model.coef_)")
    done = run_cli("export", str(notebook), "--kernel", "no-skops")
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = [x for x in done.stderr.splitlines() if "no-skops" in x]
    assert "cannot be saved in kernel `no-skops` without pickle (skops is not installed)" in line
    assert "--allow-pickle" in line
    assert not (tmp_path / "nb_pipeline").exists()
    done = run_cli("export", str(notebook), "--kernel", "no-skops", "--allow-pickle")
    assert done.returncode == 0, done.stderr


@pytest.mark.kernel
def test_run_verbose_says_how_each_kernel_was_got(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The default kernel is forked; a kernel started as `python -m ipykernel` (not its
    launcher) cannot be, and `--verbose` says so, once, with the reason."""
    env = _kernel(tmp_path / "jupyter", "plain-ipykernel", None,
                  [sys.executable, "-m", "ipykernel", "-f", "{connection_file}"])
    notebook = write_notebook(tmp_path / "nb.ipynb", "%%mlops step a\nx = 1",
                              "%%mlops step b\ny = x + 1")
    assert run_cli("export", str(notebook)).returncode == 0
    pipeline = str(tmp_path / "nb_pipeline")
    forked = run_cli("run", pipeline, "-v")
    assert forked.returncode == 0, forked.stderr
    assert "step a: kernel forked from a zygote" in forked.stderr
    quiet = run_cli("run", pipeline, "--force")
    assert "kernel forked" not in quiet.stderr + quiet.stdout
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    fresh = run_cli("run", pipeline, "--force", "--kernel", "plain-ipykernel", "--verbose")
    assert fresh.returncode == 0, fresh.stderr
    lines = [x for x in fresh.stderr.splitlines() if "fresh kernel" in x]
    assert len(lines) == 1, fresh.stderr
    assert "kernel `plain-ipykernel`" in lines[0]
    assert "not started as `python -m ipykernel_launcher`" in lines[0]


def test_the_hash_taken_while_writing_is_the_files(tmp_path: Path) -> None:
    """Each kind's manifest hash, taken as the file is written (read back where the writer
    seeks, as a zip archive's does), is the sha256 of the file's bytes."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    from jupyter_mlops.runtime._files import write_with
    from jupyter_mlops.runtime.artifacts import save

    values = {"frame": pd.DataFrame({"a": [1.5, 2.5], "s": ["x", "y"]}),
              "series": pd.Series([1, 2], name="n"), "array": np.arange(6.0).reshape(2, 3),
              "model": LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]),
              "number": 3.5, "obj": {1, 2}}
    for name, value in values.items():
        manifest = save(value, name, tmp_path, allow_pickle=True, trusted=None)
        data = (tmp_path / manifest["file"]).read_bytes()
        assert manifest["sha256"] == hashlib.sha256(data).hexdigest(), name

    def seeks_back(handle: object) -> None:
        handle.write(b"header--body")  # type: ignore[attr-defined]
        handle.seek(0)  # type: ignore[attr-defined]
        handle.write(b"HEADER")  # type: ignore[attr-defined]

    assert write_with(tmp_path / "zipish", seeks_back) is None
    assert (tmp_path / "zipish").read_bytes() == b"HEADER--body"
    assert write_with(tmp_path / "plain", lambda h: h.write(b"abc")) == hashlib.sha256(
        b"abc").hexdigest()


def test_parquet_frames_of_earlier_runs_still_load(tmp_path: Path) -> None:
    """Runs before frames went as Arrow files wrote Parquet, and their manifests named no
    format: the store's outputs of those runs (the cache reuses them) still load."""
    import pandas as pd

    from jupyter_mlops.runtime._files import sha256_file
    from jupyter_mlops.runtime.artifacts import load

    frame = pd.DataFrame({"a": [1.5, None], "c": pd.Categorical(["x", "y"])},
                         index=pd.Index([3, 4], name="id"))
    frame.to_parquet(tmp_path / "old.parquet", engine="pyarrow")
    digest = sha256_file(tmp_path / "old.parquet")
    (tmp_path / "old.json").write_text(json.dumps({
        "name": "old", "kind": "parquet", "file": "old.parquet", "sha256": digest,
        "rows": 2, "columns": ["a", "c"]}))
    pd.testing.assert_frame_equal(load("old", tmp_path, sha256=digest), frame)
