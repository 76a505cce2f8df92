"""``jupyter mlops kernel PYTHON``: make another environment a pipeline kernel, unchanged.

The environment gets the kernel runtime wheel (:mod:`.runtime_wheel`) and what it needs that
is missing, installed by that environment's pip with every installed distribution pinned, so
no version there changes; pyarrow (frames as Arrow files) and skops come along only where
they can on the same terms. Then the runtime saves and loads a frame and a model there,
which says what the kernel can pass between steps, and a kernelspec for the interpreter
records it: export reads it to say, at export time, when a model needs ``--allow-pickle``
there.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MlopsError, OptionError, printable
from ..pipeline.kernels import kernel_spec, spec_in
from ..pipeline.spec import KERNEL_NAME
from .pythonenv import (
    PythonEnv,
    canonical,
    check_installable,
    pip_install,
    probe,
    run_python,
)
from .runtime_wheel import DIST, EXTRAS, build_runtime_wheel, runtime_version

__all__ = ["KernelSetup", "default_name", "setup_kernel"]

#: The metadata key of a kernelspec under which this module records what the kernel can do.
METADATA_KEY = "jupyter_mlops"
# The extras tried, in order: frames as Arrow files, models as skops.
_TRIED = ("arrow", "models")
# Saves and loads a frame and a model with the runtime just installed; prints what worked.
_SELF_TEST = r"""
import json, sys, tempfile, warnings
warnings.simplefilter("ignore")
from jupyter_mlops.runtime import PROTOCOL
from jupyter_mlops.runtime.artifacts import load, save
facts = {"protocol": PROTOCOL, "why": {}}
with tempfile.TemporaryDirectory() as tmp:
    import pandas as pd
    frame = pd.DataFrame({"x": [1.5, 2.5], "s": ["a", "b"]})
    saved = save(frame, "frame", tmp)
    assert load("frame", tmp, sha256=saved["sha256"]).equals(frame)
    facts["frames"] = saved.get("format", "parquet")
    try:
        from sklearn.linear_model import LinearRegression
    except ImportError:
        facts["models"] = "none"
        facts["why"]["models"] = "scikit-learn is not installed"
    else:
        model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
        try:
            saved = save(model, "model", tmp)
            load("model", tmp, sha256=saved["sha256"])
            facts["models"] = "skops"
        except Exception as exc:
            facts["models"] = "pickle"
            lines = str(exc).splitlines() or [type(exc).__name__]
            facts["why"]["models"] = lines[0][:300]
