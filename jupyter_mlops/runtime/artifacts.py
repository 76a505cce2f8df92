"""Typed, safe serialization of the variables passed between pipeline steps."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ArtifactError, UnverifiedArtifactWarning
from . import arrowfile, arrowrefs, frames, remote, trust
from ._files import (
    HASH_BESIDE,
    atomic_write,
    hash_thread,
    open_once,
    sha256_fd,
    sha256_file,
    through,
    write_with,
)
from ._jsonvalues import NotJSON, decode, display, encode, json_text, type_name

__all__ = ["kind_of", "load", "load_inputs", "read_manifest", "save", "save_outputs"]

SUPPORTED = (
    "pandas DataFrame and Series, numpy arrays, scikit-learn estimators (alone, or in "
    "lists and dicts), "
    "JSON values: numbers, strings, lists, dicts"
)
# The data file's extension per kind; JSON data gets "data.json" so it never collides with
# the manifest "<name>.json" (names are identifiers, so they contain no dot).
_EXT = {"parquet": "parquet", "series": "parquet", "npy": "npy", "skops": "skops",
        "json": "data.json", "pickle": "pkl"}
#: The kinds kept as a frame on disk: an Arrow file, or a JSON table without pyarrow (Parquet
#: in runs before Arrow files; :mod:`.frames`).
_FRAMES = ("parquet", "series")
#: How messages name the file of each kind (frames: :data:`_FRAME_FILES`, by format).
_FILES = {"npy": "a NumPy .npy file", "skops": "a skops model file", "json": "JSON",
          "pickle": "a pickle"}
_FRAME_FILES = {"arrow": "an Arrow file", "arrow-parts": "an Arrow file",
                "parquet": "a Parquet file", "json-table": "a JSON table"}
_NPY_MAGIC = b"\x93NUMPY"
_VALUE_LIMIT = 2048  # JSON values smaller than this are copied into the manifest for display
_RERUN = "re-run the step that outputs it"


def _file_of(kind: str, fmt: str) -> str:
    """What messages call the data file of an artifact of ``kind`` (a frame's in ``fmt``):
    a frame's kind is named "parquet" whatever format its file has."""
    if kind in _FRAMES:
        return _FRAME_FILES.get(fmt, "a table")
    return _FILES.get(kind, kind)


def _classify(value: Any, allow_pickle: bool) -> tuple[str | None, str | None]:
    # A library not imported yet cannot have made the value, so only look at loaded ones:
    # asking about an int must not import pandas. Exact types for frames and arrays, because
    # subclasses (GeoDataFrame, masked arrays) would lose what makes them subclasses.
    pd, np = sys.modules.get("pandas"), sys.modules.get("numpy")
    base = sys.modules.get("sklearn.base")
    if pd is not None and type(value) in (pd.DataFrame, pd.Series):
        return ("parquet" if type(value) is pd.DataFrame else "series"), None
    if np is not None and type(value) is np.ndarray and not value.dtype.hasobject:
        return "npy", None
    if base is not None and (isinstance(value, base.BaseEstimator)
                             or _holds_estimators(value, base.BaseEstimator)):
        return "skops", None
    text = json_text(value)
    if text is not None:
        return "json", text
    return ("pickle" if allow_pickle else None), None


def _holds_estimators(value: Any, estimator: type) -> bool:
    """Whether ``value`` is a dict (string keys), list or tuple of scikit-learn estimators
    (a notebook's ``models = {"lr": ..., "forest": ...}``), at any depth, beside numbers,
    strings, booleans and None, with one estimator at least: skops writes those as they
    are, and reads them back so."""
    found, todo = False, [value]
    while todo:
        item = todo.pop()
        if isinstance(item, estimator):
            found = True
        elif type(item) is dict and all(type(k) is str for k in item):
            todo.extend(item.values())
        elif type(item) in (list, tuple):
            todo.extend(item)
        elif not (item is None or type(item) in (bool, int, float, str)):
            return False
        if len(todo) > 100_000:  # not a handful of models
            return False
    return found


def _extension(kind: str, fmt: str) -> str:
    """The data file extension of an artifact of ``kind`` (a frame's in format ``fmt``)."""
    return frames.extension(fmt) if kind in _FRAMES and fmt else _EXT[kind]


def kind_of(value: Any, allow_pickle: bool = False) -> str | None:
    """The kind ``save`` would use for ``value`` ("parquet", "series", "npy", "skops",
    "json", "pickle"), or None if it cannot be passed between steps."""
    return _classify(value, allow_pickle)[0]


def _check_name(name: Any) -> None:
    # Names become file names: only identifiers, so nothing can escape the folder.
    if not isinstance(name, str) or not name.isidentifier():
        raise ArtifactError(f"{name!r} is not a valid artifact name: use a Python variable name")


def _save_data(kind: str, value: Any, path: Path, text: str | None,
               trusted: list[str] | None, fmt: str, refer: bool) -> dict[str, Any]:
    """Write the data file; return the kind-specific manifest fields."""
    if kind == "parquet":
        info = {"rows": len(value), "columns": [str(c) for c in value.columns]}
        return frames.write_frame(value, path, fmt, info, refer=refer)
    if kind == "series":
        info = {"rows": len(value), "dtype": str(value.dtype)}
        return frames.write_frame(value, path, fmt, info, refer=refer)
    if kind == "npy":
        import numpy as np
        digest = write_with(path, lambda handle: np.save(handle, value, allow_pickle=False))
        return {"shape": list(value.shape), "dtype": str(value.dtype), "sha256": digest}
    if kind == "skops":
        import skops.io
        # The types beyond skops' defaults that this file needs, for the reader's information:
        # loading decides trust from runtime.trust, never from this list.
        needed: list[str] = []

        def vet(written: Path) -> None:  # before the rename: a refused model replaces none
            needed.extend(skops.io.get_untrusted_types(file=written))
            if trusted is not None:
                _refuse_untrusted(needed, trusted, path, "cannot be saved")

        write_with(path, lambda handle: skops.io.dump(value, handle), vet)
        return {"trusted": needed}
    if kind == "json":
        assert text is not None
        atomic_write(path, text)
        shown = json.dumps(display(decode(json.loads(text))), ensure_ascii=False)
        return {"value": json.loads(shown)} if len(shown.encode()) < _VALUE_LIMIT else {}
    return {"sha256": write_with(path, lambda handle: pickle.dump(
        value, handle, protocol=pickle.HIGHEST_PROTOCOL))}


def _load_model(path: Path, manifest: dict[str, Any], trusted: list[str], source: str) -> Any:
    """The model in the ``.skops`` file ``source`` (named ``path`` in messages)."""
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    # The types its writer said it needs, if each is trusted here, are what skops may make
    # beyond its own list: skops refuses the file if it needs any other (whoever can write
    # the folder can write the manifest, so it is only a guess that saves reading the file's
    # schema twice, 0.06 s for a forest of 200 trees). Otherwise, or when refused, the file
    # itself says what it needs, and whether that may be loaded is decided here.
    hinted = manifest.get("trusted")
    # only names of modules already imported: deciding a name's trust imports its module, and
    # a name read beside the file must not choose what gets imported (the file's own names
    # are pinned by its hash)
    if isinstance(hinted, list) and all(isinstance(name, str) and
                                        name.rpartition(".")[0] in sys.modules
                                        for name in hinted) \
            and not trust.refused(hinted, trusted):
        with contextlib.suppress(UntrustedTypesFoundException):
            return skops.io.load(source, trusted=hinted)
    needed = skops.io.get_untrusted_types(file=source)
    _refuse_untrusted(needed, trusted, path, f"of artifact `{manifest['name']}` was not loaded")
    return skops.io.load(source, trusted=needed)


def _refuse_untrusted(needed: Iterable[str], trusted: list[str], path: Path,
                      what: str) -> None:
    """ArtifactError when a model file needs a type not trusted."""
    refused = trust.refused(needed, trusted)
    if refused:
        names = " ".join(f"--trust {name}" for name in refused)
        raise ArtifactError(
            f"model file {path.name} {what}: it needs types jupyter-mlops does not trust by "
            f"default ({', '.join(refused)}); if you trust the code that defines them, export "
            f"the notebook again with {names}")


def _save(value: Any, name: str, folder: Path, role: str, allow_pickle: bool, step: str,
          trusted: list[str] | None, refer: bool) -> dict:
    # refer: a frame may reference columns of frames loaded from beside ``folder``, which
    # must then be where the frame stays (not a copy bound for a URL)
    _check_name(name)
    prefix = f"step `{step}`: " if step else ""
    kind, text = _classify(value, allow_pickle)
    if kind is None:
        detail = type_name(value)
        if type(value) in (list, tuple, dict):  # say what inside makes it unsupported
            try:
                encode(value)
            except NotJSON as exc:
                detail += f" holding {exc}"
            except RecursionError:
                detail += " that contains itself"
        raise ArtifactError(
            f"{prefix}variable `{name}` is a {detail}, which jupyter-mlops cannot pass between "
            "steps safely; create it in the step that uses it, or export with --allow-pickle "
            f"(supported: {SUPPORTED})"
        )
    folder.mkdir(parents=True, exist_ok=True)
    fmt = frames.frame_format() if kind in _FRAMES else ""
    path = folder / f"{name}.{_extension(kind, fmt)}"
    try:
        old = _read_manifest(name, folder, str(folder))["file"]
    except ArtifactError:
        old = None
    try:
        extra = _save_data(kind, value, path, text, trusted, fmt, refer)
    except ArtifactError as exc:
        raise ArtifactError(f"{prefix}variable `{name}`: {exc}") from None
    except Exception as exc:
        raise ArtifactError(
            f"{prefix}variable `{name}` ({type_name(value)}) could not be saved as "
            f"{_file_of(kind, fmt)}: {exc}"
        ) from exc
    # the hash taken while writing, where the writer only appended; else read back
    digest = extra.pop("sha256", None) or sha256_file(path)
    manifest = {"name": name, "kind": kind, "file": path.name, "sha256": digest,
                "bytes": path.stat().st_size, "python_type": type_name(value), "role": role,
                **extra}
    # The manifest last: it never names a missing or half-written data file.
    atomic_write(folder / f"{name}.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    if old is not None and old != path.name:  # the value changed kind: drop the stale file
        with contextlib.suppress(OSError):
            (folder / old).unlink()
    return manifest


def save(value: Any, name: str, folder: str | Path, *, role: str = "value",
         allow_pickle: bool = False, trusted: Iterable[str] | None = ()) -> dict[str, Any]:
    """Write ``value`` to ``folder/<name>.<ext>`` and its manifest to ``folder/<name>.json``.

    ``folder`` may be an fsspec URL (a ``str``), where the files are written locally first.
    Returns the manifest. Raises ArtifactError if the value's type cannot be passed safely
    (unless ``allow_pickle``), or if a model needs a type that is neither trusted by
    ``runtime.trust`` nor named in ``trusted``; then nothing is written. ``trusted=None``
    saves any model (the author's own session capturing it), recording what it needs.
    """
    with remote.writable(folder) as local:
        return _save(value, name, local, role, allow_pickle, step="",
                     trusted=None if trusted is None else list(trusted),
                     refer=not remote.is_url(folder))


def read_manifest(name: str, folder: str | Path) -> dict[str, Any]:
    """The manifest of artifact ``name`` in ``folder`` (a path or an fsspec URL);
    ArtifactError if missing or corrupt."""
    _check_name(name)
    with remote.readable(folder, [name]) as local:
        return _read_manifest(name, local, _shown(folder))


def _shown(folder: str | Path) -> str:
    """``folder`` as messages name it: a URL as given, a path as a path."""
    return str(folder).rstrip("/") if remote.is_url(folder) else str(Path(folder))


def _read_manifest(name: str, folder: Path, shown: str) -> dict[str, Any]:
    """The manifest in the local ``folder``; messages call the folder ``shown``."""
    _check_name(name)
    path = folder / f"{name}.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"no artifact `{name}` in {shown}: {_RERUN}") from None
    except (OSError, ValueError):
        manifest = None
    if not _well_formed(manifest, name):
        raise ArtifactError(f"the manifest of artifact `{name}` ({shown}/{path.name}) is "
                            f"corrupt; {_RERUN}")
    return manifest


def _well_formed(manifest: Any, name: str) -> bool:
    """Whether ``manifest`` is one of artifact ``name``: a known kind and format, a hash,
    and exactly the file its name and kind give, so no manifest can point outside the
    folder."""
    fmt = manifest.get("format", "parquet") if isinstance(manifest, dict) else None
    return (isinstance(manifest, dict) and manifest.get("kind") in _EXT
            and isinstance(manifest.get("sha256"), str) and fmt in frames.FORMATS
            and manifest.get("file") == f"{name}.{_extension(manifest['kind'], fmt)}")


def _load_data(kind: str, path: Path, manifest: dict[str, Any], trusted: list[str],
               source: str) -> Any:
    """The value of the data file at ``path``, read through the name ``source`` (the open
    descriptor's whose bytes are hashed; ``path`` names the file in messages)."""
    if kind in _FRAMES:
        return frames.read_frame(path, manifest, source)
    if kind == "npy":
        import numpy as np
        with open(source, "rb") as handle:  # np.load would open a zip (a model) as well
            if handle.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
                raise ArtifactError(f"artifact `{manifest['name']}`: {path.name} is not a "
                                    f".npy file (its manifest's kind was changed); {_RERUN}")
            # one open: where /dev/fd/N shares the hashed descriptor's offset (macOS), a
            # second open would start where this read stopped
            handle.seek(0)
            return np.load(handle, allow_pickle=False)
    if kind == "skops":
        return _load_model(path, manifest, trusted, source)
    if kind == "json":
        text = Path(source).read_text(encoding="utf-8")
        if frames.is_table(text):  # a value is written with ": ", a table without
            raise ArtifactError(f"artifact `{manifest['name']}`: {path.name} is a frame's JSON "
                                f"table, not a JSON value (its manifest's kind was changed); "
                                f"{_RERUN}")
        return decode(json.loads(text))
    with open(source, "rb") as handle:
        return pickle.load(handle)


def load(name: str, folder: str | Path, *, sha256: str | None = None,
         allow_pickle: bool = False, trusted: Iterable[str] = (),
         recorded: dict[str, Any] | None = None) -> Any:
    """Load artifact ``name`` from ``folder`` after checking its file's sha256.

    The hash must match the manifest and, if given, ``sha256``; otherwise the file was
    changed after it was written and ArtifactError is raised. Without ``sha256`` (a hash from
    the run store, which the folder's writer cannot change) an UnverifiedArtifactWarning says
    that only the manifest's own hash was checked. ``recorded``: the manifest the run store
    keeps, whose hash, kind and format are then used instead of the folder's (which its
    writer could change). Pickles need ``allow_pickle``; a model loads only the types
    ``runtime.trust`` trusts plus those named in ``trusted``. ``folder`` may be an fsspec
    URL (a ``str``): the files are copied to a temporary folder.
    """
    _check_name(name)
    if recorded is not None:
        if not _well_formed(recorded, name):
            raise ArtifactError(f"the run store's record of artifact `{name}` is not a "
                                "manifest of it; re-run the pipeline")
        sha256 = sha256 or recorded["sha256"]
    with remote.readable(folder, [name]) as local:
        return _load(name, local, _shown(folder), sha256, allow_pickle, list(trusted),
                     keep=not remote.is_url(folder), recorded=recorded)


def _load(name: str, folder: Path, shown: str, sha256: str | None, allow_pickle: bool,
          trusted: list[str], keep: bool, recorded: dict[str, Any] | None = None) -> Any:
    manifest = _read_manifest(name, folder, shown)
    if recorded is not None:  # the folder's manifest must exist, the store's is believed
        manifest = recorded
    kind, path = manifest["kind"], folder / manifest["file"]
    if kind == "pickle" and not allow_pickle:
        raise ArtifactError(
            f"artifact `{name}` in {shown} is a pickle (it was saved with --allow-pickle); "
            "loading a pickle can run any code, so opt in with --allow-pickle to load it"
        )
    if not sha256:
        warnings.warn(UnverifiedArtifactWarning(
            f"artifact `{name}` in {shown} was loaded without a hash from the run store: only "
            "its own manifest's hash was checked, and whoever can write that folder can "
            "rewrite both; run the pipeline with `jupyter mlops run` to have every input "
            "checked"), stacklevel=3)
    # One open: what is hashed is what is read, even if the name is renamed over meanwhile
    try:
        fd = open_once(path)
    except FileNotFoundError:
        raise ArtifactError(f"artifact `{name}` in {shown} has no data file {path.name}; "
                            f"{_RERUN}") from None
    except OSError as exc:
        raise ArtifactError(f"artifact `{name}` in {shown}: its data file {path.name} cannot "
                            f"be read ({exc.strerror or exc}); {_RERUN}") from None
    loaded = None
    try:
        value = _checked_value(name, shown, manifest, sha256, path, trusted, fd)
        if keep and kind in _FRAMES:  # a frame saved beside it may reference its columns
            loaded = fd
    finally:
        arrowrefs.remember(path, manifest, loaded)  # else what the read kept is dropped
        os.close(fd)
    return value


def _checked_value(name: str, shown: str, manifest: dict[str, Any], sha256: str | None,
                   path: Path, trusted: list[str], fd: int) -> Any:
    """The value of the file open as ``fd``, once its hash is the one expected."""
    kind, hashing = manifest["kind"], None
    if os.fstat(fd).st_size >= HASH_BESIDE and _parsing_runs_no_code(
            kind, manifest.get("format", "parquet")):
        # hashlib lets go of the GIL on big blocks: the file is hashed in a thread while it
        # is parsed, and the value is dropped below unless the hash matches
        hashing = hash_thread().submit(sha256_fd, fd)
    else:
        _check_hash(name, shown, manifest, sha256, sha256_fd(fd))
    try:
        value = _load_data(kind, path, manifest, trusted, through(fd, path))
    except Exception as exc:
        if hashing is not None:  # a file changed since it was written says so first
            _check_hash(name, shown, manifest, sha256, hashing.result())
        if isinstance(exc, ArtifactError):
            raise
        raise ArtifactError(
            f"artifact `{name}` in {shown} could not be loaded as "
            f"{_file_of(kind, manifest.get('format', 'parquet'))}: {exc}; {_RERUN}"
        ) from exc
    if hashing is not None:
        _check_hash(name, shown, manifest, sha256, hashing.result())
    return value


def _check_hash(name: str, shown: str, manifest: dict[str, Any], sha256: str | None,
                actual: str) -> None:
    """ArtifactError unless ``actual`` is the hash the manifest and the pipeline expect."""
    for expected, who in ((manifest["sha256"], "its manifest"), (sha256, "the pipeline")):
        if expected and actual != expected:
            raise ArtifactError(
                f"artifact `{name}` in {shown} was changed after it was written ({who} expects "
                f"sha256 {expected[:12]}…, the file has {actual[:12]}…); {_RERUN}"
            )


def _parsing_runs_no_code(kind: str, fmt: str = "parquet") -> bool:
    """Whether reading a file of ``kind`` (a frame's in format ``fmt``) can run no code,
    whatever its bytes: then it may be parsed before its hash is known. Never a model (skops)
    or a pickle. Arrow and Parquet only with pyarrow 14.0.1 or later, which no longer
    unpickles extension types."""
    if kind in ("npy", "json"):
        return True
    if kind not in ("parquet", "series"):
        return False
    if fmt == "json-table":  # where the kernel has no pyarrow
        return True
    return arrowfile.parsing_runs_no_code()


def save_outputs(namespace: dict[str, Any], outputs: list[dict[str, Any]], folder: str | Path,
                 *, allow_pickle: bool = False, step: str = "",
                 trusted: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Save a step's outputs from its kernel ``namespace``; return ``{name: manifest}``.

    ``outputs`` is ``[{"name": ..., "role": ..., "required": ...}]``. A required output that
    is missing or of an unsupported type is an ArtifactError, raised before anything is
    written; an optional one is skipped. ``folder`` may be an fsspec URL (a ``str``).
    ``trusted`` names the types beyond ``runtime.trust``'s that a model may need.
    """
    trusted = list(trusted)
    who = f"step `{step}`" if step else "this step"
    chosen = []
    for output in outputs:
        name, required = output["name"], output.get("required", True)
        if name not in namespace:
            if required:
                raise ArtifactError(
                    f"{who} should output `{name}`, but the notebook has no variable `{name}` "
                    f"when the step ends; assign `{name}` in the step, or make the output optional"
                )
            continue
        if kind_of(namespace[name], allow_pickle) is None:
            if required:  # _save raises the one-line message naming the type
                _save(namespace[name], name, Path(folder), "", allow_pickle, step, trusted,
                      refer=False)
            continue
        chosen.append((name, output.get("role", "value")))
    with remote.writable(folder) as local:  # a URL gets every data file before a manifest
        return {name: _save(namespace[name], name, local, role, allow_pickle, step, trusted,
                            refer=not remote.is_url(folder))
                for name, role in chosen}


def load_inputs(namespace: dict[str, Any], inputs: dict[str, str], folder: str | Path, *,
                allow_pickle: bool = False, trusted: Iterable[str] = ()) -> None:
    """Load each ``{varname: expected_sha256 or ""}`` from ``folder`` (a path or an fsspec
    URL) into ``namespace``, all or none; ``trusted`` as for ``load``."""
    for name in inputs:
        _check_name(name)
    with remote.readable(folder, list(inputs)) as local:
        loaded = {name: _load(name, local, _shown(folder), expected or None, allow_pickle,
                              list(trusted), keep=not remote.is_url(folder))
                  for name, expected in inputs.items()}
    namespace.update(loaded)
