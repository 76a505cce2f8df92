"""One quoting helper per language, fed hostile values; and the generators use only them."""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from jupyter_mlops.notebook.params import Parameter
from jupyter_mlops.pipeline import quoting
from jupyter_mlops.pipeline.export import readme
from jupyter_mlops.pipeline.gentests import render_tests
from jupyter_mlops.pipeline.spec import PipelineSpec, Step
from jupyter_mlops.pipeline.stepnotebook import parameters_source

PACKAGE = Path(quoting.__file__).resolve().parents[1]

HOSTILE = [
    'quote"""name', "it's", "back\\slash\\", "new\nline", "carriage\rreturn",
    "$(touch PWNED)", "`touch PWNED`", "; touch PWNED", "a'; touch PWNED; '", "--flag",
    "\x00nul", "tab\there", "<script>alert(1)</script>", "&amp;", "| pipe |", "``tick``",
    "ünïcödé ✓", "\u2028line separator", "{curly} {{braces}}", "%(fmt)s", "", " ",
    "#comment", "\\N{BULLET}", "\"\"\"", "'''", "*glob?[a]", "~user", "${HOME}",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_python_literal_reads_back_as_itself(text: str) -> None:
    source = quoting.python_literal(text)
    assert ast.literal_eval(source) == text
    value = {"k": [text, 1, 2.5, None, True, (text,)]}
    assert ast.literal_eval(quoting.python_literal(value)) == value


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -float("inf"), object(),
                                   {1, 2}, b"bytes", [float("nan")]])
def test_python_literal_refuses_what_has_no_literal(value: object) -> None:
    with pytest.raises(quoting.QuotingError):
        quoting.python_literal(value)


@pytest.mark.parametrize("text", HOSTILE)
def test_python_text_stays_inside_a_docstring_and_a_comment(text: str) -> None:
    source = f'"""Doc {quoting.python_text(text)}."""\n# {quoting.python_comment(text)}\nx = 1\n'
    tree = ast.parse(source.replace("\x00", ""))
    assert [type(node).__name__ for node in tree.body] == ["Expr", "Assign"]


@pytest.mark.parametrize("text", HOSTILE)
def test_shell_word_is_one_word_and_runs_nothing(text: str, tmp_path: Path) -> None:
    if "\x00" in text:
        pytest.skip("no POSIX argument can hold a NUL")
    done = subprocess.run(["sh", "-c", f"printf %s {quoting.shell_word(text)}"],
                          cwd=tmp_path, capture_output=True, check=True)
    assert done.stdout.decode() == text  # bytes: text mode would translate a lone \r
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("text", HOSTILE)
def test_dockerfile_helpers_keep_one_instruction(text: str) -> None:
    line = "RUN " + quoting.dockerfile_exec(["echo", text])
    assert "\n" not in line and "\r" not in line
    assert json.loads(line[4:]) == ["echo", text]
    comment = "# " + quoting.dockerfile_comment(text)
    assert len(comment.splitlines()) <= 1
    if any(c in text for c in "\n\r$\\\"'") or not text.strip():
        with pytest.raises(quoting.QuotingError):
            quoting.dockerfile_path(text)


@pytest.mark.parametrize("text", HOSTILE)
def test_html_and_markdown_text_cannot_open_markup(text: str) -> None:
    escaped = quoting.html_text(text)
    assert "<" not in escaped and ">" not in escaped and '"' not in escaped
    assert "'" not in escaped
    span = quoting.markdown_code(text)
    fence = re.match(r"`+", span).group(0)
    inner = span[len(fence):-len(fence)]
    assert fence not in inner and "\n" not in span
    cell = quoting.markdown_table(text)
    assert "<" not in cell and "\n" not in cell and not re.search(r"(?<!\\)\|", cell)


def test_yaml_text_reads_back_and_never_aliases() -> None:
    shared = ["a", "b"]
    data = {"x": shared, "y": shared, "hostile": HOSTILE[:-1]}
    text = quoting.yaml_text(data)
    assert "&" not in text.split("hostile")[0] and "*" not in text.split("hostile")[0]
    assert yaml.safe_load(text) == data


