"""``runs`` and ``lineage``: recorded runs, one run, two side by side, where a value came from."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import MlopsError


def _store_options(parser: argparse.ArgumentParser) -> None:
    """Where the recorded runs are, and the output format: shared by `runs` and `lineage`."""
    parser.add_argument("-C", "--pipeline", default=".", metavar="PIPELINE_DIR",
                        help="the pipeline folder (default: the current folder)")
    parser.add_argument("--store", metavar="PATH", help="the run store (default: "
                        "PIPELINE_DIR/.mlops/store.sqlite)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def add_commands(sub: Any) -> None:
    """Add this module's subcommands to the CLI's subparsers."""
    runs = sub.add_parser("runs", help="list recorded runs, show one, or compare two",
                          description="`runs` lists the runs, `runs show RUN_ID` shows one, "
                          "`runs diff A B` compares two (parameters, data, outputs, metrics).")
    runs.add_argument("action", nargs="*", metavar="show RUN_ID | diff A B | report RUN_ID")
    runs.add_argument("-o", "--output", metavar="FILE",
                      help="where `runs report` writes its HTML (default: RUN_FOLDER/report.html)")
    _store_options(runs)
    runs.set_defaults(handler=cmd_runs)

    lineage = sub.add_parser("lineage", help="what produced a variable of a run",
                             description="Which run, step, code, parameters, data files and "
                             "inputs produced RUN_ID:VARIABLE, down to the start.")
    lineage.add_argument("target", metavar="RUN_ID:VARIABLE")
    _store_options(lineage)
    lineage.set_defaults(handler=cmd_runs)


def cmd_runs(args: argparse.Namespace) -> int:
    """``jupyter mlops runs [show RUN_ID | diff A B]``."""
    import json

    from ..run.runsview import runs_diff, runs_table
    from ..run.store import RunStore, default_store

    if args.command == "lineage":
        if ":" not in args.target:
            raise MlopsError(f"`{args.target}` is not RUN_ID:VARIABLE, e.g. "
                             "`jupyter mlops lineage 20261124-101500-ab12cd:model`")
        args.action = ["lineage", args.target]
    path = Path(args.store) if args.store else default_store(args.pipeline)
    if not path.is_file():
        raise MlopsError(f"no run store at {path}; run the pipeline first, or name its folder "
                         "with -C PIPELINE_DIR")
    store = RunStore(path)
    try:
        action = args.action
        if not action:
            data: Any = store.runs()
            text = runs_table(data)
        elif action[0] == "show" and len(action) == 2:
            data, text = _show(store, action[1])
        elif action[0] == "diff" and len(action) == 3:
            data = [store.run(action[1]), store.run(action[2])]
            text = runs_diff(*data)
        elif action[0] == "report" and len(action) == 2:
            from ..run.htmlreport import render_report
            from ..runtime._files import atomic_write

            data = store.run(action[1])
            history = [r for r in store.runs(limit=1000)
                       if r.pipeline == data.pipeline and not r.unreadable]
            target = Path(args.output) if args.output else Path(data.folder) / "report.html"
            atomic_write(target, render_report(data, history))
            data, text = {"report": str(target)}, f"Wrote {target}"
        elif action[0] == "lineage" and len(action) == 2 and ":" in action[1]:
            from ..run.lineage import lineage, lineage_text

            run_id, variable = action[1].split(":", 1)
            data = lineage(store, run_id, variable)
            text = lineage_text(data)
        else:
            raise MlopsError(f"`runs {' '.join(action)}` is not a runs command; use `runs`, "
                             "`runs show RUN_ID`, `runs diff A B`, `runs report RUN_ID` or "
                             "`lineage RUN_ID:VARIABLE`")
    finally:
        store.close()
    print(json.dumps(_plain(data), indent=1, default=str) if args.json else text)
    return 0


def _show(store: Any, run_id: str) -> tuple[Any, str]:
    """``runs show``: the run's record, and the skew checks recorded for it."""
    from ..run.runsview import run_details
    from ..serving.skew import describe, recorded_checks

    run = store.run(run_id)
    checks = recorded_checks(store, run.run_id)
    text = run_details(run)
    if checks:
        text += f"\nSkew check: {describe(checks[0])}"
        if checks[0].get("code_sha256"):
            text += f" (prepare code sha256 {checks[0]['code_sha256'][:12]})"
    return ({**_plain(run), "skew_checks": checks} if checks else run), text


def _plain(data: Any) -> Any:
    """Records as the JSON-able data ``--json`` prints."""
    if isinstance(data, list):
        return [_plain(item) for item in data]
    return data.to_dict() if hasattr(data, "to_dict") else data
