"""The JupyterLab face: the server extension's REST endpoints under ``/mlops/``, and the
runs it starts."""
