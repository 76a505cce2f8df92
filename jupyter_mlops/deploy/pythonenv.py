"""Another Python environment, seen from here: what it is, what it has, and pip run in it
with its own versions as constraints, so nothing installed there changes version.

Everything is asked of that environment's interpreter in a subprocess (it may be an older
Python than this one), and every refusal is one line naming the interpreter and the fix.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MlopsError, printable

__all__ = ["PipResult", "PythonEnv", "canonical", "check_installable", "pip_install", "probe",
           "run_python"]

#: The oldest Python the kernel runtime runs on.
OLDEST = (3, 9)
# Runs on any Python, 2.7 included, so an old interpreter can say what it is.
_VERSION_PROBE = "import sys; sys.stdout.write('%d.%d.%d' % tuple(sys.version_info[:3]))"
# Runs on Python >= 3.9: the environment's paths, packages, pip, and any runtime in it.
_PROBE = r"""
import importlib.metadata as md, json, os, sys, sysconfig, tempfile
purelib = sysconfig.get_paths()["purelib"]
try:
    fd, probe = tempfile.mkstemp(dir=purelib); os.close(fd); os.unlink(probe); writable = True
except OSError:
    writable = False
managed = (sys.prefix == getattr(sys, "base_prefix", sys.prefix) and os.path.isfile(
    os.path.join(sysconfig.get_paths()["stdlib"], "EXTERNALLY-MANAGED")))
packages = {}
for dist in md.distributions():
    name = dist.metadata["Name"]
    if name:
        packages.setdefault(name, dist.version)
runtime = None
try:
    import jupyter_mlops.runtime as rt
    runtime = {"protocol": rt.PROTOCOL, "supported": sorted(rt.SUPPORTED)}
except Exception:
    pass
try:
    import pip  # noqa
    has_pip = True
except ImportError:
    has_pip = False
print(json.dumps({"prefix": sys.prefix, "purelib": purelib, "writable": writable,
                  "managed": managed, "packages": packages, "runtime": runtime,
                  "pip": has_pip}))
"""


def _said(value: str, limit: int = 200) -> str:
    """A path or pip's words, quoted on one line (paths are often longer than names)."""
    return printable(value, limit)


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class PythonEnv:
    """An interpreter and its environment, as it described itself."""

    python: str
    version: tuple[int, int, int]
    prefix: str
    purelib: str
    writable: bool
    managed: bool
    has_pip: bool
    #: Installed distributions, canonical name -> version.
    packages: dict[str, str] = field(default_factory=dict)
    #: The jupyter-mlops runtime importable there: {"protocol", "supported"}, or None.
    runtime: dict | None = None

    @property
    def version_text(self) -> str:
        """``3.11.7``."""
        return ".".join(str(p) for p in self.version)


def _clean_env() -> dict[str, str]:
    # this process's PYTHONPATH or PYTHONHOME must not make that interpreter see our packages
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONNOUSERSITE")}


