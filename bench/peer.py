"""The side-by-side ratios: groupgraph against PostGraphile 5 and the one-statement SQL floor, from one
interleaved run of the shared peer bench (`../shared/peer-bench/run`, or GROUPGRAPH_PEER_BENCH), judged
against the performance goals.

    scripts/bench --only P [--preset medium] [--peer-rounds 100]
    python -m bench.peer --json peer.json      # judge a run saved earlier, without running it again
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEER_BENCH = Path(os.environ.get("GROUPGRAPH_PEER_BENCH", ROOT.parent / "shared" / "peer-bench" / "run"))
SCENARIOS = ("d1-level5", "d1-level1", "d1-root", "members100", "members500")

# (scenario, ratio, at most): the paired median ratio of one run
RATIO_GOALS = (
    ("d1-level5", "gg/pg5", 2.0),
    ("members100", "gg/pg5", 2.0),
    ("members500", "gg/pg5", 2.0),
    ("d1-level5", "gg/floor", 4.0),
    ("d1-level1", "gg/floor", 1.3),
    ("d1-root", "gg/floor", 1.3),
)
CPU_GOAL = 2.5  # groupgraph worker CPU per request, at most this many times PostGraphile's
SPREAD_GOAL = 2.0  # p95 at most this many times p50 (no collector cliffs)
ROOT_GOAL = 1.5  # D1 on the root at most this many times D1 on the level-5 group


def run(preset: str, rounds: int, scenarios: tuple[str, ...] = SCENARIOS) -> dict[str, Any]:
    """Runs the peer bench from the project root and returns its JSON report (with `table`: the lines it
    printed from the table on)."""
    if not PEER_BENCH.exists():
        raise SystemExit(f"the peer bench is not at {PEER_BENCH} (set GROUPGRAPH_PEER_BENCH)")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "peer.json"
        done = subprocess.run(
            [str(PEER_BENCH), "--preset", preset, "--rounds", str(rounds), "--scenarios", ",".join(scenarios),
             "--json", str(out)],
            cwd=ROOT, capture_output=True, text=True,
        )
        if not out.exists():
            raise SystemExit(f"the peer bench failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        report: dict[str, Any] = json.loads(out.read_text())
    lines = done.stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("peer-bench, preset")), 0)
    report["table"] = [line for line in lines[start:] if not line.startswith("[peer-bench]")]
    report["exit_status"] = done.returncode
    return report


def _summary(report: dict[str, Any], scenario: str, system: str) -> dict[str, Any] | None:
    return next((s for s in report["summary"] if s["scenario"] == scenario and s["system"] == system), None)


def _paired(report: dict[str, Any], scenario: str, ratio: str) -> float | None:
    found = next((p for p in report["paired"] if p["scenario"] == scenario and p["ratio"] == ratio), None)
    return None if found is None else float(found["median_paired"])


def judge(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal with its value and "ok"/"MISS" ("n/a" where the run left the scenario out)."""
    checks: list[dict[str, Any]] = []

    def add(target: str, value: float | None, limit: float) -> None:
        status = "n/a" if value is None else ("ok" if value <= limit else "MISS")
        checks.append({"target": f"{target} <= {limit}", "value": value, "status": status})

    for scenario, ratio, limit in RATIO_GOALS:
        add(f"{scenario} {ratio} (paired median)", _paired(report, scenario, ratio), limit)
    for scenario in ("d1-level5", "members100", "members500"):
        gg, pg5 = _summary(report, scenario, "gg"), _summary(report, scenario, "pg5")
        cpu = None
        if gg and pg5 and gg.get("cpu_server_ms") and pg5.get("cpu_server_ms"):
            cpu = round(gg["cpu_server_ms"] / pg5["cpu_server_ms"], 2)
        add(f"{scenario} CPU per request gg/pg5", cpu, CPU_GOAL)
    for scenario in ("d1-level5", "members100", "members500"):
        gg = _summary(report, scenario, "gg")
        add(f"{scenario} gg p95/p50", round(gg["p95"] / gg["p50"], 2) if gg and gg["p50"] else None, SPREAD_GOAL)
    root, level5 = _summary(report, "d1-root", "gg"), _summary(report, "d1-level5", "gg")
    add("gg d1-root p50 / d1-level5 p50", round(root["p50"] / level5["p50"], 2) if root and level5 else None, ROOT_GOAL)
    return checks


def print_report(report: dict[str, Any], checks: list[dict[str, Any]]) -> None:
    for line in report.get("table", []):
        print(line)
    print()
    for item in checks:
        print(f"- {item['status']:4} {item['target']}: {item['value']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peer", description=__doc__)
    parser.add_argument("--preset", default="medium", choices=("small", "medium"))
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--json", help="judge this saved peer-bench JSON instead of running the bench")
    args = parser.parse_args(argv)
    report = json.loads(Path(args.json).read_text()) if args.json else run(args.preset, args.rounds)
    checks = judge(report)
    print_report(report, checks)
    sys.exit(0 if all(c["status"] != "MISS" for c in checks) else 1)


if __name__ == "__main__":
    main()
