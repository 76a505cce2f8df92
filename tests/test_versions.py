"""Package versions for the cache keys, kept between runs (jupyter_mlops.run.versions): the
same as importlib.metadata says, and never kept past an install."""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from jupyter_mlops.run import versions


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder of this test's own, and a folder on ``sys.path`` it may change."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    return site


def test_kept_versions_are_what_the_metadata_says(cache: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    expected = {"pandas": {"pandas": version("pandas")},
                "sklearn": {"scikit-learn": version("scikit-learn")},
                "yaml": {"PyYAML": version("PyYAML")}}
    assert versions.module_versions(["pandas", "json", "sklearn", "yaml", "pandas"]) == expected
    assert versions.package_versions(["sklearn", "os"]) == {
        "scikit-learn": version("scikit-learn")}
    # kept: a second run looks nothing up
    def refuse(modules: list[str]) -> Any:
        raise AssertionError(f"looked up {modules} again")

    monkeypatch.setattr(versions, "_looked_up", refuse)
    assert versions.module_versions(["yaml", "pandas", "sklearn"]) == {
        k: expected[k] for k in ("yaml", "pandas", "sklearn")}


def _count_lookups(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The modules each lookup of versions asks for, from now on (the cache's misses)."""
    asked: list[list[str]] = []
    real = versions._looked_up

    def counting(modules: list[str]) -> Any:
        asked.append(modules)
        return real(modules)

    monkeypatch.setattr(versions, "_looked_up", counting)
    return asked


def test_an_install_on_the_path_makes_them_looked_up_again(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    versions.module_versions(["pandas"])
    asked = _count_lookups(monkeypatch)
    versions.module_versions(["pandas"])
    assert asked == []
    (cache / "pandas-99.0.dist-info").mkdir()  # what pip does to a folder on sys.path
    versions.module_versions(["pandas"])
    assert asked == [["pandas"]]


def test_files_saved_beside_the_notebook_keep_them(cache: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The notebook's folder is on ``sys.path``: a file saved or removed there (an edit, a
    run's output) is no install, so nothing is looked up again nor another cache file
    written."""
    versions.module_versions(["pandas"])
    files = sorted((cache.parent / "cache").rglob("versions_*.json"))

    def refuse(modules: list[str]) -> Any:
        raise AssertionError(f"looked up {modules} again")

    monkeypatch.setattr(versions, "_looked_up", refuse)
    (cache / "helpers.py").write_text("x = 1\n")
    (cache / "data").mkdir()
    (cache / "data" / "train.csv").write_text("a\n1\n")
    versions.module_versions(["pandas"])
    (cache / "helpers.py").unlink()
    versions.module_versions(["pandas"])
    assert sorted((cache.parent / "cache").rglob("versions_*.json")) == files


@pytest.mark.parametrize("change", ["zip", "egg-info"])
def test_an_install_that_keeps_its_names_makes_them_looked_up_again(
        cache: Path, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    """A zip on ``sys.path`` replaced, and a ``setup.py develop`` install's version changed
    in its ``NAME.egg-info`` (no version in the name): looked up again."""
    import os

    archive, info = cache / "deps.zip", cache / "mine.egg-info"
    archive.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    info.mkdir()
    monkeypatch.setattr(sys, "path", [*sys.path, str(archive)])
    versions.module_versions(["pandas"])
    asked = _count_lookups(monkeypatch)
    versions.module_versions(["pandas"])
    assert asked == []
    changed = archive if change == "zip" else info
    later = changed.stat().st_mtime_ns + 5_000_000_000
    os.utime(changed, ns=(later, later))
    versions.module_versions(["pandas"])
    assert asked == [["pandas"]]


def test_a_cache_that_cannot_be_read_is_looked_past(cache: Path) -> None:
    path = versions._cache_file()
    assert path is not None
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert versions.module_versions(["yaml"]) == {"yaml": {"PyYAML": version("PyYAML")}}
    path.write_text('{"yaml": {"PyYAML": 3}}')  # a version that is not a string
    assert versions.module_versions(["yaml"]) == {"yaml": {"PyYAML": version("PyYAML")}}
