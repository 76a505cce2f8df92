"""``runs report RUN_ID``: one self-contained HTML page with per-step timings and each
metric's history across runs, as plots."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

from ..pipeline.quoting import html_text
from .records import RunRecord, StepRecord


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _timings_plot(run: RunRecord) -> str:
    from matplotlib.figure import Figure

    steps = [s for s in run.steps if s.started is not None and s.ended is not None]
    figure = Figure(figsize=(7, 0.5 + 0.4 * max(len(steps), 1)))
    axes = figure.subplots()
    start = min((s.started for s in steps), default=0.0)
    for row, step in enumerate(steps):
        color = "#9bb" if step.cached_from else ("#c55" if step.status == "failed"
                                                     else "#47a")
        axes.barh(row, step.ended - step.started, left=step.started - start,
                  color=color)
    axes.set_yticks(range(len(steps)), [s.step for s in steps])
    axes.invert_yaxis()
    axes.set_xlabel("seconds since the run started (grey: reused from an earlier run)")
    return _png(figure)


def _history_plot(name: str, history: list[tuple[float, float, str]], current: str) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 2.4))
    axes = figure.subplots()
    axes.plot(range(len(history)), [h[1] for h in history], marker="o", color="#47a")
    for index, (_, value, run_id) in enumerate(history):
        if run_id == current:
            axes.plot([index], [value], marker="o", markersize=10, color="#c55")
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title(name)
    axes.set_xlabel("runs, oldest first (red: this run)")
    return _png(figure)


def render_report(run: RunRecord, history: list[RunRecord]) -> str:
    """The page for ``run``; ``history`` holds the pipeline's runs (any order)."""
    esc = html_text
    ordered = sorted(history, key=lambda r: r.started)
    def took(step: StepRecord) -> str:
        if step.duration is None:
            return ""
        return f"{step.duration:.1f} s"

    def status(step: StepRecord) -> str:
        reused = f" (reused from {step.cached_from})" if step.cached_from else ""
        return esc(step.status + reused)

    rows = "".join(f"<tr><td>{esc(s.step)}</td><td>{status(s)}</td><td>{took(s)}</td></tr>"
                   for s in run.steps)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Run {esc(run.run_id)}</title>",
        "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto}"
        "td,th{padding:2px 10px;text-align:left}</style></head><body>",
        f"<h1>Run {esc(run.run_id)} of <code>{esc(run.pipeline)}</code>: "
        f"{esc(run.status)}</h1>",
        f"<p>Started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(run.started))} "
        f"by {esc(run.started_by)}. Parameters: "
        + esc(", ".join(f"{k}={v!r}" for k, v in run.parameters.items()) or "none")
        + "</p>",
    ]
    if run.error:
        parts.append(f"<p><b>Error:</b> {esc(run.error)}</p>")
    parts += ["<h2>Steps</h2><table><tr><th>step</th><th>status</th><th>time</th></tr>",
              rows, "</table>",
              f"<img alt='step timings' src='data:image/png;base64,{_timings_plot(run)}'>",
              "<h2>Metrics across runs</h2>"]
    names = sorted({n for r in ordered for n in r.metrics})
    if not names:
        parts.append("<p>No metrics recorded.</p>")
    for name in names:
        series = [(r.started, r.metrics[name], r.run_id) for r in ordered
                  if name in r.metrics]
        value = run.metrics.get(name)
        shown = "-" if value is None else f"{value:.4g}"
        parts.append(f"<h3>{esc(name)}: {shown} in this run</h3>")
        parts.append(f"<img alt='{esc(name)} history' src='data:image/png;base64,"
                     f"{_history_plot(name, series, run.run_id)}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
