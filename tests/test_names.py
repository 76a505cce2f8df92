"""Tests for jupyter_mlops.notebook.names: what one cell uses, defines and mutates."""

from __future__ import annotations

from pathlib import Path

import pytest

from jupyter_mlops.notebook.names import CellNames, cell_names

# --- assignments ----------------------------------------------------------------------------


def test_plain_assignment_defines_and_uses_right_hand_side():
    names = cell_names("y = a + b\nz = y * 2")
    assert names.uses == ["a", "b"]
    assert names.defines == {"y": "data", "z": "data"}
    assert names.mutates == []
    assert names.late_uses == []


def test_augmented_assignment_uses_and_defines_the_name():
    names = cell_names("x += 1")
    assert names.uses == ["x"]
    assert names.defines == {"x": "data"}


def test_augmented_assignment_of_a_subscript_mutates_the_base():
    names = cell_names("counts[key] += 1")
    assert names.uses == ["counts", "key"]
    assert names.mutates == ["counts"]
    assert names.defines == {}


def test_tuple_and_star_unpacking_define_every_target():
    names = cell_names("a, (b, c), *rest = values")
    assert names.uses == ["values"]
    assert names.defines == {"a": "data", "b": "data", "c": "data", "rest": "data"}


def test_annotated_assignment_defines_only_with_a_value():
    assert cell_names("x: int = y").defines == {"x": "data"}
    assert cell_names("x: int = y").uses == ["y", "int"]
    bare = cell_names("x: int")
    assert bare.defines == {}
    assert bare.uses == ["int"]


def test_use_before_define_in_one_cell():
    names = cell_names("x = x + 1")
    assert names.uses == ["x"]
    assert names.defines == {"x": "data"}


def test_name_defined_earlier_in_the_cell_is_not_a_use():
    names = cell_names("y = 1\nz = y + w")
    assert names.uses == ["w"]
    assert names.defines == {"y": "data", "z": "data"}


def test_reassignment_from_a_method_is_a_define_not_a_mutation():
    names = cell_names("df = df.dropna()")
    assert names.uses == ["df"]
    assert names.defines == {"df": "data"}
    assert names.mutates == []


# --- mutation -------------------------------------------------------------------------------


def test_subscript_assignment_mutates_the_frame():
    names = cell_names('df["x"] = 1')
    assert names.uses == ["df"]
    assert names.mutates == ["df"]
    assert names.defines == {}


def test_loc_assignment_reads_the_index_and_mutates_the_frame():
    names = cell_names('df.loc[mask, "b"] = value')
    assert names.uses == ["value", "df", "mask"]
    assert names.mutates == ["df"]


def test_attribute_assignment_mutates_the_object():
    names = cell_names("obj.attr = 3")
    assert names.uses == ["obj"]
    assert names.mutates == ["obj"]
    assert names.defines == {}


def test_inplace_true_mutates():
    names = cell_names("df.dropna(inplace=True)")
    assert names.uses == ["df"]
    assert names.mutates == ["df"]


def test_inplace_false_does_not_mutate_when_assigned():
    names = cell_names("out = df.dropna(inplace=False)")
    assert names.mutates == []
    assert names.defines == {"out": "data"}


def test_fit_mutates_the_model():
    names = cell_names("model.fit(X, y)")
    assert names.uses == ["model", "X", "y"]
    assert names.mutates == ["model"]


def test_chained_fit_mutates_the_model():
    names = cell_names("pred = model.fit(X, y).predict(X)")
    assert names.mutates == ["model"]
    assert names.defines == {"pred": "data"}


def test_append_mutates_the_list():
    assert cell_names("items.append(1)").mutates == ["items"]


def test_bare_head_does_not_mutate():
    names = cell_names("df.head()")
    assert names.uses == ["df"]
    assert names.mutates == []
    assert names.defines == {}


def test_drop_assigned_to_another_name_does_not_mutate():
    names = cell_names('y = df.drop(columns=["target"])')
    assert names.uses == ["df"]
    assert names.mutates == []
    assert names.defines == {"y": "data"}


def test_mutating_a_name_bound_in_the_same_cell_is_not_a_mutation_of_an_input():
    names = cell_names("df = load()\ndf['x'] = 1\nmodel = make()\nmodel.fit(X, y)")
    assert names.mutates == []
    assert names.uses == ["load", "make", "X", "y"]


def test_del_subscript_mutates_the_base():
    names = cell_names('del df["a"]')
    assert names.uses == ["df"]
    assert names.mutates == ["df"]
    assert names.deletes == []


# --- imports --------------------------------------------------------------------------------


