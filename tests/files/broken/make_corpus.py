"""Write the broken-input corpus that ``tests/test_broken.py`` feeds to the CLI.

Run ``python tests/files/broken/make_corpus.py`` to (re)generate the files beside this script,
or ``python tests/files/broken/make_corpus.py --check`` to verify the committed files are what
the script writes. The output is deterministic: fixed cell ids, sorted keys, no timestamps.

Every file here is broken on purpose in exactly one way, so each case in ``cases.yaml`` tests
one message. Cell numbers in the comments count every cell from 1, as JupyterLab shows them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

PYTHON_KERNEL = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
R_KERNEL = {"name": "ir", "display_name": "R", "language": "R"}


# -- building notebooks ----------------------------------------------------------------------
def _lines(text: str) -> list[str]:
    """Cell source the way Jupyter stores it: a list of lines, each but the last with \\n."""
    return text.splitlines(keepends=True)


def code(source: str, *tags: str) -> dict[str, Any]:
    """A code cell (its id is filled in by :func:`notebook`)."""
    metadata: dict[str, Any] = {"tags": list(tags)} if tags else {}
    return {"cell_type": "code", "execution_count": None, "metadata": metadata,
            "outputs": [], "source": _lines(source)}


def md(source: str) -> dict[str, Any]:
    """A markdown cell."""
    return {"cell_type": "markdown", "metadata": {}, "source": _lines(source)}


def notebook(*cells: dict[str, Any], kernel: dict[str, str] | None = None) -> dict[str, Any]:
    """An nbformat 4.5 notebook with deterministic cell ids ``cell-1``, ``cell-2``, ..."""
    kernel = kernel or PYTHON_KERNEL
    numbered = []
    for number, cell in enumerate(cells, start=1):
        cell = dict(cell)
        if "cell_type" in cell or "source" in cell:
            cell.setdefault("id", f"cell-{number}")
        numbered.append(cell)
    return {
        "cells": numbered,
        "metadata": {
            "kernelspec": dict(kernel),
            "language_info": {"name": kernel["language"].lower()},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def dump(data: Any) -> str:
    """JSON text as Jupyter writes it (indent 1), with sorted keys so it never varies."""
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


# -- the corpus ----------------------------------------------------------------------------
#: A notebook that exports fine: the base for the CLI-argument and `run` cases.
GOOD = notebook(
    md("# A small pipeline that works"),
    code("import math"),
    code('%%mlops params\nn = 3  # how many rows\nrate = 0.5\nflag = True\nlabel = "x"'),
    code("%%mlops step load\nrows = [math.sqrt(i) for i in range(n)]"),
    code("%%mlops step train\ntotal = sum(rows) * rate"),
)

#: Role syntax: one bad ``%%mlops`` line or tag per notebook, each in a known cell.
ROLE_NOTEBOOKS: dict[str, dict[str, Any]] = {
    # cell 3: `stpe` is not a role
    "role_unknown.ipynb": notebook(
        md("# Unknown role"), code("import math"), code("%%mlops stpe train\nx = math.pi")),
    # cell 2: `%%mlops` with nothing after it
    "role_missing.ipynb": notebook(code("import math"), code("%%mlops\nx = math.pi")),
    # cell 3: `%%mlops step` without a name
    "step_no_name.ipynb": notebook(
        md("# Step without a name"), code("%%mlops step load\nx = 1"),
        code("%%mlops step\ny = x + 1")),
    # cell 2: two names for one step
    "step_two_names.ipynb": notebook(
        code("%%mlops step load\nx = 1"), code("%%mlops step train model\ny = x + 1")),
    # cell 2: a step name that starts with a digit
    "step_bad_name.ipynb": notebook(
        code("%%mlops step load\nx = 1"), code("%%mlops step 2nd\ny = x + 1")),
    # cell 2: a step name with a dot
    "step_dotted_name.ipynb": notebook(
        code("%%mlops step load\nx = 1"), code("%%mlops step train.v2\ny = x + 1")),
    # cell 2: `--after` with no step after it
    "after_empty.ipynb": notebook(
        code("%%mlops step load\nx = 1"), code("%%mlops step train --after\ny = x + 1")),
    # cell 2: an option `step` does not have
    "unknown_option.ipynb": notebook(
        code("%%mlops step load\nx = 1"), code("%%mlops step train --before load\ny = x + 1")),
    # cell 2: an option on a role that takes none
    "setup_option.ipynb": notebook(
        md("# Option on setup"), code("%%mlops setup --after load\nimport math")),
    # cell 1: `setup` takes no arguments
    "setup_extra.ipynb": notebook(
        code("%%mlops setup extra\nimport math"), code("%%mlops step load\nx = math.pi")),
    # cell 3: `model` names at most one variable
    "model_two.ipynb": notebook(
        code("%%mlops step load\na = 1\nb = 2"), code("%%mlops step train\nc = a + b"),
        code("%%mlops model a b\nc = c + 1")),
    # cell 2: `--min acc` without `=VALUE`
    "min_no_value.ipynb": notebook(
        code("%%mlops step train\nacc = 0.9"), code("%%mlops metrics acc --min acc\nacc")),
    # cell 2: `--max loss=high` is not a number
    "max_not_number.ipynb": notebook(
        code("%%mlops step train\nloss = 0.1"), code("%%mlops metrics loss --max loss=high\nloss")),
    # cell 2: `data` names something that is not a variable name
    "data_bad_variable.ipynb": notebook(
        code("%%mlops step load\nframe = [1, 2]"), code("%%mlops data frame.x\nframe")),
    # cell 2: an unclosed quote in the magic line
    "unclosed_quote.ipynb": notebook(
        code("import math"), code('%%mlops step "train\nx = math.pi')),
    # cell 2: tag `mlops:foo`
    "tag_unknown.ipynb": notebook(
        code("import math"), code("x = math.pi", "mlops:foo")),
    # cell 2: tag `mlops:step` without `=NAME`
    "tag_step_no_name.ipynb": notebook(
        code("import math"), code("x = math.pi", "mlops:step")),
    # cell 2: tag `mlops:setup=x` (setup takes no argument)
    "tag_setup_argument.ipynb": notebook(
        md("# Setup with an argument"), code("import math", "mlops:setup=x")),
    # cell 2: tag `mlops:after=load` on a cell that is not a step
    "tag_after_not_step.ipynb": notebook(
        code("%%mlops step load\nx = 1"), code("y = x + 1", "mlops:after=load")),
    # cell 3: a magic says step, a tag says skip
    "two_roles.ipynb": notebook(
        md("# Two roles"), code("%%mlops step load\nx = 1"),
        code("%%mlops step train\ny = x + 1", "mlops:skip")),
}

#: Analysis: well-formed roles, but a notebook that cannot become a pipeline.
ANALYSIS_NOTEBOOKS: dict[str, dict[str, Any]] = {
    # cell 3 uses `offset`, which no cell defines
    "undefined_name.ipynb": notebook(
        md("# A name nobody defines"), code("%%mlops step load\nrows = [1, 2, 3]"),
        code("%%mlops step train\ntotal = sum(rows) + offset")),
    # cell 3 uses `scale`, which only skipped cell 2 defines
    "skipped_definition.ipynb": notebook(
        code("%%mlops step load\nrows = [1, 2, 3]"), code("%%mlops skip\nscale = 10"),
        code("%%mlops step train\ntotal = sum(rows) * scale")),
    # cell 1 uses `x` before cell 2 defines it
    "use_before_define.ipynb": notebook(
        code("%%mlops step report\ny = x + 1"), code("%%mlops step load\nx = 1")),
    # cell 3 starts step `load` again (cell 1 already did)
    "duplicate_step.ipynb": notebook(
        code("%%mlops step load\nx = 1"), code("%%mlops step train\ny = x + 1"),
        code("%%mlops step load\nz = 2")),
    # cell 2: `--after lod`, a step that does not exist
    "after_unknown.ipynb": notebook(
        code("%%mlops step load\nx = 1"), code("%%mlops step train --after lod\ny = x + 1")),
    # cells 1 and 2: `a` runs after `b`, and `b` needs `x` from `a`
    "cycle.ipynb": notebook(
        code("%%mlops step a --after b\nx = 1"), code("%%mlops step b\ny = x + 1")),
    # cell 2: a parameter that is computed, not a literal
    "params_nonliteral.ipynb": notebook(
        code("import math"), code("%%mlops params\nn = len([1, 2])"),
        code("%%mlops step load\nx = math.pi")),
    # cell 2: a parameter from a function call
    "params_call.ipynb": notebook(
        code("import time"), code("%%mlops params\nstarted = time.time()"),
        code("%%mlops step load\nx = 1")),
    # cell 1: tuple assignment in a params cell
    "params_tuple.ipynb": notebook(
        code("%%mlops params\nlow, high = 1, 2"), code("%%mlops step load\nx = 1")),
    # cell 1: a statement that is not an assignment in a params cell
    "params_statement.ipynb": notebook(
        code('%%mlops params\nn = 3\nprint("hello")'), code("%%mlops step load\nx = n")),
    # cell 1: `n: int = "three"`
    "params_annotation.ipynb": notebook(
        code('%%mlops params\nn: int = "three"'), code("%%mlops step load\nx = 1")),
    # cell 1 (papermill's `parameters` tag): a set is not a parameter type
    "params_tag_set.ipynb": notebook(
        code("ids = {1, 2}", "parameters"), code("%%mlops step load\nx = 1")),
    # cell 2: `from os import *` in a step
    "star_import.ipynb": notebook(
        md("# Star import"), code("%%mlops step load\nfrom os import *\nsep2 = sep * 2")),
    # cell 2: a syntax error in an unmarked cell that joins step `load` (line 2)
    "syntax_error.ipynb": notebook(
        code("%%mlops step load\nx = 1"), code("y = x +\nz = 2")),
    # cell 2: a syntax error on line 3 of a `%%mlops step` cell (line 2 of its code)
    "syntax_error_magic.ipynb": notebook(
        code("%%mlops step load\nx = 1"), code("%%mlops step train\ny = x + 1\nz = (y +\n")),
    # cell 2: a syntax error on line 4 of a `%%mlops step` cell whose code starts with %%time
    "syntax_error_time.ipynb": notebook(
        code("%%mlops step load\nx = 1"),
        code("%%mlops step train\n%%time\ny = x + 1\nz = (y +\n")),
    # cell 2: a setup cell uses `x`, which step `load` makes
    "setup_uses_step.ipynb": notebook(
        code("%%mlops step load\nx = 1"), code("%%mlops setup\ny = x + 1")),
    # cell 2: `%%mlops data frame` names a variable no cell defines
    "data_undefined.ipynb": notebook(
        code("%%mlops step load\nrows = [1, 2]"), code("%%mlops data frame\nrows = rows + [3]")),
    # cells 2, 4 and 5: several problems, each on its own line
    "many_problems.ipynb": notebook(
        md("# Many problems"), code("%%mlops stpe load\nx = 1"),
        code("%%mlops step load\ny = 2"), code("%%mlops step train\nz = y + missing"),
        code("%%mlops step load\nw = 3")),
}

#: Pipeline folders whose pipeline.yaml is broken.
GOOD_SPEC = {
    "version": 1,
    "name": "tiny",
    "source": "../tiny.ipynb",
    "source_sha256": "0" * 64,
    "workdir": "..",
    "kernel": dict(PYTHON_KERNEL),
    "allow_pickle": False,
    "parameters": [{"name": "n", "type": "int", "default": 3, "help": "", "cell": 1}],
    "steps": [{"name": "load", "notebook": "steps/01_load.ipynb", "cells": [2],
               "code_sha256": "0" * 64, "inputs": {}, "outputs": [], "parameters": ["n"],
               "after": []}],
    "edges": [],
}


def _spec(**changes: Any) -> dict[str, Any]:
    spec = json.loads(json.dumps(GOOD_SPEC))
    for key, value in changes.items():
        if value is None:
            spec.pop(key)
        else:
            spec[key] = value
    return spec


def _yaml(data: Any) -> str:
    # JSON is YAML; keeping to json avoids depending on pyyaml's formatting across versions.
    return "# jupyter-mlops pipeline spec (broken on purpose)\n" + dump(data)


PIPELINES: dict[str, str] = {
    "pipeline_bad_yaml": "version: 1\nname: tiny\nsteps: [load\n  - {name: : x}\n",
    "pipeline_wrong_version": _yaml(_spec(version=99)),
    "pipeline_missing_steps": _yaml(_spec(steps=None)),
    "pipeline_not_mapping": "- version: 1\n- name: tiny\n",
    "pipeline_empty": "",
    "pipeline_unknown_after": _yaml(_spec(steps=[dict(GOOD_SPEC["steps"][0], after=["prepare"])])),
    "pipeline_bad_parameter_type": _yaml(_spec(parameters=[
        {"name": "n", "type": "complex", "default": 3, "help": "", "cell": 1}])),
    "pipeline_step_not_mapping": _yaml(_spec(steps=["load"])),
    "pipeline_missing_step_notebook": _yaml(_spec()),
    "pipeline_no_steps": _yaml(_spec(steps=[])),
}


def _nbformat3() -> dict[str, Any]:
    return {
        "metadata": {"name": "old"},
        "nbformat": 3,
        "nbformat_minor": 0,
        "worksheets": [{"cells": [
            {"cell_type": "code", "collapsed": False, "input": "x = 1", "language": "python",
             "metadata": {}, "outputs": []},
        ], "metadata": {}}],
    }


def corpus() -> dict[str, bytes]:
    """Every corpus file, by its path relative to this folder."""
    files: dict[str, str | bytes] = {
        "good.ipynb": dump(GOOD),
        # files that are not notebooks at all
        "not_json.ipynb": "this is not a notebook {\n",
        "empty.ipynb": "",
        "json_list.ipynb": dump([{"cell_type": "code", "source": "x = 1"}]),
        "notes.txt": "Remember to mark the training cell.\n",
        "package.json": dump({"name": "not-a-notebook", "version": "1.0.0"}),
        "binary.ipynb": bytes(range(128, 256)) * 4,
        "truncated.ipynb": dump(GOOD)[:300],
        "nbformat3.ipynb": dump(_nbformat3()),
        "nbformat_missing.ipynb": dump({"cells": [], "metadata": {}}),
        "no_cells.ipynb": dump({"metadata": {"kernelspec": PYTHON_KERNEL}, "nbformat": 4,
                                "nbformat_minor": 5}),
        "cells_not_list.ipynb": dump(dict(notebook(), cells={"0": code("x = 1")})),
        # cell 2 has no cell_type
        "cell_without_type.ipynb": dump(notebook(
            code("x = 1"), {"id": "cell-2", "metadata": {}, "source": ["y = 2"]})),
        # cell 3 has no source
        "cell_without_source.ipynb": dump(notebook(
            md("# Title"), code("x = 1"),
            {"cell_type": "code", "execution_count": None, "id": "cell-3", "metadata": {},
             "outputs": []})),
        # cell 2's source is a number
        "cell_source_number.ipynb": dump(notebook(
            code("x = 1"), dict(code(""), source=42))),
        "r_kernel.ipynb": dump(notebook(code("x <- 1"), kernel=R_KERNEL)),
        # notebook metadata of the wrong shape
        "kernelspec_string.ipynb": dump(dict(notebook(code("x = 1")),
                                             metadata={"kernelspec": "python3"})),
        "language_info_string.ipynb": dump(dict(notebook(code("x = 1")),
                                                metadata={"language_info": "python"})),
        # cell 2's tags are a number, a string, or repeat themselves (nbformat forbids all three)
        "tags_number.ipynb": dump(notebook(
            code("import math"), dict(code("x = math.pi"), metadata={"tags": 5}))),
        "tags_string.ipynb": dump(notebook(
            code("import math"), dict(code("x = math.pi"), metadata={"tags": "mlops:skip"}))),
        "tags_repeated.ipynb": dump(notebook(
            code("import math"), code("x = math.pi", "keep", "keep"))),
        # cell 2 holds a NUL character
        "nul_byte.ipynb": dump(notebook(code("import math"), code("x = 1\0"))),
        # only markdown: nothing to export
        "no_code.ipynb": dump(notebook(md("# Notes"), md("Nothing to run here."))),
        # a kernel that is not installed: exports, but cannot run
        "kernel_missing.ipynb": dump(notebook(
            code("%%mlops step load\nx = 1"),
            kernel={"name": "mlops-no-such-kernel", "display_name": "Gone", "language": "python"})),
        # a folder whose name looks like a notebook
        "folder.ipynb/README.txt": "A folder, not a notebook.\n",
        # an existing folder that is not a pipeline: export -o must refuse it
        "not_a_pipeline/data.csv": "a,b\n1,2\n",
        # a folder without pipeline.yaml: run must refuse it
        "no_spec/README.txt": "No pipeline.yaml here.\n",
    }
    for name, nb in {**ROLE_NOTEBOOKS, **ANALYSIS_NOTEBOOKS}.items():
        files[name] = dump(nb)
    for folder, text in PIPELINES.items():
        files[f"{folder}/pipeline.yaml"] = text
    return {path: data if isinstance(data, bytes) else data.encode("utf-8")
            for path, data in sorted(files.items())}


def write(folder: Path) -> list[str]:
    """Write the corpus into ``folder``; return the paths written."""
    written = []
    for path, data in corpus().items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_bytes() != data:
            target.write_bytes(data)
        written.append(path)
    return written


def check(folder: Path) -> list[str]:
    """Paths whose committed content differs from what the script writes (or are missing)."""
    return [path for path, data in corpus().items()
            if not (folder / path).is_file() or (folder / path).read_bytes() != data]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only check that the files match; exit 1 if not")
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write (default: here)")
    args = parser.parse_args(argv)
    if args.check:
        stale = check(args.out)
        for path in stale:
            print(f"out of date: {path}", file=sys.stderr)
        return 1 if stale else 0
    written = write(args.out)
    print(f"wrote {len(written)} corpus files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
