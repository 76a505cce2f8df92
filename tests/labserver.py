"""A real ``jupyter lab`` for the browser tests: started on a free port, quiet, stopped after."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
#: Without these, Chromium reaches for outside hosts that this machine cannot reach.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
]


@dataclass
class Lab:
    """A running lab: where it listens and its token."""

    url: str
    token: str
    root: Path
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_lab(root: Path, state: Path, env: dict[str, str] | None = None,
                mlops_settings: dict[str, object] | None = None) -> Iterator[Lab]:
    """Start ``jupyter lab`` serving ``root``; settings and workspaces under ``state``.

    ``mlops_settings`` are the user's settings of the sidebar (its schema/plugin.json). The
    page exposes the application as ``window.jupyterapp``, so that a test can run commands.
    """
    port, token = _free_port(), secrets.token_hex(16)
    settings = state / "settings"
    notify = settings / "@jupyterlab" / "apputils-extension"
    notify.mkdir(parents=True, exist_ok=True)
    # no news pop-up over the page
    (notify / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    if mlops_settings is not None:
        (settings / "jupyter-mlops").mkdir(exist_ok=True)
        (settings / "jupyter-mlops" / "plugin.jupyterlab-settings").write_text(
            json.dumps(mlops_settings))
    log = state / "lab.log"
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
        "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}", "--ServerApp.allow_root=True",
        "--LabApp.news_url=None", "--LabApp.expose_app_in_browser=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={state / 'ws'}",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({process.returncode}):\n"
                                   f"{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                    break
            except OSError as err:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter lab did not answer ({err}):\n"
                                       f"{log.read_text()[-3000:]}") from None
                time.sleep(0.3)
        yield Lab(url, token, root, log)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
