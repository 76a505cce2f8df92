"""`jupyter mlops kernel PYTHON` refuses what it cannot do in one line, exit 2, changing
nothing: no interpreter, not Python, too old a Python, no pip, a read-only or
system-managed environment, a name Jupyter refuses, a runtime that would change a version."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_mlops.deploy.pythonenv import _conflict


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_PATH", "PYTHONPATH")}
    env["JUPYTER_DATA_DIR"] = str(tmp_path / "jupyter")
    return subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "kernel", *args],
                          env=env, capture_output=True, text=True, timeout=900,
                          stdin=subprocess.DEVNULL, check=False)


def _refused(done: subprocess.CompletedProcess, tmp_path: Path, *words: str) -> str:
    """The one line of a refusal, after checking the exit code and that no kernel was made."""
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert not (tmp_path / "jupyter" / "kernels").exists()
    return lines[0]


def _freeze(python: Path) -> str:
    return subprocess.run([str(python), "-m", "pip", "list", "--format=freeze",
                           "--disable-pip-version-check"], capture_output=True, text=True,
                          check=True).stdout


def _venv(folder: Path, pip: bool = True) -> Path:
    args = [sys.executable, "-m", "venv", str(folder)] + ([] if pip else ["--without-pip"])
    subprocess.run(args, check=True, timeout=300, capture_output=True)
    return folder / "bin" / "python"


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_no_interpreter_there(tmp_path: Path) -> None:
    _refused(_cli(tmp_path, str(tmp_path / "nope" / "python")), tmp_path,
             "no Python interpreter at", "give the path of the environment's python")


def test_not_a_python(tmp_path: Path) -> None:
    shell = _script(tmp_path / "python", "#!/bin/sh\necho hello\n")
    _refused(_cli(tmp_path, str(shell)), tmp_path, f"{shell} is not a Python interpreter")
    data = tmp_path / "data.txt"
    data.write_text("x")
    _refused(_cli(tmp_path, str(data)), tmp_path, "is not executable")


@pytest.mark.parametrize("version", ["2.7.18", "3.7.17"])
def test_too_old_a_python(tmp_path: Path, version: str) -> None:
    """No Python 2.7 or 3.7 is installed on these machines: a stand-in script prints what
    such an interpreter prints for the version question (the probe is plain Python 2)."""
    old = _script(tmp_path / f"python{version[:3]}", f"#!/bin/sh\nprintf '{version}'\n")
    _refused(_cli(tmp_path, str(old)), tmp_path, f"is Python {version}",
             "needs Python 3.9 or newer")


def test_an_environment_without_pip(tmp_path: Path) -> None:
    python = _venv(tmp_path / "nopip", pip=False)
    _refused(_cli(tmp_path, str(python)), tmp_path, "has no pip", "-m ensurepip")
    assert not list((tmp_path / "nopip" / "lib").glob("python3*/site-packages/jupyter_mlops"))


def test_a_system_managed_python(tmp_path: Path) -> None:
    system = Path("/usr/bin/python3")
    marker = list(Path("/usr/lib").glob("python3*/EXTERNALLY-MANAGED"))
    if not system.is_file() or not marker:
        pytest.skip("no system Python marked EXTERNALLY-MANAGED on this machine")
    if subprocess.run([str(system), "-m", "pip", "--version"], capture_output=True,
                      check=False).returncode != 0:
        pytest.skip("the system Python here has no pip")
    _refused(_cli(tmp_path, str(system)), tmp_path, "managed by the system",
             "-m venv DIR")


def test_a_read_only_environment(tmp_path: Path) -> None:
    """The environment's folder mounted read-only in a mount namespace of its own (as a
    read-only image layer or a shared volume is); needs `unshare`, as root."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("a read-only mount needs unshare as root")
    python = _venv(tmp_path / "ro")
    before = _freeze(python)
    venv = tmp_path / "ro"
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_PATH", "PYTHONPATH")}
    env["JUPYTER_DATA_DIR"] = str(tmp_path / "jupyter")
    script = (f"mount --bind {venv} {venv} && mount -o remount,bind,ro {venv} && "
              f"exec {sys.executable} -m jupyter_mlops.cli kernel {python}")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    if "mount:" in done.stderr:
        pytest.skip(f"mount namespaces are not allowed here: {done.stderr.strip()}")
    _refused(done, tmp_path, "is read-only here", "cannot be written")
    assert _freeze(python) == before


