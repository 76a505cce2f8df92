"""The sidebar's TypeScript types against the Python shapes they mirror.

The server tests hold real responses to these types (``wire.assert_wire``); here the types
that mirror a Python dataclass field for field are compared with it, so a field added on one
side and not the other fails."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import REPO
from wire import interfaces

from jupyter_mlops.errors import Problem
from jupyter_mlops.notebook.analysis import Output
from jupyter_mlops.notebook.params import Parameter
from jupyter_mlops.pipeline.spec import PipelineSpec, Step
from jupyter_mlops.run.results import StepResult


def _fields(kind: type) -> set[str]:
    return {f.name for f in dataclasses.fields(kind)}


@pytest.mark.parametrize(("interface", "kind", "left_out"), [
    ("IParameter", Parameter, set()),
    ("IOutput", Output, set()),
    ("IStep", Step, set()),
    # the sidebar shows no manifests, checks or files; notebook becomes notebook_path
    ("IStepState", StepResult, {"outputs", "checks", "notebook", "cache_key", "files"}),
])
def test_a_wire_type_declares_the_fields_of_its_dataclass(interface: str, kind: type,
                                                         left_out: set[str]) -> None:
    declared = set(interfaces()[interface])
    # the server adds to a step: its duration, its notebook's path, its checks' warnings
    python = _fields(kind) | ({"duration", "notebook_path", "warnings"} if kind is StepResult
                              else set())
    assert declared == python - left_out, (declared ^ (python - left_out))


def test_ipipeline_is_the_spec_as_pipeline_yaml_holds_it() -> None:
    spec = PipelineSpec("p", "p.ipynb", "0" * 64, ".", {"name": "python3"}, [], [])
    assert set(interfaces()["IPipeline"]) == set(spec.to_dict())


def test_iproblem_is_problem_to_dict() -> None:
    assert set(interfaces()["IProblem"]) == set(Problem("m", 1).to_dict())


def test_the_sidebar_keeps_no_list_of_roles_of_its_own() -> None:
    """The role buttons show what the analysis sends (the server test checks it is ROLES)."""
    assert interfaces()["IAnalysis"]["roles"] == (False, "string[]")
    for source in (REPO / "labextension" / "src").rglob("*.ts*"):
        text = source.read_text(encoding="utf-8")
        assert "'params', 'step'" not in text and '"params", "step"' not in text, source
