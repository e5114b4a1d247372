"""Bulk group assignment from CSV: the one reading, validation and apply path behind the GraphQL mutation,
the HTTP route and the dry run.

Columns `student_id` (external id, or email) and `groups` (slugs separated by ';'); other columns are
ignored. Every row is checked before anything is written, with set-based queries (a fixed handful per
10,000 rows, never one per row), and each (student, group) pair is judged by `placement_basis`, the rule
addMembers uses. Any error: nothing is written and every error is reported with its line and column.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Integer, any_, bindparam, func, insert, literal, select, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.runtime.errors import BadInput, Conflict
from app.services.audit import audit
from app.settings import Settings
from app.store.models import AccessRequest, Group, Membership, User, utcnow
from dataloaders.store import Store
from permissions.reach import PLACED_ON_CONSENT, Permission, Reach, placement_basis

STUDENT = "student_id"
GROUPS = "groups"
CHUNK = 5_000
SYNCED_RULE = "non-synced students may only join non-synced groups"
SYNCED_STUDENT_RULE = "synced students may only join synced groups"


class OverLimit(BadInput):
    """The file passes the byte or row limit (HTTP 413 on the import route)."""

    http_status = 413


@dataclass(frozen=True)
class RowError:
    line: int
    column: str | None
    message: str


@dataclass(frozen=True)
class ImportRow:
    line: int
    student: str
    slugs: tuple[str, ...]


@dataclass
class ParsedFile:
    rows: list[ImportRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


@dataclass
class ImportResult:
    dry_run: bool
    applied: bool
    row_count: int
    memberships_created: int
    unchanged: int
    errors: list[RowError]

    def as_json(self) -> dict[str, Any]:
        """The same shape as the GraphQL ImportReport (for the HTTP route)."""
        return {
            "dryRun": self.dry_run,
            "applied": self.applied,
            "rowCount": self.row_count,
            "membershipsCreated": self.memberships_created,
            "unchanged": self.unchanged,
            "errors": [{"line": e.line, "column": e.column, "message": e.message} for e in self.errors],
        }


# --- reading -----------------------------------------------------------------------------------------


async def read_limited(chunks: AsyncIterator[bytes], max_bytes: int) -> bytes:
    """The whole body, or BAD_USER_INPUT as soon as it passes `max_bytes` (the rest is never read)."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer.extend(chunk)
        if len(buffer) > max_bytes:
            raise OverLimit(f"The file is over the limit of {max_bytes} bytes.", field="file")
    return bytes(buffer)


def header_name(cell: str) -> str:
    """'Student ID ' -> 'student_id': Excel habits (case, spaces, hyphens) forgiven."""
    return re.sub(r"[\s\-]+", "_", cell.strip().lower())


def parse_csv(data: bytes, max_rows: int) -> ParsedFile:
    """Rows with their 1-based line numbers (the header is line 1). UTF-8 with or without BOM, CRLF or LF,
    blank lines skipped. More than `max_rows` data rows: BAD_USER_INPUT before parsing the rest."""
    parsed = ParsedFile()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        parsed.errors.append(RowError(line, None, "the file is not UTF-8 text (save it as 'CSV UTF-8')"))
        return parsed
    if "\x00" in text:  # no text holds NUL (and PostgreSQL refuses it in any string)
        line = text[: text.index("\x00")].count("\n") + 1
        parsed.errors.append(RowError(line, None, "the file is not text: it holds a NUL byte"))
        return parsed
    reader = csv.reader(io.StringIO(text, newline=""))
    student_at = groups_at = -1
    header_seen = False
    line = 1
    try:
        for record in reader:
            start, line = line, reader.line_num + 1  # this record began on `start`; the next one on `line`
            if not any(cell.strip() for cell in record):
                continue
            if not header_seen:
                header_seen = True
                names = [header_name(c) for c in record]
                for wanted in (STUDENT, GROUPS):
                    if wanted not in names:
                        parsed.errors.append(RowError(start, wanted, f"the header has no '{wanted}' column"))
                if parsed.errors:
                    return parsed
                student_at, groups_at = names.index(STUDENT), names.index(GROUPS)
                continue
            if len(parsed.rows) >= max_rows:
                raise OverLimit(f"The file has more than {max_rows} rows (the limit).", field="file")
            student = record[student_at].strip() if student_at < len(record) else ""
            if student[:1] == "'" and student[1:2] in ("=", "+", "-", "@"):
                student = student[1:]  # our exports' formula guard, read back
            cell = record[groups_at] if groups_at < len(record) else ""
            slugs = tuple(dict.fromkeys(s.strip().lower() for s in cell.split(";") if s.strip()))
            if not student:
                parsed.errors.append(RowError(start, STUDENT, "student_id is empty"))
            parsed.rows.append(ImportRow(start, student, slugs))
    except csv.Error as exc:
        parsed.errors.append(RowError(line, None, f"the file is not valid CSV: {exc}"))
    if not header_seen:
        parsed.errors.append(RowError(1, None, "the file is empty; the header needs student_id and groups"))
    return parsed


