"""The pipeline spec: one plain data structure, written to and read from ``pipeline.yaml``.

Every part after the analysis (export, runner, engines, server) reads the spec, never the
source notebook.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OptionError, ParameterError, SpecError, shown
from ..notebook.analysis import Output, find_cycle
from ..notebook.params import Parameter
from ..notebook.roles import STEP_NAME
from ..runtime import PROTOCOL
from ..runtime._files import atomic_write
from ..runtime._jsonvalues import json_like
from ..runtime.trust import check_type_names
from .quoting import yaml_text
from .schema import validate

__all__ = ["Output", "Parameter", "PipelineSpec", "Step", "json_like"]

SPEC_VERSION = 1
SPEC_FILE = "pipeline.yaml"
#: A spec is a few kilobytes; one far larger is not one of ours (YAML can expand to gigabytes).
MAX_SPEC_BYTES = 8 << 20
#: Types a pipeline parameter may have; each maps to how ``-p NAME=VALUE`` text is read.
PARAMETER_TYPES = ("int", "float", "str", "bool", "list", "dict", "None")
#: What an output is: a declared data frame, a model, metrics, or a value a later step needs.
OUTPUT_ROLES = ("data", "model", "metrics", "value")


@dataclass
class Step:
    """One step of the pipeline: one notebook that papermill runs."""

    name: str
    notebook: str
    cells: list[int]
    code_sha256: str
    #: Each input variable and the step whose output it is.
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    parameters: list[str] = field(default_factory=list)
    #: Steps this one waits for: producers of its inputs and any ``--after``.
    after: list[str] = field(default_factory=list)


@dataclass
class PipelineSpec:
    """Everything the runner and the engines need, read from and written to YAML."""

    name: str
    source: str
    source_sha256: str
    workdir: str
    kernel: dict[str, str]
    parameters: list[Parameter] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    allow_pickle: bool = False
    #: Type names a model file may need beyond those ``runtime.trust`` trusts (``--trust``).
    trust: list[str] = field(default_factory=list)
    #: The runtime protocol the step notebooks speak (:data:`..runtime.PROTOCOL`).
    runtime_protocol: int = PROTOCOL
    #: What every run is held to: metric thresholds, data contracts, ``fail_on_drift``.
    checks: dict[str, Any] = field(default_factory=dict)
    version: int = SPEC_VERSION
    #: The prepare cells replayed on new records (``notebook.inference``), if any.
    inference: dict[str, Any] | None = None

    # -- queries ----------------------------------------------------------------------
    def step(self, name: str) -> Step:
        """The step called ``name``; SpecError listing the steps when there is none."""
        for step in self.steps:
            if step.name == name:
                return step
        known = ", ".join(s.name for s in self.steps)
        raise SpecError(f"no step `{name}` in pipeline `{self.name}`; its steps are {known}")

    def parameter(self, name: str) -> Parameter:
        """The parameter called ``name``; ParameterError listing the parameters otherwise."""
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        known = ", ".join(p.name for p in self.parameters) or "none"
        raise ParameterError(
            f"pipeline `{self.name}` has no parameter `{name}`; its parameters are: {known}"
        )

    @property
    def edges(self) -> list[tuple[str, str]]:
        """(upstream, downstream) pairs, in step order."""
        return [(a, step.name) for step in self.steps for a in step.after]

    def parse_parameters(self, assignments: list[str]) -> dict[str, Any]:
        """Read ``NAME=VALUE`` texts into typed values, checking every one before any run."""
        values: dict[str, Any] = {}
        for text in assignments:
            name, sep, raw = text.partition("=")
            if not sep or not name.strip():
                raise OptionError(f"`{text}` needs the form NAME=VALUE, e.g. alpha=0.5",
                                  option="parameters")
            values[name.strip()] = self.parameter(name.strip()).parse(raw)
        return values

    # -- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data, in the layout of ``pipeline.yaml``."""
        data = asdict(self)
        data["edges"] = [list(edge) for edge in self.edges]
        ordered = {key: data[key] for key in (
            "version", "name", "source", "source_sha256", "workdir", "kernel",
            "allow_pickle", "trust", "runtime_protocol", "parameters", "steps", "edges",
            "checks")}
        if self.inference is not None:  # only a notebook with prepare cells has one
            ordered["inference"] = data["inference"]
        return ordered

    def to_yaml(self) -> str:
        """The text of ``pipeline.yaml`` (never with aliases, which ``read`` refuses)."""
        header = "# jupyter-mlops pipeline spec, written by `jupyter mlops export`.\n"
        return header + yaml_text(self.to_dict())

    def write(self, folder: str | Path) -> Path:
        """Write ``pipeline.yaml`` into ``folder`` atomically; return its path."""
        path = Path(folder) / SPEC_FILE
        atomic_write(path, self.to_yaml())
        return path

    @classmethod
    def from_dict(cls, data: Any, where: str = SPEC_FILE) -> PipelineSpec:
        """Build a spec from plain data, with a SpecError naming the field that is wrong."""
        if not isinstance(data, dict):
            raise SpecError(f"{where} does not hold a pipeline spec (expected a mapping)")
        if data.get("version") != SPEC_VERSION:
            raise SpecError(
                f"{where} has spec version {data.get('version')!r}; this jupyter-mlops reads "
                f"version {SPEC_VERSION}: export the notebook again"
            )
        validate(data, where)
        try:
            parameters = [Parameter(**p) for p in data.get("parameters") or []]
            steps = []
            for raw in data["steps"]:
                raw = dict(raw)
                raw["outputs"] = [Output(**o) for o in raw.get("outputs") or []]
                steps.append(Step(**raw))
            spec = cls(
                name=data["name"], source=data["source"], source_sha256=data["source_sha256"],
                workdir=data["workdir"], kernel=dict(data["kernel"]), parameters=parameters,
                steps=steps, allow_pickle=bool(data.get("allow_pickle", False)),
                trust=check_type_names(data.get("trust") or [], f"{where}: `trust`: "),
                runtime_protocol=int(data.get("runtime_protocol", PROTOCOL)),
                checks=dict(data.get("checks") or {}), version=data["version"],
                inference=_inference(data.get("inference"), where),
            )
        except KeyError as err:
            raise SpecError(f"{where} is malformed (missing field `{err.args[0]}`); export the "
                            "notebook again") from None
        except (TypeError, ValueError, AttributeError) as err:
            raise SpecError(f"{where} is malformed ({type(err).__name__}: {err}); export the "
                            "notebook again") from None
        for parameter in spec.parameters:
            _check_default(parameter, where)
            if parameter.type not in PARAMETER_TYPES:
                raise SpecError(f"{where}: parameter `{parameter.name}` has unknown type "
                                f"`{parameter.type}`")
        if not spec.steps:
            raise SpecError(f"{where} has no steps; export the notebook again")
        _check_names(spec, where)
        names = {s.name for s in spec.steps}
        for step in spec.steps:
            for upstream in step.after:
                if upstream not in names:
                    raise SpecError(f"{where}: step `{step.name}` waits for unknown step "
                                    f"`{upstream}`")
        cycle = find_cycle({s.name: list(s.after) for s in spec.steps})
        if cycle:
            raise SpecError(f"{where}: the steps wait for each other in a cycle "
                            f"({' -> '.join([*cycle, cycle[0]])}); remove one `after`")
        return spec

    @classmethod
    def read(cls, folder: str | Path) -> PipelineSpec:
        """Read ``folder/pipeline.yaml`` (or the YAML file itself)."""
        path = Path(folder)
        if path.is_dir():
            path = path / SPEC_FILE
        elif path.suffix == ".ipynb":
            raise SpecError(f"{folder} is a notebook, not a pipeline folder; export it first "
                            f"with `jupyter mlops export {folder}`, then run the folder")
        if not path.is_file() or path.suffix not in (".yaml", ".yml"):
            raise SpecError(
                f"{folder} is not a pipeline folder (no {SPEC_FILE}); create one with "
                "`jupyter mlops export NOTEBOOK`"
            )
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:  # said before reading
            raise _too_big(path, size)
        return cls.from_bytes(read_spec_bytes(path), path)

    @classmethod
    def from_bytes(cls, content: bytes, path: Path) -> PipelineSpec:
        """The spec in ``content``, the bytes of the spec file at ``path`` (named in errors)."""
        import yaml

        if len(content) > MAX_SPEC_BYTES:  # it grew since its size was looked at
            raise _too_big(path, len(content))
        try:
            data = load_yaml(content.decode("utf-8"))
        except RecursionError:
            raise SpecError(f"{path} nests too deeply to be a pipeline spec; export the "
                            "notebook again") from None
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            reason = str(err).splitlines()[0]
            raise SpecError(f"{path} is not valid YAML ({reason}); export the notebook again") \
                from None
        return cls.from_dict(data, str(path))


