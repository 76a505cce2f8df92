"""Tests for jupyter_mlops.notebook.analysis (and the params cell parser it uses): steps, data flow,
parameters and problems, from notebooks built in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import build_notebook

from jupyter_mlops.notebook.analysis import Analysis, StepPlan, analyze, find_cycle
from jupyter_mlops.notebook.params import parse_params_cell
from jupyter_mlops.notebook.reader import parse_notebook
from jupyter_mlops.pipeline.build import build_spec
from jupyter_mlops.pipeline.spec import Output, Parameter


def analyze_cells(*cells: Any, split: str | None = None,
                  counts: list[int | None] | None = None) -> Analysis:
    """Analyse a notebook built from ``cells``; ``counts`` sets the code cells' execution counts."""
    nb = build_notebook(*cells)
    if counts is not None:
        for cell, count in zip(nb.cells, counts, strict=True):
            if cell.cell_type == "code":
                cell.execution_count = count
    return analyze(parse_notebook(nbformat.writes(nb), "t.ipynb"), split=split)


def step(analysis: Analysis, name: str) -> StepPlan:
    return next(s for s in analysis.steps if s.name == name)


def graph(analysis: Analysis) -> dict[str, tuple[list[int], dict[str, str], list[str], list[str]]]:
    """Each step: (cell numbers, inputs, output names, after)."""
    return {
        s.name: ([c.number for c in s.cells], s.inputs, list(s.outputs), s.after)
        for s in analysis.steps
    }


def messages(analysis: Analysis) -> list[tuple[int | None, str]]:
    return [(p.cell, p.message) for p in analysis.problems]


# --- grouping cells into steps -------------------------------------------------------------------


def test_steps_from_magics_with_following_unmarked_cells():
    a = analyze_cells(
        "%%mlops step load\nx = 1",
        "y = x + 1",
        ("md", "Some notes"),
        "%%mlops step train\nz = y * 2",
        "w = z",
    )
    assert a.problems == []
    assert [s.name for s in a.steps] == ["load", "train"]
    assert [[c.number for c in s.cells] for s in a.steps] == [[1, 2], [4, 5]]
    assert [s.first_cell for s in a.steps] == [1, 4]
    assert [c.number for c in step(a, "train").markdown] == [3]
    assert a.setup == []


def test_unmarked_notebook_is_one_main_step_without_inputs_or_outputs():
    a = analyze_cells("import pandas as pd", "df = pd.DataFrame()", "y = df.sum()")
    assert a.problems == []
    assert graph(a) == {"main": ([1, 2, 3], {}, [], [])}
    assert a.setup == []
    assert a.parameters == []


def test_empty_cells_are_left_out():
    a = analyze_cells("x = 1", "", "   \n", "y = x")
    assert graph(a) == {"main": ([1, 4], {}, [], [])}


def test_leading_import_and_def_cells_become_setup():
    a = analyze_cells(
        "import pandas as pd",
        "def helper(v):\n    return v",
        "%%mlops step load\ndf = pd.DataFrame()",
    )
    assert a.problems == []
    assert [c.number for c in a.setup] == [1, 2]
    assert graph(a) == {"load": ([3], {}, [], [])}


def test_leading_data_cell_before_the_first_step_is_a_prepare_step():
    a = analyze_cells("import numpy as np", "x = np.ones(3)", "%%mlops step a\ny = x")
    assert [c.number for c in a.setup] == [1]
    assert graph(a) == {
        "prepare": ([2], {}, ["x"], []),
        "a": ([3], {"x": "prepare"}, [], ["prepare"]),
    }


def test_setup_params_and_skip_cells_are_sorted_out():
    a = analyze_cells(
        "%%mlops setup\nimport os",
        "%%mlops params\nn = 3",
        "%%mlops step a\nx = n",
        "%%mlops skip\nprint(x)",
        "y = x",
    )
    assert a.problems == []
    assert [c.number for c in a.setup] == [1]
    assert [c.number for c in a.skipped] == [4]
    assert graph(a) == {"a": ([3, 5], {}, [], [])}


