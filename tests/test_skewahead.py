"""The process that checks a run's skew (jupyter_mlops.serving.skewahead): its one line of
answer stays one line whatever the check prints, and it ends without a request."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from jupyter_mlops.serving import skew, skewahead


def _serve_in_child(request: bytes, after_run: Any) -> bytes:
    """Run ``skewahead.main`` in a forked child with ``request`` on its standard input and
    ``after_run`` as the check; what it wrote on its standard output."""
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery from here on
        code = 1
        try:
            os.dup2(stdin_r, 0)
            os.dup2(stdout_w, 1)
            for fd in (stdin_r, stdin_w, stdout_r, stdout_w):
                os.close(fd)
            import sys

            sys.stdin = open(0, closefd=False)  # noqa: SIM115
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            skew.after_run = after_run
            skewahead.main()
            code = 0
        finally:
            os._exit(code)
    os.close(stdin_r)
    os.close(stdout_w)
    os.write(stdin_w, request)
    os.close(stdin_w)
    chunks = []
    while chunk := os.read(stdout_r, 65536):
        chunks.append(chunk)
    os.close(stdout_r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks)


def test_what_the_check_prints_never_comes_before_the_answer() -> None:
    def noisy(pipeline: str, run_id: str, store: Any) -> str:
        print("a setup cell replayed, printing")
        os.write(1, b"and a library writing to fd 1\n")
        return f"skew check passed for {run_id} of {pipeline}"

    request = json.dumps({"pipeline": "p", "run_id": "r1", "store": None}).encode() + b"\n"
    answer = _serve_in_child(request, noisy)
    assert answer.decode().splitlines() == [
        json.dumps({"note": "skew check passed for r1 of p"})]


def test_without_a_request_it_ends_and_says_nothing() -> None:
    def never(*args: Any) -> str:
        raise AssertionError("checked without a request")

    assert _serve_in_child(b"", never) == b""


@pytest.mark.parametrize("note", [None, "warning: skew check failed: ..."])
def test_every_answer_of_the_check_comes_back_as_it_was(note: Any) -> None:
    request = json.dumps({"pipeline": "p", "run_id": "r", "store": "s"}).encode() + b"\n"
    answer = _serve_in_child(request, lambda *a: note)
    assert json.loads(answer) == {"note": note}


def test_it_imports_what_the_setup_cells_import_and_never_the_users_own(tmp_path) -> None:
    """The check replays the setup cells; their installed imports are made ahead (the
    magics the replay skips do not stop them), up to a module beside the notebook, which
    may set what the imports after it read."""
    import shutil
    import subprocess
    import sys

    import yaml
    from conftest import REPO, run_cli

    shutil.copytree(REPO / "examples" / "churn", tmp_path / "churn",
                    ignore=shutil.ignore_patterns("*_pipeline"))
    assert run_cli("export", str(tmp_path / "churn" / "churn.ipynb")).returncode == 0
    spec_file = tmp_path / "churn" / "churn_pipeline" / "pipeline.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    setup = spec["inference"]["setup"]
    assert "run_line_magic" in setup[0]["code"] and "matplotlib.pyplot" in setup[-1]["code"]
    (tmp_path / "helper_of_mine.py").write_text("")  # importable from where the check runs
    code = ("import json, sys\nfrom jupyter_mlops.serving import skewahead\n"
            "skewahead._import_setup(sys.argv[1])\n"
            "print(json.dumps([m in sys.modules for m in "
            "('matplotlib.pyplot', 'sklearn.ensemble', 'helper_of_mine', 'xml.dom.minidom')]))")
    original = setup[-1]["code"]
    found = []
    for before, after in (("", "\nimport xml.dom.minidom\nimport helper_of_mine"),
                          ("import helper_of_mine\n", "\nimport xml.dom.minidom")):
        setup[-1]["code"] = before + original + after
        spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
        done = subprocess.run([sys.executable, "-c", code, str(spec_file.parent)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              check=True)
        found.append(json.loads(done.stdout))
    assert found == [[True, True, False, True], [False, False, False, False]]