def read_spec_bytes(path: Path) -> bytes:
    """The bytes of the spec file at ``path``, at most one byte more than a spec may hold:
    a file that grew past that (or says it has no size) is never read whole, and
    :meth:`PipelineSpec.from_bytes` refuses what is too long."""
    with open(path, "rb") as handle:
        return handle.read(MAX_SPEC_BYTES + 1)


def _too_big(path: Path, size: int) -> SpecError:
    """The error of a spec file of ``size`` bytes, more than a spec holds."""
    return SpecError(f"{path} is {size:,} bytes, more than a pipeline spec holds "
                     f"({MAX_SPEC_BYTES:,} at most); export the notebook again")


#: What a kernelspec name may be (Jupyter's own rule, as `jupyter kernelspec install` has it).
KERNEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
#: What names read from pipeline.yaml may be, each matched whole: they become file names,
#: task ids and words of generated Python, shell and Dockerfiles, so a hand-edited one must
#: never carry quotes, newlines or shell syntax into them.
_NAMES = {
    "pipeline name": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"),
    "kernel name": KERNEL_NAME,
    "step notebook": re.compile(r"steps/[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\.ipynb"),
    # Python identifiers, ünï included: the notebook may use any, and they reach generated
    # code only as string literals and file names
    "parameter name": re.compile(r"[^\W\d]\w{0,254}"),
    "output name": re.compile(r"[^\W\d]\w{0,254}"),
}