def test_markdown_before_a_skip_cell_is_dropped():
    a = analyze_cells(
        "%%mlops step a\nx = 1", ("md", "plot it"), "%%mlops skip\nprint(x)", "y = x")
    assert step(a, "a").markdown == []


# --- data flow ---------------------------------------------------------------------------------


def test_inputs_outputs_and_edges():
    a = analyze_cells(
        "import pandas as pd",
        "%%mlops step load\ndf = pd.DataFrame({'a': [1]})\nraw = df.copy()",
        "%%mlops step features\nX = df[['a']]\ny = df['a']",
        "%%mlops step train\nfrom sklearn.linear_model import LinearRegression\n"
        "model = LinearRegression().fit(X, y)",
        "%%mlops step report\nscore = model.score(X, y)\nn_rows = len(raw)",
    )
    assert a.problems == []
    assert graph(a) == {
        "load": ([2], {}, ["df", "raw"], []),
        "features": ([3], {"df": "load"}, ["X", "y"], ["load"]),
        "train": ([4], {"X": "features", "y": "features"}, ["model"], ["features"]),
        "report": ([5], {"model": "train", "X": "features", "y": "features", "raw": "load"},
                   [], ["train", "features", "load"]),
    }
    assert step(a, "load").outputs["df"] == Output("df", "value", True)


def test_latest_definition_decides_the_producer():
    a = analyze_cells("%%mlops step a\nx = 1", "%%mlops step b\nx = 2", "%%mlops step c\ny = x")
    assert graph(a)["c"] == ([3], {"x": "b"}, [], ["b"])
    assert graph(a)["a"] == ([1], {}, [], [])


def test_mutation_in_a_later_step_makes_it_the_producer():
    a = analyze_cells(
        "%%mlops step a\nimport pandas as pd\ndf = pd.DataFrame({'a': [1, None]})",
        "%%mlops step b\ndf.dropna(inplace=True)",
        "%%mlops step c\nn = len(df)",
    )
    assert a.problems == []
    assert graph(a) == {
        "a": ([1], {}, ["df"], []),
        "b": ([2], {"df": "a"}, ["df"], ["a"]),
        "c": ([3], {"df": "b"}, [], ["b"]),
    }


def test_fit_in_a_later_step_makes_it_the_producer_of_the_model():
    a = analyze_cells(
        "%%mlops step make\nfrom sklearn.linear_model import LinearRegression\n"
        "model = LinearRegression()\nX = [[1], [2]]\ny = [1, 2]",
        "%%mlops step fit\nmodel.fit(X, y)",
        "%%mlops step use\np = model.predict(X)",
    )
    assert graph(a)["use"] == ([3], {"model": "fit", "X": "make"}, [], ["fit", "make"])


def test_models_fitted_through_a_loops_name_come_from_the_step_that_fitted_them():
    """``for name, m in models.items(): m.fit(X, y)`` fits the models of ``models``: the
    next step had taken ``models`` from the step that built them, unfitted."""
    a = analyze_cells(
        "%%mlops step make\nfrom sklearn.linear_model import LinearRegression, Ridge\n"
        "models = {'lr': LinearRegression(), 'ridge': Ridge()}\nlr, rf = Ridge(), Ridge()\n"
        "X = [[1], [2]]\ny = [1, 2]",
        "%%mlops step fit\nfor name, m in models.items():\n    m.fit(X, y)\n"
        "for m in (lr, rf):\n    m.fit(X, y)\nfor i in range(2):\n    i.bit_length()",
        "%%mlops step use\np = [m.predict(X) for m in models.values()] + [lr.predict(X)]",
    )
    assert a.problems == []
    assert graph(a)["fit"][2] == ["models", "lr"]  # rf: no later step uses it
    assert graph(a)["use"][1] == {"models": "fit", "X": "make", "lr": "fit"}


