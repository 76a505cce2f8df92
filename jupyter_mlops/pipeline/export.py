"""Export: a notebook becomes a pipeline folder (pipeline.yaml, steps/, README.md)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import AnalysisError, OptionError, Problem, SpecError, shown
from ..notebook.analysis import Analysis, analyze
from ..notebook.captures import read_record, record_path, stray_record
from ..notebook.reader import read_notebook
from ..runtime._files import atomic_write, dir_mode
from ..runtime.trust import check_type_names, refused
from .build import build_spec
from .contract import CONTRACT_DIR, build_contract
from .gentests import TESTS_DIR, render_tests
from .kernels import kernel_abilities, kernel_metadata
from .quoting import markdown_code, markdown_table, python_literal, shell_word, yaml_text
from .spec import KERNEL_NAME, SPEC_FILE, PipelineSpec
from .stepnotebook import build_step_notebook

SPLITS = ("headings",)


@dataclass
class ExportResult:
    """What an export wrote, and the warnings the analysis found."""

    folder: Path
    spec: PipelineSpec
    warnings: list[Problem]


def default_folder(notebook: str | Path) -> Path:
    """``<stem>_pipeline/`` beside the notebook."""
    path = Path(notebook)
    return path.with_name(f"{path.stem}_pipeline")


def plan(notebook: str | Path, folder: str | Path | None = None, split: str | None = None,
         allow_pickle: bool = False, trust: Iterable[str] = (),
         kernel: str | None = None) -> tuple[Analysis, PipelineSpec]:
    """Read and analyse ``notebook``; the spec as an export into ``folder`` would write it.

    ``trust`` names the types a model may need beyond the built-in trusted ones; ``kernel``
    an installed kernelspec the steps run in instead of the notebook's own.

    Problems are returned in the analysis, not raised, so that ``show`` can list them.
    """
    if split is not None and split not in SPLITS:
        raise SpecError(f"unknown split `{split}`; use one of: {', '.join(SPLITS)}")
    try:
        trust = check_type_names(trust, "")
    except ValueError as err:
        raise OptionError(str(err), option="trust") from None
    analysis = analyze(read_notebook(notebook), split=split)
    target = Path(folder) if folder is not None else default_folder(notebook)
    spec = build_spec(analysis, target, allow_pickle=allow_pickle, trust=trust)
    if kernel is not None:
        spec.kernel = kernel_metadata(kernel)
    spec.checks, _, warnings = build_contract(analysis)
    analysis.problems = (hidden_state_hints(analysis.problems, analysis.notebook.path)
                         + warnings + untrusted_models(analysis, spec)
                         + stray_capture(analysis) + _kernel_problems(analysis, spec)
                         + _kernel_format_problems(analysis, spec))
    return analysis, spec


def _kernel_problems(analysis: Analysis, spec: PipelineSpec) -> list[Problem]:
    """An error when the notebook's kernelspec name could not name a Jupyter kernel: it
    would reach pipeline.yaml, papermill's -k and a Dockerfile."""
    name = spec.kernel.get("name", "")
    if isinstance(name, str) and KERNEL_NAME.fullmatch(name):
        return []
    return [Problem(f"{analysis.notebook.name}: its kernelspec name {shown(name)} is not the "
                    "name of a Jupyter kernel (letters, digits, `_`, `.`, `-`); choose its "
                    "kernel again in JupyterLab (Kernel > Change Kernel) and save it")]


def _kernel_format_problems(analysis: Analysis, spec: PipelineSpec) -> list[Problem]:
    """An error, at export rather than midway through a run, when the steps' kernel (one
    ``jupyter mlops kernel`` registered) cannot save a model the pipeline passes on
    without pickle, and pickle is not allowed."""
    if spec.allow_pickle:
        return []
    abilities = kernel_abilities(str(spec.kernel.get("name", "")))
    if abilities.get("models", "skops") == "skops":
        return []
    models = [(o.name, s.name) for s in spec.steps for o in s.outputs if o.role == "model"]
    if not models:
        return []
    why = (abilities.get("why") or {}).get("models", "skops does not work there")
    name, step = models[0]
    return [Problem(f"{analysis.notebook.name}: model `{name}` of step `{step}` cannot be "
                    f"saved in kernel `{spec.kernel['name']}` without pickle ({shown(why)}); "
                    "export again with --allow-pickle, or run the steps in a kernel with "
                    "skops (--kernel NAME)")]