def _inference(data: Any, where: str) -> dict[str, Any] | None:
    """The ``inference:`` mapping, its names checked (they become Python names replayed)."""
    if data is None:
        return None
    from ..notebook.inference import InferencePlan

    plan = InferencePlan.from_dict(data)
    for name in [plan.input, plan.output, *plan.fitted, *plan.parameters]:
        if not _NAMES["output name"].fullmatch(str(name)):
            raise SpecError(f"{where}: `inference` names `{str(name)[:40]}`, which is not a "
                            "Python name; export the notebook again")
    return dict(data)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(map(_finite, value.values()))
    if isinstance(value, list):
        return all(map(_finite, value))
    return True


def _check_default(parameter: Parameter, where: str) -> None:
    """A default is JSON a notebook, a DAG and a form can all hold: no YAML dates, bytes,
    sets, NaN or infinity, and nested at most 20 levels."""
    value = parameter.default
    if _depth(value) > 20:
        raise SpecError(f"{where}: the default of parameter `{parameter.name}` nests more than "
                        "20 levels deep; give a flatter value")
    if not json_like(value) or not _finite(value):
        raise SpecError(f"{where}: the default of parameter `{parameter.name}` is "
                        f"{shown(value)} ({type(value).__name__}), which is not a JSON value: "
                        "quote a date, and use finite numbers, strings, lists and mappings")


def _check_names(spec: PipelineSpec, where: str) -> None:
    """Refuse a name of ``pipeline.yaml`` that is not of its kind, naming it."""
    named = [("pipeline name", spec.name), ("kernel name", spec.kernel.get("name", ""))]
    named += [("parameter name", p.name) for p in spec.parameters]
    for step in spec.steps:
        if not isinstance(step.name, str) or not STEP_NAME.fullmatch(step.name):
            raise SpecError(f"{where}: step name {step.name!r} is not valid; use letters, "
                            "digits, `_` or `-`, starting with a letter (export the notebook "
                            "again)")
        named += [("step notebook", step.notebook)]
        named += [("output name", o.name) for o in step.outputs]
        named += [("parameter name", n) for n in step.parameters]
    for kind, value in named:
        if not isinstance(value, str) or not _NAMES[kind].fullmatch(value):
            raise SpecError(f"{where}: {kind} {value!r} is not valid; export the notebook "
                            "again")


def load_yaml(text: str) -> Any:
    """``text`` read as YAML with the safe loader, refusing aliases: a spec never needs them,
    and nested ones expand a small file into gigabytes (the "billion laughs").

    libyaml's C loader is used where PyYAML has it: six times faster than the pure-Python
    one on an exported spec (1.7 ms against 10 ms for churn's), even with the first pass over
    its events that looks for aliases before anything is built."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", None)
    if loader is None:
        return yaml.load(text, Loader=_no_alias_loader())
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent):
            raise yaml.YAMLError(_alias_message(event))
    return yaml.load(text, Loader=loader)


def _alias_message(event: Any) -> str:
    return (f"it uses a YAML alias (*{event.anchor}) at line {event.start_mark.line + 1}, "
            "which a pipeline spec never does")


def _no_alias_loader() -> type:
    """The pure-Python safe loader, refusing aliases (where libyaml is missing)."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise yaml.YAMLError(_alias_message(self.peek_event()))
            return super().compose_node(parent, index)

    return NoAliasLoader
