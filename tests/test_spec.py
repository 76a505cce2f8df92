"""Tests for jupyter_mlops.pipeline.spec: the spec in YAML, and ``-p NAME=VALUE`` parameters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from conftest import build_notebook

from jupyter_mlops.errors import OptionError, ParameterError, SpecError
from jupyter_mlops.notebook.analysis import analyze
from jupyter_mlops.notebook.reader import parse_notebook
from jupyter_mlops.pipeline.build import build_spec
from jupyter_mlops.pipeline.spec import SPEC_FILE, Output, Parameter, PipelineSpec, Step


def real_spec() -> PipelineSpec:
    """A spec from the analysis of a notebook with parameters of every type and three steps."""
    nb = build_notebook(
        "import math",
        "%%mlops params\n"
        "n = 3  # number of trees\n"
        "lr: float = 1  # learning rate\n"
        "name = 'rf'\n"
        "flag = False\n"
        "nothing = None\n"
        "layers = [1, 2.5, 'x']\n"
        "opts = {'a': 1, 'b': [True, None]}",
        "%%mlops step load\ndf = {'a': [1, 2]}\nraw = list(layers)",
        "%%mlops data df\nprint(df)",
        "%%mlops step train --after load\nscore = n * lr + math.pi + len(df)",
        "%%mlops metrics\nacc = score / 10",
        "%%mlops step report\nline = f'{name} {acc} {flag} {nothing} {opts} {raw}'",
    )
    analysis = analyze(parse_notebook(nbformat.writes(nb), "My Notebook.ipynb"))
    assert analysis.problems == []
    return build_spec(analysis, Path("/tmp/x_pipeline"), allow_pickle=True)


# --- YAML round trip ---------------------------------------------------------------------------


def test_real_spec_has_what_the_analysis_found():
    spec = real_spec()
    assert spec.name == "my_notebook"
    assert spec.allow_pickle is True
    assert [p.name for p in spec.parameters] == [
        "n", "lr", "name", "flag", "nothing", "layers", "opts"]
    assert [(s.name, s.after) for s in spec.steps] == [
        ("load", []), ("train", ["load"]), ("report", ["train", "load"])]
    assert spec.step("train").outputs == [Output("acc", "metrics", False)]
    assert spec.step("load").outputs == [Output("df", "data", True), Output("raw")]


def test_yaml_round_trip_gives_an_equal_spec():
    spec = real_spec()
    text = spec.to_yaml()
    assert text.startswith("# jupyter-mlops pipeline spec")
    back = PipelineSpec.from_dict(yaml.safe_load(text))
    assert back == spec
    assert type(back.parameter("lr").default) is float
    assert back.parameter("layers").default == [1, 2.5, "x"]


def test_to_dict_layout_and_edges():
    spec = real_spec()
    data = spec.to_dict()
    assert list(data) == ["version", "name", "source", "source_sha256", "workdir", "kernel",
                          "allow_pickle", "trust", "runtime_protocol", "parameters", "steps",
                          "edges", "checks"]
    assert data["version"] == 1
    assert data["edges"] == [["load", "train"], ["train", "report"], ["load", "report"]]
    assert data["parameters"][0] == {"name": "n", "type": "int", "default": 3,
                                     "help": "number of trees", "cell": 2}


def test_write_and_read(tmp_path: Path):
    spec = real_spec()
    path = spec.write(tmp_path)
    assert path == tmp_path / SPEC_FILE
    assert PipelineSpec.read(tmp_path) == spec
    assert PipelineSpec.read(path) == spec
    assert [p.name for p in tmp_path.iterdir()] == [SPEC_FILE]


# --- reading errors ---------------------------------------------------------------------------


def test_read_missing_folder(tmp_path: Path):
    folder = tmp_path / "nope"
    with pytest.raises(SpecError) as info:
        PipelineSpec.read(folder)
    assert str(info.value) == (
        f"{folder} is not a pipeline folder (no pipeline.yaml); create one with "
        "`jupyter mlops export NOTEBOOK`"
    )


def test_read_folder_without_spec(tmp_path: Path):
    with pytest.raises(SpecError, match="is not a pipeline folder"):
        PipelineSpec.read(tmp_path)


def test_read_invalid_yaml(tmp_path: Path):
    (tmp_path / SPEC_FILE).write_text("version: 1\nsteps: [unclosed\n", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        PipelineSpec.read(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / SPEC_FILE} is not valid YAML (")
    assert message.endswith("); export the notebook again")
    assert "\n" not in message


def test_read_wrong_version(tmp_path: Path):
    data = real_spec().to_dict()
    data["version"] = 2
    (tmp_path / SPEC_FILE).write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        PipelineSpec.read(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / SPEC_FILE} has spec version 2; this jupyter-mlops reads version 1: "
        "export the notebook again"
    )


def test_read_not_a_mapping(tmp_path: Path):
    (tmp_path / SPEC_FILE).write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        PipelineSpec.read(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / SPEC_FILE} does not hold a pipeline spec (expected a mapping)")


def base_dict(**changes: Any) -> dict[str, Any]:
    data = real_spec().to_dict()
    data.update(changes)
    return data


def test_missing_field_is_malformed():
    data = base_dict()
    del data["steps"]
    with pytest.raises(SpecError) as info:
        PipelineSpec.from_dict(data)
    assert str(info.value) == (
        "pipeline.yaml is malformed (missing field `steps`); export the notebook again")


def test_step_missing_field_is_malformed():
    with pytest.raises(SpecError, match=r"pipeline.yaml is malformed \(.*notebook"):
        PipelineSpec.from_dict(base_dict(steps=[{"name": "a"}]))


def test_kernel_of_the_wrong_shape_is_malformed():
    with pytest.raises(SpecError, match=r"^pipeline\.yaml: `kernel` is 'python3', which is "
                       r"not valid \(must be object\)"):
        PipelineSpec.from_dict(base_dict(kernel="python3"))


def test_unknown_parameter_type():
    bad = [{"name": "n", "type": "complex", "default": 1}]
    with pytest.raises(SpecError) as info:
        PipelineSpec.from_dict(base_dict(parameters=bad))
    assert str(info.value).startswith(
        "pipeline.yaml: `parameters[0].type` (of parameter `n`) is 'complex', which is not "
        "valid (must be one of ['int', 'float', 'str', 'bool', 'list', 'dict', 'None'])")


def test_step_waiting_for_unknown_step():
    steps = [{"name": "a", "notebook": "steps/01_a.ipynb", "cells": [1], "code_sha256": "h",
              "after": ["zz"]}]
    with pytest.raises(SpecError) as info:
        PipelineSpec.from_dict(base_dict(steps=steps))
    assert str(info.value) == "pipeline.yaml: step `a` waits for unknown step `zz`"


def test_unknown_step_lists_the_steps():
    with pytest.raises(SpecError) as info:
        real_spec().step("deploy")
    assert str(info.value) == (
        "no step `deploy` in pipeline `my_notebook`; its steps are load, train, report")


# --- parameters from the command line ---------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "text", "value"),
    [
        ("int", "5", 5),
        ("int", " -7 ", -7),
        ("float", "0.5", 0.5),
        ("float", "1", 1.0),
        ("float", "1e-3", 0.001),
        ("bool", "true", True),
        ("bool", "False", False),
        ("bool", "1", True),
        ("bool", "no", False),
        ("bool", "YES", True),
        ("bool", "off", False),
        ("str", "hello world", "hello world"),
        ("str", "", ""),
        ("str", "1", "1"),
        ("list", "[1, 2]", [1, 2]),
        ("list", "['a', \"b\"]", ["a", "b"]),
        ("list", "[]", []),
        ("dict", '{"a": 1, "b": [true, null]}', {"a": 1, "b": [True, None]}),
        ("dict", "{'a': 1}", {"a": 1}),
        ("None", "null", None),
        ("None", "None", None),
    ],
)
def test_parameter_parse(type_, text, value):
    parsed = Parameter("p", type_, None).parse(text)
    assert parsed == value
    assert type(parsed) is type(value)


@pytest.mark.parametrize(
    ("type_", "default", "text"),
    [
        ("int", 3, "3.5"),
        ("int", 3, "x"),
        ("int", 3, ""),
        ("float", 0.1, "fast"),
        ("bool", True, "maybe"),
        ("list", [], '{"a": 1}'),
        ("list", [], "[1,"),
        ("list", [], "(1, 2)"),
        ("dict", {}, "[1]"),
        ("dict", {}, "{"),
        ("dict", {}, "{[1]: 2}"),
    ],
)
def test_parameter_parse_bad_values(type_, default, text):
    with pytest.raises(ParameterError) as info:
        Parameter("alpha", type_, default).parse(text)
    assert str(info.value) == (
        f"parameter `alpha` is {type_} (default {default!r}); `{text}` is not a valid {type_}"
    )


def test_parameter_parse_dict_refuses_values_a_params_cell_could_not_hold():
    # A params cell only accepts JSON-like values; `-p` must not let a set or a non-string key in.
    parameter = Parameter("opts", "dict", {})
    with pytest.raises(ParameterError, match="parameter `opts`"):
        parameter.parse("{'a': {1, 2}}")
    with pytest.raises(ParameterError, match="parameter `opts`"):
        parameter.parse("{1: 2}")


def test_parse_parameters():
    spec = real_spec()
    assert spec.parse_parameters(["n=10", "lr=0.5", "flag=yes", "name = gb", "layers=[3]"]) == {
        "n": 10, "lr": 0.5, "flag": True, "name": " gb", "layers": [3]}
    assert spec.parse_parameters([]) == {}


def test_parse_parameters_value_may_hold_equals_signs():
    assert real_spec().parse_parameters(["name=a=b"]) == {"name": "a=b"}


def test_parse_parameters_needs_name_equals_value():
    spec = real_spec()
    with pytest.raises(OptionError) as info:
        spec.parse_parameters(["n=1", "bad"])
    assert str(info.value) == "`bad` needs the form NAME=VALUE, e.g. alpha=0.5"
    assert info.value.option == "parameters"
    with pytest.raises(OptionError, match="`=3` needs the form NAME=VALUE"):
        spec.parse_parameters(["=3"])


def test_parse_parameters_bad_value_names_the_parameter():
    with pytest.raises(ParameterError) as info:
        real_spec().parse_parameters(["n=many"])
    assert str(info.value) == "parameter `n` is int (default 3); `many` is not a valid int"


def test_unknown_parameter_lists_known_ones():
    with pytest.raises(ParameterError) as info:
        real_spec().parse_parameters(["depth=3"])
    assert str(info.value) == (
        "pipeline `my_notebook` has no parameter `depth`; its parameters are: n, lr, name, flag, "
        "nothing, layers, opts"
    )


def test_unknown_parameter_when_there_are_none():
    spec = PipelineSpec(name="p", source="p.ipynb", source_sha256="", workdir=".",
                        kernel={"name": "python3"},
                        steps=[Step("a", "steps/01_a.ipynb", [1], "h")])
    with pytest.raises(ParameterError) as info:
        spec.parameter("x")
    assert str(info.value) == "pipeline `p` has no parameter `x`; its parameters are: none"


@pytest.mark.parametrize(("field", "value"), [
    ("step", 'evaluate";id>&2;"'),
    ("step", "train\n"),
    ("notebook", 'steps/01_a""".ipynb'),
    ("notebook", "../outside.ipynb"),
    ("pipeline", "p; rm -rf /"),
    ("kernel", "py; rm -rf /"),
    ("parameter", "n\nimport os"),
    ("output", "x = 1"),
])
def test_a_hand_edited_name_that_would_reach_generated_code_is_refused(
        tmp_path: Path, field: str, value: str) -> None:
    """Names of pipeline.yaml become file names, task ids and words of generated Python,
    shell and Dockerfiles: one that could carry code into them is refused, named."""
    data = real_spec().to_dict()
    step = data["steps"][0]
    if field == "step":
        step["name"] = value
    elif field == "notebook":
        step["notebook"] = value
    elif field == "pipeline":
        data["name"] = value
    elif field == "kernel":
        data["kernel"]["name"] = value
    elif field == "parameter":
        data["parameters"][0]["name"] = value
    else:
        step["outputs"] = [{"name": value, "role": "value", "required": True}]
    with pytest.raises(SpecError) as info:
        PipelineSpec.from_dict(data, "pipeline.yaml")
    assert repr(value) in str(info.value) and "\n" not in str(info.value)


