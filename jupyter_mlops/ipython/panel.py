"""``%mlops panel``: an ipywidgets panel over the notebook's pipeline, with Export and Run.

Works wherever ipywidgets do (JupyterLab, Notebook 7, VS Code). The panel shows what the
capture record and the analysis know; its buttons call the same library functions as the
CLI (:func:`export.export`, :func:`runner.run_pipeline`), and a run goes on in a
background thread so the kernel stays free.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import MlopsError
from ..pipeline.quoting import html_text

if TYPE_CHECKING:
    from ..pipeline.spec import Parameter
    from ..run.results import RunResult, StepResult

#: Hyperparameters worth a glance, by their name (the part after the last ``__``).
KEY_HYPERPARAMETERS = ("n_estimators", "max_depth", "learning_rate", "C", "alpha", "l1_ratio",
                       "penalty", "kernel", "gamma", "n_neighbors", "hidden_layer_sizes",
                       "max_iter", "min_samples_leaf", "max_features", "solver", "criterion")


def parameter_rows(parameters: Iterable[Parameter], recorded: Mapping[str, Any]) -> list[str]:
    """``C: float = 0.5 (recorded 1.0) - help`` for each parameter of the analysis."""
    rows, seen = [], set()
    for p in parameters:
        seen.add(p.name)
        value = (recorded.get(p.name) or {}).get("value", p.default)
        note = "" if value == p.default else f" (recorded {value!r})"
        rows.append(f"{p.name}: {p.type} = {p.default!r}{note}" + (f" - {p.help}" if p.help
                                                                       else ""))
    rows += [f"{name} = {entry.get('value')!r} (recorded; no params cell assigns it now)"
             for name, entry in recorded.items() if name not in seen]
    return rows


def data_rows(recorded: Mapping[str, Any], current_keys: set[str] | None = None) -> list[str]:
    """``df: 1,987 rows x 11 columns; nulls: age 3.2%; fingerprint 1a2b3c4d5e6f``."""
    rows = []
    for entry in recorded.values():
        profile = entry.get("profile") or {}
        columns = profile.get("columns") or []
        nulls = sorted(((c.get("null_rate") or 0.0, c.get("name")) for c in columns),
                       reverse=True)
        shown = [f"{name} {rate:.1%}" for rate, name in nulls[:5] if rate > 0]
        stale = (current_keys is not None and entry.get("cell_key") not in current_keys)
        rows.append(f"{entry.get('variable', '?')}: {profile.get('rows', 0):,} rows x "
                    f"{len(columns)} columns; nulls: {', '.join(shown) or 'none'}; "
                    f"fingerprint {str(profile.get('fingerprint', ''))[:12]}"
                    + (" (recorded from an earlier version of its cell)" if stale else ""))
    return rows


def model_rows(recorded: Mapping[str, Any]) -> list[str]:
    """``clf: RandomForestClassifier (fitted); n_estimators=300, max_depth=8``."""
    rows = []
    for name, entry in recorded.items():
        params = entry.get("params") or {}
        key = sorted(((k, v) for k, v in params.items()
                      if k.rsplit("__", 1)[-1] in KEY_HYPERPARAMETERS),
                     key=lambda kv: KEY_HYPERPARAMETERS.index(kv[0].rsplit("__", 1)[-1]))
        if not key:  # an unknown estimator: its first plain settings
            key = [(k, v) for k, v in params.items() if isinstance(v, (int, float, str))][:6]
        fitted = "fitted" if entry.get("fitted") else "not fitted"
        settings = ", ".join(f"{k}={v!r}" for k, v in key[:8])
        rows.append(f"{name}: {str(entry.get('class', '?')).rsplit('.', 1)[-1]} ({fitted})"
                    + (f"; {settings}" if settings else ""))
    return rows


def metric_rows(recorded: Mapping[str, Any]) -> list[str]:
    """``accuracy = 0.8412 (a run fails under 0.7991)``."""
    rows = []
    for name, entry in recorded.items():
        limits = [f"under {entry['min']:.4g}" if "min" in entry else "",
                  f"over {entry['max']:.4g}" if "max" in entry else ""]
        limit = " or ".join(x for x in limits if x)
        rows.append(f"{name} = {entry.get('value', float('nan')):.4g}"
                    + (f" (a run fails {limit})" if limit else ""))
    return rows


def _section(title: str, rows: list[str], empty: str) -> widgets.HTML:
    items = "".join(f"<li>{html_text(r)}</li>" for r in rows)
    body = f"<ul>{items}</ul>" if rows else f"<p><i>{html_text(empty)}</i></p>"
    return widgets.HTML(f"<h4>{html_text(title)}</h4>{body}")


class MlopsPanel(widgets.VBox):
    """The panel: one section per kind of record, then Export, Run and their output."""

    def __init__(self, notebook: Path, record: Mapping[str, Any] | None = None,
                 namespace: Mapping[str, Any] | None = None,
                 history: Iterable[str] | None = None) -> None:
        self.notebook, self.record = notebook, record
        self.namespace, self.history = namespace, history
        self.thread: threading.Thread | None = None
        self.sections = widgets.VBox()
        self.export_button = widgets.Button(description="Export", icon="folder")
        self.run_button = widgets.Button(description="Run", icon="play")
        self.status = widgets.Label("")
        self.output = widgets.Output()
        self.export_button.on_click(self.export)
        self.run_button.on_click(self.run)
        super().__init__([self.sections, widgets.HBox([self.export_button, self.run_button,
                                                       self.status]), self.output])
        self.refresh()

    def refresh(self) -> None:
        """Read the saved notebook and its record again and redraw the sections."""
        from ..notebook.captures import read_record
        from ..notebook.reader import code_key
        from ..pipeline.export import plan
        from .status import all_problems

        analysis, spec = plan(self.notebook)
        record = self.record if self.record is not None else read_record(self.notebook)
        self.record = None  # a given record is shown once; later refreshes read the file
        keys = {code_key(c.code) for c in analysis.notebook.cells if c.cell_type == "code"}
        problems = all_problems(analysis, self.namespace, self.history)
        steps = " -> ".join(s.name for s in spec.steps) or "none"
        self.sections.children = [
            widgets.HTML(f"<b>{html_text(self.notebook.name)}</b> as saved on disk: "
                         f"{len(spec.steps)} step(s): {html_text(steps)}"),
            _section("Parameters", parameter_rows(analysis.parameters, record["params"]),
                     "no params cell"),
            _section("Data", data_rows(record["data"], keys), "no data recorded yet"),
            _section("Model", model_rows(record["models"]), "no model recorded yet"),
            _section("Metrics", metric_rows(record["metrics"]), "no metrics recorded yet"),
            _section("Problems", [f"{p.severity}: {p.message}" for p in problems],
                     "none found"),
        ]

    def show(self, text: str) -> None:
        """Add lines to the output area (safe from any thread: it sets a widget trait)."""
        self.output.append_stdout(text.rstrip("\n") + "\n")

    def _busy(self, busy: bool) -> None:
        self.export_button.disabled = self.run_button.disabled = busy

    def export(self, _button: Any = None) -> None:
        """Export the saved notebook into ``<stem>_pipeline/``, as ``jupyter mlops export``."""
        from ..pipeline.export import export

        self.output.outputs = ()
        try:
            result = export(self.notebook)
            self.refresh()
        except MlopsError as err:
            self.status.value = "export failed"
            self.show(f"export failed: {err}")
            return
        except Exception as err:  # a bug of ours: one line, no traceback
            self.status.value = "export failed"
            self.show(f"export failed ({type(err).__name__}: {err}); please report this")
            return
        self.status.value = "exported"
        self.show(f"exported {len(result.spec.steps)} step(s) to {result.folder}")
        for warning in result.warnings:
            self.show(f"warning: {warning.message}")

    def run(self, _button: Any = None) -> None:
        """Run the exported pipeline in a background thread, as ``jupyter mlops run``."""
        from ..pipeline.export import default_folder

        if self.thread is not None and self.thread.is_alive():
            return
        folder = default_folder(self.notebook)
        self.output.outputs = ()
        if not (folder / "pipeline.yaml").is_file():
            self.show(f"no pipeline at {folder} yet: click Export first")
            return
        self._busy(True)
        self.status.value = "running..."
        self.thread = threading.Thread(target=self._run, args=(folder,), daemon=True,
                                       name="mlops-panel-run")
        self.thread.start()

    def _progress(self, event: str, run: RunResult, step: StepResult) -> None:
        if event == "cell":  # a long step's current cell: the status line, not the log
            self.status.value = f"running {step.name}: {step.where()}"
            return
        if event == "finished":
            return
        done = sum(s.status == "done" for s in run.steps)
        self.status.value = f"running: {done}/{len(run.steps)} steps done"
        seconds = f" in {step.duration:.1f} s" if step.duration is not None else ""
        self.show(f"{step.name}: {event}{seconds}")

    def _run(self, folder: Path) -> None:
        from ..pipeline.freshness import stale_export
        from ..pipeline.spec import PipelineSpec
        from ..run.report import summary
        from ..run.runner import run_pipeline

        try:
            spec = PipelineSpec.read(folder)
            note = stale_export(spec, folder)
            if note is not None:
                self.show(f"note: {note}")
            result = run_pipeline(folder, listener=self._progress)
        except MlopsError as err:
            self.status.value = "run failed"
            self.show(f"run failed: {err}")
        except Exception as err:  # a bug of ours: one line, no traceback
            self.status.value = "run failed"
            self.show(f"run failed ({type(err).__name__}: {err}); please report this")
        else:
            self.status.value = f"run {result.status}"
            self.show(summary(result))
            if result.error:
                self.show(result.error)
            elif result.status == "succeeded":
                from ..serving.skew import after_run

                note = after_run(folder, result.run_id)
                if note:
                    self.show(note)
        finally:
            self._busy(False)


def build_panel(notebook_path: str | Path, record: Mapping[str, Any] | None = None, *,
                namespace: Mapping[str, Any] | None = None,
                history: Iterable[str] | None = None) -> MlopsPanel:
    """The panel for the notebook saved at ``notebook_path``.

    ``record`` defaults to the notebook's capture record; with the kernel's ``namespace``
    (and ``history``, its ``In``) the problems include hidden kernel state.
    """
    return MlopsPanel(Path(notebook_path), record, namespace, history)


def show_panel(shell: Any, args: str) -> None:
    """``%mlops panel [NOTEBOOK]``: display the panel in the cell's output."""
    from IPython.display import display

    from .status import kernel_namespace, notebook_argument

    path = notebook_argument(shell, args, "panel")
    try:
        panel = build_panel(path, namespace=kernel_namespace(shell),
                            history=list(shell.user_ns.get("In") or []))
    except MlopsError:
        raise
    except Exception as err:  # a bug of ours must not show the user a traceback
        raise MlopsError(f"could not build the panel for {path.name} ({type(err).__name__}: "
                         f"{err}); please report this") from None
    display(panel)