#: Roles whose cells record what the pipeline checks (data, a model, metrics).
_RECORDED = ("data", "model", "metrics")
#: Roles whose ``%%mlops`` cells write to the capture record when they run.
_CAPTURING = (*_RECORDED, "params")


def stray_capture(analysis: Analysis) -> list[Problem]:
    """A warning when the notebook has no capture record but a stray ``notebook.mlops.json``
    (beside it or in the working folder) may hold its captures: the pipeline would otherwise
    silently check nothing."""
    from ..notebook.reader import code_key

    notebook = analysis.notebook
    capturing = [c for c in notebook.cells if c.cell_type == "code" and c.mark is not None
                 and c.mark.spelling == "magic" and c.role in _CAPTURING]
    if not capturing:
        return []
    keys = {code_key(c.code) for c in notebook.cells if c.cell_type == "code"}
    found = stray_record(notebook.path, keys, (Path.cwd(),))
    if found is None:
        return []
    stray, matches = found
    own = record_path(notebook.path).name
    whose = {True: " (its data captures come from cells of this notebook)",
             False: " (its data captures come from cells of another notebook)",
             None: ""}[matches]
    return [Problem(
        f"{notebook.name} has no capture record ({own}), so the pipeline checks no captured "
        f"data, model or metrics; {stray} exists{whose}: a papermill or nbconvert run that did "
        f"not know its notebook wrote it. If it is this notebook's, rename it to {own} (and "
        f"notebook.mlops/ to {notebook.path.stem}.mlops/), or run the notebook again with "
        f"JUPYTER_MLOPS_NOTEBOOK={notebook.path.resolve()}", None, "warning")]


def untrusted_models(analysis: Analysis, spec: PipelineSpec) -> list[Problem]:
    """An error for each captured model that needs types neither built-in trust nor the
    export's ``--trust`` covers: the run would refuse to save or load it."""
    models = read_record(analysis.notebook.path).get("models", {})
    problems = []
    for plan_step in analysis.steps:
        for name, output in plan_step.outputs.items():
            entry = models.get(name)
            if output.role != "model" or not isinstance(entry, dict):
                continue
            needed = [t for t in entry.get("trusted") or [] if isinstance(t, str)]
            untrusted = refused(needed, spec.trust)
            if untrusted:
                cell = next((c.number for c in plan_step.cells if c.role == "model"), None)
                problems.append(Problem(
                    f"{analysis.notebook.name}: model `{name}` of step `{plan_step.name}` needs "
                    f"types jupyter-mlops does not trust by default ({', '.join(untrusted)}); "
                    + _what_to_trust(untrusted), cell, "error", name))
    return problems


def _what_to_trust(untrusted: list[str]) -> str:
    """What to do about a model's ``untrusted`` types: a lambda or a function made inside
    another cannot be named, so no flag trusts it; one defined in the notebook loads only in
    its steps' kernels (not in generated tests, serving or another process)."""
    unnamed = [t for t in untrusted if "<" in t]
    if unnamed:
        return ("a lambda, or a function defined inside another, cannot be saved with a model "
                "and loaded again: define it with def in a module beside the notebook (say "
                "helpers.py), import it from there, and export with --trust helpers.NAME")
    flags = " ".join(f"--trust {t}" for t in untrusted)
    if any(t.startswith("__main__.") for t in untrusted):
        return ("a type defined in the notebook itself loads only inside its steps, not in "
                "the generated tests, serving or another process: move it to a module beside "
                "the notebook (say helpers.py), import it from there and trust it there "
                f"(--trust helpers.NAME); or, if you trust it, export with {flags}")
    return f"if you trust the code that defines them, export with {flags}"


def hidden_state_hints(problems: list[Problem], notebook: Path) -> list[Problem]:
    """An undefined name that the kernel held when the cells were captured is hidden state:
    say so, since the notebook seemed to work."""
    held = set(read_record(notebook).get("kernel", {}).get("names", []))
    return [Problem(p.message + f" (the kernel held `{p.variable}` when the cells were "
                    "captured: it came from a cell since deleted or edited, or from outside "
                    "this notebook)", p.cell, p.severity, p.variable)
            if p.variable in held else p for p in problems]


