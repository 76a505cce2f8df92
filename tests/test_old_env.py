"""A notebook written for an old stack runs as a pipeline in its own environment, unchanged.

One real virtual environment per test run, with the pins such projects have (numpy<1.24,
pandas<2, scikit-learn<1.2), built from the package registry: first a pipeline fails there at
once for want of a runtime, naming the command that fixes it; then `jupyter mlops kernel`
says what it would do, does it without changing a version, and the pipeline runs there,
printing what plain papermill prints in that environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

OLD_PINS = ["numpy<1.24", "pandas<2", "scikit-learn<1.2", "ipykernel"]
KERNEL = "mlops-oldpins"
DISPLAY = "Old pins (numpy 1.23)"

# The notebook's cells: a frame with the column kinds old pandas writes, in-place mutation,
# an array, a fitted model and a metric, each marked as its author would.
CELLS = [
    "%load_ext jupyter_mlops\nimport numpy as np\nimport pandas as pd\n"
    "from sklearn.linear_model import LogisticRegression",
    "%%mlops params\nseed = 3\nC = 0.5\nrows = 300",
    "%%mlops data df\nrng = np.random.RandomState(seed)\n"
    "df = pd.DataFrame({'a': rng.normal(size=rows), 'b': rng.normal(size=rows).astype('float32'),"
    "\n    'kind': pd.Categorical(rng.choice(['x', 'y'], size=rows)),"
    "\n    'name': ['n%d' % i for i in range(rows)],"
    "\n    'when': pd.date_range('2020-01-01', periods=rows, freq='D', tz='UTC')})\n"
    "df.loc[::17, 'a'] = np.nan\ndf.dropna(inplace=True)",
    "%%mlops step features\nX = df[['a', 'b']].to_numpy()\n"
    "y = ((df['a'] + df['b']) > 0).astype(int).to_numpy()\n"
    "print('stack', pd.__version__, np.__version__)",
    "%%mlops step train\nmodel = LogisticRegression(C=C)",
    "%%mlops model model\nmodel.fit(X, y)",
    "%%mlops metrics\naccuracy = float(model.score(X, y))\nprint('accuracy %.6f' % accuracy)",
]


def _cli(*args: str, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


def _freeze(python: Path) -> dict[str, str]:
    done = subprocess.run([str(python), "-m", "pip", "list", "--format=json",
                           "--disable-pip-version-check"], capture_output=True, text=True,
                          check=True)
    return {p["name"].lower(): p["version"] for p in json.loads(done.stdout)}


def _notebook(path: Path, kernel: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def _outputs(notebook: Path) -> list[str]:
    """The stream text the notebook's cells printed."""
    nb = json.loads(notebook.read_text())
    return [o.get("text", "") if isinstance(o.get("text"), str) else "".join(o.get("text", []))
            for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
            if o.get("output_type") == "stream"]


@dataclass
class OldEnv:
    """The environment and what happened to it, in order."""

    root: Path
    python: Path
    env: dict[str, str]
    before: dict[str, str]
    bare_run: subprocess.CompletedProcess
    dry: subprocess.CompletedProcess
    after_dry: dict[str, str]
    #: Whether the kernel was registered after the dry run.
    registered_after_dry: bool
    install: subprocess.CompletedProcess
    after: dict[str, str]


@pytest.fixture(scope="session")
def old_env(tmp_path_factory: pytest.TempPathFactory) -> OldEnv:
    root = tmp_path_factory.mktemp("oldenv")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    built = subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                            "--disable-pip-version-check", *OLD_PINS], capture_output=True,
                           text=True, timeout=1200, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    # Jupyter's user folders of this test only: a bare kernel of that environment, before
    # it has any runtime
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_PATH", "PYTHONPATH")}
    env["JUPYTER_DATA_DIR"] = str(root / "jupyter")
    bare = root / "jupyter" / "kernels" / "bare-old"
    bare.mkdir(parents=True)
    (bare / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "bare", "language": "python"}))
    before = _freeze(python)
    notebook = _notebook(root / "bare" / "old.ipynb", "bare-old")
    exported = _cli("export", str(notebook), env=env)
    assert exported.returncode == 0, exported.stderr
    bare_run = _cli("run", str(root / "bare" / "old_pipeline"), env=env)
    dry = _cli("kernel", str(python), "--name", KERNEL, "--dry-run", env=env)
    after_dry = _freeze(python)
    registered = (root / "jupyter" / "kernels" / KERNEL).exists()
    install = _cli("kernel", str(python), "--name", KERNEL, "--display-name", DISPLAY, env=env)
    return OldEnv(root, python, env, before, bare_run, dry, after_dry, registered, install,
                  _freeze(python))


