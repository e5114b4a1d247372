"""Markdown summary of bench results, one column group per engine:
`.venv/bin/python -m bench.report .bench/results-postgres-medium.json .bench/results-sqlite-medium.json`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROWS = [
    ("D1", "admin", "root"), ("D1", "admin", "level1"), ("D1", "admin", "level2"), ("D1", "admin", "level5"),
    ("D1", "leader", "level1"), ("D1", "mentor", "level5"), ("D1", "analyst", "level2"),
    ("D2", "admin", "root"), ("D2", "admin", "level5"), ("D2", "leader", "level1"), ("D2", "mentor", "level5"),
    ("D3 page 1", "admin", "root"), ("D3 last", "admin", "root"), ("D3 page 1", "analyst", "level2"),
    ("D3 last", "analyst", "level2"),
]


def find(report: dict[str, Any], scenario: str, viewer: str, target: str, workers: int = 1) -> dict[str, Any]:
    for row in report["results"]:
        name = row["scenario"]
        if scenario == "D3 last":
            matches = name.startswith("D3 page ") and name != "D3 page 1"
        else:
            matches = name == scenario
        if matches and (row["viewer"], row["target"], row["workers"]) == (viewer, target, workers):
            return row
    return {}


def cell(row: dict[str, Any]) -> str:
    if not row:
        return "-"
    if row.get("note", "").startswith(("skipped", "errors")):
        return row["note"][:40]
    share = row.get("db_share")
    return (f"{row.get('p50_ms')} / {row.get('p95_ms')} ms, {row.get('statements')} st, "
            f"{share * 100:.0f}% db, {row.get('bytes', 0) / 1000:.0f} kB")


def summary(reports: list[dict[str, Any]]) -> str:
    engines = [r["engine"] for r in reports]
    lines = ["| scenario | viewer | group | " + " | ".join(f"{e}: p50 / p95, SQL statements, DB share, bytes" for e in engines) + " |",
             "|---|---|---|" + "---|" * len(engines)]
    for scenario, viewer, target in ROWS:
        cells = [cell(find(r, scenario, viewer, target)) for r in reports]
        label = scenario if scenario != "D3 last" else "D3 last page"
        lines.append(f"| {label} | {viewer} | {target} | " + " | ".join(cells) + " |")
    for target in ("root", "level1", "level2", "level5"):
        cells = []
        for r in reports:
            floor = r.get("floors", {}).get(f"D1 {target}") or {}
            app = find(r, "D1", "admin", target).get("p50_ms")
            ratio = f" (app/floor {app / floor['p50_ms']:.1f}x)" if app and floor.get("p50_ms") else ""
            cells.append(f"{floor.get('p50_ms', '-')} ms{ratio}")
        lines.append(f"| SQL floor D1 (one statement) | - | {target} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| exports and load | " + " | ".join(engines) + " |")
    lines.append("|---|" + "---|" * len(engines))
    names = []
    for r in reports:
        for row in r["results"]:
            if row["scenario"].startswith(("E ", "L ")) and (row["scenario"], row["target"], row["workers"]) not in names:
                names.append((row["scenario"], row["target"], row["workers"]))
    for scenario, target, workers in names:
        cells = []
        for r in reports:
            row = next((x for x in r["results"] if (x["scenario"], x["target"], x["workers"]) == (scenario, target, workers)), {})
            if not row:
                cells.append("-")
            elif scenario.startswith("L "):
                cells.append(f"{row.get('req_per_s')} req/s, p50 {row.get('p50_ms')} / p95 {row.get('p95_ms')} / "
                             f"p99 {row.get('p99_ms')} ms, RSS {row.get('peak_rss_mb')} MB, errors {row.get('errors')}"
                             + (f", CPU per request {row['worker_cpu_ms']} ms" if row.get("worker_cpu_ms") else ""))
            elif row.get("note"):
                cells.append(row["note"][:60])
            else:
                rows = f"{row['rows']} rows, " if row.get("rows") else ""
                rate = f"{row.get('rows_per_s')} rows/s, " if row.get("rows_per_s") else ""
                cells.append(f"{rows}{rate}first byte {row.get('ttfb_ms')} ms, {row.get('seconds')} s, "
                             f"{row.get('bytes', 0) / 1e6:.1f} MB, RSS {row.get('peak_rss_mb')} MB")
        label = f"{scenario} ({target})" if not scenario.startswith("L ") else f"{scenario}, {workers} worker(s)"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    copies = [(r.get("floors", {}).get("E copy root") or {}) for r in reports]
    lines.append("| PostgreSQL COPY (root) | " + " | ".join(
        f"{c['rows']} rows, {c['rows_per_s']} rows/s, first byte {c['ttfb_ms']} ms" if c else "-" for c in copies) + " |")
    lines.append("")
    lines.append("| target | " + " | ".join(engines) + " |")
    lines.append("|---|" + "---|" * len(engines))
    targets = []
    for r in reports:
        for t in r["targets"]:
            if t["target"] not in targets:
                targets.append(t["target"])
    for name in targets:
        cells = []
        for r in reports:
            t = next((x for x in r["targets"] if x["target"] == name), None)
            cells.append(f"{t['status']}: {t['value']}" if t else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    head = reports[0]
    lines.append("")
    lines.append(f"git {head['git_sha'][:12]}, {head['machine']['cpu']}, {head['machine']['cores']} cores, "
                 f"{head['machine']['memory_gb']} GB; " + ", ".join(f"{k} {v}" for k, v in head["versions"].items()))
    return "\n".join(lines)


def main() -> None:
    print(summary([json.loads(Path(p).read_text()) for p in sys.argv[1:]]))


if __name__ == "__main__":
    main()