print(json.dumps(facts))
"""


@dataclass
class KernelSetup:
    """What ``jupyter mlops kernel`` did (or, with ``dry_run``, would do)."""

    env: PythonEnv
    name: str
    display_name: str
    dry_run: bool
    #: (name, version) installed (or to be).
    installed: list[tuple[str, str]] = field(default_factory=list)
    #: Extras left out, with pip's reason.
    skipped: dict[str, str] = field(default_factory=dict)
    #: What the runtime can pass between steps there (frames, models), with reasons.
    formats: dict = field(default_factory=dict)
    kernel_dir: str = ""

    def lines(self) -> list[str]:
        """The report the CLI prints."""
        env, would = self.env, "would install" if self.dry_run else "installed"
        out = [f"Python {env.version_text} at {env.python} (environment {env.prefix})"]
        shown = ", ".join(f"{n} {v}" for n, v in self.installed)
        out.append(f"{would}: {shown}" if shown else "installed: nothing (the runtime is there)")
        keep = "would keep" if self.dry_run else "keep"
        out.append(f"kept: the {len(env.packages)} packages installed there {keep} their "
                   "versions")
        for extra, reason in self.skipped.items():
            out.append(f"not installed: {', '.join(EXTRAS[extra])} ({reason})")
        if self.formats:
            why = self.formats.get("why", {})
            frames = {"arrow": "Arrow files", "parquet": "Parquet"}.get(
                self.formats["frames"], "JSON tables (no pyarrow)")
            out.append(f"frames between steps: {frames}")
            models = {"skops": "skops", "pickle": "pickle only: export with --allow-pickle",
                      "none": "none"}[self.formats["models"]]
            out.append(f"models between steps: {models}"
                       + (f" ({why['models']})" if why.get("models") else ""))
        verb = "would register" if self.dry_run else "registered"
        where = f" in {self.kernel_dir}" if self.kernel_dir else ""
        out.append(f"{verb} kernel `{self.name}` ({self.display_name}){where}")
        out.append(f"use it: jupyter mlops export NOTEBOOK --kernel {self.name}")
        return out


def default_name(env: PythonEnv) -> str:
    """``mlops-<environment folder>`` (its parent's name for a ``.venv`` or ``venv``)."""
    prefix = Path(env.prefix)
    folder = prefix.parent.name if prefix.name in (".venv", "venv", "env", ".env") else prefix.name
    return "mlops-" + (re.sub(r"[^a-z0-9._-]+", "-", folder.lower()).strip("-.") or "python")


def _check_name(name: str, env: PythonEnv, in_env: bool) -> None:
    """OptionError for a name Jupyter refuses, or one that a kernel of another interpreter
    has where this one would be registered."""
    if not KERNEL_NAME.fullmatch(name):
        raise OptionError(f"kernel name {printable(name)} is not one Jupyter accepts: use "
                          "letters, digits, '.', '_' and '-', beginning with a letter, digit "
                          "or '_' (at most 128)", option="name")
    spec = (spec_in(Path(env.prefix, "share", "jupyter", "kernels", name)) if in_env
            else kernel_spec(name))
    argv = spec.argv if spec is not None else []
    # ipykernel's own kernelspec in an environment names its interpreter `python`, found
    # on the PATH of whoever starts it: that environment's own, which this one replaces
    own = {env.python} | ({"python", "python3"} if in_env else set())
    if argv and argv[0] not in own:
        raise OptionError(f"a kernel `{name}` already exists for {printable(argv[0], 200)}; "
                          "choose another --name, or remove it with `jupyter kernelspec remove "
                          f"{name}`", option="name")


def _dist_name(requirement: str) -> str:
    """The distribution a requirement names (``pyarrow>=7`` -> ``pyarrow``)."""
    return canonical(re.split(r"[<>=!~ ;\[]", requirement)[0])


def _pins(env: PythonEnv) -> dict[str, str]:
    """The constraints: every distribution installed there but the runtime (which may be
    replaced by this one)."""
    return {n: v for n, v in env.packages.items() if n != DIST}


def _install_base(env: PythonEnv, wheel: Path, dry_run: bool) -> list[tuple[str, str]]:
    """Install (or plan) the runtime with what it requires; MlopsError, nothing changed,
    when that cannot be done without changing a version."""
    plan = pip_install(env, [str(wheel)], dry_run=True, pins=_pins(env))
    if not plan.ok:
        raise MlopsError(f"the jupyter-mlops runtime cannot be installed in {env.python} "
                         f"without changing a version there: {plan.reason}; nothing was "
                         "changed")
    if dry_run:
        return plan.installed
    done = pip_install(env, [str(wheel)], dry_run=False, pins=_pins(env))
    if not done.ok:
        raise MlopsError(f"pip could not install the runtime in {env.python}: {done.reason}")
    if DIST in env.packages and not done.installed:
        # the same version is there, maybe from other files (a development tree): replace
        # the runtime's own files, and nothing else
        again = pip_install(env, ["--no-deps", "--force-reinstall", str(wheel)], dry_run=False,
                            pins=_pins(env))
        if not again.ok:
            raise MlopsError(f"pip could not replace the runtime in {env.python}: "
                             f"{again.reason}")
        return again.installed
    return done.installed


def _imports(python: str, module: str) -> str:
    """Why ``module`` does not import in ``python`` (its last line of error), or ""."""
    done = run_python([python, "-c", f"import {module}"], 120)
    if done.returncode == 0:
        return ""
    tail = done.stderr.strip().splitlines()[-1:] or ["it failed"]
    return printable(tail[0], 200)


def _uninstall(python: str, names: list[str]) -> None:
    if names:
        run_python([python, "-m", "pip", "uninstall", "-y", "--disable-pip-version-check",
                    *names], 600)


def _add_extra(env: PythonEnv, wheel: Path, extra: str, dry_run: bool
               ) -> tuple[list[tuple[str, str]], str]:
    """Add ``extra`` where it fits: (what was installed, "") or ([], why not). A package
    that installs but does not import (pyarrow built for NumPy 2 beside NumPy 1) is taken
    out again, and an older release tried, up to three."""
    requirement = EXTRAS[extra][0]
    package = _dist_name(requirement)
    # what the runtime imports of it: frames go as Arrow files, models through skops.io
    module = {"pyarrow": "pyarrow.feather", "skops": "skops.io"}.get(package, package)
    bound, why = "", ""
    for _ in range(3):
        wanted = [f"{wheel}[{extra}]"] + ([f"{package}<{bound}"] if bound else [])
        trial = pip_install(env, wanted, dry_run=dry_run, pins=_pins(env))
        if not trial.ok:
            return [], trial.reason
        added = dict((canonical(n), v) for n, v in trial.installed)
        if dry_run or package not in added:
            return trial.installed, ""
        why = _imports(env.python, module)
        if not why:
            return trial.installed, ""
        _uninstall(env.python, [n for n in added if n not in env.packages])
        bound = added[package].split(".")[0]
        why = f"{package} {added[package]} installs but does not import there: {why}"
    return [], why


def _self_test(python: str) -> dict:
    done = run_python([python, "-c", _SELF_TEST], 300)
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise MlopsError(f"the runtime installed in {python} failed its check: "
                         f"{printable(tail[0], 300)}") from None


def _register(setup: KernelSetup, in_env: bool) -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    spec = {"argv": [setup.env.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": setup.display_name, "language": "python",
            "metadata": {"debugger": True,
                         METADATA_KEY: {"runtime": runtime_version(), **setup.formats}}}
    with tempfile.TemporaryDirectory(prefix="mlops-kernel-") as tmp:
        Path(tmp, "kernel.json").write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
        manager = KernelSpecManager()
        if in_env:  # PYTHON's own share/jupyter/kernels: Jupyter or Airflow run from there
            return manager.install_kernel_spec(tmp, setup.name, prefix=setup.env.prefix)
        return manager.install_kernel_spec(tmp, setup.name, user=True)


def setup_kernel(python: str, name: str | None = None, display_name: str | None = None, *,
                 dry_run: bool = False, in_env: bool = False) -> KernelSetup:
    """Install the runtime into the environment of ``python`` without changing any version
    there, and register kernel ``name`` for it, for this user or (``in_env``) inside that
    environment (nothing is changed with ``dry_run``)."""
    env = probe(python)
    name = name if name is not None else default_name(env)
    _check_name(name, env, in_env)
    display = display_name or f"Python {env.version[0]}.{env.version[1]} ({name})"
    setup = KernelSetup(env, name, display, dry_run)
    full_tool = "jupyter-mlops" in env.packages
    if full_tool:
        from ..runtime import PROTOCOL

        if PROTOCOL not in (env.runtime or {}).get("supported", []):
            raise MlopsError(f"{env.python} has jupyter-mlops {env.packages['jupyter-mlops']}, "
                             f"whose runtime cannot run pipelines of protocol {PROTOCOL}; "
                             "install this jupyter-mlops there, or use another environment")
    else:
        check_installable(env)
        _install(setup, dry_run)
    if dry_run:
        return setup
    _check_unchanged(env, probe(env.python))
    setup.formats = _self_test(env.python)
    setup.kernel_dir = _register(setup, in_env)
    return setup


def _install(setup: KernelSetup, dry_run: bool) -> None:
    """Install (or, with ``dry_run``, plan) the runtime wheel, then each extra that fits;
    what was installed and what was left out go into ``setup``."""
    env = setup.env
    with tempfile.TemporaryDirectory(prefix="mlops-runtime-") as tmp:
        wheel = build_runtime_wheel(tmp)
        setup.installed = _install_base(env, wheel, dry_run)
        current = env if dry_run else probe(env.python)
        for extra in _TRIED:
            if all(_dist_name(r) in current.packages for r in EXTRAS[extra]):
                continue
            added, why = _add_extra(current, wheel, extra, dry_run)
            if why:
                setup.skipped[extra] = why
            setup.installed += [i for i in added if i not in setup.installed]
            if added and not dry_run:
                current = probe(env.python)


def _check_unchanged(before: PythonEnv, after: PythonEnv) -> None:
    changed = [f"{n} {v} -> {after.packages.get(n, 'removed')}"
               for n, v in before.packages.items()
               if n != DIST and after.packages.get(n) != v]
    if changed:  # the constraints forbid it; if pip did it anyway, say so loudly
        raise MlopsError(f"pip changed versions in {before.python} despite the constraints: "
                         f"{', '.join(changed)}")
