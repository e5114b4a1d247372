"""The `groupgraph` command line, run as admin tools run it."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

from app.schema import schema_sdl


def run(*args: str, env_url: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd or Path.cwd())}
    if env_url:
        env["GROUPGRAPH_DATABASE_URL"] = env_url
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
        check=False,
    )


def test_missing_database_directory_is_one_line_and_non_zero(tmp_path: Path) -> None:
    result = run("migrate", env_url=f"sqlite+aiosqlite:///{tmp_path}/missing/dir/x.db", cwd=Path.cwd())
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"groupgraph: database directory does not exist: {tmp_path}/missing/dir"]


def test_migrate_then_create_user_prints_its_global_id(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    assert run("migrate", env_url=url, cwd=Path.cwd()).returncode == 0
    made = run(
        "create-user", "--email", "root@example.com", "--password", "long enough", "--first-name", "Root",
        "--last-name", "Admin", "--owner", env_url=url, cwd=Path.cwd(),
    )
    assert made.returncode == 0, made.stderr
    assert base64.b64decode(made.stdout.strip()).decode() == "User:1"
    again = run(
        "create-user", "--email", "ROOT@example.com", "--password", "long enough", "--first-name", "R",
        "--last-name", "A", env_url=url, cwd=Path.cwd(),
    )
    assert again.returncode == 1 and "already exists" in again.stderr


def test_export_schema_writes_the_printed_schema(tmp_path: Path) -> None:
    out = tmp_path / "schema.graphql"
    result = run("export-schema", "--output", str(out), cwd=Path.cwd())
    assert result.returncode == 0, result.stderr
    assert out.read_text() == schema_sdl()


def test_rollup_check_and_rebuild(tmp_path: Path) -> None:
    """`groupgraph rollup` exits 1 when the rolled-up summary differs from a recompute; --rebuild repairs it."""
    import sqlite3

    url = f"sqlite+aiosqlite:///{tmp_path}/rollup.db"
    assert run("migrate", env_url=url, cwd=Path.cwd()).returncode == 0
    checked = run("rollup", env_url=url, cwd=Path.cwd())
    assert checked.returncode == 0 and "equals a recompute" in checked.stdout, checked.stderr
    with sqlite3.connect(tmp_path / "rollup.db") as conn:
        conn.execute("INSERT INTO group_rollup (group_id, learners) VALUES (7, 3)")
    wrong = run("rollup", env_url=url, cwd=Path.cwd())
    assert wrong.returncode == 1 and "group_rollup" in wrong.stderr
    assert run("rollup", "--rebuild", env_url=url, cwd=Path.cwd()).returncode == 0
    assert run("rollup", env_url=url, cwd=Path.cwd()).returncode == 0
