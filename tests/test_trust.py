"""Model files are loaded with a fixed trust list, never with one read beside the artifact.

The reproduction of the forged manifest: a ``.skops`` file whose schema calls ``os.system``,
with a manifest that trusts ``os.system`` and carries the file's own sha256.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io
from conftest import run_capturing, run_cli, write_notebook
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import FunctionTransformer

from jupyter_mlops.errors import ArtifactError, UnverifiedArtifactWarning
from jupyter_mlops.pipeline.spec import PipelineSpec
from jupyter_mlops.runtime import artifacts, trust
from jupyter_mlops.runtime._files import sha256_file


def _forged_model(folder: Path, marker: Path, function: str = "os.system") -> None:
    """A model artifact whose file runs ``touch MARKER`` through ``function`` when loaded,
    with a manifest that trusts that function and holds the file's true hash."""
    module, _, name = function.rpartition(".")
    schema = {
        "__class__": name, "__module__": module, "__loader__": "ConstructorFromReduceNode",
        "__id__": 1, "protocol": 2, "_skops_version": skops.__version__,
        "content": {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode",
                    "__id__": 2, "content": [
                        {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode",
                         "content": json.dumps(f"touch {marker}"), "is_json": True,
                         "__id__": 3}]},
    }
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.skops"
    path.write_bytes(data.getvalue())
    manifest = {"name": "model", "kind": "skops", "file": "model.skops",
                "sha256": sha256_file(path), "trusted": [function], "role": "model"}
    (folder / "model.json").write_text(json.dumps(manifest))


def test_the_forged_manifest_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _forged_model(tmp_path / "art", marker)
    # skops itself would run it, given the manifest's list: the reproduction is real
    with pytest.raises(ArtifactError, match=r"os\.system.*--trust os\.system"):
        artifacts.load("model", tmp_path / "art", sha256=sha256_file(tmp_path / "art" /
                                                                      "model.skops"))
    with pytest.raises(ArtifactError, match=r"does not trust"):
        artifacts.load_inputs({}, {"model": ""}, tmp_path / "art")
    assert not marker.exists()
    skops.io.load(tmp_path / "art" / "model.skops", trusted=["os.system"])
    assert marker.exists()


@pytest.mark.parametrize("function", ["numpy.load", "subprocess.run", "builtins.eval",
                                      "sklearn.datasets.dump_svmlight_file"])
def test_dangerous_callables_are_not_trusted_even_in_trusted_packages(
        tmp_path: Path, function: str) -> None:
    _forged_model(tmp_path, tmp_path / "pwned", function)
    with pytest.raises(ArtifactError, match=rf"{function.replace('.', '[.]')}"):
        artifacts.load("model", tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_trust_is_decided_by_what_a_name_is_not_by_where_it_is_found() -> None:
    assert trust.is_trusted("sklearn.tree._tree.Tree")
    assert trust.is_trusted("sklearn.model_selection._split.KFold")
    assert trust.is_trusted("numpy.log1p")  # a ufunc: computation only
    assert trust.is_trusted("numpy.dtype")
    assert trust.is_trusted("numpy.float64")
    assert trust.is_trusted("sklearn.metrics._classification.accuracy_score")
    assert not trust.is_trusted("numpy.load")
    assert not trust.is_trusted("numpy.lib.npyio.load")
    assert not trust.is_trusted("os.system")
    assert not trust.is_trusted("sklearn.utils._testing.TempMemmap")
    assert not trust.is_trusted("sklearn.no_such_module.Thing")
    # a name inside sklearn that points to an object defined elsewhere stays untrusted
    assert not trust.is_trusted("sklearn.utils.validation.signature")
    assert trust.is_trusted("mypkg.Model", extra=["mypkg.Model"])
    assert trust.refused(["os.system", "numpy.log1p", "os.system"]) == ["os.system"]


def test_numpy_classes_that_touch_files_are_not_trusted() -> None:
    # numpy.memmap(filename, mode="w+") would create or overwrite a file when constructed
    assert not trust.is_trusted("numpy.memmap")


@pytest.mark.parametrize("model", [
    lambda X, y: RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y),
    lambda X, y: GridSearchCV(LogisticRegression(), {"C": [0.5, 1.0]}, cv=2).fit(X, y),
    lambda X, y: FunctionTransformer(np.log1p).fit(X),
], ids=["forest", "search", "function"])
def test_common_models_load_with_the_built_in_trust(tmp_path: Path, model) -> None:
    rng = np.random.default_rng(0)
    X, y = rng.random((40, 3)), rng.integers(0, 2, 40)
    fitted = model(X, y)
    manifest = artifacts.save(fitted, "model", tmp_path, role="model")
    back = artifacts.load("model", tmp_path, sha256=manifest["sha256"])
    assert type(back) is type(fitted)


class _Mean(BaseEstimator, RegressorMixin):
    """An estimator defined outside scikit-learn: its type must be trusted by name."""

    def fit(self, X, y):
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.mean_)