def test_steps_that_wait_for_each_other_are_refused() -> None:
    data = real_spec().to_dict()
    first, last = data["steps"][0], data["steps"][-1]
    first["after"] = [*first["after"], last["name"]]
    with pytest.raises(SpecError, match="wait for each other in a cycle"):
        PipelineSpec.from_dict(data, "pipeline.yaml")


def test_yaml_aliases_and_oversized_specs_are_refused(tmp_path: Path) -> None:
    """A few lines of nested aliases expand to gigabytes; a spec never needs one."""
    folder = tmp_path / "p"
    real_spec().write(folder)
    text = (folder / SPEC_FILE).read_text(encoding="utf-8")
    laughs = "".join(f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}, *l{i - 1}]\n" for i in range(1, 9))
    (folder / SPEC_FILE).write_text("l0: &l0 [x]\n" + laughs + text, encoding="utf-8")
    with pytest.raises(SpecError, match=r"YAML alias \(\*l0\) at line 2"):
        PipelineSpec.read(folder)
    # the same without libyaml: the pure-Python loader refuses it alike
    import yaml

    from jupyter_mlops.pipeline import spec as spec_module

    with pytest.MonkeyPatch.context() as patch:
        patch.delattr(yaml, "CSafeLoader")
        with pytest.raises(yaml.YAMLError, match=r"YAML alias \(\*l0\) at line 2"):
            spec_module.load_yaml("l0: &l0 [x]\n" + laughs)
        assert spec_module.load_yaml(text) == yaml.safe_load(text)
    assert spec_module.load_yaml(text) == yaml.safe_load(text)  # and with libyaml
    (folder / SPEC_FILE).write_text(text + "#" * (9 << 20), encoding="utf-8")
    with pytest.raises(SpecError, match="more than a pipeline spec holds"):
        PipelineSpec.read(folder)
    # one that grew past its size check is read no further than one byte over, and refused
    read = spec_module.read_spec_bytes(folder / SPEC_FILE)
    assert len(read) == spec_module.MAX_SPEC_BYTES + 1
    with pytest.raises(SpecError, match="more than a pipeline spec holds"):
        PipelineSpec.from_bytes(read, folder / SPEC_FILE)