def test_a_loops_names_change_only_what_they_are_items_of():
    """zip pairs each name with its own sequence (``ax.set_xlim`` changes ``axes``, not the
    ``features`` parameter beside it); an index, a row of iterrows() or a key change
    nothing; a name that is its own items (``for m in m.values()``) does not loop forever."""
    from jupyter_mlops.notebook.names import cell_names

    for source, changed in [
        ("for ax, col in zip(axes, features):\n    ax.set_xlim(0, 1)", ["axes"]),
        ("for i, (a, b) in enumerate(zip(models, y)):\n    a.fit(X, b)", ["models"]),
        ("for idx, row in df.iterrows():\n    row.fillna(0, inplace=True)", []),
        ("for k in d.keys():\n    k.upper()", []),
        ("for m in m.values():\n    m.fit(X, y)", []),
        ("for a in b:\n    for b in a:\n        b.fit()", []),
        ("for m in (lr, rf):\n    m.fit(X)", ["lr", "rf"]),
    ]:
        assert cell_names(source).mutates == changed, source


def test_a_recorded_model_bound_again_later_in_its_step_is_a_warning():
    a = analyze_cells(
        "%%mlops step blobs\nfrom sklearn.tree import DecisionTreeClassifier\nX, y = [[1]], [1]",
        "%%mlops model tree\ntree = DecisionTreeClassifier().fit(X, y)",
        "tree = DecisionTreeClassifier()  # for the bagging demo",
        "%%mlops step other\ntree2 = tree",
        "%%mlops data df\nimport pandas as pd\ndf = pd.DataFrame({'a': [1]})",
        "%%mlops data df\ndf = df.dropna()",  # marked again: recorded again, no warning
        "%%mlops model\nC = 1.0\nfor col in ['a']:\n    pass\nclf = tree",
        "C = 10.0\nfor col in ['b']:\n    pass",  # not passed on: nothing to say
    )
    assert [(p.cell, p.severity, p.variable) for p in a.problems] == [(3, "warning", "tree")]
    assert a.problems[0].message == (
        "t.ipynb, cell 3 binds `tree` again after cell 2 recorded it as step `blobs`'s model; "
        "the pipeline passes on the value the step ends with, this one: give one of them "
        "another name, or start a step before this cell")


def test_head_in_a_later_step_does_not_change_the_producer():
    a = analyze_cells(
        "%%mlops step a\ndf = {'a': 1}",
        "%%mlops step b\ndf.head()\nk = 1",
        "%%mlops step c\nn = len(df) + k",
    )
    assert graph(a)["c"] == ([3], {"df": "a", "k": "b"}, [], ["a", "b"])
    assert graph(a)["b"] == ([2], {"df": "a"}, ["k"], ["a"])


def test_import_made_in_one_step_is_replayed_in_another():
    a = analyze_cells("%%mlops step a\nimport numpy as np\nx = 1", "%%mlops step b\ny = np.ones(x)")
    assert a.problems == []
    b = step(a, "b")
    assert b.inputs == {"x": "a"}
    assert b.replay == {"np": "import numpy as np"}
    assert "np" not in step(a, "a").outputs


def test_function_from_another_step_is_replayed_and_its_globals_become_inputs():
    a = analyze_cells(
        "%%mlops params\nn = 3\nfactor = 2.0",
        "%%mlops step a\nimport numpy as np\nscale = 2\n"
        "def f(v):\n    return np.asarray(v) * scale * factor",
        "%%mlops step b\nz = f(n)",
    )
    assert a.problems == []
    b = step(a, "b")
    assert b.replay == {
        "f": "def f(v):\n    return np.asarray(v) * scale * factor",
        "np": "import numpy as np",
    }
    assert b.inputs == {"scale": "a"}
    assert sorted(b.parameters) == ["factor", "n"]
    assert b.after == ["a"]
    assert list(step(a, "a").outputs) == ["scale"]


def test_class_from_another_step_is_replayed():
    a = analyze_cells(
        "%%mlops step a\nclass Box:\n    def __init__(self, v):\n        self.v = v\nb0 = 1",
        "%%mlops step b\nbox = Box(3)",
    )
    assert a.problems == []
    assert step(a, "b").replay == {
        "Box": "class Box:\n    def __init__(self, v):\n        self.v = v"}
    assert step(a, "b").inputs == {}


def test_setup_helper_reading_a_step_global_makes_it_an_input_of_the_calling_step():
    # Setup cells are prepended to every step; `total()` called in step b reads `df`, which
    # only step a makes. Step b must load df (or the analysis must say it cannot).
    a = analyze_cells(
        "%%mlops setup\ndef total():\n    return df.sum()",
        "%%mlops step a\nimport pandas as pd\ndf = pd.Series([1, 2])",
        "%%mlops step b\nt = total()",
    )
    assert step(a, "b").inputs == {"df": "a"} or any("`df`" in p.message for p in a.errors)