def render(analysis: Analysis, spec: PipelineSpec) -> dict[str, bytes]:
    """Every file of the pipeline folder, by its path inside the folder."""
    import nbformat

    files: dict[str, bytes] = {SPEC_FILE: spec.to_yaml().encode("utf-8")}
    for plan_step, step in zip(analysis.steps, spec.steps, strict=True):
        nb = build_step_notebook(analysis, plan_step, step, spec)
        files[step.notebook] = (nbformat.writes(nb) + "\n").encode("utf-8")
    files.update(build_contract(analysis)[1])
    record = read_record(analysis.notebook.path)
    files.update(render_tests(spec, record.get("models", {})))
    files["README.md"] = readme(spec).encode("utf-8")
    return files


def readme(spec: PipelineSpec) -> str:
    """The pipeline folder's README: what it is and how to run it."""
    lines = [
        f"# Pipeline {markdown_code(spec.name)}",
        "",
        f"Exported by jupyter-mlops from {markdown_code(spec.source)}. Do not edit the step "
        "notebooks: "
        "edit the source notebook and export it again.",
        "",
        "## Run",
        "",
        "```bash",
        "jupyter mlops run .            # every step, in dependency order",
    ]
    if spec.parameters:
        example = spec.parameters[0]
        text = example.default if isinstance(example.default, str) else \
            json.dumps(example.default)  # what `-p` reads: str as it is, the rest as JSON
        lines.append(f"jupyter mlops run . -p {shell_word(f'{example.name}={text}')}")
    lines += ["jupyter mlops show .           # steps, inputs, outputs, parameters",
              "jupyter mlops test .           # the tests generated from the notebook", "```", "",
              "## Steps", "", "| step | notebook | source cells | inputs | outputs | after |",
              "| --- | --- | --- | --- | --- | --- |"]
    for step in spec.steps:
        inputs = ", ".join(f"{markdown_code(n)} ({s})" for n, s in step.inputs.items()) or "-"
        outputs = ", ".join(markdown_code(o.name) for o in step.outputs) or "-"
        after = ", ".join(step.after) or "-"
        cells = ", ".join(str(c) for c in step.cells)
        lines.append(f"| {step.name} | {markdown_code(step.notebook)} | {cells} | {inputs} | "
                     f"{outputs} | {after} |")
    lines += ["", "## Parameters", ""]
    if spec.parameters:
        lines += ["| name | type | default | help |", "| --- | --- | --- | --- |"]
        lines += [f"| {markdown_code(p.name)} | {p.type} | "
                  f"{markdown_code(python_literal(p.default))} | {markdown_table(p.help)} |"
                  for p in spec.parameters]
    else:
        lines.append("None: mark a cell `%%mlops params` to add some.")
    lines += ["", "Each step notebook runs on its own with papermill too: pass "
              "`-p mlops_artifacts DIR` to say where the run's artifacts are.", ""]
    return "\n".join(lines)


def _check_target(folder: Path) -> PipelineSpec | None:
    """The spec already in ``folder``; refuse a folder that holds something else."""
    if not folder.exists():
        return None
    if not folder.is_dir():
        raise OptionError(f"{folder} exists and is not a folder; choose another output folder",
                          option="output")
    if (folder / SPEC_FILE).is_file():
        try:
            return PipelineSpec.read(folder)
        except SpecError:
            return None  # a broken spec of ours: the new export replaces it
    if any(folder.iterdir()):
        raise OptionError(
            f"{folder} exists and is not a jupyter-mlops pipeline (no {SPEC_FILE}); "
            "choose another output folder, or empty it", option="output")
    return None


