"""Rostering: bulk group assignment from CSV, and the count of unassigned active learners."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import strawberry
from strawberry.file_uploads import Upload
from strawberry.types import Info

from app.runtime.errors import BadInput
from app.services.importer import ImportResult, import_group_assignments
from dataloaders.imports import unassigned_active_count
from permissions.classes import authenticated, requires
from permissions.reach import Permission

UPLOAD_CHUNK = 64 * 1024


@strawberry.type
class ImportRowError:
    file: str | None = strawberry.field(default=None, description="The file of a bundle (OneRoster); null for a single CSV.")
    line: int = strawberry.field(description="1-based line number in the file, the header being line 1.")
    column: str | None
    message: str


@strawberry.type(description="Result of a bulk group-assignment import (CSV columns: student_id, groups).")
class ImportReport:
    dry_run: bool
    applied: bool = strawberry.field(
        description="True when every row was valid and (unless dryRun) all were applied in one transaction."
    )
    row_count: int
    memberships_created: int = strawberry.field(description="For a dry run: how many would be created.")
    unchanged: int = strawberry.field(
        description="Rows whose memberships already existed (or whose groups cell is empty)."
    )
    errors: list[ImportRowError]

    @classmethod
    def of(cls, result: ImportResult) -> ImportReport:
        return cls(
            dry_run=result.dry_run,
            applied=result.applied,
            row_count=result.row_count,
            memberships_created=result.memberships_created,
            unchanged=result.unchanged,
            errors=[ImportRowError(line=e.line, column=e.column, message=e.message) for e in result.errors],
        )


async def upload_chunks(file: Any) -> AsyncIterator[bytes]:
    if not hasattr(file, "read"):
        raise BadInput("file must be a multipart upload", field="file")
    while chunk := await file.read(UPLOAD_CHUNK):
        yield chunk


@strawberry.type
class ImportQueries:
    @strawberry.field(
        extensions=[requires(Permission.SITE_ADMIN)], description="Learners with at least 1 minute of use and no group."
    )
    async def unassigned_active_student_count(self, info: Info) -> int:
        return await unassigned_active_count(info.context.store)


@strawberry.type
class ImportMutations:
    @strawberry.mutation(
        extensions=[authenticated()],
        description="""CSV with columns student_id (external id or email) and groups (slugs separated by ';').
Each row is checked as addMembers would check it for the caller (MANAGE_GROUP on the group,
the student reachable), so a site admin can place anyone and a leader only within their
trees. The dry run runs exactly the same validation. All rows valid or nothing applied.
UTF-8 (with or without BOM), CRLF or LF, blank lines skipped, header case and spaces ignored,
extra columns ignored. Limits (bytes, rows) from settings: over them, BAD_USER_INPUT.""",
    )
    async def import_group_assignments(self, info: Info, file: Upload, dry_run: bool | None = False) -> ImportReport:
        ctx = info.context
        result = await import_group_assignments(
            ctx.store, ctx.settings, await ctx.load_reach(), ctx.viewer_id, upload_chunks(file), bool(dry_run)
        )
        return ImportReport.of(result)