def test_setup_cell_using_a_step_variable_is_a_problem():
    a = analyze_cells("%%mlops step a\nx = 1", "%%mlops setup\ny = x")
    assert messages(a) == [(2, "t.ipynb, cell 2 (setup) uses `x`, which step `a` defines in "
                               "cell 1; setup cells run before every step, so define it in "
                               "setup or in the step")]


def test_name_from_setup_is_not_an_input():
    a = analyze_cells("%%mlops setup\nimport math\nbase = 10", "%%mlops step a\nx = math.log(base)")
    assert a.problems == []
    assert graph(a) == {"a": ([2], {}, [], [])}


# --- parameters --------------------------------------------------------------------------------


def test_parameters_per_step():
    a = analyze_cells(
        "%%mlops params\nn = 3  # number of trees\nlr: float = 1",
        "%%mlops step a\nx = n * 2",
        "%%mlops step b\ny = lr + x",
        "%%mlops step c\nz = y",
    )
    assert a.problems == []
    assert a.parameters == [
        Parameter("n", "int", 3, "number of trees", 1),
        Parameter("lr", "float", 1.0, "", 1),
    ]
    assert isinstance(a.parameters[1].default, float)
    assert [s.parameters for s in a.steps] == [["n"], ["lr"], []]


def test_parameter_used_in_setup_goes_to_every_step():
    a = analyze_cells(
        "%%mlops params\nseed = 0",
        "%%mlops setup\nimport random\nrandom.seed(seed)",
        "%%mlops step a\nx = 1",
        "%%mlops step b\ny = x",
    )
    assert a.problems == []
    assert [s.parameters for s in a.steps] == [["seed"], ["seed"]]


def test_parameter_reassigned_in_a_step_flows_from_that_step():
    a = analyze_cells("%%mlops params\nn = 3", "%%mlops step a\nn = n * 2", "%%mlops step b\nm = n")
    assert graph(a)["b"] == ([3], {"n": "a"}, [], ["a"])
    assert [s.parameters for s in a.steps] == [["n"], []]


def test_later_params_cell_overrides_earlier_parameter():
    a = analyze_cells("%%mlops params\nn = 3\nk = 1", ("n = 5", ["parameters"]),
                      "%%mlops step a\nx = n")
    assert a.parameters == [Parameter("k", "int", 1, "", 1), Parameter("n", "int", 5, "", 2)]


def test_non_literal_parameter_is_a_problem_naming_the_cell():
    a = analyze_cells("%%mlops step a\nx = 1", "%%mlops params\ny = compute()")
    assert messages(a) == [(2, "t.ipynb, cell 2: `y = compute()` is not a literal; parameters "
                               "must be plain values (numbers, strings, True/False, None, lists, "
                               "dicts); compute it in a step instead")]
    assert a.parameters == []


def test_a_refused_parameter_is_said_once_not_at_every_use():
    """Each later use of `data_path = Path(...)` had an error of its own, saying the name came
    from a deleted cell or from outside the notebook."""
    a = analyze_cells("%%mlops params\ndata_path = Path('x.csv')\nn = 3",
                      "%%mlops step a\ntext = str(data_path) * n",
                      "%%mlops step b\nsize = len(str(data_path))")
    assert [(p.cell, "data_path" in p.message) for p in a.problems] == [(1, True)]
    assert "is not a literal" in a.problems[0].message


def test_params_cell_syntax_error_is_reported_once():
    a = analyze_cells("%%mlops params\nn = = 3")
    assert messages(a) == [(1, "t.ipynb, cell 1 has a syntax error on line 1: invalid syntax")]


WHERE = "t.ipynb, cell 4"


