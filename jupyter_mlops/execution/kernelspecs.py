"""The kernelspecs of the kernels a run starts, found as the run's check of its kernel
found them (:mod:`..pipeline.kernels`).

jupyter_client's own lookup, made for each kernel a run starts, lists its folders by asking
IPython where its own is (importing IPython, 0.02 s) and scans the installed packages' entry
points for kernel provisioners (6 ms); a re-run of one step waited for both before its kernel
was forked. A kernelspec file that names no provisioner is read here directly; any other
(a provisioner, ipykernel's own ``python3`` with no file) is left to jupyter_client.
"""

from __future__ import annotations

from typing import Any

from jupyter_client.kernelspec import KernelSpecManager

from ..pipeline.kernels import kernel_folder

__all__ = ["RunKernelSpecs"]


class RunKernelSpecs(KernelSpecManager):  # type: ignore[misc]
    """jupyter_client's kernelspec finder, reading a kernelspec file named by the run's
    lookup itself."""

    def get_kernel_spec(self, kernel_name: str) -> Any:
        """The kernelspec ``kernel_name``, as jupyter_client's would be."""
        folder = kernel_folder(kernel_name)
        if folder is not None:
            try:
                spec = self.kernel_spec_class.from_resource_dir(str(folder))
            except (OSError, ValueError):  # jupyter_client's own lookup says what is wrong
                spec = None
            if spec is not None and not (spec.metadata or {}).get("kernel_provisioner"):
                return spec
        return super().get_kernel_spec(kernel_name)