def test_a_type_from_elsewhere_needs_the_authors_trust(tmp_path: Path) -> None:
    model = _Mean().fit([[0], [1]], [1.0, 3.0])
    name = f"{__name__}._Mean"
    with pytest.raises(ArtifactError, match=rf"`model`.*--trust {name}"):
        artifacts.save(model, "model", tmp_path, role="model")
    assert list(tmp_path.iterdir()) == []  # a refused save leaves nothing behind
    manifest = artifacts.save(model, "model", tmp_path, role="model", trusted=[name])
    assert manifest["trusted"] == [name]
    with pytest.raises(ArtifactError, match=name):
        artifacts.load("model", tmp_path, sha256=manifest["sha256"])
    back = artifacts.load("model", tmp_path, sha256=manifest["sha256"], trusted=[name])
    assert back.predict([[5]])[0] == 2.0


def test_a_refused_model_leaves_the_one_saved_before(tmp_path: Path) -> None:
    """The refused file is checked before it replaces anything: the model saved under that
    name before, and its manifest, stay as they were."""
    from sklearn.linear_model import LinearRegression

    first = artifacts.save(LinearRegression().fit([[0], [1]], [0, 1]), "model", tmp_path,
                           role="model")
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    with pytest.raises(ArtifactError, match="cannot be saved"):
        artifacts.save(_Mean().fit([[0], [1]], [1.0, 3.0]), "model", tmp_path, role="model")
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before
    back = artifacts.load("model", tmp_path, sha256=first["sha256"])
    assert back.predict([[2]])[0] == pytest.approx(2.0)


def _rewrite_manifest(folder: Path, **fields: object) -> None:
    path = folder / "model.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


@pytest.mark.parametrize("hint", [[], ["numpy.float64"], "sklearn.tree._tree.Tree", None,
                                  ["os.system"], [3], ["numpy.f2py.__main__.x"],
                                  ["sklearn.utils.estimator_checks.Thing"]])
