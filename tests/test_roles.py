"""Tests for jupyter_mlops.notebook.roles: the ``%%mlops ROLE ...`` line and the ``mlops:`` tags."""

from __future__ import annotations

import nbformat
import pytest

from jupyter_mlops.errors import RoleError
from jupyter_mlops.notebook.roles import ROLES, Mark, mark_to_tags, parse_magic_line, parse_tags

# --- the magic line -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "mark"),
    [
        ("setup", Mark("setup")),
        ("params", Mark("params")),
        ("skip", Mark("skip")),
        ("step train", Mark("step", name="train")),
        ("step train --after load prep", Mark("step", name="train", after=("load", "prep"))),
        ("step my-step_2", Mark("step", name="my-step_2")),
        ("data", Mark("data")),
        ("data df X_train", Mark("data", variables=("df", "X_train"))),
        ("model", Mark("model")),
        ("model clf", Mark("model", variables=("clf",))),
        ("metrics", Mark("metrics")),
        (
            "metrics acc --min acc=0.9 f1=0.5 --max loss=1",
            Mark("metrics", variables=("acc",), minimums=(("acc", 0.9), ("f1", 0.5)),
                 maximums=(("loss", 1.0),)),
        ),
        ("  step   train  ", Mark("step", name="train")),
    ],
)
def test_parse_magic_line(args, mark):
    parsed = parse_magic_line(args)
    assert parsed == mark
    assert parsed.spelling == "magic"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("", "`%%mlops` needs a role; use one of setup, params, step, data, model, metrics, skip"),
        ("bogus", "unknown role `bogus` in `%%mlops bogus`; use one of setup, params, step"),
        ("step", "`%%mlops step` needs exactly one step name"),
        ("step a b", "`%%mlops step a b` needs exactly one step name"),
        ("step 9lives", "step name `9lives` in `%%mlops step 9lives` is not valid"),
        ("step 'bad name'", "step name `bad name`"),
        ("step a --after", "`--after` in `%%mlops step a --after` needs at least one step name"),
        ("step a --after 1x", "step name `1x`"),
        ("step a --min x=1", "unknown option `--min` in `%%mlops step a --min x=1`; step accepts "
                             "--after"),
        ("setup extra", "`%%mlops setup` takes no arguments, got `%%mlops setup extra`"),
        ("skip --after a", "unknown option `--after` in `%%mlops skip --after a`"),
        ("model a b", "`%%mlops model a b` names at most one model variable"),
        ("data 1bad", "`1bad` in `%%mlops data 1bad` is not a Python variable name"),
        ("metrics --min acc", "--min in `%%mlops metrics --min acc` needs NAME=VALUE, got `acc`"),
        ("metrics --max acc=high", "--max acc= in `%%mlops metrics --max acc=high` needs a number"),
        ("step 'unclosed", "cannot read `%%mlops step 'unclosed`"),
    ],
)
def test_parse_magic_line_errors(args, message):
    with pytest.raises(RoleError) as info:
        parse_magic_line(args)
    assert message in str(info.value)


# --- tags -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "mark"),
    [
        ("mlops:setup", Mark("setup", spelling="tag")),
        ("mlops:params", Mark("params", spelling="tag")),
        ("mlops:skip", Mark("skip", spelling="tag")),
        ("mlops:step=train", Mark("step", name="train", spelling="tag")),
        ("mlops:after=load", Mark("after", after=("load",), spelling="tag")),
        ("mlops:after=load,prep", Mark("after", after=("load", "prep"), spelling="tag")),
        ("mlops:data=a,b", Mark("data", variables=("a", "b"), spelling="tag")),
        ("mlops:data", Mark("data", spelling="tag")),
        ("mlops:model=clf", Mark("model", variables=("clf",), spelling="tag")),
        ("mlops:metrics=acc,f1", Mark("metrics", variables=("acc", "f1"), spelling="tag")),
        ("mlops:metrics", Mark("metrics", spelling="tag")),
        ("parameters", Mark("params", spelling="tag")),
        ("injected-parameters", Mark("params", spelling="tag")),
        ("pipeline-parameters", Mark("params", spelling="tag")),
        ("imports", Mark("setup", spelling="tag")),
        ("functions", Mark("setup", spelling="tag")),
        ("pipeline-metrics", Mark("metrics", spelling="tag")),
        ("skip", Mark("skip", spelling="tag")),
        ("step:load", Mark("step", name="load", spelling="kale")),
        ("block:load", Mark("step", name="load", spelling="kale")),
        ("prev:load", Mark("after", after=("load",), spelling="kale")),
    ],
)
def test_parse_tag(tag, mark):
    assert parse_tags([tag]) == [mark]


