"""The image a Kubeflow pipeline's steps run in: what goes into it, where, and its files.

A local run executes each step notebook with the source notebook's folder as working
directory, so steps read data files and import helper modules by paths relative to it. The
image keeps that layout under ``/mlops``: the pipeline folder and everything the steps name
(string literals that are existing files or folders, the way the cache fingerprints them, and
modules they import from that folder) sit at the same places relative to each other, and the
steps run in the working directory's place.
"""

from __future__ import annotations

import ast
import os
import posixpath
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import MlopsError
from ..pipeline.quoting import (
    QuotingError,
    dockerfile_comment,
    dockerfile_exec,
    dockerfile_path,
    shell_word,
)
from ..pipeline.spec import PipelineSpec
from ..run.cache import step_imports, step_strings
from ..run.localmodules import local_modules
from ..run.versions import package_versions
from .pythonenv import canonical
from .runtime_wheel import wheel_name

#: Where the folder holding the pipeline and its working directory goes in the image.
IMAGE_ROOT = "/mlops"
#: Entries of a pipeline folder that a run does not read: its own runs and history.
_NOT_COPIED = ("runs",)


@dataclass(frozen=True)
class ImageLayout:
    """Where the pipeline and what its steps read are, here and in the image."""

    #: The folder on this machine that becomes :data:`IMAGE_ROOT`.
    root: Path
    #: The pipeline folder, in the image.
    pipeline: str
    #: The steps' working directory (the source notebook's folder), in the image.
    workdir: str
    #: What is copied, relative to ``root``: parts of the pipeline folder, then data files,
    #: folders and helper modules the steps read.
    copies: tuple[str, ...]
    #: Absolute paths the steps name, which the image does not hold (mount them).
    absolute: tuple[str, ...]

    def image_path(self, local: Path) -> str:
        """Where ``local`` (under ``root``) is in the image."""
        return _in_image(self.root, local)


def _in_image(root: Path, local: Path) -> str:
    relative = local.relative_to(root).as_posix()
    return IMAGE_ROOT if relative == "." else posixpath.join(IMAGE_ROOT, relative)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _read_paths(pipeline_dir: Path, spec: PipelineSpec, workdir: Path
                ) -> tuple[list[Path], list[str]]:
    """(existing files and folders the steps name or import from ``workdir``, absolute
    paths they name)."""
    found: set[Path] = set()
    absolute: set[str] = set()
    for step in spec.steps:
        notebook = pipeline_dir / step.notebook
        # the defaults of the runtime parameters every step notebook has are not paths
        for text in set(step_strings(notebook)) - {"artifacts", step.name}:
            path = Path(text)
            if path.is_absolute():
                if path.is_file():
                    absolute.add(text)
                continue
            full = Path(os.path.normpath(workdir / path))
            # "." or ".." would copy the whole tree; the pipeline folder is copied anyway
            if (full.exists() and not _inside(workdir, full) and not _inside(full, pipeline_dir)
                    and not _inside(pipeline_dir, full)):
                found.add(full)
        found.update(local_modules(workdir, step_imports(notebook)))
    # a file inside a folder that is copied anyway needs no line of its own
    kept = sorted(p for p in found if not any(q != p and _inside(p, q) for q in found))
    return kept, sorted(absolute)


def image_layout(pipeline_dir: Path, spec: PipelineSpec) -> ImageLayout:
    """The image layout of the pipeline in ``pipeline_dir``."""
    pipeline_dir = pipeline_dir.resolve()
    workdir = Path(os.path.normpath(pipeline_dir / spec.workdir))
    reads, absolute = _read_paths(pipeline_dir, spec, workdir)
    root = Path(os.path.commonpath([pipeline_dir, workdir, *reads]))
    parts = [p for p in sorted(pipeline_dir.iterdir())
             if p.name not in _NOT_COPIED and not p.name.startswith(".")]
    copies = tuple(p.relative_to(root).as_posix() for p in [*parts, *reads])
    return ImageLayout(root, _in_image(root, pipeline_dir), _in_image(root, workdir), copies,
                       tuple(absolute))


