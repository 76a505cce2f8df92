"""``--kernel NAME``: a pipeline runs in an installed kernel other than its notebook's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_notebook

from jupyter_mlops.pipeline.spec import PipelineSpec

pytestmark = pytest.mark.kernel


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", *args],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A small exported pipeline, and a Jupyter path holding a second kernel `mlops-alt`
    (this interpreter, under another name and display name)."""
    root = tmp_path_factory.mktemp("kernel")
    spec_dir = root / "jupyter" / "kernels" / "mlops-alt"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Alternative Python", "language": "python",
        "env": {"MLOPS_KERNEL_SEEN": "mlops-alt"}}))
    env = dict(os.environ, JUPYTER_PATH=str(root / "jupyter"))
    notebook = write_notebook(root / "nb.ipynb", "%%mlops step make\nx = 20 + 1",
                              "%%mlops step use\nimport os\ny = x * 2\n"
                              "print('kernel:', os.environ.get('MLOPS_KERNEL_SEEN', 'default'))")
    done = _cli("export", str(notebook), env=env)
    assert done.returncode == 0, done.stderr
    return root / "nb_pipeline", env


def test_run_in_another_installed_kernel(setup: tuple[Path, dict[str, str]],
                                         tmp_path: Path) -> None:
    pipeline, env = setup
    done = _cli("run", str(pipeline), "--kernel", "mlops-alt", "--runs-dir", str(tmp_path),
                env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    (folder,) = tmp_path.iterdir()
    executed = (folder / "steps" / "02_use.ipynb").read_text()
    assert "kernel: mlops-alt" in executed  # the kernelspec's own environment reached it
    again = _cli("run", str(pipeline), "--runs-dir", str(tmp_path / "default"), env=env)
    assert again.returncode == 0, again.stderr
    (folder,) = (tmp_path / "default").iterdir()
    assert "kernel: default" in (folder / "steps" / "02_use.ipynb").read_text()


def test_a_kernel_that_is_not_installed_is_one_line_naming_those_that_are(
        setup: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    pipeline, env = setup
    done = _cli("run", str(pipeline), "--kernel", "nope", "--runs-dir", str(tmp_path), env=env)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("jupyter mlops: error: --kernel: no kernel `nope` is installed here;")
    assert "mlops-alt" in line and "python3" in line
    assert list(tmp_path.iterdir()) == []
    bad = _cli("run", str(pipeline), "--kernel", "a b", env=env)
    assert bad.returncode == 2 and "is not a kernel name" in bad.stderr


def test_export_with_a_kernel_writes_it_into_the_pipeline(
        setup: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    pipeline, env = setup
    notebook = pipeline.parent / "nb.ipynb"
    out = tmp_path / "alt_pipeline"
    done = _cli("export", str(notebook), "-o", str(out), "--kernel", "mlops-alt", env=env)
    assert done.returncode == 0, done.stderr
    spec = PipelineSpec.read(out)
    assert spec.kernel == {"name": "mlops-alt", "display_name": "Alternative Python",
                           "language": "python"}
    step = json.loads((out / "steps" / "01_make.ipynb").read_text())
    assert step["metadata"]["kernelspec"]["name"] == "mlops-alt"
    refused = _cli("export", str(notebook), "-o", str(tmp_path / "x"), "--kernel", "nope",
                   env=env)
    assert refused.returncode == 2 and "--kernel: no kernel `nope`" in refused.stderr
    assert not (tmp_path / "x").exists()


def test_the_runtime_protocol_is_checked_first() -> None:
    from jupyter_mlops.errors import MlopsError
    from jupyter_mlops.runtime import PROTOCOL, require_protocol

    require_protocol(PROTOCOL)
    with pytest.raises(MlopsError, match=r"exported for jupyter-mlops runtime protocol 99, but "
                                         r"this kernel's jupyter-mlops .* speaks 1; run "
                                         r"`jupyter mlops kernel .*python.*` with a newer "
                                         r"jupyter-mlops"):
        require_protocol(99)


def test_a_kernel_without_the_runtime_fails_the_step_at_once_in_one_line(
        setup: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    pipeline, env = setup
    assert PipelineSpec.read(pipeline).runtime_protocol == 1
    spec_dir = tmp_path / "jupyter" / "kernels" / "no-runtime"
    spec_dir.mkdir(parents=True)
    # this interpreter with jupyter_mlops made unimportable: a kernel whose environment
    # lacks the runtime (a fresh kernel, not one forked from the pool: its argv is its own)
    launcher = ("import sys; sys.modules['jupyter_mlops'] = None; "
                "from ipykernel import kernelapp; kernelapp.launch_new_instance()")
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-c", launcher, "-f", "{connection_file}"],
        "display_name": "No runtime", "language": "python"}))
    env = dict(env, JUPYTER_PATH=f"{tmp_path / 'jupyter'}{os.pathsep}{env['JUPYTER_PATH']}")
    done = _cli("run", str(pipeline), "--kernel", "no-runtime", "--runs-dir",
                str(tmp_path / "runs"), env=env)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "step `make` failed while checking the jupyter-mlops runtime in its kernel" in last
    assert "this kernel has no jupyter-mlops runtime; install it without changing this " \
        f"environment's versions with `jupyter mlops kernel {sys.executable}`" in last


def test_kernelspecs_are_found_as_jupyter_client_finds_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The light reader (no jupyter_client import) agrees with jupyter_client's manager: the
    first path wins, names compare in lower case, ipykernel's own python3 is offered."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_core.paths import jupyter_path

    from jupyter_mlops.pipeline.kernels import installed_kernels, kernel_spec

    first, second = tmp_path / "first", tmp_path / "second"
    for root, name, shown in ((first, "Mixed-Case", "first one"), (second, "mixed-case", "x"),
                              (second, "only-second", "second one")):
        folder = root / "kernels" / name
        folder.mkdir(parents=True)
        (folder / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": shown, "language": "python", "metadata": {"k": 1}}))
    monkeypatch.setenv("JUPYTER_PATH", f"{first}{os.pathsep}{second}")
    manager = KernelSpecManager(kernel_dirs=jupyter_path("kernels"))
    assert installed_kernels() == sorted(manager.find_kernel_specs())
    for name in [*installed_kernels(), "MIXED-CASE"]:
        ours, theirs = kernel_spec(name), manager.get_kernel_spec(name)
        assert ours is not None, name
        assert (ours.argv, ours.display_name, ours.language) == (
            theirs.argv, theirs.display_name, theirs.language), name
    assert kernel_spec("mixed-case").display_name == "first one"
    assert kernel_spec("only-second").metadata == {"k": 1}
    assert kernel_spec("no-such-kernel") is None