def test_imports_bind_names_of_kind_import_with_their_code():
    names = cell_names(
        "import a.b as c\nimport a.b\nfrom m import n as k, j\nimport os, sys as system")
    assert names.defines == {
        "c": "import", "a": "import", "k": "import", "j": "import", "os": "import",
        "system": "import",
    }
    assert names.code == {
        "c": "import a.b as c",
        "a": "import a.b",
        "k": "from m import n as k",
        "j": "from m import j",
        "os": "import os",
        "system": "import sys as system",
    }
    assert names.uses == []


def test_relative_imports_keep_their_dots():
    names = cell_names("from . import sib\nfrom ..pkg import mod as m")
    assert names.code == {"sib": "from . import sib", "m": "from ..pkg import mod as m"}


def test_star_import_is_recorded_and_binds_nothing():
    names = cell_names("from os.path import *")
    assert names.star_imports == ["os.path"]
    assert names.defines == {}


def test_import_inside_if_still_binds():
    names = cell_names("if flag:\n    import numpy as np\n")
    assert names.uses == ["flag"]
    assert names.defines == {"np": "import"}
    assert names.code == {"np": "import numpy as np"}


# --- def and class --------------------------------------------------------------------------


def test_def_kind_and_source_with_decorators():
    src = ("@functools.lru_cache(maxsize=None)\n@other\ndef cached(n, k=default):\n"
           "    return n\n# after")
    names = cell_names(src)
    assert names.defines == {"cached": "def"}
    assert names.code == {
        "cached": "@functools.lru_cache(maxsize=None)\n@other\ndef cached(n, k=default):\n"
                  "    return n"
    }
    # decorators and defaults are evaluated when the def runs; parameters are not names used
    assert names.uses == ["functools", "other", "default"]
    assert names.late_uses == []


def test_async_def_is_a_def():
    names = cell_names("async def fetch():\n    await get()")
    assert names.defines == {"fetch": "def"}
    assert names.late_uses == ["get"]


def test_def_annotations_are_evaluated_when_the_def_runs():
    # Without `from __future__ import annotations`, `Foo` and `Bar` must exist at def time.
    names = cell_names("def f(a: Foo) -> Bar:\n    return a")
    assert set(names.uses) == {"Foo", "Bar"}
    assert names.late_uses == []


def test_class_kind_source_bases_and_method_globals():
    src = "class C(Base, metaclass=Meta):\n    z = 1\n    def m(self):\n        return w + self.z\n"
    names = cell_names(src)
    assert names.defines == {"C": "class"}
    assert names.code == {"C": src.rstrip("\n")}
    assert names.uses == ["Base", "Meta"]
    assert names.late_uses == ["w"]


def test_class_body_names_do_not_leak():
    names = cell_names("class C:\n    z = 1\n    y = z + 1\n")
    assert names.defines == {"C": "class"}
    assert names.late_uses == []


def test_class_body_reads_globals_when_the_class_is_defined():
    # A class body runs at once (unlike a method body), so `factor` is needed right now.
    names = cell_names("class C:\n    z = factor * 2\n")
    assert names.uses == ["factor"]
    assert names.late_uses == []


# --- statements with targets ---------------------------------------------------------------


def test_for_with_and_except_targets_are_defined():
    src = (
        "for i, (a, b) in pairs:\n    pass\n"
        "with open(path) as fh, lock:\n    pass\n"
        "try:\n    pass\nexcept ValueError as err:\n    pass\n"
    )
    names = cell_names(src)
    assert names.defines == {"i": "data", "a": "data", "b": "data", "fh": "data", "err": "data"}
    assert names.uses == ["pairs", "open", "path", "lock", "ValueError"]


def test_loop_accumulator_is_used_and_defined():
    names = cell_names("for i in range(3):\n    total += i")
    assert names.uses == ["range", "total"]
    assert names.defines == {"i": "data", "total": "data"}


def test_walrus_binds_at_top_level():
    names = cell_names("if (n := len(a)) > 1:\n    pass")
    assert names.uses == ["len", "a"]
    assert names.defines == {"n": "data"}


def test_walrus_then_read_in_the_same_expression():
    names = cell_names("t = (w := 5) + w")
    assert names.uses == []
    assert names.defines == {"w": "data", "t": "data"}


def test_walrus_in_comprehension_binds_in_enclosing_scope():
    names = cell_names("ys = [y for x in data if (y := x * 2)]")
    assert names.uses == ["data"]
    assert names.defines == {"y": "data", "ys": "data"}


def test_match_capture_names():
    src = (
        "match cmd:\n"
        "    case [first, *rest]:\n        pass\n"
        "    case {'k': v, **others}:\n        pass\n"
        "    case Point(x=px) as pt:\n        pass\n"
        "    case Color.RED:\n        pass\n"
    )
    names = cell_names(src)
    assert names.defines == {
        "first": "data", "rest": "data", "v": "data", "others": "data", "px": "data",
        "pt": "data",
    }
    assert names.uses == ["cmd", "Point", "Color"]