def _swap_in(folder: Path, sub: str, files: dict[str, bytes], ours: set[str]) -> None:
    """Replace ``folder/sub`` by the rendered files under ``sub/``, keeping the user's own."""
    staging = Path(tempfile.mkdtemp(prefix=f".{sub}-", dir=folder))
    staging.chmod(dir_mode())  # mkdtemp's 0o700 would become steps/ itself
    try:
        for name, data in files.items():
            if name.startswith(f"{sub}/"):
                (staging / name[len(sub) + 1:]).write_bytes(data)
        target = folder / sub
        if target.is_dir():
            for extra in target.iterdir():  # files the user put there themselves stay
                if extra.name not in ours and not (staging / extra.name).exists():
                    shutil.move(str(extra), str(staging / extra.name))
        retired = folder / f".{sub}-old-{os.getpid()}"
        if target.exists():
            os.replace(target, retired)
        os.replace(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


#: Sections of pipeline.yaml that users write by hand (the retraining policy); a re-export
#: carries them into the new spec instead of dropping them.
HAND_WRITTEN = ("retrain",)


def keep_hand_written(folder: Path, text: bytes) -> bytes:
    """``text`` (a new pipeline.yaml) with the hand-written sections of the one in ``folder``."""
    import yaml

    try:
        raw = yaml.safe_load((folder / SPEC_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return text
    kept = {k: raw[k] for k in HAND_WRITTEN if k in raw} if isinstance(raw, dict) else {}
    if not kept:
        return text
    return text + yaml_text(kept).encode("utf-8")


def write_folder(folder: Path, files: dict[str, bytes], old: PipelineSpec | None) -> None:
    """Write the rendered files; runs and other files already in the folder are kept.

    The new steps/ and contract/ are written beside the old ones and swapped in by rename,
    and pipeline.yaml is written last, so an interrupted export leaves the previous
    pipeline whole.
    """
    folder.mkdir(parents=True, exist_ok=True)
    ours = {Path(s.notebook).name for s in old.steps} if old else set()
    _swap_in(folder, "steps", files, ours)
    old_contract = {Path(e["file"]).name for e in (old.checks.get("data") or {}).values()} \
        if old else set()
    if any(n.startswith(f"{CONTRACT_DIR}/") for n in files) or (folder / CONTRACT_DIR).exists():
        _swap_in(folder, CONTRACT_DIR, files, old_contract)
    _swap_in(folder, TESTS_DIR, files, {"test_pipeline.py", "pytest.ini"})
    files[SPEC_FILE] = keep_hand_written(folder, files[SPEC_FILE])
    for name in ("README.md", SPEC_FILE):
        atomic_write(folder / name, files[name])


def unrun_captures(analysis: Analysis) -> list[Problem]:
    """At export, a warning when the notebook marks captures (data, model, metrics) but has
    no capture record and no stray one (:func:`stray_capture` says of that): its marked
    cells have not run, so the pipeline checks nothing and its tests skip. Not part of the
    analysis a panel shows while the cells are being marked."""
    notebook = analysis.notebook
    marked = [c for c in notebook.cells if c.cell_type == "code" and c.mark is not None
              and c.role in _RECORDED]
    if not marked or record_path(notebook.path).exists() or any(
            "no capture record" in p.message for p in analysis.problems):
        return []
    tags = all(c.mark is not None and c.mark.spelling != "magic" for c in marked)
    return [Problem(
        f"{notebook.name} has no capture record ({record_path(notebook.path).name}) yet, so "
        "the pipeline checks no captured data, model or metrics and its generated tests skip "
        "them: run its marked cells first, then export again"
        + (" (cells marked by tags capture when run in JupyterLab with the jupyter-mlops "
           "panel; in a papermill or nbconvert run, mark them with %%mlops)" if tags else ""),
        None, "warning")]


def missing_kernel(analysis: Analysis, spec: PipelineSpec) -> list[Problem]:
    """At export, a warning when the pipeline's kernel is not installed here: its run would
    refuse to start (a notebook saved on another machine names its kernel, such as
    ``conda-root-py``)."""
    from .kernels import installed_kernels, kernel_spec

    name = spec.kernel.get("name", "")
    if not isinstance(name, str) or not KERNEL_NAME.fullmatch(name) or kernel_spec(name):
        return []
    known = ", ".join(installed_kernels()) or "none"
    return [Problem(
        f"{analysis.notebook.name}: its kernel `{name}` is not installed here (the kernels "
        f"are: {known}); the pipeline runs where it is, or here with `jupyter mlops run "
        "PIPELINE_DIR --kernel NAME`; export with --kernel NAME to make another its kernel",
        None, "warning")]


def export(notebook: str | Path, folder: str | Path | None = None, split: str | None = None,
           allow_pickle: bool = False, trust: Iterable[str] = (),
           kernel: str | None = None) -> ExportResult:
    """Export ``notebook`` into ``folder`` (default ``<stem>_pipeline/`` beside it).

    Raises :class:`AnalysisError` with every problem when the notebook cannot become a
    pipeline; nothing is written then.
    """
    target = Path(folder) if folder is not None else default_folder(notebook)
    analysis, spec = plan(notebook, target, split, allow_pickle, trust, kernel)
    if analysis.errors:
        raise AnalysisError(analysis.errors)
    old = _check_target(target)
    write_folder(target, render(analysis, spec), old)
    warnings = [p for p in analysis.problems if p.severity != "error"]
    return ExportResult(folder=target, spec=spec, warnings=warnings + unrun_captures(analysis)
                        + missing_kernel(analysis, spec))
