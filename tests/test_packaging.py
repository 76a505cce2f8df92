"""Packaging: an editable install needs no Node.js, and a wheel built from the sdist neither.

Each test makes a fresh venv and lets pip build jupyter-mlops in an isolated build
environment, as a newcomer's `pip install` does, with a PATH on which there is no `node`,
`npm` or `jlpm`. Dependencies are left out (``--no-deps``): what is tested is the build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

PREBUILT = REPO / "jupyter_mlops" / "labextension" / "static"


def _tracked_copy(dest: Path) -> Path:
    """The files git tracks, as a fresh clone has them (no node_modules, no built sidebar)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def _no_node_path(tmp: Path, venv: Path) -> str:
    """A PATH with the venv and the few tools a build calls, and no Node.js."""
    tools = tmp / "tools"
    tools.mkdir()
    for tool in ("sh", "bash", "env", "git", "uname"):
        found = shutil.which(tool)
        if found:
            (tools / tool).symlink_to(found)
    return os.pathsep.join([str(venv / "bin"), str(tools)])


def _venv(tmp: Path) -> Path:
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    return venv


def _pip(venv: Path, path: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run([str(venv / "bin" / "python"), "-m", "pip", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def test_an_editable_install_without_node_installs_and_runs(tmp_path: Path) -> None:
    source = _tracked_copy(tmp_path / "clone")
    venv = _venv(tmp_path)
    path = _no_node_path(tmp_path, venv)
    assert shutil.which("node", path=path) is None
    done = _pip(venv, path, "install", "--no-deps", "-e", ".", cwd=source)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    helped = subprocess.run([str(venv / "bin" / "jupyter-mlops"), "--help"], capture_output=True,
                            text=True, env={"PATH": path}, timeout=60, check=False)
    assert helped.returncode == 0, helped.stderr
    assert "usage: jupyter mlops" in helped.stdout
    assert "Traceback" not in helped.stderr


@pytest.mark.skipif(not PREBUILT.is_dir(), reason="the sidebar was not built in this checkout")
def test_a_wheel_from_the_sdist_carries_the_sidebar_without_node(tmp_path: Path) -> None:
    source = _tracked_copy(tmp_path / "clone")
    # the sdist is made where the sidebar was built, as a release is
    shutil.copytree(PREBUILT.parent, source / "jupyter_mlops" / "labextension")
    venv = _venv(tmp_path)
    path = _no_node_path(tmp_path, venv)
    built = _pip(venv, path, "install", "--quiet", "build", cwd=source)
    assert built.returncode == 0, built.stderr[-3000:]
    env = {**os.environ, "PATH": path}
    sdist = subprocess.run([str(venv / "bin" / "python"), "-m", "build", "--sdist", "-o",
                            str(tmp_path / "dist"), "."], cwd=source, env=env,
                           capture_output=True, text=True, timeout=600, check=False)
    assert sdist.returncode == 0, sdist.stdout[-3000:] + sdist.stderr[-3000:]
    archive = next((tmp_path / "dist").glob("*.tar.gz"))
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert any("jupyter_mlops/labextension/static/" in n for n in names), names[:20]

    wheel = _pip(venv, path, "wheel", "--no-deps", "-w", str(tmp_path / "wheels"), str(archive),
                 cwd=tmp_path)
    assert wheel.returncode == 0, wheel.stdout[-3000:] + wheel.stderr[-3000:]
    with zipfile.ZipFile(next((tmp_path / "wheels").glob("*.whl"))) as whl:
        inside = whl.namelist()
    assert any("share/jupyter/labextensions/jupyter-mlops/static/" in n for n in inside)
    assert any(n.endswith("labextensions/jupyter-mlops/install.json") for n in inside)
    assert "jupyter_mlops/_version.py" in inside


def test_one_version_for_the_package_and_the_sidebar() -> None:
    import json

    import jupyter_mlops

    package = json.loads((REPO / "labextension" / "package.json").read_text(encoding="utf-8"))
    assert jupyter_mlops.__version__ == package["version"]