def test_params_literal_types_and_help():
    source = (
        '"""Pipeline parameters."""\n'
        "n = 3  # number of trees\n"
        "lr = 0.1\n"
        "name = 'rf'\n"
        "flag = True\n"
        "nothing = None\n"
        "layers = [1, 2]\n"
        "opts = {'a': 1, 'b': [True]}\n"
        "neg = -2\n"
        "f: float = 3  # as float\n"
        "s: str = 'x'\n"
        "a = b = 5\n"
    )
    parameters, problems = parse_params_cell(source, WHERE, 4)
    assert problems == []
    assert parameters == [
        Parameter("n", "int", 3, "number of trees", 4),
        Parameter("lr", "float", 0.1, "", 4),
        Parameter("name", "str", "rf", "", 4),
        Parameter("flag", "bool", True, "", 4),
        Parameter("nothing", "None", None, "", 4),
        Parameter("layers", "list", [1, 2], "", 4),
        Parameter("opts", "dict", {"a": 1, "b": [True]}, "", 4),
        Parameter("neg", "int", -2, "", 4),
        Parameter("f", "float", 3.0, "as float", 4),
        Parameter("s", "str", "x", "", 4),
        Parameter("a", "int", 5, "", 4),
        Parameter("b", "int", 5, "", 4),
    ]
    assert type(parameters[8].default) is float


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = foo()", "`x = foo()` is not a literal; parameters must be plain values"),
        ("a, b = 1, 2", "`a, b = 1, 2` assigns something other than a name; write one "
                        "`NAME = VALUE` a line"),
        ("x.y = 1", "`x.y = 1` assigns something other than a name"),
        ("n: int = 'x'", "`n: int = 'x'` is annotated `int` but its value is a str"),
        ("b: bool = 1", "`b: bool = 1` is annotated `bool` but its value is a int"),
        ("n: float = True", "`n: float = True` is annotated `float` but its value is a bool"),
        ("import os", "`import os` is not a parameter; a params cell holds only assignments"),
        ("x: int", "`x: int` is not a parameter"),
        ("t = (1, 2)", "`t = (1, 2)` has a type that a parameter cannot have"),
        ("s = {1, 2}", "`s = {1, 2}` has a type that a parameter cannot have"),
        ("d = {1: 2}", "`d = {1: 2}` has a type that a parameter cannot have"),
        ("c = 1j", "`c = 1j` has a type that a parameter cannot have"),
        # what to write instead, where it can be told
        ('labels = {0: "neg"}', "a dict's keys must be strings (papermill passes parameters "
                                'as JSON): write {"0": ...} and convert where it is used'),
        ('path = Path("data/x.csv")', "compute it in a step instead, or make it the string "
                                      "'data/x.csv' and call Path() on it where it is used"),
        ("n = 2**10", "compute it in a step instead, or write its value, 1024"),
        ("x = = 1", "has a syntax error on line 1"),
    ],
)
def test_params_problems(source, message):
    parameters, problems = parse_params_cell(source, WHERE, 4)
    assert parameters == []
    assert len(problems) == 1
    assert problems[0].cell == 4
    assert problems[0].message.startswith(WHERE)
    assert message in problems[0].message


def test_params_good_and_bad_lines_together():
    parameters, problems = parse_params_cell("a = 1\nb = f()\nc = 'x'", WHERE, 4)
    assert [p.name for p in parameters] == ["a", "c"]
    assert [p.message.split("`")[1] for p in problems] == ["b = f()"]


# --- declared outputs --------------------------------------------------------------------------


def test_data_mark_declares_required_data_output():
    a = analyze_cells(
        "%%mlops step a\ndf = {'a': 1}\nother = 2",
        "%%mlops data df\nprint(df)",
        "%%mlops model clf\nclf = object()",
    )
    assert a.problems == []
    assert step(a, "a").outputs == {
        "df": Output("df", "data", True),
        "clf": Output("clf", "model", True),
    }


def test_no_arg_metrics_declares_what_the_cell_defines_not_required():
    a = analyze_cells(
        "%%mlops step a\ndf = 1",
        "%%mlops data df\ndf2 = df + 1",
        "%%mlops metrics\nacc = 0.9\nloss = 0.1",
        "%%mlops step b\nq = df + acc",
    )
    assert a.problems == []
    assert step(a, "a").outputs == {
        "df": Output("df", "data", True),
        "acc": Output("acc", "metrics", False),
        "loss": Output("loss", "metrics", False),
    }
    assert step(a, "b").inputs == {"df": "a", "acc": "a"}


