"""Content-hash caching: a step whose code, parameters, inputs and environment are unchanged
is not run again; its outputs from the store are reused once their hashes verify.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..notebook.reader import load_json, read_regular_file
from ..notebook.roles import STEP_NAME
from ..pipeline.spec import Step
from ..runtime._files import atomic_write, sha256_file, sha256_text
from .store import RunStore
from .versions import module_versions

#: Bump when the meaning of a key changes, so old cache entries stop matching.
#: 2: frames keep what restores their labels in their own file; outputs of runs before
#: (labelled by their manifest) are made again rather than reused.
KEY_VERSION = 2


#: Cells jupyter-mlops writes into every step notebook around the user's code (see
#: :func:`~jupyter_mlops.pipeline.stepnotebook.build_step_notebook`): their strings are ours
#: (``"data"`` as an output's role, ``"jupyter_mlops"``), never a file the step reads.
_GENERATED_CELLS = ("mlops-runtime", "mlops-load-extension", "mlops-inputs", "mlops-outputs")
_GENERATED_TAGS = ("mlops-inputs", "mlops-outputs")
#: The parameters cell: the user's parameters (their defaults may name files) and ours.
_PARAMETERS_CELL = "mlops-parameters"


def _runtime_parameters() -> tuple[str, ...]:
    from ..pipeline.stepnotebook import (
        ARTIFACTS_PARAMETER,
        DRIFT_PARAMETER,
        HASHES_PARAMETER,
        PIPELINE_PARAMETER,
        STEP_PARAMETER,
    )

    return (ARTIFACTS_PARAMETER, HASHES_PARAMETER, PIPELINE_PARAMETER, STEP_PARAMETER,
            DRIFT_PARAMETER)


def _without_runtime_parameters(code: str) -> str:
    """The parameters cell without the assignments of the runtime parameters every step
    notebook has (``mlops_artifacts = "artifacts"``, ``mlops_step = "clean"``)."""
    import ast

    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    ours = set(_runtime_parameters())
    lines = code.splitlines()
    for statement in tree.body:
        targets = (statement.targets if isinstance(statement, ast.Assign) else
                   [statement.target] if isinstance(statement, ast.AnnAssign) else [])
        if targets and all(isinstance(t, ast.Name) and t.id in ours for t in targets):
            for number in range(statement.lineno - 1, statement.end_lineno or statement.lineno):
                lines[number] = ""
    return "\n".join(lines)


def _python_cells(notebook: Path, user_only: bool = False) -> list[str]:
    """The code cells of a step notebook with IPython lines (magics, ``!``) blanked; with
    ``user_only``, only the code that came from the user's notebook (the cells
    jupyter-mlops generates and its runtime parameters left out).

    Deliberately lighter than the reader (no IPython import): this runs on every run, cached
    or not, and only looks for imports and string literals.
    """
    content = load_json(read_regular_file(notebook, "step notebook"), str(notebook),
                        fix="export the notebook again")
    cells = []
    for cell in content.get("cells", []):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        cell_id = cell.get("id")
        metadata = cell.get("metadata")
        tags = metadata.get("tags") if isinstance(metadata, dict) else None
        tags = tags if isinstance(tags, list) else []
        if user_only and (cell_id in _GENERATED_CELLS
                          or any(t in _GENERATED_TAGS for t in tags)):
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        lines = ["" if line.lstrip().startswith(("%", "!")) else line
                 for line in source.splitlines()]
        code = "\n".join(lines)
        if user_only and (cell_id == _PARAMETERS_CELL or "parameters" in tags):
            code = _without_runtime_parameters(code)
        cells.append(code)
    return cells


def step_strings(notebook: Path) -> list[str]:
    """String literals in the user's code of a step: the file names it may read
    (``"data/churn.csv"``). The code jupyter-mlops adds around it is not scanned: its
    strings (an output's role ``"data"``) would match a ``data/`` folder the step never
    reads, and re-run it whenever a file there changed."""
    import ast

    found: set[str] = set()
    for code in _python_cells(notebook, user_only=True):
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        found.update(node.value for node in ast.walk(tree)
                     if isinstance(node, ast.Constant) and isinstance(node.value, str)
                     and 0 < len(node.value) < 500 and "\n" not in node.value)
    return sorted(found)


def file_fingerprints(candidates: list[str], workdir: Path) -> dict[str, str]:
    """sha256 of each candidate that names an existing file (relative to the step's working
    directory); a folder counts by the names, sizes and times of what it holds. A step
    reading a changed data file then has a new key, though its code did not change."""
    found: dict[str, str] = {}
    for text in candidates:
        path = Path(text) if Path(text).is_absolute() else workdir / text
        try:
            if path.is_file():
                found[text] = sha256_file(path)
            elif path.is_dir() and text not in (".", ".."):
                listing = sorted((str(p.relative_to(path)), p.stat().st_size,
                                  p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file())
                found[text] = sha256_text(json.dumps(listing))
        except (OSError, ValueError):
            continue
    return found


def step_imports(notebook: Path) -> list[str]:
    """Top-level modules a step notebook imports (what its environment key depends on)."""
    from ..notebook.names import cell_names

    modules: set[str] = set()
    for code in _python_cells(notebook):
        try:
            names = cell_names(code)
        except SyntaxError:
            continue
        for statement in names.code.values():
            if statement.startswith(("import ", "from ")):
                module = statement.split()[1].split(".")[0]
                if module and not module.startswith("."):
                    modules.add(module)
        modules.update(m.split(".")[0] for m in names.star_imports if not m.startswith("."))
    return sorted(modules)


def git_commit(folder: Path) -> str | None:
    """The commit checked out around ``folder``, when it is inside a git repository."""
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True,
                              text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def environment(kernel: str, modules: list[str], folder: Path) -> dict[str, Any]:
    """What a run's results depend on besides code and data."""
    return environments(kernel, {"": modules}, folder)[""]


def environments(kernel: str, imports: dict[str, list[str]], folder: Path
                 ) -> dict[str, dict[str, Any]]:
    """:func:`environment` of each step of ``{step: modules it imports}``: each version
    looked up and the git commit asked once for the whole run, not once per step."""
    from .. import __version__

    versions = module_versions(sorted({m for modules in imports.values() for m in modules}))
    shared = {"python": platform.python_version(), "platform": sys.platform,
              "jupyter_mlops": __version__, "kernel": kernel, "git_commit": git_commit(folder)}
    found = {}
    for step, modules in imports.items():
        packages: dict[str, str] = {}
        for module in modules:
            packages.update(versions.get(module, {}))
        found[step] = {**shared, "packages": dict(sorted(packages.items()))}
    return found


def step_key(step: Step, values: dict[str, Any], input_hashes: dict[str, str],
             env: dict[str, Any], allow_pickle: bool, fail_on_drift: bool = False,
             files: dict[str, str] | None = None) -> str:
    """The content key of a step: its code, the parameters it uses, its inputs' hashes, the
    files it reads, and the environment (Python, kernel, versions of the packages it
    imports)."""
    payload = {
        "files": files or {},
        "version": KEY_VERSION, "code": step.code_sha256,
        "parameters": {n: values.get(n) for n in step.parameters},
        "inputs": input_hashes, "outputs": [o.name for o in step.outputs],
        "python": env["python"], "kernel": env["kernel"], "packages": env["packages"],
        "allow_pickle": allow_pickle, "fail_on_drift": fail_on_drift,
    }
    text = json.dumps(payload, sort_keys=True, default=repr)
    return sha256_text(text)


def _place(source: Path, target: Path) -> None:
    """Hard-link (or copy) ``source`` to ``target`` through a temporary name."""
    with contextlib.suppress(OSError):
        if os.path.samefile(source, target):
            # already placed (a resumed run): renaming a second link of the same file over
            # it does nothing and would leave the temporary name behind
            return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # left by a process of this pid that died between link and rename
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copy2(source, tmp)
    os.replace(tmp, target)


def _references_hold(manifest: dict[str, Any], artifacts: Path) -> bool:
    """Whether each file a frame artifact takes columns from (``runtime.arrowrefs``) is in
    the new run's ``artifacts`` with the hash it was referenced by. A producer renamed since
    the earlier run, or made anew with other bytes, makes the step run again: reused, its
    frame could not be read."""
    for ref in manifest.get("references") or []:
        step, name = ref.get("step"), ref.get("name")
        if not (isinstance(step, str) and STEP_NAME.fullmatch(step)
                and isinstance(name, str) and name.isidentifier()):
            return False
        try:
            placed = json.loads((artifacts / step / f"{name}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if not isinstance(placed, dict) or placed.get("sha256") != ref.get("sha256"):
            return False
    return True


def reuse(store: RunStore, key: str, step: Step, target: Path
          ) -> tuple[str, dict[str, dict[str, Any]], list[dict[str, Any]]] | None:
    """Put the outputs of an earlier run of this key into ``target``; (run_id, manifests,
    the checks that run made).

    None when there is no such run or any of its files is missing or fails its hash, so the
    step simply runs again.
    """
    hit = store.cached(key)
    if hit is None:
        return None
    run_id, step_name = hit
    try:
        earlier = store.run(run_id)
    except Exception:  # a store entry we cannot read is a miss, not a failure
        return None
    folder = Path(earlier.folder) / "artifacts" / step_name
    recorded = earlier.step(step_name)
    checks = recorded.checks if recorded is not None else []
    manifests = store.artifacts(run_id, step_name)
    required = {o.name for o in step.outputs if o.required}
    if not required <= set(manifests):
        return None
    for manifest in manifests.values():
        data = folder / manifest["file"]
        if (not data.is_file() or sha256_file(data) != manifest["sha256"]
                or not _references_hold(manifest, target.parent)):
            return None
    target.mkdir(parents=True, exist_ok=True)
    for name, manifest in manifests.items():
        _place(folder / manifest["file"], target / manifest["file"])
        # the manifest last, as a save does: it never points at a missing file; the one the
        # store recorded, not the earlier run's folder's, which its writers could change
        atomic_write(target / f"{name}.json",
                     json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return run_id, manifests, checks