def test_kale_step_tags_continue_a_step_and_ours_do_not():
    assert parse_tags(["block:a"])[0].continues is True
    assert parse_tags(["step:a"])[0].continues is True
    assert parse_tags(["mlops:step=a"])[0].continues is False
    assert parse_magic_line("step a").continues is False


def test_unrelated_and_non_string_tags_are_ignored():
    assert parse_tags(["hide-input", "remove-cell", 3, None, "block:"]) == []


def test_several_tags_of_one_role_fold_into_one_mark_in_order():
    assert parse_tags(["mlops:step=train", "prev:load", "mlops:after=prep"]) == [
        Mark("step", name="train", spelling="tag"),
        Mark("after", after=("load", "prep"), spelling="kale"),
    ]


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("mlops:bogus", "unknown role `bogus` in tag `mlops:bogus`"),
        ("mlops:step", "tag `mlops:step` needs one step name"),
        ("mlops:step=a,b", "tag `mlops:step=a,b` needs one step name"),
        ("mlops:step=9x", "step name `9x` in tag `mlops:step=9x` is not valid"),
        ("mlops:after", "tag `mlops:after` needs step names"),
        ("mlops:setup=x", "tag `mlops:setup=x`: `setup` takes no argument"),
        ("mlops:model=a,b", "tag `mlops:model=a,b` names at most one model variable"),
        ("mlops:data=a-b", "`a-b` in tag `mlops:data=a-b` is not a Python variable name"),
        ("step:bad name", "step name `bad name` in tag `step:bad name` is not valid"),
        ("prev:", "step name `` in tag `prev:` is not valid"),
    ],
)
def test_parse_tag_errors(tag, message):
    with pytest.raises(RoleError) as info:
        parse_tags([tag])
    assert message in str(info.value)


# --- tags the sidebar writes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mark", "tags"),
    [
        (Mark("step", name="train"), ["mlops:step=train"]),
        (Mark("setup"), ["mlops:setup"]),
        (Mark("metrics"), ["mlops:metrics"]),
        (Mark("model", variables=("clf",)), ["mlops:model=clf"]),
    ],
)
def test_mark_to_tags(mark, tags):
    assert mark_to_tags(mark) == tags


@pytest.mark.parametrize(
    "mark",
    [
        Mark("step", name="train", after=("load", "prep")),
        Mark("data", variables=("X", "y")),
        Mark("metrics", variables=("acc", "f1")),
    ],
)
def test_tags_written_for_a_mark_read_back_as_that_mark(mark):
    marks = parse_tags(mark_to_tags(mark))
    roles = [m for m in marks if m.role != "after"]
    after = tuple(a for m in marks if m.role == "after" for a in m.after)
    variables = tuple(v for m in roles for v in m.variables)
    assert [m.role for m in roles] == [mark.role]
    assert roles[0].name == mark.name
    assert after == mark.after
    assert variables == mark.variables


@pytest.mark.parametrize(
    "mark",
    [
        Mark("step", name="train", after=("load", "prep")),
        Mark("data", variables=("X", "y")),
    ],
)
def test_tags_written_for_a_mark_keep_the_notebook_valid(mark):
    # nbformat 4's schema forbids commas in a tag (pattern ^[^,]+$).
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.metadata["tags"] = mark_to_tags(mark)
    nb.cells.append(cell)
    nbformat.validate(nb)


def test_roles_vocabulary():
    assert ROLES == ("setup", "params", "step", "data", "model", "metrics", "skip", "prepare")