def test_no_arg_data_mark_takes_defined_and_mutated_frames():
    a = analyze_cells(
        "%%mlops step a\ndf = {'a': 1}",
        "%%mlops data\ndf['b'] = 2\nX = [1]",
    )
    assert step(a, "a").outputs == {
        "X": Output("X", "data", False),
        "df": Output("df", "data", False),
    }


def test_no_arg_metrics_on_a_display_cell_takes_the_values_it_shows():
    a = analyze_cells("%%mlops step a\nacc = 0.9", "%%mlops metrics\nprint(acc)")
    assert step(a, "a").outputs == {"acc": Output("acc", "metrics", False)}


def test_declared_output_that_nothing_defines_is_a_problem():
    a = analyze_cells("%%mlops step a\nx = 1", "%%mlops data nope\nprint(x)")
    assert messages(a) == [(2, "t.ipynb, cell 2: `%%mlops data` names `nope`, which no cell up "
                               "to here defines; check the spelling")]


# --- problems ----------------------------------------------------------------------------------


def test_undefined_name_names_the_cell_and_the_name():
    a = analyze_cells("%%mlops step a\nx = 1", "%%mlops step b\ny = undefined_thing + x")
    assert messages(a) == [(2, "t.ipynb, cell 2 uses `undefined_thing`, which no earlier step or "
                               "setup cell defines; define it in an earlier cell or mark the "
                               "cell that defines it")]
    assert a.errors == a.problems


def test_name_defined_only_in_a_skip_cell():
    a = analyze_cells(("x = 1", ["mlops:skip"]), "%%mlops step a\ny = x")
    assert messages(a) == [(2, "t.ipynb, cell 2 uses `x`, which only skipped cell 1 defines; "
                               "unmark that cell or define `x` in a step")]


def test_use_before_a_later_cell_defines_it():
    a = analyze_cells("%%mlops step a\ny = x", "%%mlops step b\nx = 1")
    assert messages(a) == [(1, "t.ipynb, cell 1 uses `x` before cell 2 defines it; move that "
                               "cell up, or this one down")]


def test_use_before_define_inside_one_unmarked_notebook():
    a = analyze_cells("y = x", "x = 1")
    assert messages(a) == [(1, "t.ipynb, cell 1 uses `x` before cell 2 defines it; move that "
                               "cell up, or this one down")]


def test_function_reading_a_later_global_is_fine():
    a = analyze_cells("def f():\n    return scale", "scale = 2", "y = f()")
    assert a.problems == []


def test_deleted_name_is_undefined_afterwards():
    a = analyze_cells("%%mlops step a\nx = 1\ndel x", "%%mlops step b\ny = x")
    assert [p.cell for p in a.problems] == [2]
    assert "uses `x`, which no earlier step or setup cell defines" in a.problems[0].message


def test_duplicate_step_names():
    a = analyze_cells("%%mlops step a\nx = 1", "%%mlops step a\ny = 2")
    assert messages(a) == [(2, "t.ipynb, cell 2 starts step `a`, but cell 1 already starts a "
                               "step of that name; rename one of them")]
    assert [s.name for s in a.steps] == ["a"]


def test_kale_repeated_block_continues_the_same_step():
    a = analyze_cells(
        ("x = 1", ["block:a"]),
        ("y = x", ["block:b", "prev:a"]),
        ("z = x + 1", ["block:a"]),
    )
    assert a.problems == []
    assert graph(a) == {
        "a": ([1, 3], {}, ["x"], []),
        "b": ([2], {"x": "a"}, [], ["a"]),
    }


def test_explicit_after_adds_an_edge():
    a = analyze_cells("%%mlops step a\nx = 1", ("y = 2", ["mlops:step=b", "mlops:after=a"]))
    assert a.problems == []
    assert step(a, "b").after == ["a"]
    assert step(a, "b").explicit_after == ["a"]


def test_after_unknown_step():
    a = analyze_cells("%%mlops step a\nx = 1", "%%mlops step b --after nope\ny = 2")
    assert messages(a) == [(2, "t.ipynb, cell 2: step `b` runs after `nope`, but there is no "
                               "such step; steps: a, b")]
    assert step(a, "b").after == []