@pytest.mark.parametrize("name", ["my kernel", "a/b", "../up", "", "..", ".hidden"])
def test_a_kernel_name_jupyter_refuses(tmp_path: Path, name: str) -> None:
    python = _venv(tmp_path / "env")
    before = _freeze(python)
    line = _refused(_cli(tmp_path, str(python), "--name", name), tmp_path,
                    "--name: kernel name", "is not one Jupyter accepts")
    assert "\n" not in line
    assert _freeze(python) == before


def test_a_name_taken_by_another_interpreter(tmp_path: Path) -> None:
    python = _venv(tmp_path / "env")
    taken = tmp_path / "jupyter" / "kernels" / "taken"
    taken.mkdir(parents=True)
    (taken / "kernel.json").write_text(json.dumps({
        "argv": ["/somewhere/else/python", "-m", "ipykernel_launcher"], "display_name": "x",
        "language": "python"}))
    done = _cli(tmp_path, str(python), "--name", "taken")
    assert done.returncode == 2
    assert "a kernel `taken` already exists for /somewhere/else/python" in done.stderr
    assert json.loads((taken / "kernel.json").read_text())["argv"][0] == "/somewhere/else/python"


def test_a_runtime_that_would_change_a_version_changes_nothing(tmp_path: Path) -> None:
    """numpy 1.10 is installed there (its metadata, as pip sees an installed distribution):
    the runtime needs numpy>=1.21, so installing it would upgrade numpy; nothing happens."""
    python = _venv(tmp_path / "env")
    site = next((tmp_path / "env" / "lib").glob("python3*/site-packages"))
    info = site / "numpy-1.10.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: numpy\nVersion: 1.10.0\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text("")
    before = _freeze(python)
    line = _refused(_cli(tmp_path, str(python), "--name", "x"), tmp_path,
                    "cannot be installed in", "without changing a version there",
                    "numpy", "nothing was changed")
    assert "numpy>=1.21" in line or "numpy==1.10.0" in line
    assert _freeze(python) == before


def test_a_pip_too_old_to_report_what_it_installs(tmp_path: Path) -> None:
    """pip before 22.2 has neither --dry-run nor --report: one line says to upgrade pip
    alone there, and nothing else changes."""
    python = _venv(tmp_path / "env")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "pip<22.2"], check=True, capture_output=True, timeout=300)
    before = _freeze(python)
    _refused(_cli(tmp_path, str(python), "--name", "x"), tmp_path,
             "its pip is older than 22.2", f"{python} -m pip install -U pip")
    assert _freeze(python) == before


def test_the_default_name_comes_from_the_environment_folder() -> None:
    from jupyter_mlops.deploy.kernelenv import default_name
    from jupyter_mlops.deploy.pythonenv import PythonEnv

    def env(prefix: str) -> PythonEnv:
        return PythonEnv(f"{prefix}/bin/python", (3, 11, 7), prefix, "", True, False, True)

    assert default_name(env("/work/churn/.venv")) == "mlops-churn"
    assert default_name(env("/opt/envs/Old Project 2022")) == "mlops-old-project-2022"
    assert default_name(env("/opt/envs/...")) == "mlops-python"


def test_pips_conflict_report_becomes_one_line() -> None:
    stderr = """ERROR: Cannot install jupyter-mlops-runtime==0.1.0 because these package versions \
have conflicting dependencies.

The conflict is caused by:
    jupyter-mlops-runtime 0.1.0 depends on numpy>=1.21
    The user requested (constraint) numpy==1.10.0

To fix this you could try to:
1. loosen the range of package versions you've specified
"""
    assert _conflict(stderr) == ("jupyter-mlops-runtime 0.1.0 depends on numpy>=1.21 but the "
                                 "environment has numpy==1.10.0")