def run_python(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``argv`` (another environment's interpreter) without this process's Python
    variables, capturing its output as text."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=_clean_env(), stdin=subprocess.DEVNULL, check=False)


def _interpreter(python: str) -> str:
    """``python`` as a path: a name without a slash is looked up on PATH. Not resolved: a
    virtual environment's ``bin/python`` is a link to its base interpreter, and following it
    would leave the environment."""
    found = python if os.sep in python else shutil.which(python)
    if not found or not os.path.isfile(found):
        raise MlopsError(f"no Python interpreter at {_said(python)}: give the path of "
                         "the environment's python, e.g. /path/to/venv/bin/python")
    if not os.access(found, os.X_OK):
        raise MlopsError(f"{_said(found)} is not executable: give the path of a Python "
                         "interpreter")
    return os.path.abspath(found)


def probe(python: str) -> PythonEnv:
    """Ask ``python`` what it is; MlopsError when it is not a Python the runtime can use."""
    path = _interpreter(python)
    not_python = (f"{_said(path)} is not a Python interpreter; give the path of the "
                  "environment's python")
    try:
        done = run_python([path, "-c", _VERSION_PROBE], 60)
    except (OSError, subprocess.TimeoutExpired):
        raise MlopsError(not_python) from None
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", done.stdout.strip())
    if done.returncode != 0 or match is None:
        raise MlopsError(not_python)
    version = (int(match[1]), int(match[2]), int(match[3]))
    if version[:2] < OLDEST:
        raise MlopsError(f"{_said(path)} is Python {'.'.join(map(str, version))}; the "
                         "jupyter-mlops runtime needs Python 3.9 or newer: use an environment "
                         "with a newer Python")
    done = run_python([path, "-c", _PROBE], 120)
    try:
        facts = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise MlopsError(f"{_said(path)} could not describe its environment: "
                         f"{_said(done.stderr.strip()[-200:])}") from None
    packages = {canonical(k): v for k, v in facts["packages"].items()}
    return PythonEnv(path, version, facts["prefix"], facts["purelib"], facts["writable"],
                     facts["managed"], facts["pip"], packages, facts["runtime"])


def check_installable(env: PythonEnv) -> None:
    """MlopsError when pip cannot or may not install into ``env``."""
    where = _said(env.python)
    if not env.has_pip:
        raise MlopsError(f"the environment of {where} has no pip; add it with `{where} -m "
                         "ensurepip`, or create the environment with pip")
    if env.managed:
        raise MlopsError(f"the environment of {where} is managed by the system "
                         "(EXTERNALLY-MANAGED), which pip must not change; create a virtual "
                         f"environment (`{where} -m venv DIR`) and give its python")
    if not env.writable:
        raise MlopsError(f"the environment of {where} is read-only here ({_said(env.purelib)} "
                         "cannot be written); run as its owner, or use an environment you can "
                         "write")


@dataclass(frozen=True)
class PipResult:
    """What one pip run did or would do."""

    ok: bool
    #: (name, version) of what is (or would be) installed.
    installed: list[tuple[str, str]]
    #: Why it failed, in one line, when not ``ok``.
    reason: str = ""


def _conflict(output: str) -> str:
    """pip's refusal in one line: the requirement and the constraint that meet."""
    lines = [line.strip() for line in output.splitlines()]
    needs = [line for line in lines if " depends on " in line]
    pinned = [line.replace("The user requested (constraint) ", "")
              for line in lines if "(constraint)" in line]
    if needs or pinned:
        needs_text = "; ".join(needs[:3])
        pinned_text = ", ".join(pinned[:3])
        return (f"{needs_text} but the environment has {pinned_text}" if pinned
                else needs_text)
    errors = [line[len("ERROR: "):] for line in lines if line.startswith("ERROR: ")]
    return errors[0] if errors else (lines[-1] if lines else "pip failed")


def pip_install(env: PythonEnv, requirements: list[str], *, dry_run: bool,
                pins: dict[str, str]) -> PipResult:
    """``pip install requirements`` in ``env`` with ``pins`` (name -> version, normally every
    distribution installed there) as constraints, so pip adds packages but changes none of
    those."""
    with tempfile.TemporaryDirectory(prefix="mlops-pip-") as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())),
                               encoding="utf-8")
        report = Path(tmp) / "report.json"
        # wheels only: backtracking through old releases must never build one from source
        # in the user's environment
        argv = [env.python, "-m", "pip", "install", "--disable-pip-version-check",
                "--no-input", "--only-binary", ":all:", "-c", str(constraints),
                "--report", str(report), *requirements]
        if dry_run:
            argv.insert(argv.index("-c"), "--dry-run")
        try:
            done = run_python(argv, 1800)
        except subprocess.TimeoutExpired:
            return PipResult(False, [], "pip took more than 30 minutes")
        # pip before 22.2 knows neither --dry-run nor --report (optparse names the first)
        if done.returncode != 0 and "no such option: --" in done.stderr:
            return PipResult(False, [], f"its pip is older than 22.2, which jupyter-mlops needs "
                             f"to say what it installs; upgrade pip alone there (`"
                             f"{_said(env.python)} -m pip install -U pip`)")
        if done.returncode != 0:
            # pip says what conflicts on stdout, and that it failed on stderr
            return PipResult(False, [], _said(_conflict(done.stdout + "\n" + done.stderr), 400))
        try:
            items = json.loads(report.read_text(encoding="utf-8")).get("install", [])
        except (OSError, ValueError):
            items = []
    installed = [(i["metadata"]["name"], i["metadata"]["version"]) for i in items]
    return PipResult(True, installed)