# --- validating --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Student:
    id: int
    synced: bool
    site_roles: tuple[str, ...]


class _Subject:
    __slots__ = ("database_id", "group_ids")

    def __init__(self, database_id: int, group_ids: frozenset[int] | None) -> None:
        self.database_id = database_id
        self.group_ids = group_ids


@dataclass
class Plan:
    rows: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    # (user id, group id) -> access request id recording a consent, or None
    new: dict[tuple[int, int], int | None] = field(default_factory=dict)
    # pairs of `new` whose membership exists but has ended (archived): applied by reviving it
    revived: set[tuple[int, int]] = field(default_factory=set)
    created_per_group: dict[str, int] = field(default_factory=dict)


def _chunks(values: Sequence[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def _one_of(session: AsyncSession, column: Any, values: list[Any]) -> ColumnElement[bool]:
    """`column IN (...)`; on PostgreSQL `column = ANY(:array)`, one bound array instead of thousands of
    parameters (measured: the expanded IN list cost more client time than the query itself)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


async def _students(session: AsyncSession, keys: set[str]) -> tuple[dict[str, int], dict[str, int], dict[int, Student]]:
    """Users by external id and by normalized email (two IN-list queries per chunk)."""
    by_external: dict[str, int] = {}
    by_email: dict[str, int] = {}
    students: dict[int, Student] = {}
    user = User.__table__.c  # Core columns: no ORM overhead on 50,000-row results
    columns = (user.id, user.external_id, user.email_normalized, user.synced, user.site_roles)
    for chunk in _chunks(sorted(keys)):
        for uid, external, _, synced, roles in await session.execute(select(*columns).where(_one_of(session, user.external_id, chunk))):
            by_external[external] = uid
            students[uid] = Student(uid, synced, tuple(r for r in roles.split(",") if r))
    for chunk in _chunks(sorted({k.lower() for k in keys if "@" in k})):
        for uid, _, email, synced, roles in await session.execute(select(*columns).where(_one_of(session, user.email_normalized, chunk))):
            by_email[email] = uid
            students[uid] = Student(uid, synced, tuple(r for r in roles.split(",") if r))
    return by_external, by_email, students


async def _memberships(
    session: AsyncSession, user_ids: list[int]
) -> tuple[dict[int, set[int]], set[tuple[int, int]], set[tuple[int, int]]]:
    """Each user's own (not consent-based, not ended) group ids, for reach decisions, every current pair, and
    the pairs whose membership has ended (importing them again revives it)."""
    own: dict[int, set[int]] = {}
    pairs: set[tuple[int, int]] = set()
    ended_pairs: set[tuple[int, int]] = set()
    member = Membership.__table__.c
    for chunk in _chunks(user_ids):
        rows = await session.execute(
            select(member.user_id, member.group_id, member.access_request_id, member.ended_at).where(
                _one_of(session, member.user_id, chunk)
            )
        )
        for uid, gid, consent, ended in rows:
            if ended is not None:  # an ended membership gives nobody reach
                ended_pairs.add((uid, gid))
                continue
            pairs.add((uid, gid))
            if consent is None:
                own.setdefault(uid, set()).add(gid)
    return own, pairs, ended_pairs


async def _consents(session: AsyncSession, viewer_id: int, user_ids: list[int]) -> dict[int, int]:
    """The GRANTED access request (newest) of each user who granted the viewer access."""
    found: dict[int, int] = {}
    for chunk in _chunks(user_ids):
        rows = await session.execute(
            select(AccessRequest.subject_user_id, AccessRequest.id)
            .where(
                AccessRequest.requester_id == viewer_id,
                AccessRequest.status == "GRANTED",
                AccessRequest.subject_user_id.in_(chunk),
            )
            .order_by(AccessRequest.id)
        )
        found.update({uid: rid for uid, rid in rows})
    return found


async def plan_import(session: AsyncSession, reach: Reach, rows: Sequence[ImportRow]) -> Plan:
    """Validate every row; on no errors, `plan.new` holds exactly the memberships to create."""
    plan = Plan(rows=len(rows))
    keys = {r.student for r in rows if r.student}
    by_external, by_email, students = await _students(session, keys)
    slugs = sorted({s for r in rows for s in r.slugs})
    groups: dict[str, tuple[int, bool]] = {}
    for chunk in _chunks(slugs):
        group = Group.__table__.c
        for gid, slug, synced in await session.execute(select(group.id, group.slug, group.synced).where(_one_of(session, group.slug, chunk))):
            groups[slug] = (gid, synced)
    user_ids = sorted(students)
    own, existing, ended = await _memberships(session, user_ids)
    granted = [u for u in user_ids if u in reach.granted]
    consents = await _consents(session, reach.viewer_id, granted) if granted else {}  # type: ignore[arg-type]
    subjects = {u: _Subject(u, frozenset(own.get(u, ()))) for u in user_ids}

    for row in rows:
        if not row.student:
            continue  # reported while parsing
        external, email = by_external.get(row.student), by_email.get(row.student.lower())
        if external is not None and email is not None and external != email:
            plan.errors.append(
                RowError(row.line, STUDENT, f"'{row.student}' is one user's external id and another user's email")
            )
            continue
        uid = external if external is not None else email
        subject = subjects.get(uid) if uid is not None else None
        student = None
        if subject is None or not reach.may(Permission.VIEW_PROFILE, subject):
            plan.errors.append(RowError(row.line, STUDENT, f"unknown student '{row.student}'"))
        else:
            student = students[uid]  # type: ignore[index]
        row_new = False
        for slug in row.slugs:
            group = groups.get(slug)
            if group is None or not reach.sees_group(group[0]):
                plan.errors.append(RowError(row.line, GROUPS, f"unknown group '{slug}'"))
                continue
            gid, group_synced = group
            if not reach.may_on_group(Permission.MANAGE_GROUP, gid):
                plan.errors.append(RowError(row.line, GROUPS, f"you may not manage group '{slug}'"))
                continue
            if student is None:
                continue
            pair = (student.id, gid)
            if pair in existing or pair in plan.new:
                continue
            if group_synced != student.synced:  # both ways, as addMembers checks it
                rule = f"{SYNCED_RULE} ('{slug}' is synced)" if group_synced else f"{SYNCED_STUDENT_RULE} ('{slug}' is not)"
                plan.errors.append(RowError(row.line, GROUPS, rule))
                continue
            basis = placement_basis(reach, gid, subject, "MEMBER", student.site_roles)  # type: ignore[arg-type]
            if basis is None:
                plan.errors.append(
                    RowError(row.line, STUDENT, f"you may not place student '{row.student}' in group '{slug}'")
                )
                continue
            plan.new[pair] = consents.get(student.id) if basis == PLACED_ON_CONSENT else None
            if pair in ended:
                plan.revived.add(pair)
            plan.created_per_group[slug] = plan.created_per_group.get(slug, 0) + 1
            row_new = True
        if not row_new:
            plan.unchanged += 1
    return plan


async def apply_plan(session: AsyncSession, plan: Plan) -> None:
    """Insert the planned memberships. SQLite: executemany of a cached statement. PostgreSQL: one
    INSERT ... SELECT unnest(arrays) per chunk (asyncpg's executemany costs a round trip per row)."""
    now = utcnow()
    table = Membership.__table__
    by_consent: dict[int | None, list[tuple[int, int]]] = {}
    for pair in sorted(plan.revived):  # ended memberships joined again: one UPDATE per chunk and consent
        by_consent.setdefault(plan.new[pair], []).append(pair)
    for consent, revived in by_consent.items():
        for chunk in _chunks(revived):
            await session.execute(
                update(table)
                .where(tuple_(table.c.user_id, table.c.group_id).in_(chunk), table.c.ended_at.is_not(None))
                .values(ended_at=None, role="MEMBER", access_request_id=consent)
            )
    pairs = [(pair, consent) for pair, consent in plan.new.items() if pair not in plan.revived]
    postgres = session.get_bind().dialect.name == "postgresql"
    for chunk in _chunks(pairs, CHUNK):
        if postgres:
            rows = select(
                func.unnest(bindparam(None, [u for (u, _), _ in chunk], type_=ARRAY(Integer))),
                func.unnest(bindparam(None, [g for (_, g), _ in chunk], type_=ARRAY(Integer))),
                literal("MEMBER"),
                func.unnest(bindparam(None, [c for _, c in chunk], type_=ARRAY(Integer))),
                literal(now, table.c.created_at.type),
            )
            statement: Any = insert(table).from_select(
                ["user_id", "group_id", "role", "access_request_id", "created_at"], rows
            )
            parameters = None
        else:
            statement = insert(table)
            parameters = [
                {"user_id": u, "group_id": g, "role": "MEMBER", "access_request_id": c, "created_at": now}
                for (u, g), c in chunk
            ]
        try:
            await session.execute(statement, parameters)
        except IntegrityError:
            raise Conflict("Memberships changed while the file was imported; run it again.", field="file") from None


# --- the one entry point ---------------------------------------------------------------------------------


async def import_group_assignments(
    store: Store,
    settings: Settings,
    reach: Reach,
    viewer_id: int | None,
    chunks: AsyncIterator[bytes],
    dry_run: bool,
    source: str = "graphql",
) -> ImportResult:
    """Read, validate, and (unless dry_run or any error) apply in one transaction, as the viewer whose reach
    this is."""
    data = await read_limited(chunks, settings.max_upload_bytes)
    parsed = parse_csv(data, settings.max_import_rows)
    if parsed.errors and not parsed.rows:
        return ImportResult(dry_run, False, 0, 0, 0, parsed.errors)
    async with store.transaction() as session:
        plan = await plan_import(session, reach, parsed.rows)
        errors = sorted([*parsed.errors, *plan.errors], key=lambda e: e.line)
        if errors:
            return ImportResult(dry_run, False, plan.rows, 0, 0, errors)
        if dry_run:  # `applied` says every row is valid (the contract's wording), nothing is written
            return ImportResult(True, True, plan.rows, len(plan.new), plan.unchanged, [])
        await apply_plan(session, plan)
        audit(
            session, viewer_id, "import.group_assignments", "import", None, source=source, rows=plan.rows,
            created=len(plan.new), unchanged=plan.unchanged, groups=plan.created_per_group,
        )
    return ImportResult(False, True, plan.rows, len(plan.new), plan.unchanged, [])