def test_without_a_runtime_the_first_step_fails_at_once_naming_the_fix(
        old_env: OldEnv) -> None:
    done = old_env.bare_run
    assert done.returncode == 1, done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert "this kernel has no jupyter-mlops runtime" in said
    assert f"jupyter mlops kernel {old_env.python}" in said


def test_dry_run_says_what_it_would_do_and_changes_nothing(old_env: OldEnv) -> None:
    done = old_env.dry
    assert done.returncode == 0, done.stderr
    assert "would install: " in done.stdout and "jupyter-mlops-runtime" in done.stdout
    assert f"would register kernel `{KERNEL}`" in done.stdout
    assert old_env.after_dry == old_env.before
    assert not old_env.registered_after_dry


def test_kernel_installs_the_runtime_and_changes_no_version(old_env: OldEnv) -> None:
    done = old_env.install
    assert done.returncode == 0, done.stdout + done.stderr
    for name, version in old_env.before.items():
        assert old_env.after.get(name) == version, name
    assert old_env.after["jupyter-mlops-runtime"]
    assert old_env.after["pandas"].startswith("1.") and old_env.after["numpy"].startswith("1.2")
    assert old_env.after["scikit-learn"].startswith("1.1")
    assert "jupyter-mlops" not in old_env.after  # the runtime, not the authoring tool
    for tool in ("jupyter-server", "ipywidgets", "matplotlib", "papermill", "nbconvert"):
        assert tool not in old_env.after, tool
    spec = json.loads((old_env.root / "jupyter" / "kernels" / KERNEL / "kernel.json")
                      .read_text())
    assert spec["argv"][0] == str(old_env.python)
    assert spec["display_name"] == DISPLAY
    abilities = spec["metadata"]["jupyter_mlops"]
    assert abilities["protocol"] == 1 and abilities["frames"] == "arrow"
    assert f"registered kernel `{KERNEL}`" in done.stdout
    assert "frames between steps: Arrow files" in done.stdout  # pyarrow fits there


def test_an_old_stack_notebook_runs_as_a_pipeline_in_its_own_environment(
        old_env: OldEnv) -> None:
    env, root = old_env.env, old_env.root / "ok"
    notebook = _notebook(root / "old.ipynb", "python3")
    # the author's own run there, capturing the data, model and metric
    plain = subprocess.run(
        [sys.executable, "-m", "papermill", str(notebook), str(root / "plain.ipynb"), "-k",
         KERNEL, "--cwd", str(root), "--no-progress-bar"], capture_output=True, text=True,
        env={**env, "JUPYTER_MLOPS_NOTEBOOK": str(notebook)}, timeout=600, check=False)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert (root / "old.mlops.json").is_file()
    exported = _cli("export", str(notebook), "--kernel", KERNEL, env=env)
    assert exported.returncode == 0, exported.stderr
    ran = _cli("run", str(root / "old_pipeline"), "-v", env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "check(s) passed" in ran.stdout
    assert "step prepare: kernel forked from a zygote" in ran.stderr  # forks there too
    (folder,) = (root / "old_pipeline" / "runs").iterdir()
    printed = "".join(t for step in sorted((folder / "steps").glob("*.ipynb"))
                      for t in _outputs(step))
    expected = "".join(_outputs(root / "plain.ipynb"))
    for line in expected.splitlines():
        if line.startswith(("stack ", "accuracy ")):
            assert line in printed, (line, printed)
    assert "stack 1.5" in printed
    record = json.loads((folder / "run.json").read_text())
    outputs = {name: manifest for step in record["steps"]
               for name, manifest in step["outputs"].items()}
    assert {"df", "X", "y", "model", "accuracy"} <= set(outputs)
    assert outputs["X"]["kind"] == "npy" and outputs["model"]["kind"] == "skops"
    for step in record["steps"]:
        for manifest in step["outputs"].values():
            data = (folder / "artifacts" / step["name"] / manifest["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
    assert _freeze(old_env.python) == old_env.after  # running changed nothing either
