"""Tests for jupyter_mlops.notebook.reader: nbformat in, cells with roles and plain Python out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import build_notebook

from jupyter_mlops.errors import NotebookError
from jupyter_mlops.notebook.reader import SourceNotebook, parse_notebook, read_notebook, to_python
from jupyter_mlops.notebook.roles import Mark


def read(*cells: Any) -> SourceNotebook:
    """Read a notebook built from ``cells`` (as ``build_notebook`` takes them).

    Tags are set after building, since nbformat's validation refuses some of the tags the
    reader has to understand (``mlops:after=A,B``).
    """
    plain = [c if isinstance(c, str) or c[0] == "md" else c[0] for c in cells]
    nb = build_notebook(*plain)
    for cell, given in zip(nb.cells, cells, strict=True):
        if isinstance(given, tuple) and given[0] != "md":
            cell.metadata["tags"] = list(given[1])
    return parse_notebook(json.dumps(nb), "t.ipynb")


def raw(cells: list[Any], **top: Any) -> str:
    """Notebook JSON text with exactly these cells and top-level fields."""
    content = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}
    content.update(top)
    return json.dumps(content)


def code_cell(source: Any, **extra: Any) -> dict[str, Any]:
    return {"cell_type": "code", "source": source, "metadata": {}, "outputs": [],
            "execution_count": None, **extra}


# --- what is not a notebook ------------------------------------------------------------------


def test_not_json():
    with pytest.raises(NotebookError) as info:
        parse_notebook(b"{not json", "bad.ipynb")
    message = str(info.value)
    assert message.startswith(
        "bad.ipynb is not a notebook: it is not valid JSON (line 1, column 2)")
    assert "restore it from version control" in message


def test_not_utf8():
    with pytest.raises(NotebookError, match=r"bad\.ipynb is not a notebook: it is not valid JSON"):
        parse_notebook(b"\xff\xfe\x00", "bad.ipynb")


def test_top_level_not_an_object():
    with pytest.raises(NotebookError) as info:
        parse_notebook("[1, 2]", "t.ipynb")
    assert str(info.value) == "t.ipynb is not a valid notebook: the top level is not a JSON object"


def test_nbformat_missing():
    with pytest.raises(NotebookError) as info:
        parse_notebook('{"cells": []}', "t.ipynb")
    assert str(info.value) == "t.ipynb is not a valid notebook: the `nbformat` field is missing"


def test_nbformat_3_says_how_to_convert():
    with pytest.raises(NotebookError) as info:
        parse_notebook(raw([], nbformat=3), "old.ipynb")
    assert str(info.value) == (
        "old.ipynb is nbformat 3; jupyter-mlops reads nbformat 4: convert it with "
        "`jupyter nbconvert --to notebook --nbformat 4 old.ipynb`"
    )


def test_cells_missing():
    text = json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}})
    with pytest.raises(NotebookError) as info:
        parse_notebook(text, "t.ipynb")
    assert str(info.value) == "t.ipynb is not a valid notebook: the `cells` list is missing"


def test_cell_not_an_object():
    with pytest.raises(NotebookError, match=r"cell 2 is not an object"):
        parse_notebook(raw([code_cell("x = 1"), "x = 2"]), "t.ipynb")


def test_cell_without_cell_type():
    with pytest.raises(NotebookError) as info:
        parse_notebook(raw([code_cell("x = 1"), {"source": "y = 2", "metadata": {}}]), "t.ipynb")
    assert str(info.value) == (
        "t.ipynb is not a valid notebook: cell 2 has no valid `cell_type` (code, markdown or raw)"
    )


def test_cell_with_unknown_cell_type():
    with pytest.raises(NotebookError, match="cell 1 has no valid `cell_type`"):
        parse_notebook(raw([{"cell_type": "heading", "source": "x", "metadata": {}}]), "t.ipynb")


def test_cell_without_source():
    cell = code_cell("x")
    del cell["source"]
    with pytest.raises(NotebookError) as info:
        parse_notebook(raw([cell]), "t.ipynb")
    assert str(info.value) == "t.ipynb is not a valid notebook: cell 1 has no `source`"


def test_source_not_text():
    with pytest.raises(NotebookError, match="cell 1 has a `source` that is not text"):
        parse_notebook(raw([code_cell(["x = 1\n", 2])]), "t.ipynb")
    with pytest.raises(NotebookError, match="cell 1 has a `source` that is not text"):
        parse_notebook(raw([code_cell(7)]), "t.ipynb")


def test_tags_that_are_not_a_list_are_a_notebook_error():
    cell = code_cell("x = 1", metadata={"tags": 5})
    with pytest.raises(NotebookError, match="cell 1"):
        parse_notebook(raw([cell]), "t.ipynb")


def test_non_python_kernel_from_kernelspec():
    meta = {"kernelspec": {"name": "ir", "display_name": "R", "language": "R"}}
    with pytest.raises(NotebookError) as info:
        parse_notebook(raw([], metadata=meta), "t.ipynb")
    assert str(info.value) == "t.ipynb uses a R kernel; jupyter-mlops exports Python notebooks"


def test_non_python_kernel_from_language_info():
    with pytest.raises(NotebookError, match=r"t\.ipynb uses a julia kernel"):
        parse_notebook(raw([], metadata={"language_info": {"name": "julia"}}), "t.ipynb")


def test_read_missing_file_and_folder(tmp_path: Path):
    with pytest.raises(NotebookError, match="no such notebook; check the path"):
        read_notebook(tmp_path / "missing.ipynb")
    with pytest.raises(NotebookError, match="is a folder, not a notebook"):
        read_notebook(tmp_path)


# --- what a notebook holds ---------------------------------------------------------------------


def test_source_as_list_of_strings_is_joined():
    sn = parse_notebook(raw([code_cell(["x = 1\n", "y = 2"])]), "t.ipynb")
    assert sn.cells[0].source == "x = 1\ny = 2"
    assert sn.cells[0].code == "x = 1\ny = 2"
    assert sn.cells[0].python == "x = 1\ny = 2"


def test_cells_keep_index_number_type_id_and_execution_count():
    nb = build_notebook("x = 1", ("md", "## Title"), "y = 2")
    nb.cells[2].execution_count = 7
    sn = parse_notebook(nbformat.writes(nb), "t.ipynb")
    assert [c.index for c in sn.cells] == [0, 1, 2]
    assert [c.number for c in sn.cells] == [1, 2, 3]
    assert [c.cell_type for c in sn.cells] == ["code", "markdown", "code"]
    assert [c.cell_id for c in sn.cells] == [c.id for c in nb.cells]
    assert [c.execution_count for c in sn.cells] == [None, None, 7]
    assert sn.cells[1].python == ""
    assert sn.cells[1].heading() == "Title"
    assert sn.cells[0].heading() is None


def test_notebook_name_sha_and_kernelspec():
    text = nbformat.writes(build_notebook("x = 1"))
    sn = parse_notebook(text, "dir/t.ipynb")
    import hashlib

    assert sn.name == "t.ipynb"
    assert sn.sha256 == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert sn.kernelspec == {"name": "python3", "display_name": "Python 3 (ipykernel)",
                             "language": "python"}
    assert sn.problems == []


def test_kernelspec_defaults_when_absent():
    sn = parse_notebook(raw([]), "t.ipynb")
    assert sn.kernelspec == {"name": "python3", "display_name": "Python 3 (ipykernel)",
                             "language": "python"}


def test_headings_only_level_two():
    sn = read(("md", "# Top"), ("md", "text\n## Load the data ##\nmore"), ("md", "### Sub"))
    assert [c.heading() for c in sn.cells] == [None, "Load the data", None]


# --- the magic line ---------------------------------------------------------------------------


def test_magic_line_sets_the_mark_and_is_removed_from_code():
    sn = read("%%mlops step train --after load\nmodel.fit(X, y)\n")
    cell = sn.cells[0]
    assert cell.mark == Mark("step", name="train", after=("load",))
    assert cell.role == "step"
    assert cell.code == "model.fit(X, y)\n"
    assert cell.python == "model.fit(X, y)\n"
    assert cell.source == "%%mlops step train --after load\nmodel.fit(X, y)\n"


def test_leading_blank_lines_before_the_magic():
    sn = read("\n\n%%mlops step load\nx = 1\n")
    assert sn.cells[0].mark == Mark("step", name="load")
    assert sn.cells[0].code == "x = 1\n"


def test_leading_whitespace_only_lines_before_the_magic():
    # IPython drops leading whitespace-only lines and runs the cell as `%%mlops step load`.
    sn = read("   \n%%mlops step load\nx = 1\n")
    assert sn.cells[0].mark == Mark("step", name="load")
    assert sn.cells[0].code == "x = 1\n"
    assert sn.cells[0].python == "x = 1\n"


def test_magic_only_cell_has_empty_code():
    sn = read("%%mlops setup")
    assert sn.cells[0].mark == Mark("setup")
    assert sn.cells[0].code == ""


def test_other_cell_magic_starting_with_mlops_is_not_ours():
    sn = read("%%mlopsx\nx = 1")
    assert sn.cells[0].mark is None
    assert sn.problems == []


def test_unmarked_cell_has_no_role():
    sn = read("x = 1")
    assert sn.cells[0].mark is None
    assert sn.cells[0].role is None


# --- tags of every spelling -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "mark"),
    [
        (["mlops:step=train"], Mark("step", name="train", spelling="tag")),
        (["mlops:step=train", "mlops:after=load,prep"],
         Mark("step", name="train", after=("load", "prep"), spelling="tag")),
        (["mlops:step=train", "mlops:after=load", "mlops:after=prep"],
         Mark("step", name="train", after=("load", "prep"), spelling="tag")),
        (["mlops:data=a,b"], Mark("data", variables=("a", "b"), spelling="tag")),
        (["mlops:model=clf"], Mark("model", variables=("clf",), spelling="tag")),
        (["mlops:metrics=acc,f1"], Mark("metrics", variables=("acc", "f1"), spelling="tag")),
        (["mlops:setup"], Mark("setup", spelling="tag")),
        (["mlops:params"], Mark("params", spelling="tag")),
        (["mlops:skip"], Mark("skip", spelling="tag")),
        (["parameters"], Mark("params", spelling="tag")),
        (["imports"], Mark("setup", spelling="tag")),
        (["functions"], Mark("setup", spelling="tag")),
        (["pipeline-parameters"], Mark("params", spelling="tag")),
        (["pipeline-metrics"], Mark("metrics", spelling="tag")),
        (["step:load"], Mark("step", name="load", spelling="kale")),
        (["block:load"], Mark("step", name="load", spelling="kale")),
        (["block:train", "prev:load"], Mark("step", name="train", after=("load",),
                                            spelling="kale")),
        (["skip"], Mark("skip", spelling="tag")),
        (["hide-input"], None),
    ],
)
def test_tags(tags, mark):
    sn = read(("x = 1", tags))
    assert sn.problems == []
    assert sn.cells[0].mark == mark
    assert sn.cells[0].code == "x = 1"


def test_magic_and_tag_saying_the_same_merge():
    sn = read(("%%mlops step train\nx = 1", ["mlops:step=train", "mlops:after=load"]))
    assert sn.problems == []
    assert sn.cells[0].mark == Mark("step", name="train", after=("load",))


def test_magic_and_tag_variables_merge():
    sn = read(("%%mlops data df\nx = 1", ["mlops:data=X,df"]))
    assert sn.problems == []
    assert sn.cells[0].mark == Mark("data", variables=("df", "X"))


def test_kale_block_continues_and_mlops_step_does_not():
    sn = read(("x = 1", ["block:a"]), ("y = 1", ["block:a", "mlops:step=a"]))
    assert sn.cells[0].mark is not None and sn.cells[0].mark.continues is True
    assert sn.cells[1].mark is not None and sn.cells[1].mark.continues is False


# --- role problems ------------------------------------------------------------------------------


def test_conflicting_roles_magic_and_tag():
    sn = read("x = 0", ("%%mlops setup\nimport os", ["mlops:step=x"]))
    assert [p.cell for p in sn.problems] == [2]
    assert sn.problems[0].message == (
        "t.ipynb, cell 2 has more than one role: `setup` (magic), `step x` (tag); keep one"
    )
    assert sn.problems[0].severity == "error"
    assert sn.cells[1].mark is None


def test_conflicting_step_names():
    sn = read(("x = 1", ["mlops:step=a", "mlops:step=b"]))
    assert [p.cell for p in sn.problems] == [1]
    assert "cell 1 has more than one role: `step a` (tag), `step b` (tag)" in sn.problems[0].message


def test_conflicting_foreign_tags():
    sn = read(("x = 1", ["parameters", "skip"]))
    assert [p.cell for p in sn.problems] == [1]
    assert "`params` (tag), `skip` (tag)" in sn.problems[0].message


def test_unknown_role_in_magic():
    sn = read("x = 1", "%%mlops bogus\ny = 2")
    assert [p.cell for p in sn.problems] == [2]
    assert sn.problems[0].message == (
        "t.ipynb, cell 2: unknown role `bogus` in `%%mlops bogus`; use one of setup, params, "
        "step, data, model, metrics, skip, prepare"
    )
    assert sn.cells[1].mark is None
    assert sn.cells[1].code == "y = 2"


def test_unknown_role_in_tag():
    sn = read(("x = 1", ["mlops:bogus"]))
    assert [p.cell for p in sn.problems] == [1]
    assert "t.ipynb, cell 1: unknown role `bogus` in tag `mlops:bogus`" in sn.problems[0].message


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("%%mlops\nx = 1", "`%%mlops` needs a role"),
        ("%%mlops step\nx = 1", "`%%mlops step` needs exactly one step name"),
        ("%%mlops setup extra\nx = 1", "`%%mlops setup` takes no arguments"),
        ("%%mlops model a b\nx = 1", "names at most one model variable"),
        ("%%mlops step a --bogus\nx = 1", "unknown option `--bogus`"),
    ],
)
def test_bad_magic_arguments(source, message):
    sn = read("y = 0", source)
    assert [p.cell for p in sn.problems] == [2]
    assert sn.problems[0].message.startswith("t.ipynb, cell 2: ")
    assert message in sn.problems[0].message


def test_after_without_step():
    sn = read(("x = 1", ["mlops:after=a"]))
    assert [p.cell for p in sn.problems] == [1]
    assert sn.problems[0].message == (
        "t.ipynb, cell 1: `after` works only on a step cell; add `mlops:step=NAME` or remove it"
    )


def test_all_role_problems_are_collected():
    sn = read("%%mlops bogus", "x = 1", ("y = 1", ["mlops:step=9"]))
    assert [p.cell for p in sn.problems] == [1, 3]


# --- IPython syntax becomes plain Python -------------------------------------------------------


def test_time_magic_body_is_analysed():
    sn = read("%%time\ny = 1\n")
    assert sn.cells[0].code == "%%time\ny = 1\n"
    assert sn.cells[0].python == "y = 1\n"


def test_stacked_pass_through_magics_after_mlops_line():
    sn = read("%%mlops step b\n%%capture\n%%time\nw = 1")
    assert sn.cells[0].mark == Mark("step", name="b")
    assert sn.cells[0].code == "%%capture\n%%time\nw = 1"
    assert sn.cells[0].python == "w = 1"


def test_shell_and_line_magics_become_plain_python():
    sn = read("!pip install x\n%matplotlib inline\nz = 2")
    assert sn.cells[0].python == (
        "get_ipython().system('pip install x')\n"
        "get_ipython().run_line_magic('matplotlib', 'inline')\n"
        "z = 2\n"
    )


def test_to_python_keeps_plain_python_unchanged():
    assert to_python("x = 1") == "x = 1"
    # a `?` or `%` inside a string or comment is not IPython syntax
    assert to_python("y = 'a?'  # 100%") == "y = 'a?'  # 100%\n"


def test_to_python_help_syntax():
    assert to_python("df?") == "get_ipython().run_line_magic('pinfo', 'df')\n"
