"""Content-hash caching on the diabetes example (5 steps), whole `jupyter mlops run`
processes: a re-run with nothing changed / the first run (target <= 0.03), and a re-run
after changing a parameter of one late step / the first run (target: that step's share of
the first run + 0.05). Prints figures, asserts nothing."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "diabetes"
CLI = [sys.executable, "-m", "jupyter_mlops.cli"]


def _timed_run(pipeline: Path, *args: str) -> tuple[float, dict[str, Any]]:
    """Wall time of one `jupyter mlops run` process, and its run.json."""
    start = time.perf_counter()
    proc = subprocess.run([*CLI, "run", str(pipeline), *args], capture_output=True, text=True,
                          check=True)
    took = time.perf_counter() - start
    match = re.search(r"^Run (\S+) succeeded", proc.stdout, re.M)
    if match is None:
        raise SystemExit(f"the run did not succeed:\n{proc.stdout}{proc.stderr}")
    record = json.loads((pipeline / "runs" / match.group(1) / "run.json").read_text())
    return took, record


def _changed_value(default: Any, i: int) -> str:
    """A new value for a parameter: the i-th different one of its type."""
    if isinstance(default, bool):
        return str(not default)
    if isinstance(default, int):
        return str(default + i)
    if isinstance(default, float):
        return repr(default * (1 + 0.01 * i))
    return f"{default}{i}"


def _pick_parameter(spec: Any) -> tuple[str, str, str]:
    """(parameter, the step that uses it, why): one only the last step uses, else the one
    used by the fewest steps (of those, the one whose step comes last)."""
    last = spec.steps[-1]
    if last.parameters:
        return last.parameters[0], last.name, f"used only by the last step `{last.name}`"
    users: dict[str, list[int]] = {}
    for index, step in enumerate(spec.steps):
        for name in step.parameters:
            users.setdefault(name, []).append(index)
    name = min(users, key=lambda n: (len(users[n]), -max(users[n])))
    steps = [spec.steps[i].name for i in users[name]]
    why = (f"no parameter is used by the last step `{last.name}`; `{name}` is used by the "
           f"fewest steps ({', '.join(steps)})")
    return name, steps[-1], why


def main(repeat: int = 3) -> None:
    from jupyter_mlops.pipeline.spec import PipelineSpec

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "diabetes"
        shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("*_pipeline"))
        subprocess.run([*CLI, "export", str(work / "diabetes.ipynb")], check=True,
                       capture_output=True)
        pipeline = work / "diabetes_pipeline"
        spec = PipelineSpec.read(pipeline)

        first, record = _timed_run(pipeline)
        reruns = [_timed_run(pipeline) for _ in range(repeat)]
        unchanged = statistics.median(t for t, _ in reruns)
        ran = [s["name"] for _, r in reruns for s in r["steps"] if not s["cached_from"]]
        name, user, why = _pick_parameter(spec)
        default = spec.parameter(name).default
        changed_runs = [_timed_run(pipeline, "-p", f"{name}={_changed_value(default, i)}")
                        for i in range(1, repeat + 1)]
        changed = statistics.median(t for t, _ in changed_runs)
        rerun_steps = [s["name"] for s in changed_runs[0][1]["steps"] if not s["cached_from"]]

    durations = {s["name"]: s["duration"] or 0.0 for s in record["steps"]}
    total = record["duration"]
    share = durations[user] / total
    share_all = sum(durations[s] for s in rerun_steps) / total
    print(f"diabetes example, {len(spec.steps)} steps "
          f"({', '.join(f'{n} {d:.1f} s' for n, d in durations.items())}), "
          f"in-process run time {total:.1f} s; whole processes, median of {repeat}")
    print(f"first run: {first:.2f} s")
    ratio = unchanged / first
    print(f"no-change re-run / first run: {unchanged:.2f} s / {first:.2f} s = {ratio:.3f} "
          f"(target <= 0.03: {'meets' if ratio <= 0.03 else 'misses'}); steps that ran: "
          f"{', '.join(ran) or 'none'}")
    print(f"changed parameter: `{name}` ({why})")
    ratio = changed / first
    target = share + 0.05
    print(f"`{name}` changed re-run / first run: {changed:.2f} s / {first:.2f} s = {ratio:.3f} "
          f"(target <= {user} share {share:.3f} + 0.05 = {target:.3f}: "
          f"{'meets' if ratio <= target else 'misses'}); steps that ran: "
          f"{', '.join(rerun_steps)}")
    if rerun_steps != [user]:
        after = [s for s in rerun_steps if s != user]
        fair = share_all + 0.05
        print(f"  note: {', '.join(after)} must re-run too ({user}'s output changed); the "
              f"share of {', '.join(rerun_steps)} is {share_all:.3f}, + 0.05 = {fair:.3f}: "
              f"{'meets' if ratio <= fair else 'misses'}")


if __name__ == "__main__":
    main()