# --- comprehensions and lambdas --------------------------------------------------------------


def test_comprehension_variable_does_not_leak():
    names = cell_names("r = [x for x in items]")
    assert names.uses == ["items"]
    assert names.defines == {"r": "data"}


def test_comprehension_variable_then_same_name_at_top_level_is_a_use():
    names = cell_names("print(len([z for z in zs]), z)")
    assert names.uses == ["print", "len", "zs", "z"]
    assert names.defines == {}


def test_nested_comprehensions():
    names = cell_names("g = [[c * k for c in row] for row in grid if row]")
    assert names.uses == ["grid", "k"]
    assert names.defines == {"g": "data"}


def test_dict_set_and_generator_comprehensions():
    names = cell_names("d = {k: v for k, v in pairs}\ns = {e for e in es}\nt = sum(q for q in qs)")
    assert names.uses == ["pairs", "es", "sum", "qs"]
    assert names.defines == {"d": "data", "s": "data", "t": "data"}


def test_lambda_arguments_are_not_uses_and_defaults_are():
    names = cell_names("f = lambda q, r=dd: q + r + gg")
    assert names.uses == ["dd"]
    assert names.late_uses == ["gg"]
    assert names.defines == {"f": "data"}


# --- late uses: bodies that run later ----------------------------------------------------------


def test_function_reading_a_global_is_a_late_use():
    names = cell_names("def f(a):\n    return a + scale")
    assert names.uses == []
    assert names.late_uses == ["scale"]


def test_function_parameter_and_closure_variable_are_not_late_uses():
    src = (
        "def outer(p):\n"
        "    v = 1\n"
        "    def inner(q):\n"
        "        return v + p + q + glob\n"
        "    return inner\n"
    )
    names = cell_names(src)
    assert names.late_uses == ["glob"]
    assert names.uses == []


def test_comprehension_inside_function_reads_global_late():
    names = cell_names("def f(a):\n    return [a + b for b in bs]")
    assert names.late_uses == ["bs"]


def test_late_use_of_a_name_used_at_top_level_is_listed_once():
    names = cell_names("print(k)\ndef f():\n    return k")
    assert names.uses == ["print", "k"]
    assert names.late_uses == []


def test_global_statement_in_function_defines_the_name():
    names = cell_names("def f():\n    global x\n    x = 1")
    assert names.defines == {"f": "def", "x": "data"}
    assert names.late_uses == []


def test_global_statement_only_reading_is_a_late_use():
    names = cell_names("def f():\n    global x\n    return x")
    assert names.defines == {"f": "def"}
    assert names.late_uses == ["x"]


# --- del ------------------------------------------------------------------------------------


def test_del_records_the_deletion_and_reads_the_name():
    names = cell_names("del x")
    assert names.uses == ["x"]
    assert names.deletes == ["x"]
    assert names.defines == {}


def test_define_then_delete_leaves_no_definition():
    names = cell_names("x = 1\ndel x")
    assert names.uses == []
    assert names.defines == {}
    assert names.deletes == ["x"]


def test_delete_then_redefine_is_a_definition():
    names = cell_names("del x\nx = 2")
    assert names.defines == {"x": "data"}
    assert names.deletes == []


# --- misc -----------------------------------------------------------------------------------


def test_empty_cell():
    assert cell_names("") == CellNames()


def test_syntax_error_is_raised():
    with pytest.raises(SyntaxError):
        cell_names("x = = 1")


@pytest.mark.parametrize(("code", "changed"), [
    ("model = Ridge(alpha=1.0).fit(X, y)", []),  # a new object: Ridge is not changed
    ("pd.DataFrame(rows).fillna(0, inplace=True)", []),
    ("df.dropna(inplace=True)", ["df"]),
    ("model.named_steps['scale'].fit(X)", ["model"]),
    ("clf.fit(X, y)", ["clf"]),
])
def test_a_method_call_changes_its_object_not_a_class_it_was_made_from(
        code: str, changed: list[str]) -> None:
    assert cell_names(code).mutates == changed


def test_a_model_mark_with_no_name_outputs_the_assigned_model_only(tmp_path: Path) -> None:
    from conftest import write_notebook

    from jupyter_mlops.notebook.analysis import analyze
    from jupyter_mlops.notebook.reader import read_notebook

    notebook = write_notebook(
        tmp_path / "nb.ipynb",
        "%%mlops step fit\nfrom sklearn.linear_model import Ridge\nX, y = [[0], [1]], [0, 1]",
        ("model = Ridge().fit(X, y)", ["mlops:model"]))
    plan = analyze(read_notebook(notebook)).steps[0]
    assert [o.name for o in plan.outputs.values() if o.role == "model"] == ["model"]
