"""The kernelspecs a run's kernels start from (:mod:`jupyter_mlops.execution.kernelspecs`),
and the import of what starts kernels (:func:`.imports.kernel_manager_class`), which the
first kernel's fork waits for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

from jupyter_mlops.execution import imports
from jupyter_mlops.execution.kernelspecs import RunKernelSpecs


def _install(root: Path, name: str, **extra: object) -> Path:
    folder = root / "kernels" / name
    folder.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"Kernel {name}", "language": "python",
            "env": {"STEP_FLAG": "1"}, **extra}
    (folder / "kernel.json").write_text(json.dumps(spec))
    return folder


def test_a_kernelspec_is_the_one_jupyter_client_finds(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    _install(first, "Mine", metadata={"debugger": True}, interrupt_mode="message")
    _install(second, "mine")  # later on the path: the first wins, names in lower case
    monkeypatch.setenv("JUPYTER_PATH", f"{first}:{second}")
    ours, theirs = RunKernelSpecs().get_kernel_spec("mine"), \
        KernelSpecManager().get_kernel_spec("mine")
    assert ours.to_dict() == theirs.to_dict()
    assert ours.resource_dir == theirs.resource_dir == str(first / "kernels" / "Mine")
    assert ours.interrupt_mode == "message" and ours.env == {"STEP_FLAG": "1"}
    with pytest.raises(NoSuchKernel):
        RunKernelSpecs().get_kernel_spec("nowhere")


def test_a_kernel_with_a_provisioner_is_left_to_jupyter_client(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # jupyter_client refuses a kernel whose provisioner is not installed; so must we
    _install(tmp_path, "remote",
             metadata={"kernel_provisioner": {"provisioner_name": "no-such-provisioner"}})
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    with pytest.raises(NoSuchKernel):
        KernelSpecManager().get_kernel_spec("remote")
    with pytest.raises(NoSuchKernel):
        RunKernelSpecs().get_kernel_spec("remote")


def test_finding_the_kernel_imports_no_ipython(tmp_path: Path) -> None:
    # jupyter_client's own lookup asks IPython for its folder: 0.02 s before the first fork
    _install(tmp_path, "python3")
    code = ("import sys, jupyter_client\n"
            "from jupyter_mlops.execution.kernelspecs import RunKernelSpecs\n"
            "spec = RunKernelSpecs().get_kernel_spec('python3')\n"
            "print('ipykernel_launcher' in spec.argv, 'IPython' in sys.modules)")
    env = dict(os.environ, JUPYTER_PATH=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env).stdout
    assert out.split() == ["True", "False"]


def test_a_thread_waiting_for_the_kernel_modules_does_not_wait_for_papermill(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # another thread is importing the modules that start kernels; once they are in, it goes
    # on to import papermill under the imports' lock: the waiting thread (the pool's, about
    # to fork the first kernel) must have them then, not once papermill is in too
    monkeypatch.setattr(imports, "_manager_class", None)
    monkeypatch.setattr(imports, "_importer", -1)
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(imports.kernel_manager_class()))
    waiter.start()
    marker = object()
    with imports._IMPORTING:  # "papermill" is being imported from here on
        with imports._MANAGER:
            imports._manager_class, imports._importer = marker, None
            imports._MANAGER.notify_all()
        waiter.join(5)
        assert got == [marker]
    monkeypatch.setattr(imports, "_manager_class", None)
    monkeypatch.setattr(imports, "_importer", None)
    from jupyter_client import AsyncKernelManager

    assert imports.kernel_manager_class() is AsyncKernelManager
