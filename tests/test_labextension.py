"""The installed package brings the prebuilt sidebar and enables the server extension."""

from __future__ import annotations

import subprocess
import sys


def listing(*args: str) -> str:
    """What ``jupyter ARGS`` prints (both of these list on stderr)."""
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def test_labextension_is_installed_and_enabled() -> None:
    lines = [line for line in listing("jupyterlab.labextensions", "list").splitlines()
             if "jupyter-mlops" in line]
    assert lines, "jupyter-mlops is not among the lab extensions"
    assert "enabled" in lines[0] and "OK" in lines[0], lines[0]
    assert "(python, jupyter-mlops)" in lines[0], lines[0]  # prebuilt, from the wheel


def test_server_extension_is_enabled() -> None:
    text = listing("jupyter_server.extension.serverextension", "list")
    lines = [line for line in text.splitlines() if "jupyter_mlops" in line]
    assert any("enabled" in line for line in lines), text
    assert any("OK" in line for line in lines), text


def test_settings_schema_is_installed_with_the_extension() -> None:
    """The sidebar's settings (spelling of new marks, auto-refresh) come with the prebuilt
    extension, where JupyterLab's settings editor finds them."""
    import json
    from pathlib import Path

    from jupyter_core.paths import jupyter_path

    schemas = [Path(p) / "jupyter-mlops" / "schemas" / "jupyter-mlops" / "plugin.json"
               for p in jupyter_path("labextensions")]
    found = [s for s in schemas if s.is_file()]
    assert found, schemas
    properties = json.loads(found[0].read_text())["properties"]
    assert properties["markSpelling"]["default"] == "magic"
    assert properties["markSpelling"]["enum"] == ["magic", "tag"]
    assert properties["autoRefresh"]["default"] is True
