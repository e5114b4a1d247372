"""Rostering: bulk group assignment from CSV, and the count of unassigned active learners."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import strawberry
from strawberry.file_uploads import Upload
from strawberry.types import Info

from app.runtime.errors import BadInput
from app.runtime.ids import require_id
from app.services.importer import ImportResult, import_group_assignments
from dataloaders.imports import unassigned_active_count
from permissions.classes import Subjects, authenticated, authenticated_requires
from permissions.reach import Permission, Reach
from resolvers.views import require_visible_group

UPLOAD_CHUNK = 64 * 1024


@strawberry.type
class ImportRowError:
    file: str | None = strawberry.field(default=None, description="The file of a bundle (OneRoster); null for a single CSV.")
    line: int = strawberry.field(description="1-based line number in the file, the header being line 1.")
    column: str | None
    message: str


@strawberry.type(
    description="Result of a bulk group-assignment import (CSV columns: student_id, groups; optional first_name, "
    "last_name, email, password, home_group)."
)
class ImportReport:
    dry_run: bool
    applied: bool = strawberry.field(
        description="True when every row was valid and (unless dryRun) all were applied in one transaction."
    )
    row_count: int
    memberships_created: int = strawberry.field(description="For a dry run: how many would be created.")
    unchanged: int = strawberry.field(
        description="Rows whose memberships already existed (or whose groups cell is empty), that create no "
        "account and set no password."
    )
    errors: list[ImportRowError]
    accounts_created: int = strawberry.field(
        default=0, description="Accounts created by rows whose student_id matched none (for a dry run: would be)."
    )
    passwords_set: int = strawberry.field(
        default=0,
        description="Existing accounts given a new password (their sessions and API tokens end); for a dry run: "
        "would be.",
    )

    @classmethod
    def of(cls, result: ImportResult) -> ImportReport:
        return cls(
            dry_run=result.dry_run,
            applied=result.applied,
            row_count=result.row_count,
            memberships_created=result.memberships_created,
            unchanged=result.unchanged,
            errors=[ImportRowError(line=e.line, column=e.column, message=e.message) for e in result.errors],
            accounts_created=result.accounts_created,
            passwords_set=result.passwords_set,
        )


async def upload_chunks(file: Any) -> AsyncIterator[bytes]:
    if not hasattr(file, "read"):
        raise BadInput("file must be a multipart upload", field="file")
    while chunk := await file.read(UPLOAD_CHUNK):
        yield chunk


async def scope_target(info: Info, kwargs: dict[str, Any]) -> Subjects:
    """MANAGE_ACCOUNT on the scope group (NOT_FOUND when the caller may not see it); without a scope, on
    the whole site: a site admin's, and a BAD_USER_INPUT for anyone else."""
    scope = kwargs.get("scope_group_id")
    if scope is None:
        reach: Reach = await info.context.load_reach()
        if not reach.is_admin:
            raise BadInput("Give scopeGroupId: a group you lead.", field="scopeGroupId")
        return Subjects(site=True)
    return Subjects(groups=[(await require_visible_group(info, scope, "scopeGroupId")).row.id])  # type: ignore[list-item]


@strawberry.type
class ImportQueries:
    @strawberry.field(
        extensions=[authenticated_requires(Permission.MANAGE_ACCOUNT, scope_target)],
        description="Learners with at least 1 minute of use and no group. Site admins: the whole site, or the "
        "accounts homed in scopeGroupId's subtree. A LEADER: scopeGroupId is required and must be a group they "
        "lead; the count covers the accounts homed in its subtree.",
    )
    async def unassigned_active_student_count(self, info: Info, scope_group_id: strawberry.ID | None = None) -> int:
        scope = require_id(scope_group_id, "Group", "scopeGroupId") if scope_group_id is not None else None
        return await unassigned_active_count(info.context.store, scope)


@strawberry.type
class ImportMutations:
    @strawberry.mutation(
        extensions=[authenticated()],
        description="""CSV with columns student_id (external id or email) and groups (slugs separated by ';').
Each row is checked as addMembers would check it for the caller (MANAGE_GROUP on the group,
the student reachable), so a site admin can place anyone and a leader only within their
trees. The dry run runs exactly the same validation. All rows valid or nothing applied.
Optional columns first_name, last_name, email, password, home_group (a slug): a row whose
student_id matches no account creates a learner (first_name and last_name needed; email, or
student_id being one), homed in home_group or else scopeGroupId (a group the caller leads); a
password cell sets the password of an account the caller administers (MANAGE_ACCOUNT), ending
its sessions and API tokens.
UTF-8 (with or without BOM), CRLF or LF, blank lines skipped, header case and spaces ignored,
extra columns ignored. Limits (bytes, rows) from settings: over them, BAD_USER_INPUT.""",
    )
    async def import_group_assignments(
        self,
        info: Info,
        file: Upload,
        dry_run: bool | None = False,
        scope_group_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(description="The home of new accounts whose home_group cell is empty."),
        ] = None,
    ) -> ImportReport:
        ctx = info.context
        scope = require_id(scope_group_id, "Group", "scopeGroupId") if scope_group_id is not None else None
        result = await import_group_assignments(
            ctx.store, ctx.settings, await ctx.load_reach(), ctx.viewer_id, upload_chunks(file), bool(dry_run),
            scope_group_id=scope,
        )
        return ImportReport.of(result)
