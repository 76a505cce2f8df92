"""Threads of the numerical libraries in step kernels that run side by side."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from conftest import run_cli, write_notebook

from jupyter_mlops.execution.stepexec import kernel_environ
from jupyter_mlops.pipeline.spec import PipelineSpec, Step
from jupyter_mlops.run.threads import THREAD_VARIABLES, kernel_threads, side_by_side


def _spec(**after: list[str]) -> PipelineSpec:
    """A spec of steps waiting for the steps named, in the order given."""
    steps = [Step(name=n, notebook=f"steps/{n}.ipynb", cells=[1], code_sha256="", after=a)
             for n, a in after.items()]
    return PipelineSpec(name="p", source="p.ipynb", source_sha256="", workdir=".",
                        kernel={"name": "python3"}, steps=steps)


def test_how_many_steps_may_run_at_once() -> None:
    assert side_by_side(_spec(a=[], b=["a"], c=["b"])) == 1  # a chain
    assert side_by_side(_spec(load=[], base=["load"], tuned=["load"], evaluate=["base", "tuned"])
                        ) == 2
    assert side_by_side(_spec(**{f"s{i}": [] for i in range(8)})) == 8
    # a step listed before the one it waits for (--after a later step) is still deeper
    assert side_by_side(_spec(c=["b"], a=[], b=["a"])) == 1


def test_kernels_get_the_cores_divided_and_the_users_setting_wins(monkeypatch) -> None:
    """In the kernels' environment only: this process's (a user's kernel running a
    pipeline from its panel) is left as it is."""
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    wide = _spec(**{f"s{i}": [] for i in range(3)})
    with kernel_threads(wide, jobs=2, cores=8) as figures:
        assert figures == {"per_kernel": 4, "steps_at_once": 2, "cores": 8,
                           "variables": list(THREAD_VARIABLES)}
        assert {kernel_environ()[n] for n in THREAD_VARIABLES} == {"4"}
        assert not any(n in os.environ for n in THREAD_VARIABLES)
        with kernel_threads(wide, jobs=3, cores=6) as inner:  # a second run meanwhile
            assert inner["per_kernel"] == 2 and kernel_environ()["OMP_NUM_THREADS"] == "2"
        assert kernel_environ()["OMP_NUM_THREADS"] == "4"  # the first run's again
    assert not any(n in kernel_environ() for n in THREAD_VARIABLES)  # as it was, after
    with kernel_threads(wide, jobs=4, cores=2) as figures:
        assert figures["per_kernel"] == 1
    with kernel_threads(_spec(a=[], b=["a"]), jobs=2, cores=8) as figures:
        assert figures is None and "OMP_NUM_THREADS" not in kernel_environ()  # a chain
    with kernel_threads(wide, jobs=2, cores=8, running={"s0"}) as figures:
        assert figures is None  # one step to run: every core
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    with kernel_threads(wide, jobs=2, cores=8) as figures:
        assert figures is None and kernel_environ()["OMP_NUM_THREADS"] == "3"


@pytest.mark.kernel
def test_side_by_side_steps_of_a_run_get_their_share_of_the_cores(tmp_path: Path,
                                                                    monkeypatch) -> None:
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    step = ("%%mlops step {n}\nimport os\n"
            "{n}_threads = int(os.environ.get('OPENBLAS_NUM_THREADS', '0'))")
    notebook = write_notebook(tmp_path / "wide.ipynb", step.format(n="a"), step.format(n="b"),
                              "%%mlops step c",
                              "%%mlops metrics total\ntotal = a_threads + b_threads")
    assert run_cli("export", str(notebook)).returncode == 0
    cores = os.cpu_count() or 1
    for jobs, expected in (("2", max(1, cores // 2)), ("1", 0)):
        runs = tmp_path / f"runs{jobs}"
        done = run_cli("run", str(tmp_path / "wide_pipeline"), "-j", jobs, "--force",
                       "--runs-dir", str(runs), "--store", str(tmp_path / f"s{jobs}.sqlite"))
        assert done.returncode == 0, done.stdout + done.stderr
        record = json.loads(next(runs.glob("*/run.json")).read_text())
        total = {s["name"]: s for s in record["steps"]}["c"]["outputs"]["total"]["value"]
        assert total == 2 * expected, jobs
        with sqlite3.connect(tmp_path / f"s{jobs}.sqlite") as db:
            environment = json.loads(db.execute("SELECT environment FROM runs").fetchone()[0])
        if expected:
            assert environment["kernel_threads"]["steps_at_once"] == 2
        else:
            assert "kernel_threads" not in environment