def _with(path: str, value: Any) -> dict[str, Any]:
    """``base_dict()`` with the field at ``path`` (``steps.0.cells``) set to ``value``."""
    data = json.loads(json.dumps(base_dict()))
    *parents, last = path.split(".")
    target: Any = data
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    target[int(last) if last.isdigit() else last] = value
    return data


WRONG_TYPES = [
    ("name", 5, "name"), ("source", ["a"], "source"), ("workdir", None, "workdir"),
    ("kernel", "python3", "kernel"), ("kernel.name", 3, "kernel.name"),
    ("allow_pickle", "yes", "allow_pickle"), ("trust", "os.system", "trust"),
    ("parameters", {"n": 1}, "parameters"), ("parameters.0.help", ["x"], "parameters[0].help"),
    ("steps", {"a": 1}, "steps"), ("steps.0.cells", "1-3", "steps[0].cells"),
    ("steps.0.cells.0", "x", "steps[0].cells[0]"), ("steps.0.inputs", ["df"], "steps[0].inputs"),
    ("steps.0.outputs", "df", "steps[0].outputs"), ("steps.0.after", "load", "steps[0].after"),
    ("steps.0.outputs.0", {"name": "df", "role": "table"}, "steps[0].outputs[0].role"),
    ("checks", [1], "checks"), ("checks.fail_on_drift", "no", "checks.fail_on_drift"),
    ("checks.metrics", {"acc": {"min": "high"}}, "checks.metrics.acc.min"),
    ("checks.data", {"d": {"step": "s", "variable": "d", "file": "../../etc/passwd"}},
     "checks.data.d.file"),
]


