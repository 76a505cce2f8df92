"""The inference plan: which cells prepare data for prediction, what they read, what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import EXAMPLES, write_notebook

from jupyter_mlops.notebook.analysis import analyze
from jupyter_mlops.notebook.reader import read_notebook
from jupyter_mlops.notebook.roles import Mark, mark_to_tags, parse_magic_line, parse_tags
from jupyter_mlops.pipeline.export import export
from jupyter_mlops.pipeline.spec import PipelineSpec

LOAD = "%%mlops step load\nimport pandas as pd\ndf = pd.read_csv('data.csv')"


def plan_of(tmp_path: Path, *cells: object):
    analysis = analyze(read_notebook(write_notebook(tmp_path / "nb.ipynb", *cells)))
    return analysis.inference, [p.message for p in analysis.errors], analysis


def test_the_churn_notebook_prepares_df_in_cells_13_and_14() -> None:
    analysis = analyze(read_notebook(EXAMPLES / "churn" / "churn.ipynb"))
    plan = analysis.inference
    assert plan is not None and not analysis.errors
    assert (plan.input, plan.input_step, plan.output) == ("df", "load", "df")
    assert [c["cell"] for c in plan.cells] == [13, 14]
    assert "fillna" in plan.cells[0]["code"] and "%%mlops" not in plan.cells[0]["code"]
    assert {"payment_method", "customer_id", "total_charges"} <= set(plan.columns)
    assert plan.fitted == {} and plan.parameters == []


def test_an_unmarked_notebook_is_offered_the_cells_that_look_like_preparation(
        tmp_path: Path) -> None:
    source = (EXAMPLES / "churn" / "churn.ipynb").read_text()
    unmarked = tmp_path / "churn.ipynb"
    unmarked.write_text(source.replace("--prepare", "").replace("clean \\n", "clean\\n"))
    analysis = analyze(read_notebook(unmarked))
    assert analysis.inference is None
    assert analysis.suggested_prepare == [13, 14]


def test_fitted_values_parameters_and_helpers_are_classified(tmp_path: Path) -> None:
    plan, errors, _ = plan_of(
        tmp_path,
        "%%mlops params\nscale = 2.0",
        LOAD + "\ndef tidy(frame):\n    return frame.dropna()\nkeep = ['a', 'b']",
        "%%mlops step clean --prepare\ndf = tidy(df)[keep] * scale",
        "%%mlops step split\nfrom sklearn.model_selection import train_test_split\n"
        "X_train, X_test = train_test_split(df)",
    )
    assert errors == []
    assert plan.fitted == {"keep": "load"} and plan.parameters == ["scale"]
    assert "def tidy" in plan.replay["tidy"]


@pytest.mark.parametrize(("cells", "words"), [
    (("%%mlops params\ntarget = 'churned'", LOAD,
      "%%mlops step clean --prepare\ndf = df.drop(columns=[target])"),
     "cell 3 (prepare) reads `target`, the target"),
    ((LOAD, "%%mlops step split\nfrom sklearn.model_selection import train_test_split\n"
      "X_train, X_test = train_test_split(df)",
      "%%mlops prepare\nX_test = X_test.fillna(0)"),
     "reads `X_test`, made at or after the split in cell 2"),
    ((LOAD, "%%mlops step clean --prepare\nfrom sklearn.model_selection import train_test_split"
      "\na, b = train_test_split(df)"),
     "splits the data"),
    ((LOAD, "%%mlops step fit\nfrom sklearn.linear_model import LinearRegression\n"
      "model = LinearRegression()", "%%mlops model model\nmodel.fit(df[['a']], df['b'])",
      "%%mlops step score --prepare\ndf['p'] = model.predict(df[['a']])"),
     "reads the model `model`"),
    # (a `%time` line's statement is plain Python, and prepared as such)
    ((LOAD, "%%mlops step clean --prepare\n%env LIMIT=3\ndf = df.dropna()"),
     "uses IPython syntax"),
    ((LOAD, "%%mlops step clean\nlimit = 3", "%%mlops prepare\ndf = df.head(limit)"),
     "reads `limit`, which cell 2 of the same step makes without preparing"),
])
def test_what_a_prepare_cell_may_not_read_is_refused_naming_the_cell(
        tmp_path: Path, cells: tuple[str, ...], words: str) -> None:
    plan, errors, _ = plan_of(tmp_path, *cells)
    assert plan is None
    assert any(words in e for e in errors), errors


def test_prepare_on_a_role_that_does_not_prepare_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="a params cell does not prepare data"):
        parse_magic_line("params --prepare")
    _, errors, _ = plan_of(tmp_path, ("x = 1", ["mlops:skip", "mlops:prepare"]), LOAD)
    assert any("a skip cell does not prepare data" in e for e in errors), errors


def test_the_tag_spelling_means_the_same_as_the_magic(tmp_path: Path) -> None:
    by_tag, errors, _ = plan_of(
        tmp_path, LOAD, ("df = df.dropna()", ["mlops:step=clean", "mlops:prepare"]))
    assert errors == [] and by_tag is not None and by_tag.cells[0]["cell"] == 2
    assert parse_magic_line("step clean --prepare") == Mark("step", name="clean", prepare=True)
    assert mark_to_tags(Mark("data", variables=("df",), prepare=True)) == [
        "mlops:data=df", "mlops:prepare"]
    assert parse_tags(["mlops:prepare"]) == [Mark("prepare", spelling="tag")]


def test_the_plan_goes_into_pipeline_yaml_and_back(tmp_path: Path) -> None:
    result = export(EXAMPLES / "churn" / "churn.ipynb", tmp_path / "pipe")
    spec = PipelineSpec.read(result.folder)
    assert spec.inference is not None
    assert spec.inference["input"] == {"step": "load", "variable": "df"}
    assert len(spec.inference["code_sha256"]) == 64
    text = (result.folder / "pipeline.yaml").read_text()
    edited = text.replace("variable: df", "variable: df; import os")
    (result.folder / "pipeline.yaml").write_text(edited)
    with pytest.raises(Exception, match=r"not a Python name|does not match|pattern"):
        PipelineSpec.read(result.folder)
