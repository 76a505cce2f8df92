"""The HTML page of a monitoring report: verdict, metrics, and one plot per column comparing
the new data with the served run's profile (PNG, embedded as base64: one self-contained
file)."""

from __future__ import annotations

import base64
import io
from typing import Any

from ..pipeline.quoting import html_text


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _shares(counts: Any) -> Any:
    import numpy as np

    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    return counts / total if total else counts


def _numeric_plot(column: dict[str, Any], series: Any, axes: Any) -> None:
    import numpy as np

    from ..runtime.drift import bin_counts

    edges = np.asarray(column["histogram"]["edges"], dtype=float)
    values = series.to_numpy(dtype=float, na_value=np.nan)
    values = values[np.isfinite(values)]
    current = bin_counts(edges, values)  # as the drift check's PSI counts them
    width = np.diff(edges)
    axes.bar(edges[:-1], _shares(column["histogram"]["counts"]), width=width, align="edge",
             alpha=0.5, label="served run", color="#47a")
    axes.bar(edges[:-1], _shares(current), width=width, align="edge", alpha=0.5,
             label="new data", color="#c73")


def _categorical_plot(column: dict[str, Any], series: Any, axes: Any) -> None:
    import numpy as np

    from ..runtime.profile import label_counts

    top = column.get("top") or []
    names = [label for label, _ in top][:12]
    reference = [count for _, count in top][:12]
    reference.append(sum(count for _, count in top[12:]) + int(column.get("other") or 0))
    labels, counts = label_counts(series)
    now = dict(zip(labels, counts.tolist(), strict=True))
    current = [now.pop(name, 0) for name in names] + [sum(now.values())]
    positions = np.arange(len(names) + 1)
    axes.bar(positions - 0.2, _shares(reference), width=0.4, label="served run", color="#47a")
    axes.bar(positions + 0.2, _shares(current), width=0.4, label="new data", color="#c73")
    axes.set_xticks(positions, [*names, "other"], rotation=30, ha="right", fontsize=7)


def _plot(column: dict[str, Any], series: Any, result: dict[str, Any] | None) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2, 2.6))
    axes = figure.subplots()
    if column["kind"] == "numeric" and column.get("histogram"):
        _numeric_plot(column, series, axes)
    else:
        _categorical_plot(column, series, axes)
    title = column["name"]
    if result is not None:
        title += f": {result['method']} {result['score']:.3g}"
        title += " (drift)" if result["drift"] else ""
    axes.set_title(title, fontsize=9, color="#b22" if result and result["drift"] else "#222")
    axes.set_ylabel("share of rows", fontsize=7)
    axes.tick_params(labelsize=7)
    axes.legend(fontsize=7)
    return _png(figure)


def render_html(report: dict[str, Any], frame: Any) -> str:
    """The whole page."""
    esc = html_text
    drift = report["drift"]
    verdict = "healthy" if report["healthy"] else "unhealthy"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>jupyter-mlops monitor: {esc(report['pipeline'])}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
        ".bad{color:#b22}.ok{color:#282}td,th{padding:2px 10px;text-align:left}"
        ".plots{display:flex;flex-wrap:wrap;gap:8px}</style></head><body>",
        f"<h1>{esc(report['pipeline'])}: <span class='{'ok' if report['healthy'] else 'bad'}'>"
        f"{verdict}</span></h1>",
        f"<p>{report['rows']:,} rows of <code>{esc(report['data'])}</code> against run "
        f"<code>{esc(report['run_id'])}</code> (its <code>{esc(report['reference']['variable'])}"
        f"</code>, step {esc(report['reference']['step'])}).</p>",
    ]
    parts += [f"<p class='bad'>{esc(reason)}</p>" for reason in report["reasons"]]
    if report["metrics"]:
        parts.append("<h2>Metrics on the new data</h2><table><tr><th>metric</th><th>new data"
                     "</th><th>run</th><th>min</th><th>max</th><th></th></tr>")
        for m in report["metrics"]:
            value = "-" if m["value"] is None else f"{m['value']:.4g}"
            state = m.get("note", "") if m["ok"] is None else ("ok" if m["ok"] else "beyond")
            # thresholds come from pipeline.yaml, a file anyone may have edited: text only
            cells = [m["name"], value, f"{m['run_value']:.4g}", m["min"], m["max"], state]
            parts.append("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    parts.append(f"<h2>Drift: {len(drift['drifted'])} of {len(drift['columns'])} columns "
                 f"(share {drift['share']:.2f})</h2><div class='plots'>")
    for column in report["profile"]["columns"]:
        name = column["name"]
        if name not in frame.columns or column["kind"] not in (
                "numeric", "categorical", "boolean"):
            continue
        image = _plot(column, frame[name], drift["columns"].get(name))
        parts.append(f"<img alt='{esc(name)}' src='data:image/png;base64,{image}'>")
    parts.append("</div>")
    for name, why in drift["skipped"].items():
        parts.append(f"<p>{esc(name)}: not checked ({esc(why)})</p>")
    if report["missing"]:
        parts.append("<p>Columns of the run's data not in the new data: "
                     f"{esc(', '.join(report['missing']))}</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
