"""Rostering (OneRoster): importOneRoster, approveRosterSync, rejectRosterSync and the list of runs."""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.file_uploads import Upload
from strawberry.types import Info

from app.runtime.ids import require_id, to_global_id
from app.services.importer import read_limited
from app.services.rostering import decide, run_import
from app.store.models import RosterSync as RosterSyncRow
from dataloaders.rostering import roster_sync, roster_sync_page
from permissions.classes import requires
from permissions.reach import Permission
from resolvers.common import Node, PageInfo, decode_cursor, encode_cursor, page_info, page_size
from resolvers.imports import ImportRowError, upload_chunks


@strawberry.enum(description="Where a run of the OneRoster import stands.")
class RosterSyncStatus(Enum):
    DRY_RUN = strawberry.enum_value("DRY_RUN", description="Validated only (dryRun), nothing applied.")
    APPLIED = strawberry.enum_value("APPLIED", description="Applied in one transaction.")
    HELD = strawberry.enum_value(
        "HELD", description="Would end too many memberships; waits for approveRosterSync or rejectRosterSync."
    )
    REJECTED = strawberry.enum_value(
        "REJECTED", description="A held run discarded by rejectRosterSync, or by a later run that was applied or held."
    )
    FAILED = strawberry.enum_value("FAILED", description="Invalid lines; nothing applied (see errors).")


@strawberry.type(description="One run of the OneRoster import: what it did, or would do (DRY_RUN, HELD).")
class RosterSync(Node):
    row: strawberry.Private[RosterSyncRow]

    @strawberry.field(description='Opaque global id (Relay).')
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("RosterSync", self.row.id))  # type: ignore[arg-type]

    @strawberry.field(description='Where the run stands.')
    def status(self) -> RosterSyncStatus:
        return RosterSyncStatus(self.row.status)

    @strawberry.field(description='When the run began.')
    def started_at(self) -> datetime:
        return self.row.started_at

    @strawberry.field(description='When the run ended (planned, applied, held or failed).')
    def finished_at(self) -> datetime | None:
        return self.row.finished_at

    @strawberry.field(
        description="Why the run was (or, for a dry run or an approved run, would be) held: what it would end or deny."
    )
    def held_reason(self) -> str | None:
        return self.row.held_reason

    @strawberry.field(description="graphql, http or cli.")
    def source(self) -> str:
        return self.row.source

    @strawberry.field(description='Synced groups created (orgs and classes).')
    def groups_created(self) -> int:
        return self.row.groups_created

    @strawberry.field(description='Synced groups renamed, re-nested, or given another class code or term.')
    def groups_updated(self) -> int:
        return self.row.groups_updated

    @strawberry.field(description='Synced accounts created.')
    def users_created(self) -> int:
        return self.row.users_created

    @strawberry.field(description='Synced accounts whose name, email, kind, home group or status changed.')
    def users_updated(self) -> int:
        return self.row.users_updated

    @strawberry.field(description="Synced accounts set DENIED (enabledUser false, tobedeleted, or gone from a bulk users.csv).")
    def users_denied(self) -> int:
        return self.row.users_denied

    @strawberry.field(description="New memberships, and ended ones restored.")
    def memberships_created(self) -> int:
        return self.row.memberships_created

    @strawberry.field(description="Memberships whose role changed.")
    def memberships_updated(self) -> int:
        return self.row.memberships_updated

    @strawberry.field(description="Memberships ended (archived, kept for reports), never deleted.")
    def memberships_ended(self) -> int:
        return self.row.memberships_ended

    @strawberry.field(description='Guardian links (licence PARENT_GUARDIAN) created from agentSourcedIds.')
    def guardian_links_created(self) -> int:
        return self.row.guardian_links_created

    @strawberry.field(description="Rows (orgs, classes, users, enrollments) that matched what exists already.")
    def unchanged(self) -> int:
        return self.row.unchanged

    @strawberry.field(description='Every invalid line (FAILED), with its file, line and column.')
    def errors(self) -> list[ImportRowError]:
        return [ImportRowError(**e) for e in json.loads(self.row.errors or "[]")]

    @strawberry.field(description="When a held run was approved or rejected (or a run applied past the hold).")
    def decided_at(self) -> datetime | None:
        return self.row.decided_at


