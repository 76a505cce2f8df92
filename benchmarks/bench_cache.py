"""Content-hash caching on the diabetes example (5 steps), whole `jupyter mlops run`
processes: a re-run with nothing changed / the first run (target: median ratio <= 0.03), and
a re-run after changing a parameter of one late step / the first run (target: that step's
share of the first run + 0.05).

Each round runs four in turn: the first run (the pipeline's run store, runs and warm zygote
removed before it, untimed, as just after the export in a new session), the re-run with
nothing changed, the re-run with the parameter changed (its kernels forked from the zygote
the run before kept warm), and the same with nothing kept warm
(``JUPYTER_MLOPS_KEEP_WARM=0``, as before warm zygotes); rounds repeat, so that a change in
the machine's load falls on all alike. Printed: the steps' durations and the first run's wall time
(medians over the rounds), each ratio as the median and min-max of its per-round ratios with
the load average, and whether the median meets its target. Asserts nothing.

    python benchmarks/bench_cache.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _timing import alternate, rounds, target_line

from jupyter_mlops.execution import warm

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "diabetes"
CLI = [sys.executable, "-m", "jupyter_mlops.cli"]


def _timed_run(pipeline: Path, *args: str, cold: bool = False) -> tuple[float, dict[str, Any]]:
    """Wall time of one `jupyter mlops run` process, and its run.json; ``cold``: with no
    zygote kept warm for the next run (none is used either: the first runs stop theirs)."""
    # _timing keeps none warm for the other benchmarks; here a user's default does
    env = dict(os.environ, JUPYTER_MLOPS_KEEP_WARM="0" if cold else str(warm.DEFAULT_IDLE))
    start = time.perf_counter()
    proc = subprocess.run([*CLI, "run", str(pipeline), *args], capture_output=True, text=True,
                          check=True, env=env)
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


def _ran(record: dict[str, Any]) -> list[str]:
    """The steps a run executed (not reused from the cache)."""
    return [s["name"] for s in record["steps"] if not s["cached_from"]]


def main(argv: list[str] | None = None) -> None:
    """Time ``--repeat`` rounds of first run, no-change re-run, changed re-run; print ratios."""
    from jupyter_mlops.pipeline.spec import PipelineSpec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=rounds, default=3, help="rounds (default 3)")
    repeat = parser.parse_args(argv).repeat
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "diabetes"
        shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("*_pipeline"))
        subprocess.run([*CLI, "export", str(work / "diabetes.ipynb")], check=True,
                       capture_output=True)
        pipeline = work / "diabetes_pipeline"
        spec = PipelineSpec.read(pipeline)
        name, user, why = _pick_parameter(spec)
        default = spec.parameter(name).default

        def fresh() -> None:
            """Back to just after the export in a new session: no run store, no runs, no
            zygote kept warm."""
            for folder in (".mlops", "runs"):
                shutil.rmtree(pipeline / folder, ignore_errors=True)
            for path in warm.kept():
                state = warm.status(path)
                if state is not None and state["folder"] == str(work.resolve()):
                    warm.stop(path)

        def change(i: int, cold: bool = False) -> tuple[float, dict[str, Any]]:
            value = _changed_value(default, 2 * i + 1 + cold)
            return _timed_run(pipeline, "-p", f"{name}={value}", cold=cold)

        results = alternate({
            "first": lambda _: _timed_run(pipeline),
            "unchanged": lambda _: _timed_run(pipeline),
            "changed": change,
            "changed, nothing warm": lambda i: change(i, cold=True),
        }, repeat, before={"first": fresh})
        fresh()  # no zygote left warm for a folder that is gone

    first = [t for t, _ in results["first"]]
    unchanged = [t for t, _ in results["unchanged"]]
    changed = [t for t, _ in results["changed"]]
    changed_cold = [t for t, _ in results["changed, nothing warm"]]
    records = [r for _, r in results["first"]]
    ran = list(dict.fromkeys(s for _, r in results["unchanged"] for s in _ran(r)))
    rerun_steps = _ran(results["changed"][0][1])
    steps = [{s["name"]: s["duration"] or 0.0 for s in r["steps"]} for r in records]
    durations = {n: statistics.median(d[n] for d in steps) for n in steps[0]}
    total = statistics.median(r["duration"] for r in records)
    share = statistics.median(d[user] / r["duration"] for d, r in zip(steps, records, strict=True))
    share_all = statistics.median(sum(d[n] for n in rerun_steps) / r["duration"]
                                  for d, r in zip(steps, records, strict=True))
    print(f"diabetes example, {len(spec.steps)} steps "
          f"({', '.join(f'{n} {d:.1f} s' for n, d in durations.items())}), "
          f"in-process run time {total:.1f} s (medians of the first runs); whole processes, "
          f"{repeat} rounds of first run, no-change re-run, changed re-run")
    print(f"first run: median {statistics.median(first):.2f} s (min {min(first):.2f}, "
          f"max {max(first):.2f})")
    print(target_line("no-change re-run / first run", unchanged, first, 0.03, digits=3)
          + f"; steps that ran: {', '.join(ran) or 'none'}")
    print(f"changed parameter: `{name}` ({why}); target: {user}'s share of the first run "
          f"{share:.3f} + 0.05")
    print(target_line(f"`{name}` changed re-run / first run", changed, first,
                      round(share + 0.05, 3), digits=3)
          + f"; steps that ran: {', '.join(rerun_steps)}")
    print(target_line("  the same with no zygote kept warm (JUPYTER_MLOPS_KEEP_WARM=0)",
                      changed_cold, first, round(share + 0.05, 3), digits=3))
    if rerun_steps != [user]:
        after = [s for s in rerun_steps if s != user]
        fair = share_all + 0.05
        ratio = statistics.median(c / f for c, f in zip(changed, first, strict=True))
        print(f"  note: {', '.join(after)} must re-run too ({user}'s output changed); the "
              f"share of {', '.join(rerun_steps)} is {share_all:.3f}, + 0.05 = {fair:.3f}: "
              f"{'meets' if ratio <= fair else 'misses'}")


if __name__ == "__main__":
    main()