def test_the_manifests_list_of_types_is_only_a_hint(tmp_path: Path, hint: object,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest says which types its model needs, which spares reading the file's schema
    twice; a list that is wrong, or names a type not trusted here, changes nothing but the
    time: the file itself is then asked, and the trust list decides. A name in it never
    makes a module be imported (numpy.f2py's __main__ would run f2py's command line)."""
    rng = np.random.default_rng(0)
    fitted = RandomForestClassifier(n_estimators=3, random_state=0).fit(
        rng.random((40, 3)), rng.integers(0, 2, 40))
    manifest = artifacts.save(fitted, "model", tmp_path, role="model")
    assert manifest["trusted"] == ["sklearn.tree._tree.Tree"]
    asked: list[object] = []
    real = skops.io.get_untrusted_types

    def counting(**kwargs: object) -> list[str]:
        asked.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(skops.io, "get_untrusted_types", counting)
    back = artifacts.load("model", tmp_path, sha256=manifest["sha256"])
    assert type(back) is RandomForestClassifier and asked == []  # read once, as written
    _rewrite_manifest(tmp_path, trusted=hint)
    before = set(sys.modules)
    back = artifacts.load("model", tmp_path, sha256=manifest["sha256"])
    assert type(back) is RandomForestClassifier and len(asked) == 1
    assert not {m for m in set(sys.modules) - before if m.startswith(("numpy.f2py",
                                                                      "sklearn.utils.est"))}


def test_a_hint_cannot_make_an_untrusted_type_load(tmp_path: Path) -> None:
    model = _Mean().fit([[0], [1]], [1.0, 3.0])
    name = f"{__name__}._Mean"
    manifest = artifacts.save(model, "model", tmp_path, role="model", trusted=[name])
    for hint in ([name], [], ["sklearn.tree._tree.Tree"]):
        _rewrite_manifest(tmp_path, trusted=hint)
        with pytest.raises(ArtifactError, match=rf"needs types .*--trust {name}"):
            artifacts.load("model", tmp_path, sha256=manifest["sha256"])


def test_a_load_without_an_outside_hash_says_so(tmp_path: Path) -> None:
    manifest = artifacts.save(Ridge().fit([[0], [1]], [0, 1]), "model", tmp_path)
    with pytest.warns(UnverifiedArtifactWarning, match="without a hash from the run store"):
        artifacts.load("model", tmp_path)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        artifacts.load("model", tmp_path, sha256=manifest["sha256"])


def test_spec_trust_must_be_type_names(tmp_path: Path) -> None:
    from jupyter_mlops.errors import SpecError

    data = {"version": 1, "name": "p", "source": "p.ipynb", "source_sha256": "0",
            "workdir": ".", "kernel": {"name": "python3"}, "steps": [],
            "trust": ["os.system; rm -rf /"]}
    with pytest.raises(SpecError, match=r"`trust\[0\]` is .os.system; rm -rf /., which is "
                                         r"not valid"):
        PipelineSpec.from_dict(data)


HELPER = '''\
import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin


class MeanModel(BaseEstimator, RegressorMixin):
    def fit(self, X, y):
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.mean_)
'''


@pytest.mark.kernel
def test_export_names_the_types_to_trust_and_the_run_uses_them(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text(HELPER)
    notebook = write_notebook(
        tmp_path / "custom.ipynb",
        "%load_ext jupyter_mlops",
        "%%mlops setup\nimport pandas as pd\nfrom helpers import MeanModel",
        "%%mlops step train\nX = pd.DataFrame({'a': [0.0, 1.0, 2.0]})\ny = [1.0, 2.0, 6.0]",
        "%%mlops model model\nmodel = MeanModel().fit(X, y)",
        "%%mlops step evaluate\nscore = float(model.predict(X)[0])",
    )
    run_capturing(notebook, tmp_path)
    refused = run_cli("export", str(notebook))
    assert refused.returncode == 2, refused.stderr
    assert "model `model` of step `train`" in refused.stderr
    assert "--trust helpers.MeanModel" in refused.stderr
    assert not (tmp_path / "custom_pipeline").exists()

    done = run_cli("export", str(notebook), "--trust", "helpers.MeanModel")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "custom_pipeline"
    assert PipelineSpec.read(folder).trust == ["helpers.MeanModel"]
    step = json.loads((folder / "steps" / "02_evaluate.ipynb").read_text())
    assert any("trusted=['helpers.MeanModel']" in "".join(c["source"]) for c in step["cells"])
    ran = run_cli("run", str(folder), "-j", "1")
    assert ran.returncode == 0, ran.stdout + ran.stderr

    hostile = run_cli("export", str(notebook), "--trust", "x; rm -rf /")
    assert hostile.returncode == 2
    assert hostile.stderr.strip().splitlines() == [
        "jupyter mlops: error: --trust: 'x; rm -rf /' is not a dotted type name such as "
        "xgboost.XGBClassifier"]


@pytest.mark.kernel
def test_a_model_of_the_notebooks_own_type_runs_and_its_generated_tests_say_why_they_skip(
        tmp_path: Path) -> None:
    """Trusted by its author, a model whose class the notebook defines runs in the steps
    (their setup defines it); the generated tests, outside the steps, cannot load it: they
    skip it saying why, where they failed on "module '__main__' has no attribute"."""
    notebook = write_notebook(
        tmp_path / "own.ipynb",
        "%load_ext jupyter_mlops",
        "%%mlops setup\nimport pandas as pd\n" + HELPER,
        "%%mlops step train\nX = pd.DataFrame({'a': [0.0, 1.0, 2.0]})\ny = [1.0, 2.0, 6.0]",
        "%%mlops model model\nmodel = MeanModel().fit(X, y)",
        "%%mlops step evaluate\nscore = float(model.predict(X)[0])",
    )
    run_capturing(notebook, tmp_path)
    refused = run_cli("export", str(notebook))
    assert refused.returncode == 2 and "loads only inside its steps" in refused.stderr
    done = run_cli("export", str(notebook), "--trust", "__main__.MeanModel")
    assert done.returncode == 0, done.stderr
    tested = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "test",
                             str(tmp_path / "own_pipeline"), "-rs"],
                            capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed, 4 skipped" in tested.stdout, tested.stdout
    assert "needs types defined in the notebook itself (__main__.MeanModel)" in tested.stdout
    assert ("the notebook captured no metrics: mark its cells %%mlops metrics and run it "
            "before exporting") in tested.stdout
    assert "got empty parameter set" not in tested.stdout
    quiet = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "test",
                            str(tmp_path / "own_pipeline"), "-q"], capture_output=True, text=True)
    assert "1 passed, 4 skipped" in quiet.stdout, quiet.stdout  # the summary, with the user's -q


def test_export_says_what_to_do_with_a_lambda_or_a_notebooks_own_type() -> None:
    """A lambda's name is no type name: the advice ``--trust __main__.<lambda>`` was refused
    by --trust itself. A notebook's own type loads only in its steps' kernels: the
    generated tests and serving could not load it."""
    from jupyter_mlops.pipeline.export import _what_to_trust

    lam = _what_to_trust(["__main__.<lambda>", "__main__.ClipOutliers"])
    assert "a lambda, or a function defined inside another, cannot be saved" in lam
    assert "<lambda>" not in lam and "--trust helpers.NAME" in lam
    own = _what_to_trust(["__main__.ClipOutliers"])
    assert "loads only inside its steps" in own
    assert own.endswith("export with --trust __main__.ClipOutliers")
    assert _what_to_trust(["helpers.MeanModel"]) == (
        "if you trust the code that defines them, export with --trust helpers.MeanModel")


def test_capture_saves_any_model_the_author_fitted(tmp_path: Path) -> None:
    from jupyter_mlops.runtime.capture import capture_model

    entry = capture_model("model", {"model": _Mean().fit([[0]], [1.0])}, tmp_path / "models")
    assert entry["trusted"] == [f"{__name__}._Mean"]


def test_asking_about_other_packages_imports_nothing() -> None:
    # trust imports modules of the trusted packages only: a name is never a reason to import
    code = ("import sys; from jupyter_mlops.runtime import trust; "
            "trust.is_trusted('evilpkg.Thing'); print('evilpkg' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