@strawberry.type(description="A run in a list of runs.")
class RosterSyncEdge:
    cursor: str = strawberry.field(description="Pass as `after` for the runs after this one.")
    node: RosterSync = strawberry.field(description="The run.")


@strawberry.type(description="Runs of the OneRoster import, newest first.")
class RosterSyncConnection:
    edges: list[RosterSyncEdge] = strawberry.field(description="The page's runs.")
    page_info: PageInfo = strawberry.field(description="Whether more runs follow.")


async def visible_roster_sync(info: Info, sync_id: int) -> RosterSync | None:
    """For `node(id:)`: site admins only; null for everyone else, as for a missing id."""
    reach = await info.context.load_reach()
    if not reach.is_admin:
        return None
    row = await roster_sync(info.context.store, sync_id)
    return None if row is None else RosterSync(row=row)


@strawberry.type
class RosterQueries:
    @strawberry.field(extensions=[requires(Permission.SITE_ADMIN)], description="Runs of the OneRoster rostering import, newest first.")
    async def roster_syncs(
        self, info: Info,
        first: Annotated[int | None, strawberry.argument(description="How many runs (at most the page size limit).")] = 20,
        after: Annotated[str | None, strawberry.argument(description="The endCursor of the previous page.")] = None,
    ) -> RosterSyncConnection:
        limit = page_size(info, first)
        cursor = decode_cursor(after, [int])
        rows = list(await roster_sync_page(info.context.store, cursor[0] if cursor else None, limit + 1))
        edges = [RosterSyncEdge(cursor=encode_cursor(r.id), node=RosterSync(row=r)) for r in rows[:limit]]
        return RosterSyncConnection(edges=edges, page_info=page_info(len(rows) > limit, [e.cursor for e in edges]))


@strawberry.type
class RosterMutations:
    @strawberry.mutation(
        extensions=[requires(Permission.SITE_ADMIN)],
        description="""A OneRoster 1.1 or 1.2 CSV bundle (a zip of manifest.csv, orgs.csv, academicSessions.csv, classes.csv,
courses.csv, users.csv, enrollments.csv; bulk or delta): orgs and classes become synced groups, users synced
accounts homed in their school, enrollments memberships, guardians (agents) guardian links. Idempotent.
A run that would end more than the hold threshold (setting) of the synced memberships is HELD, nothing applied,
until approveRosterSync. Every line is validated first; any error: nothing applied.""",
    )
    async def import_one_roster(
        self, info: Info,
        file: Annotated[Upload, strawberry.argument(description="The bundle: a zip of the OneRoster CSV files.")],
        dry_run: Annotated[
            bool | None, strawberry.argument(description="true: validate and count only (DRY_RUN); nothing applied.")
        ] = False,
    ) -> RosterSync:
        ctx = info.context
        data = await read_limited(upload_chunks(file), ctx.settings.max_upload_bytes)
        result = await run_import(ctx.store.transaction, ctx.settings, ctx.viewer_id, data, bool(dry_run), "graphql")
        return RosterSync(row=result.sync)

    @strawberry.mutation(extensions=[requires(Permission.SITE_ADMIN)], description="Applies a HELD run.")
    async def approve_roster_sync(
        self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="The HELD run.")]
    ) -> RosterSync:
        ctx = info.context
        result = await decide(ctx.store.transaction, ctx.viewer_id, require_id(id, "RosterSync"), approve=True)
        return RosterSync(row=result.sync)

    @strawberry.mutation(extensions=[requires(Permission.SITE_ADMIN)], description="Discards a HELD run.")
    async def reject_roster_sync(
        self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="The HELD run.")]
    ) -> RosterSync:
        ctx = info.context
        result = await decide(ctx.store.transaction, ctx.viewer_id, require_id(id, "RosterSync"), approve=False)
        return RosterSync(row=result.sync)