def _spec(tmp_path: Path, text: str) -> PipelineSpec:
    """A spec whose free-text fields hold ``text``: what a hand-edited pipeline.yaml or a
    notebook's own strings can put there (names are validated when the spec is read)."""
    return PipelineSpec(
        name="p", source=f"{text}.ipynb", source_sha256="0", workdir=".",
        kernel={"name": "python3", "display_name": text},
        parameters=[Parameter("path", "str", text, help=text),
                    Parameter("sizes", "list", [text, 1], help="")],
        steps=[Step(name="load", notebook="steps/01_load.ipynb", cells=[1], code_sha256="0",
                    parameters=["path", "sizes"]),
               Step(name="train", notebook="steps/02_train.ipynb", cells=[2],
                    code_sha256="0", after=["load"])],
        checks={"metrics": {"m": {"value": 1.0, "min": 0.5, "help": text}}},
    )


def _strings_only(tree: ast.AST, text: str) -> None:
    """``text`` occurs in the program only inside string constants."""
    for node in ast.walk(tree):
        for field in ("id", "attr", "arg", "name"):
            value = getattr(node, field, None)
            assert not (isinstance(value, str) and text.strip() and text in value), node


@pytest.mark.parametrize("text", [t for t in HOSTILE if "\x00" not in t])
def test_generated_python_parses_and_holds_the_text_as_data(tmp_path: Path, text: str) -> None:
    spec = _spec(tmp_path, text)
    cell = parameters_source(spec.parameters, "load")
    tree = ast.parse(cell)
    assigned = {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body
                if isinstance(n, ast.Assign)}
    assigned |= {n.target.id: ast.literal_eval(n.value) for n in tree.body
                 if isinstance(n, ast.AnnAssign)}
    assert assigned["path"] == text and assigned["sizes"] == [text, 1]
    tests = render_tests(spec, {})["tests/test_pipeline.py"].decode()
    _strings_only(ast.parse(tests), text)
    from jupyter_mlops.deploy.airflow_dag import render_dag

    dag = render_dag(spec, tmp_path / f"dir {text}"[:200].replace("\x00", ""),
                     str(tmp_path / "runs"), 0, None)
    tree = ast.parse(dag)
    _strings_only(tree, text)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("text", HOSTILE)
def test_the_readme_keeps_hostile_text_in_code_spans_and_cells(tmp_path: Path,
                                                              text: str) -> None:
    page = readme(_spec(tmp_path, text))
    rows = [line for line in page.split("\n") if line.startswith("|")]
    outside_code = [re.sub(r"(`+).*?\1", "", row) for row in rows]
    assert not any("<script" in row for row in outside_code)
    assert all(len(re.findall(r"(?<!\\)\|", row)) in (5, 7) for row in rows), rows
    run_line = next(line for line in page.split("\n")
                    if line.startswith("jupyter mlops run . -p"))
    if "\x00" not in text and "\n" not in text and "\r" not in text:
        words = subprocess.run(
            ["sh", "-c", f"printf '%s\\n' {run_line[len('jupyter mlops run . '):]}"],
            capture_output=True, check=True, cwd=tmp_path).stdout.decode()
        assert words == f"-p\npath={text}\n"
        assert not (tmp_path / "PWNED").exists()


def test_generators_quote_only_through_the_helpers() -> None:
    """No generator escapes by hand: one helper per language, in pipeline/quoting.py."""
    pattern = re.compile(r"html\.escape\(|shlex\.quote\(|yaml\.safe_dump\(|yaml\.dump\(|"
                         r"json\.dumps\(\[")
    found = [f"{path.relative_to(PACKAGE)}:{number}"
             for path in PACKAGE.rglob("*.py") if path.name != "quoting.py"
             for number, line in enumerate(path.read_text().splitlines(), start=1)
             if pattern.search(line)]
    assert found == []
