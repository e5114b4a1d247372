"""The `groupgraph` command: serve, migrate, seed, create-user, export-schema, persisted-queries, deliver-email,
roster-import, run-exports."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from app.settings import Settings, get_settings
from app.store.db import Database, DatabaseConfigError

cli = typer.Typer(add_completion=False, help="groupgraph: a GraphQL backend for tracking learners through groups.")


def _settings(database_url: str | None = None) -> Settings:
    settings = get_settings()
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    return settings


def _database(settings: Settings) -> Database:
    try:
        return Database(settings)
    except DatabaseConfigError as exc:
        typer.echo(f"groupgraph: {exc}", err=True)
        raise typer.Exit(2) from None


def _fail(message: str) -> None:
    typer.echo(f"groupgraph: {message}", err=True)
    raise typer.Exit(1)


async def _migrate(database: Database) -> None:
    from app.store.migrate import upgrade

    try:
        await upgrade(database.engine)
    finally:
        await database.dispose()


@cli.command()
def migrate(database_url: Annotated[str | None, typer.Option("--database-url")] = None) -> None:
    """Bring the database schema up to date."""
    database = _database(_settings(database_url))
    try:
        asyncio.run(_migrate(database))
    except Exception as exc:  # the one-line message is the point here
        _fail(f"migration failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    typer.echo("migrated")


@cli.command("rollup")
def rollup_command(
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Recompute it from scratch and keep the result.")] = False,
    database_url: Annotated[str | None, typer.Option("--database-url")] = None,
) -> None:
    """Check the rolled-up progress summary against a recompute from the rows (exit 1 when they differ), or
    with --rebuild recompute it (after writing rows with the triggers paused or dropped)."""
    from app.store import rollup

    database = _database(_settings(database_url))

    async def run() -> dict[str, int]:
        try:
            async with database.engine.connect() as conn:
                trans = await conn.begin()
                differences = await rollup.rebuild_and_compare(conn)
                missing = set(rollup.TRIGGER_NAMES) - await rollup.installed(conn)
                if missing:
                    differences["missing triggers"] = len(missing)
                await (trans.commit() if rebuild else trans.rollback())
                return differences
        finally:
            await database.dispose()

    differences = asyncio.run(run())
    wrong = {k: v for k, v in differences.items() if v}
    if rebuild:
        typer.echo(f"rebuilt; rows that differed from the recompute: {differences}")
    elif wrong:
        _fail(f"the rollup differs from a recompute: {wrong}; run `groupgraph rollup --rebuild`")
    else:
        typer.echo("the rollup equals a recompute")


@cli.command()
def seed(
    preset: Annotated[str, typer.Option("--preset", help="demo (a few rows), or small, medium, large")] = "demo",
    database_url: Annotated[str | None, typer.Option("--database-url")] = None,
    if_empty: Annotated[bool, typer.Option("--if-empty", help="Only seed a database with no users.")] = False,
    viewers_file: Annotated[
        Path | None, typer.Option("--viewers-file", help="Where the bench viewers' API tokens go (JSON).")
    ] = None,
) -> None:
    """Fill the database with the demo, or a deterministic benchmark preset (small, medium, large)."""
    from app.demo.presets import SHAPES, seed_preset
    from app.demo.seed import run_seed

    if preset != "demo" and preset not in SHAPES:
        _fail(f"unknown preset {preset!r}; choose one of demo, {', '.join(SHAPES)}")
    settings = _settings(database_url)
    database = _database(settings)
    if preset == "demo":
        asyncio.run(run_seed(database, preset, if_empty=if_empty))
        return
    asyncio.run(database.dispose())
    target = viewers_file or Path(".bench") / f"viewers-{preset}.json"
    try:
        result = asyncio.run(seed_preset(settings.database_url, preset, target, if_empty=if_empty))
    except RuntimeError as exc:
        _fail(str(exc))
    if result is None:
        typer.echo("database already has users; not seeding")
        return
    counts = ", ".join(f"{table} {count:,}" for table, count in result["counts"].items())
    typer.echo(f"seeded preset {preset} in {result['seconds']:.1f}s: {counts}")
    typer.echo(f"viewer tokens in {target}; sign in as {result['admin']['email']} / {result['admin']['password']}")


@cli.command("create-user")
def create_user(
    email: Annotated[str, typer.Option("--email")],
    password: Annotated[str, typer.Option("--password")],
    first_name: Annotated[str, typer.Option("--first-name")],
    last_name: Annotated[str, typer.Option("--last-name")],
    kind: Annotated[str, typer.Option("--kind")] = "STAFF",
    owner: Annotated[bool, typer.Option("--owner")] = False,
    admin: Annotated[bool, typer.Option("--admin")] = False,
    database_url: Annotated[str | None, typer.Option("--database-url")] = None,
) -> None:
    """Create a user and print its global id."""
    from app.runtime.errors import AppError
    from app.runtime.ids import to_global_id
    from resolvers.users import create_user_row

    if kind not in ("STAFF", "LEARNER", "EXTERNAL"):
        _fail("--kind must be STAFF, LEARNER or EXTERNAL")
    roles = ["OWNER"] if owner else []
    if admin:
        roles.append("ADMIN")
    database = _database(_settings(database_url))

    async def run() -> int:
        try:
            async with database.transaction() as session:
                row = await create_user_row(
                    session, email=email, first_name=first_name, last_name=last_name, kind=kind,
                    password=password, roles=roles,
                )
                return row.id  # type: ignore[return-value]
        finally:
            await database.dispose()

    try:
        user_id = asyncio.run(run())
    except AppError as exc:
        _fail(exc.message)
    typer.echo(to_global_id("User", user_id))


@cli.command("export-schema")
def export_schema(output: Annotated[Path, typer.Option("--output")] = Path("schema.graphql")) -> None:
    """Print the schema from the code into schema.graphql."""
    from app.schema import schema_sdl

    output.write_text(schema_sdl())
    typer.echo(f"wrote {output}")


@cli.command("persisted-queries")
def persisted_queries(
    output: Annotated[Path, typer.Option("--output", help="Where to write the manifest (JSON: sha256 -> document).")],
    database_url: Annotated[str | None, typer.Option("--database-url")] = None,
) -> None:
    """Write every automatic persisted query stored so far as a trusted documents manifest (for
    GROUPGRAPH_TRUSTED_DOCUMENTS): record what the clients send in staging, then run only that in production."""
    import json

    from sqlalchemy import select

    from app.store.models import PersistedQuery

    database = _database(_settings(database_url))

    async def run() -> dict[str, str]:
        try:
            async with database.session() as session:
                rows = await session.execute(select(PersistedQuery.sha256, PersistedQuery.document).order_by(PersistedQuery.sha256))
                return {digest: document for digest, document in rows}
        finally:
            await database.dispose()

    manifest = asyncio.run(run())
    output.write_text(json.dumps(manifest, indent=2) + "\n")
    typer.echo(f"wrote {len(manifest)} documents to {output}")


@cli.command("deliver-email")
def deliver_email(
    loop: Annotated[bool, typer.Option("--loop", help="Keep delivering (poll interval from settings).")] = False,
    database_url: Annotated[str | None, typer.Option("--database-url")] = None,
) -> None:
    """Send the queued outbox emails over SMTP (GROUPGRAPH_SMTP_HOST and friends), with retries."""
    from app.services.mailer import deliver_all_due, run_worker

    settings = _settings(database_url)
    if not settings.smtp_host:
        _fail("SMTP is not configured: set GROUPGRAPH_SMTP_HOST (and GROUPGRAPH_SMTP_PORT, ...)")
    database = _database(settings)

    async def run() -> None:
        try:
            if loop:
                await run_worker(database, settings)
            report = await deliver_all_due(database, settings)
            typer.echo(f"sent {report.sent}, failed {report.failed} (given up: {report.gave_up})")
        finally:
            await database.dispose()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


@cli.command("roster-import")
def roster_import(
    bundle: Annotated[Path, typer.Argument(help="The OneRoster CSV bundle (a zip).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and count; apply nothing.")] = False,
    approve: Annotated[
        bool, typer.Option("--approve", help="Apply even a run that the hold would stop (a scripted, trusted run).")
    ] = False,
    database_url: Annotated[str | None, typer.Option("--database-url")] = None,
) -> None:
    """Import a OneRoster 1.1 / 1.2 CSV bundle (for a nightly cron). Exit 0: applied or dry run; 1: failed
    (errors listed); 3: held (approve it with approveRosterSync, or re-run with --approve)."""
    from app.services.rostering import run_import

    if not bundle.is_file():
        _fail(f"no such file: {bundle}")
    settings = _settings(database_url)
    database = _database(settings)

    async def run() -> object:
        try:
            return await run_import(database.transaction, settings, None, bundle.read_bytes(), dry_run, "cli", approve)
        finally:
            await database.dispose()

    from app.runtime.errors import AppError

    try:
        result = asyncio.run(run())
    except AppError as exc:
        _fail(exc.message)
    report = result.as_json()  # type: ignore[attr-defined]
    counts = ", ".join(
        f"{name} {report[name]}"
        for name in (
            "groupsCreated", "groupsUpdated", "usersCreated", "usersUpdated", "usersDenied", "membershipsCreated",
            "membershipsUpdated", "membershipsEnded", "guardianLinksCreated", "unchanged",
        )
    )
    typer.echo(f"roster sync {report['id']}: {report['status']}: {counts}")  # the id approveRosterSync takes
    if report["heldReason"]:
        typer.echo(f"hold: {report['heldReason']}")
    for error in report["errors"]:
        column = f" column {error['column']}" if error["column"] else ""
        typer.echo(f"{error['file'] or 'bundle'} line {error['line']}{column}: {error['message']}", err=True)
    if report["status"] == "FAILED":
        raise typer.Exit(1)
    if report["status"] == "HELD":
        raise typer.Exit(3)


@cli.command("run-exports")
def run_exports(
    loop: Annotated[bool, typer.Option("--loop", help="Keep running jobs and schedules (a worker of its own).")] = False,
    database_url: Annotated[str | None, typer.Option("--database-url")] = None,
) -> None:
    """Run the export jobs that are due (and start the schedules that are due) now, or keep doing so with
    --loop: for a worker host when the web servers run with GROUPGRAPH_EXPORT_WORKER=false."""
    from app.services.export_jobs import file_store, run_worker, work_once

    settings = _settings(database_url)
    database = _database(settings)

    async def run() -> None:
        try:
            if loop:
                await run_worker(database, settings)
            ran = 0
            while await work_once(database, settings, file_store(settings)):
                ran += 1
            typer.echo(f"ran {ran} export jobs")
        finally:
            await database.dispose()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


@cli.command()
def serve(
    host: Annotated[str, typer.Option("--host", envvar="GROUPGRAPH_HOST", help="0.0.0.0 in a container")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", envvar="GROUPGRAPH_PORT")] = 8000,
    workers: Annotated[int, typer.Option("--workers", envvar="GROUPGRAPH_WORKERS", min=1)] = 1,
    proxy_headers: Annotated[
        bool,
        typer.Option(
            "--proxy-headers/--no-proxy-headers",
            help="Take the client address and scheme from X-Forwarded-For/-Proto sent by a trusted proxy.",
        ),
    ] = True,
    forwarded_allow_ips: Annotated[
        str,
        typer.Option(
            "--forwarded-allow-ips", envvar="FORWARDED_ALLOW_IPS",
            help="Comma-separated addresses or networks of the proxies whose X-Forwarded-* headers are trusted ('*': any).",
        ),
    ] = "127.0.0.1",
) -> None:
    """Serve GraphQL (GraphiQL at /graphql when enabled)."""
    from app.http.serving import run

    settings = _settings()
    _database(settings)  # fail early, in one line, on a bad database path
    run(
        "app.asgi:app", host=host, port=port, workers=workers, log_level=settings.log_level,
        proxy_headers=proxy_headers, forwarded_allow_ips=forwarded_allow_ips,
        grace_seconds=settings.shutdown_grace_seconds, ws_max_size=max(settings.live_max_message_bytes, 1024),
    )


def main() -> None:
    try:
        cli()
    except DatabaseConfigError as exc:
        typer.echo(f"groupgraph: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
