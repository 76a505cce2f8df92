"""One options object per run, executors and mirrors found by name, and errors in the
domain's words that each face names in its own (the CLI's flags, the server's fields)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_notebook

from jupyter_mlops.cli.app import describe_error
from jupyter_mlops.errors import OptionError
from jupyter_mlops.execution.executors import ExecutorSettings, executor_names, open_executor
from jupyter_mlops.pipeline.export import export
from jupyter_mlops.pipeline.freshness import stale_export
from jupyter_mlops.pipeline.spec import PipelineSpec
from jupyter_mlops.run.mirrors import open_mirror
from jupyter_mlops.run.options import RunOptions


@pytest.mark.parametrize(("settings", "option", "words"), [
    ({"jobs": 0}, "jobs", "at least 1 step at a time, got 0"),
    ({"cell_timeout": 0}, "cell_timeout", "positive number of seconds"),
    ({"only": ["a"], "start": "b"}, "only", "not both"),
    ({"resume": "r1", "parameters": {"n": 1}}, "parameters", "keeps its own parameters"),
])
def test_a_setting_that_cannot_be_used_is_named_by_its_field(
        settings: dict[str, object], option: str, words: str) -> None:
    with pytest.raises(OptionError) as info:
        RunOptions.of(**settings).validate()
    assert info.value.option == option
    assert words in str(info.value)
    # the core speaks no flag; the CLI alone names it
    assert "-j" not in str(info.value) and "--" not in str(info.value)


def test_the_cli_names_the_flag_of_a_refused_option() -> None:
    err = OptionError("a run needs at least 1 step at a time, got 0", option="jobs")
    assert describe_error(err) == ["error: -j: a run needs at least 1 step at a time, got 0"]
    err = OptionError("a cell timeout needs a positive number of seconds, got -1",
                      option="cell_timeout")
    assert describe_error(err)[0].startswith("error: --cell-timeout: ")


def test_run_options_keep_the_keywords_run_pipeline_always_took() -> None:
    options = RunOptions.of(runs_dir="/tmp/r", fail_on_drift=True, mlflow="sqlite:///m.db",
                            scheduler="tcp://127.0.0.1:8786", force=["a"], only=["b"])
    assert options.mirrors == {"mlflow": "sqlite:///m.db"}
    assert options.address == "tcp://127.0.0.1:8786"
    assert options.force == ("a",) and options.only == ("b",)
    with pytest.raises(TypeError, match=r"unknown run option.*jbos"):
        RunOptions.of(jbos=2)


def test_executors_are_found_by_name_and_an_unknown_one_lists_the_rest() -> None:
    assert {"local", "dask"} <= set(executor_names())
    local = open_executor("local", ExecutorSettings())
    assert type(local).__name__ == "LocalExecutor" and local.parallelism() is None
    local.close()
    with pytest.raises(OptionError) as info:
        open_executor("kubernetes", ExecutorSettings())
    assert info.value.option == "executor"
    assert "use one of: dask, local" in str(info.value)


def test_the_dask_executor_needs_an_address() -> None:
    with pytest.raises(OptionError) as info:
        open_executor("dask", ExecutorSettings(address=None))
    assert info.value.option == "scheduler"
    assert "needs the address of a scheduler" in str(info.value)


def test_an_unknown_mirror_is_refused_before_the_run() -> None:
    with pytest.raises(OptionError, match="unknown mirror `wandb`; use one of: mlflow"):
        open_mirror("wandb", "x")


def test_the_runner_imports_no_backend() -> None:
    source = (Path(__file__).resolve().parent.parent / "jupyter_mlops" / "run" /
              "runner.py").read_text(encoding="utf-8")
    for backend in ("daskexec", "kernelpool", "mlflowsync", "distributed", "mlflow"):
        assert f"import {backend}" not in source and f".{backend} import" not in source


def test_a_stale_export_is_said_by_the_core(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "nb.ipynb", "%%mlops step a\nx = 1")
    folder = export(notebook).folder
    spec = PipelineSpec.read(folder)
    assert stale_export(spec, folder) is None
    write_notebook(notebook, "%%mlops step a\nx = 2")
    assert "nb.ipynb changed since the export" in (stale_export(spec, folder) or "")
    notebook.unlink()
    assert "is not at" in (stale_export(spec, folder) or "")