def test_cycle_via_after():
    a = analyze_cells("%%mlops step a --after b\nx = 1", "%%mlops step b --after a\ny = 2")
    assert len(a.problems) == 1
    problem = a.problems[0]
    assert problem.cell in (1, 2)
    assert "steps form a cycle" in problem.message
    assert "(a -> b -> a)" in problem.message or "(b -> a -> b)" in problem.message


def test_star_import_in_a_step():
    a = analyze_cells("%%mlops step a\nfrom os.path import *\nx = 1")
    assert messages(a) == [(1, "t.ipynb, cell 1: `from os.path import *` hides which names the "
                               "cell uses; import the names you need")]


def test_syntax_error_in_a_step_cell():
    a = analyze_cells("%%mlops step a\nx = 1", "y = = 2")
    assert messages(a) == [(2, "t.ipynb, cell 2 has a syntax error on line 1: invalid syntax; "
                               "fix it (the notebook fails there too)")]


def test_syntax_error_in_a_skip_cell_is_not_a_problem():
    a = analyze_cells("%%mlops step a\nx = 1", "%%mlops skip\ny = = 2")
    assert a.problems == []


def test_builtins_and_kernel_names_are_not_undefined():
    a = analyze_cells(
        "%%mlops step a\nprint(len([1]), sorted({}), ValueError)\ndisplay(1)\nget_ipython()\n"
        "h = In[0]\nx = __name__"
    )
    assert a.problems == []
    assert graph(a) == {"a": ([1], {}, [], [])}


def test_ipython_syntax_is_not_an_undefined_name():
    a = analyze_cells("!pip install x\n%matplotlib inline\nz = 2", "%%time\ny = z")
    assert a.problems == []


def test_time_cell_body_is_analysed():
    a = analyze_cells("%%mlops step a\nx = 1", "%%mlops step b\n%%time\ny = x + missing")
    assert graph(a)["b"] == ([2], {"x": "a"}, [], ["a"])
    assert [(p.cell, "`missing`" in p.message) for p in a.problems] == [(2, True)]


def test_a_time_line_magics_statement_is_analysed():
    """``%time X = ...`` defines X in the user's namespace, ``%time m.fit(X)`` uses X and
    changes m; ``%timeit`` keeps its names to itself."""
    a = analyze_cells("%%mlops step a\nimport numpy as np\n%time X = np.arange(3)",
                      "%%mlops step b\nif True:\n    %time total = X.sum()\n%timeit y = X * 2")
    assert a.problems == []
    assert graph(a)["b"] == ([2], {"X": "a"}, [], ["a"])


def test_role_problems_from_reading_are_kept():
    a = analyze_cells("%%mlops bogus\nx = 1")
    assert [p.cell for p in a.problems] == [1]
    assert "unknown role `bogus`" in a.problems[0].message


def test_out_of_order_execution_is_a_warning():
    a = analyze_cells("%%mlops step a\nx = 1", "%%mlops step b\ny = x", counts=[5, 2])
    assert messages(a) == [(2, "t.ipynb, cell 2 ran before cell 1 (execution counts 2 < 5); the "
                               "pipeline runs top to bottom, so restart the kernel and run all "
                               "to check it still works")]
    assert a.problems[0].severity == "warning"
    assert a.errors == []


def test_in_order_execution_and_skipped_cells_give_no_warning():
    a = analyze_cells("x = 1", "%%mlops skip\nprint(x)", "y = x", counts=[1, 9, 2])
    assert a.problems == []


# --- split by headings -------------------------------------------------------------------------


def test_split_headings_makes_one_step_per_heading():
    a = analyze_cells(
        ("md", "# Title"),
        "import pandas as pd",
        ("md", "## Load the Data!"),
        "df = pd.DataFrame({'a': [1]})",
        ("md", "## 2. Train model"),
        "m = df.sum()",
        "m2 = m * 2",
        ("md", "## Load the data"),
        "k = m2",
        split="headings",
    )
    assert a.problems == []
    assert [c.number for c in a.setup] == [2]
    assert graph(a) == {
        "load_the_data": ([4], {}, ["df"], []),
        "step_2_train_model": ([6, 7], {"df": "load_the_data"}, ["m2"], ["load_the_data"]),
        "load_the_data_2": ([9], {"m2": "step_2_train_model"}, [], ["step_2_train_model"]),
    }
    assert [c.number for c in step(a, "load_the_data").markdown] == [3]