@pytest.mark.parametrize(("path", "value", "field"), WRONG_TYPES,
                         ids=[w[0] for w in WRONG_TYPES])
def test_a_field_of_the_wrong_type_is_one_line_naming_it(path: str, value: Any,
                                                        field: str) -> None:
    data = _with(path, value)
    if path.startswith("steps.0.outputs.0") and not data["steps"][0]["outputs"]:
        pytest.skip("the real spec's first step has no outputs")
    with pytest.raises(SpecError) as info:
        PipelineSpec.from_dict(data)
    assert f"`{field}`" in str(info.value)
    assert "\n" not in str(info.value)


def test_the_published_schema_accepts_what_export_writes() -> None:
    # every test that exports and runs reads its spec back through the schema too
    from jupyter_mlops.pipeline.schema import validate

    validate(yaml.safe_load(real_spec().to_yaml()), "pipeline.yaml")


def test_the_sidebar_wire_type_declares_the_schemas_fields() -> None:
    """``IPipeline`` in the sidebar's types.ts and the schema name the same top-level fields
    (the schema adds the hand-written ``retrain`` section, which the sidebar does not show)."""
    from wire import interfaces

    from jupyter_mlops.pipeline.schema import schema

    assert set(interfaces()["IPipeline"]) == set(schema()["properties"]) - {"retrain"}