def _module_imports(path: Path) -> set[str]:
    """Top-level modules imported by a helper module (or the .py files of a package)."""
    modules: set[str] = set()
    for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
    return modules


#: Where the image's requirements and the runtime wheel are copied to be installed.
INSTALL_DIR = "/tmp/mlops-install"


def requirements(pipeline_dir: Path, spec: PipelineSpec, layout: ImageLayout) -> str:
    """The image's requirements: the kernel runtime (the wheel beside this file, not the
    authoring tool), papermill, ipykernel, pyarrow and skops for the artifacts, and what the
    steps and their helper modules import, each at the version installed here."""
    modules = {m for s in spec.steps for m in step_imports(pipeline_dir / s.notebook)}
    helpers = [layout.root / c for c in layout.copies if c.endswith(".py")
               or (layout.root / c / "__init__.py").is_file()]
    for helper in helpers:
        modules |= _module_imports(helper)
    modules -= {Path(h).stem if h.is_file() else h.name for h in helpers}  # ours, copied
    modules.discard("jupyter_mlops")  # the runtime wheel is what the steps get of it
    pins = package_versions(["papermill", "ipykernel", "pyarrow", "skops", *sorted(modules)])

    unique: dict[str, str] = {}
    for name, version in pins.items():
        unique.setdefault(canonical(name), f"{name}=={version}")
    lines = [f"# The image of the Kubeflow pipeline `{spec.name}`: the jupyter-mlops kernel "
             "runtime, and the versions installed where it was compiled.",
             f"./{wheel_name()}", *sorted(unique.values(), key=str.lower)]
    return "\n".join(lines) + "\n"


def dockerfile(layout: ImageLayout, output_dir: Path, spec: PipelineSpec, image: str) -> str:
    """A Dockerfile whose build context holds the layout's root and this file's folder."""
    output_dir = output_dir.resolve()
    context = Path(os.path.commonpath([layout.root, output_dir]))

    def source(path: Path) -> str:
        return path.relative_to(context).as_posix()

    from_here = os.path.relpath(context, output_dir).replace(os.sep, "/")
    kernel = spec.kernel["name"]
    display = str(spec.kernel.get("display_name", kernel))
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    build = ["docker", "build", "-f", source(output_dir / "Dockerfile"), "-t", image, "."]
    comments = [
        f"The image of the Kubeflow pipeline `{spec.name}`, written by `jupyter mlops kfp`.",
        f"The build context is {from_here} (relative to this file's folder):",
        f"  cd {shell_word(from_here)} && {' '.join(shell_word(w) for w in build)}",
        "It holds the pipeline and what its steps read beside the notebook (the files and",
        "folders they name, the modules they import), laid out as here; the steps run in",
        f"{layout.workdir}, the notebook's folder, as in a local run.",
    ]
    if layout.absolute:
        comments.append("Not in the image (absolute paths the steps name; mount them): "
                        + ", ".join(layout.absolute))
    try:
        workdir = dockerfile_path(layout.workdir)
    except QuotingError as err:
        raise MlopsError(str(err)) from None
    # exec forms, each word a JSON string: no shell reads a name, and a line break in one
    # cannot end the instruction
    lines = [f"# {dockerfile_comment(c)}" for c in comments] + [
        f"FROM python:{python}-slim",
        "COPY " + dockerfile_exec([source(output_dir / "requirements.txt"),
                                   source(output_dir / wheel_name()), f"{INSTALL_DIR}/"]),
        f"WORKDIR {INSTALL_DIR}",
        "RUN " + dockerfile_exec(["pip", "install", "--no-cache-dir", "-r",
                                  "requirements.txt"]),
        "RUN " + dockerfile_exec(["python", "-m", "ipykernel", "install", "--name", kernel,
                                  "--display-name", display]),
    ]
    lines += ["COPY " + dockerfile_exec([source(layout.root / c),
                                         layout.image_path(layout.root / c)])
              for c in layout.copies]
    lines += [f"WORKDIR {workdir}", ""]
    return "\n".join(lines)