def test_without_split_headings_are_ignored():
    a = analyze_cells(("md", "## One"), "x = 1", ("md", "## Two"), "y = x")
    assert [s.name for s in a.steps] == ["main"]


# --- code hashes ---------------------------------------------------------------------------------


def hashes(*cells: Any) -> list[str]:
    spec = build_spec(analyze_cells(*cells), Path("/tmp/x_pipeline"))
    return [s.code_sha256 for s in spec.steps]


def test_code_hash_ignores_comments_and_changes_with_code():
    base = hashes("import os", "%%mlops step a\nx = 1", "%%mlops step b\ny = x * 2")
    commented = hashes("import os", "%%mlops step a\n# make x\nx = 1  # one",
                       "%%mlops step b\ny = x * 2")
    edited = hashes("import os", "%%mlops step a\nx = 2", "%%mlops step b\ny = x * 2")
    setup_edited = hashes("import sys", "%%mlops step a\nx = 1", "%%mlops step b\ny = x * 2")
    assert len(base) == 2 and base[0] != base[1]
    assert commented == base
    assert edited[0] != base[0]
    assert edited[1] == base[1]
    assert setup_edited[0] != base[0] and setup_edited[1] != base[1]


def test_to_spec_steps():
    a = analyze_cells("%%mlops params\nn = 1", "%%mlops step load\nx = n",
                      "%%mlops step use\ny = x")
    spec = build_spec(a, Path("/tmp/x_pipeline"))
    assert spec.name == "t"
    assert [(s.name, s.notebook, s.cells, s.inputs, s.outputs, s.parameters, s.after)
            for s in spec.steps] == [
        ("load", "steps/01_load.ipynb", [2], {}, [Output("x")], ["n"], []),
        ("use", "steps/02_use.ipynb", [3], {"x": "load"}, [], [], ["load"]),
    ]
    assert spec.parameters == [Parameter("n", "int", 1, "", 1)]
    assert spec.edges == [("load", "use")]


# --- find_cycle --------------------------------------------------------------------------------


def rotations(cycle: list[str]) -> list[list[str]]:
    return [cycle[i:] + cycle[:i] for i in range(len(cycle))]


def test_find_cycle_none():
    assert find_cycle({}) == []
    assert find_cycle({"a": [], "b": ["a"], "c": ["a", "b"]}) == []


def test_find_cycle_self_loop():
    assert find_cycle({"a": ["a"]}) == ["a"]


def test_find_cycle_two_and_three_nodes_in_run_order():
    assert find_cycle({"a": ["b"], "b": ["a"]}) in rotations(["a", "b"])
    # c waits for b, b waits for a, a waits for c: run order a -> b -> c -> a
    assert find_cycle({"a": ["c"], "b": ["a"], "c": ["b"]}) in rotations(["a", "b", "c"])


def test_find_cycle_leaves_out_nodes_not_on_it():
    assert find_cycle({"a": [], "b": ["a", "c"], "c": ["b"], "d": ["c"]}) in rotations(["b", "c"])


def test_each_code_cell_says_the_data_names_it_binds_or_changes():
    """What the sidebar's inline control offers a data, model or metrics mark: names bound to
    data and names changed in place, not imports, functions or classes."""
    analysis = analyze_cells(
        "%%mlops step load\nimport pandas as pd\ndef helper(x):\n    return x\n"
        "df = pd.DataFrame({'a': [1, None]})\ndf.dropna(inplace=True)",
        "# notes",
        "%%mlops step fit\nfrom sklearn.linear_model import LinearRegression\n"
        "model = LinearRegression()\nmodel.fit(df[['a']], df['a'])\nscore, other = 1.0, 2",
        "model.predict(df[['a']])")
    assert analysis.assigns == {1: ["df"], 2: [], 3: ["model", "score", "other"], 4: []}