def test_the_schema_validator_is_kept_in_the_cache_folder_and_refuses_the_same(
        tmp_path: Path) -> None:
    """The validator fastjsonschema makes is written once to ``XDG_CACHE_HOME`` and imported
    from there by the next process; it accepts and refuses what a fresh one does, and an
    unwritable cache folder only means making it each time."""
    code = textwrap.dedent('''
        import json, sys
        from jupyter_mlops.errors import SpecError
        from jupyter_mlops.pipeline.schema import _validator, validate
        validate(json.loads(sys.argv[1]), "pipeline.yaml")
        try:
            validate({**json.loads(sys.argv[1]), "steps": "no"}, "pipeline.yaml")
        except SpecError as err:
            print(str(err).splitlines()[0])
        print(_validator().__module__)
    ''')
    spec = json.dumps(yaml.safe_load(real_spec().to_yaml()))
    outputs = []
    for cache in (tmp_path / "cache", tmp_path / "cache", tmp_path / "file" / "x"):
        env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
        (tmp_path / "file").write_text("a file where the cache folder would go")
        done = subprocess.run([sys.executable, "-c", code, spec], capture_output=True,
                              text=True, env=env, check=False)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.splitlines())
    cached = list((tmp_path / "cache" / "jupyter-mlops").glob("pipeline_schema_*.py"))
    assert len(cached) == 1
    first, second, unwritable = outputs
    assert first == second and first[1].startswith("_mlops_pipeline_schema_")
    assert unwritable[0] == first[0] and "`steps`" in first[0]
    assert not unwritable[1].startswith("_mlops_pipeline_schema_")
