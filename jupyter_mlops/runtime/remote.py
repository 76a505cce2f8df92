"""Artifacts at a shared location that may be an fsspec URL (``s3://``, ``gs://``, ``file://``).

Nothing is read or written in place at a URL: artifacts are staged in a local temporary
folder, where the usual atomic writes and sha256 checks happen, and copied up or down whole.
Every file goes up under a temporary name and is then moved to its own, data files before
manifests, so a manifest at the URL never names a missing or half-copied file; a reader
checks each data file's sha256 against its manifest after copying it down.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ArtifactError
from ._files import sha256_file

__all__ = ["download", "is_url", "join", "output_hashes", "readable", "staged_run", "upload",
           "writable"]

# `proto://...` or a chain such as `simplecache::s3://...`; a Windows drive has neither.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*(://|::)")
#: The extension of an artifact's data file, after its name: letters, no separator of any
#: system ("arrow", "table.json").
_EXTENSION = re.compile(r"[a-z]+(\.[a-z]+)?")


def is_url(location: str | Path) -> bool:
    """True if ``location`` is an fsspec URL rather than a local path."""
    # A Path cannot be a URL: Path("s3://b/x") has already lost a slash.
    return isinstance(location, str) and bool(_URL.match(location))


def join(location: str, *parts: str) -> str:
    """``location/part/...`` for a URL or a local path."""
    return "/".join([location.rstrip("/"), *parts])


def _filesystem(url: str) -> tuple[Any, str]:
    import fsspec.core

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:  # an unknown protocol, or its driver is missing
        raise ArtifactError(f"cannot open the artifacts location {url}: {err}") from None
    return fs, path.rstrip("/")


def _is_manifest(path: Path) -> bool:
    # Manifests are `<identifier>.json`; data files have another extension or `.data.json`.
    return path.suffix == ".json" and path.stem.isidentifier()


def _put(fs: Any, local: Path, target: str) -> None:
    """Copy ``local`` to ``target`` under a temporary name, then move it into place."""
    parent, name = target.rsplit("/", 1)
    fs.makedirs(parent, exist_ok=True)
    temporary = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
    try:
        fs.put_file(str(local), temporary)
        fs.mv(temporary, target)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm_file(temporary)
        raise


def read_text(url: str) -> str | None:
    """The text of the file at ``url``, or None when there is none."""
    fs, path = _filesystem(url)
    try:
        return bytes(fs.cat_file(path)).decode("utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ArtifactError(f"cannot read {url}: {err}") from None


def write_text(url: str, text: str) -> None:
    """Write ``text`` to ``url`` through a temporary name, as every upload does."""
    fs, path = _filesystem(url)
    with tempfile.TemporaryDirectory(prefix="mlops-put-") as tmp:
        local = Path(tmp) / "file"
        local.write_text(text, encoding="utf-8")
        try:
            _put(fs, local, path)
        except OSError as err:
            raise ArtifactError(f"cannot write {url}: {err}") from None


def upload(folder: Path, url: str) -> None:
    """Copy every file under the local ``folder`` to ``url``: data files first, manifests
    last, each through a temporary name."""
    fs, root = _filesystem(url)
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".tmp")]
    try:
        for path in sorted(files, key=_is_manifest):  # False (data) sorts before True
            _put(fs, path, f"{root}/{path.relative_to(folder).as_posix()}")
    except OSError as err:
        raise ArtifactError(f"cannot write artifacts to {url}: {err}") from None


def download(url: str, folder: Path, names: list[str],
             expected: dict[str, str] | None = None) -> None:
    """Copy artifacts ``names`` (manifest and data file) from ``url`` into ``folder``.

    An artifact whose manifest is missing or unreadable is left out, so that loading it says
    what is wrong; a data file whose sha256 differs from its manifest's or from
    ``expected[name]`` is an ArtifactError naming the URL.
    """
    fs, root = _filesystem(url)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        for name in names:
            try:
                text = fs.cat_file(f"{root}/{name}.json")
                manifest = json.loads(text)
            except (FileNotFoundError, ValueError):
                continue
            data = manifest.get("file") if isinstance(manifest, dict) else None
            # read_manifest vets the name in full; here it must only stay inside the folder
            if isinstance(data, str) and data.startswith(f"{name}.") \
                    and _EXTENSION.fullmatch(data[len(name) + 1:]) \
                    and fs.exists(f"{root}/{data}"):
                fs.get_file(f"{root}/{data}", str(folder / data))
                _verify(name, folder / data, manifest, (expected or {}).get(name), url)
            (folder / f"{name}.json").write_bytes(text)
    except OSError as err:
        raise ArtifactError(f"cannot read artifacts from {url}: {err}") from None


def _verify(name: str, path: Path, manifest: dict[str, Any], expected: str | None,
            url: str) -> None:
    actual = sha256_file(path)
    for wanted, who in ((manifest.get("sha256"), "its manifest"), (expected, "the pipeline")):
        if wanted and actual != wanted:
            raise ArtifactError(
                f"artifact `{name}` at {url} was changed after it was written ({who} expects "
                f"sha256 {str(wanted)[:12]}…, the file has {actual[:12]}…); re-run the step "
                "that outputs it")


@contextlib.contextmanager
def writable(folder: str | Path) -> Iterator[Path]:
    """A local folder to save artifacts in: ``folder`` itself, or for a URL a temporary
    folder that is uploaded to it when the block ends without an error."""
    if not is_url(folder):
        yield Path(folder)
        return
    with tempfile.TemporaryDirectory(prefix="mlops-out-") as tmp:
        yield Path(tmp)
        upload(Path(tmp), str(folder))


@contextlib.contextmanager
def readable(folder: str | Path, names: list[str]) -> Iterator[Path]:
    """A local folder holding artifacts ``names`` of ``folder``: itself, or for a URL a
    temporary copy (see :func:`download`)."""
    if not is_url(folder):
        yield Path(folder)
        return
    with tempfile.TemporaryDirectory(prefix="mlops-in-") as tmp:
        download(str(folder), Path(tmp), names)
        yield Path(tmp)


def output_hashes(folder: Path) -> dict[str, str]:
    """``{name: sha256}`` of the artifacts saved in the local ``folder``."""
    found: dict[str, str] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            manifest = json.loads(path.read_text(encoding="utf-8"))
            if (_is_manifest(path) and isinstance(manifest, dict)
                    and manifest.get("name") == path.stem
                    and isinstance(manifest.get("sha256"), str)):
                found[path.stem] = manifest["sha256"]
    return found


@contextlib.contextmanager
def staged_run(location: str, step: str, inputs: dict[str, str],
               hashes: dict[str, str]) -> Iterator[Path]:
    """The run folder one step's kernel works in, for a run kept at ``location``.

    For a local path that is the run folder itself. For a URL it is a temporary local one:
    the step's inputs (``{variable: producing step}``) are copied down first, each checked
    against ``hashes``, and the step's own folder (artifacts, checks, executed notebook) is
    copied up when the block ends, also when the step failed, so the failure can be read.
    """
    if not is_url(location):
        yield Path(location)
        return
    with tempfile.TemporaryDirectory(prefix="mlops-run-") as tmp:
        local = Path(tmp)
        for producer in dict.fromkeys(inputs.values()):
            names = sorted(n for n, p in inputs.items() if p == producer)
            download(join(location, producer), local / producer, names, hashes)
        try:
            yield local
        except BaseException:
            with contextlib.suppress(Exception):  # the step's own error is the one to show
                upload(local / step, join(location, step))
            raise
        upload(local / step, join(location, step))
