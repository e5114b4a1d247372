"""Bulk group assignment from CSV: the one reading, validation and apply path behind the GraphQL mutation,
the HTTP route and the dry run.

Columns `student_id` (external id, or email) and `groups` (slugs separated by ';'); optional `first_name`,
`last_name`, `email`, `password` and `home_group` (a slug); other columns are ignored. A row whose
student_id matches no account creates one (a learner) when it has first_name and last_name, homed in
`home_group` or else the import's scope; a password cell sets the account's password (a new account's, or
a new one for an account the caller administers: its sessions and API tokens end). Every row is checked
before anything is written, with set-based queries (a fixed handful per 10,000 rows, never one per row),
and each (student, group) pair is judged by `placement_basis`, the rule addMembers uses. Any error: nothing
is written and every error is reported with its line and column.
"""

from __future__ import annotations

import asyncio
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

from app.runtime.errors import AppError, BadInput, Conflict, Forbidden, NotFound
from app.runtime.metrics import IMPORT_ROWS, IMPORTS
from app.services.audit import audit
from app.services.auth import end_credentials_of, hash_password
from app.settings import Settings
from app.store.models import AccessRequest, Group, Membership, User, fold, utcnow
from dataloaders.store import Store
from dataloaders.users import OwnGroups, own_groups_of
from permissions.reach import (
    ACCOUNT_ROLES,
    PLACED_ON_CONSENT,
    Permission,
    Reach,
    UserSubject,
    placement_basis,
)

STUDENT = "student_id"
GROUPS = "groups"
FIRST_NAME, LAST_NAME, EMAIL, PASSWORD, HOME_GROUP = "first_name", "last_name", "email", "password", "home_group"
OPTIONAL = (FIRST_NAME, LAST_NAME, EMAIL, PASSWORD, HOME_GROUP)
MIN_PASSWORD = 8
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
    # the optional columns (None: no column, or an empty cell)
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    password: str | None = None
    home_group: str | None = None

    @property
    def creates(self) -> bool:
        """The row carries what a new account needs besides its email: names."""
        return bool(self.first_name or self.last_name)


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
    accounts_created: int = 0
    passwords_set: int = 0

    def as_json(self) -> dict[str, Any]:
        """The same shape as the GraphQL ImportReport (for the HTTP route)."""
        return {
            "dryRun": self.dry_run,
            "applied": self.applied,
            "rowCount": self.row_count,
            "membershipsCreated": self.memberships_created,
            "unchanged": self.unchanged,
            "accountsCreated": self.accounts_created,
            "passwordsSet": self.passwords_set,
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
    optional_at: dict[str, int] = {}
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
                optional_at = {name: names.index(name) for name in OPTIONAL if name in names}
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
            extra = {
                name: (record[at].strip() if name != PASSWORD else record[at]) or None
                for name, at in optional_at.items()
                if at < len(record)
            }
            if extra.get(HOME_GROUP):
                extra[HOME_GROUP] = extra[HOME_GROUP].lower()  # type: ignore[union-attr]
            parsed.rows.append(ImportRow(start, student, slugs, **extra))
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
    home_group_id: int | None = None


@dataclass
class NewAccount:
    """An account the file creates; until it is inserted, its key stands in for its id."""

    key: int  # negative: never a real id
    line: int
    email: str
    external_id: str | None
    first_name: str
    last_name: str
    home_group_id: int | None
    password: str | None


@dataclass
class Plan:
    rows: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    # (user id, group id) -> access request id recording a consent, or None; a new account's key as user id
    new: dict[tuple[int, int], int | None] = field(default_factory=dict)
    # pairs of `new` whose membership exists but has ended (archived): applied by reviving it
    revived: set[tuple[int, int]] = field(default_factory=set)
    created_per_group: dict[str, int] = field(default_factory=dict)
    accounts: list[NewAccount] = field(default_factory=list)
    passwords: dict[int, tuple[int, str]] = field(default_factory=dict)  # existing user id -> (line, password)

    def password_cells(self) -> dict[int, str]:
        """line -> password, for every password the plan sets."""
        cells = {a.line: a.password for a in self.accounts if a.password}
        cells.update(dict(self.passwords.values()))
        return cells


def _chunks(values: Sequence[Any], size: int = CHUNK) -> Iterable[list[Any]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def _one_of(session: AsyncSession, column: Any, values: list[Any]) -> ColumnElement[bool]:
    """`column IN (...)`; on PostgreSQL `column = ANY(:array)`, one bound array instead of thousands of
    parameters (measured: the expanded IN list cost more client time than the query itself)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


async def _students(
    session: AsyncSession, keys: set[str], emails: set[str] = frozenset()  # type: ignore[assignment]
) -> tuple[dict[str, int], dict[str, int], dict[int, Student]]:
    """Users by external id and by normalized email (two IN-list queries per chunk); `emails`: more
    addresses to look up (the email cells of new accounts)."""
    by_external: dict[str, int] = {}
    by_email: dict[str, int] = {}
    students: dict[int, Student] = {}
    user = User.__table__.c  # Core columns: no ORM overhead on 50,000-row results
    columns = (user.id, user.external_id, user.email_normalized, user.synced, user.site_roles, user.home_group_id)
    for chunk in _chunks(sorted(keys)):
        for uid, external, _, synced, roles, home in await session.execute(select(*columns).where(_one_of(session, user.external_id, chunk))):
            by_external[external] = uid
            students[uid] = Student(uid, synced, tuple(r for r in roles.split(",") if r), home)
    for chunk in _chunks(sorted({k.lower() for k in keys if "@" in k} | {e.lower() for e in emails})):
        for uid, _, email, synced, roles, home in await session.execute(select(*columns).where(_one_of(session, user.email_normalized, chunk))):
            by_email[email] = uid
            students[uid] = Student(uid, synced, tuple(r for r in roles.split(",") if r), home)
    return by_external, by_email, students


async def _memberships(
    session: AsyncSession, user_ids: list[int]
) -> tuple[dict[int, OwnGroups], set[tuple[int, int]], set[tuple[int, int]]]:
    """Each user's own (not consent-based, not ended) groups, for reach decisions, every current pair, and
    the pairs whose membership has ended (importing them again revives it)."""
    own: list[tuple[int, int, str]] = []
    pairs: set[tuple[int, int]] = set()
    ended_pairs: set[tuple[int, int]] = set()
    member = Membership.__table__.c
    for chunk in _chunks(user_ids):
        rows = await session.execute(
            select(member.user_id, member.group_id, member.access_request_id, member.ended_at, member.role).where(
                _one_of(session, member.user_id, chunk)
            )
        )
        for uid, gid, consent, ended, role in rows:
            if ended is not None:  # an ended membership gives nobody reach
                ended_pairs.add((uid, gid))
                continue
            pairs.add((uid, gid))
            if consent is None:
                own.append((uid, gid, role))
    return own_groups_of(own, user_ids), pairs, ended_pairs


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


def _valid_email(email: str) -> bool:
    """The rule createUser applies."""
    return len(email) <= 320 and "@" in email and not email.startswith("@") and not email.endswith("@") and " " not in email


def default_home(reach: Reach, scope_group_id: int | None) -> tuple[int | None, str | None]:
    """Where new accounts of a file without a home_group cell go: the import's scope; for a site admin
    without one, nowhere (the site owns them); for a LEADER, the one group they lead directly. The second
    value explains why there is none, when one is needed."""
    if scope_group_id is not None or reach.is_admin:
        return scope_group_id, None
    led = [g for g, role in reach.direct_roles.items() if role in ACCOUNT_ROLES]
    if len(led) == 1:
        return led[0], None
    return None, "home_group is required (or the import's scopeGroupId): you lead several groups" if led else (
        "you may only create accounts in a group you lead"
    )


def _new_account(
    row: ImportRow, plan: Plan, reach: Reach, groups: dict[str, tuple[int, bool]], taken_emails: dict[str, int],
    planned_emails: dict[str, int], default: tuple[int | None, str | None],
) -> NewAccount | None:
    """The account a row creates, or None with the row's errors added to the plan."""
    errors = len(plan.errors)
    first, last = (row.first_name or "").strip(), (row.last_name or "").strip()
    for column, value in ((FIRST_NAME, first), (LAST_NAME, last)):
        if not value:
            plan.errors.append(RowError(row.line, column, f"{column} is needed to create the account '{row.student}'"))
        elif len(value) > 200 or "\x00" in value:
            plan.errors.append(RowError(row.line, column, f"{column} must be at most 200 characters of text"))
    email = (row.email or (row.student if "@" in row.student else "")).strip()
    column = EMAIL if row.email else STUDENT
    if not email:
        plan.errors.append(RowError(row.line, EMAIL, f"email is needed to create the account '{row.student}'"))
    elif not _valid_email(email):
        plan.errors.append(RowError(row.line, column, f"'{email}' is not a valid email address"))
    elif email.lower() in taken_emails:
        plan.errors.append(RowError(row.line, column, f"an account with the email '{email}' already exists"))
    elif email.lower() in planned_emails:
        plan.errors.append(
            RowError(row.line, column, f"the email '{email}' is also given on line {planned_emails[email.lower()]}")
        )
    if row.password is not None and len(row.password) < MIN_PASSWORD:
        plan.errors.append(RowError(row.line, PASSWORD, f"the password must be at least {MIN_PASSWORD} characters"))
    external_id = None if row.student.lower() == email.lower() else row.student
    if external_id is not None and len(external_id) > 200:
        plan.errors.append(RowError(row.line, STUDENT, "student_id must be at most 200 characters"))
    home_group_id: int | None
    if row.home_group:
        group = groups.get(row.home_group)
        if group is None or not reach.sees_group(group[0]):
            plan.errors.append(RowError(row.line, HOME_GROUP, f"unknown group '{row.home_group}'"))
            return None
        home_group_id = group[0]
        if not reach.may_on_group(Permission.MANAGE_ACCOUNT, home_group_id):
            plan.errors.append(
                RowError(row.line, HOME_GROUP, f"you may not create accounts in group '{row.home_group}'")
            )
    else:
        home_group_id, why = default
        if why is not None:
            plan.errors.append(RowError(row.line, HOME_GROUP, why))
    if len(plan.errors) > errors:
        return None
    account = NewAccount(
        key=-(len(plan.accounts) + 1), line=row.line, email=email, external_id=external_id, first_name=first,
        last_name=last, home_group_id=home_group_id, password=row.password,
    )
    plan.accounts.append(account)
    planned_emails[email.lower()] = row.line
    return account


async def plan_import(session: AsyncSession, reach: Reach, rows: Sequence[ImportRow], scope_group_id: int | None = None) -> Plan:
    """Validate every row; on no errors, `plan.new`, `plan.accounts` and `plan.passwords` hold exactly
    what to write."""
    plan = Plan(rows=len(rows))
    keys = {r.student for r in rows if r.student}
    cell_emails = {r.email for r in rows if r.email and r.creates}
    by_external, by_email, students = await _students(session, keys, cell_emails)
    slugs = sorted({s for r in rows for s in r.slugs} | {r.home_group for r in rows if r.home_group})
    groups: dict[str, tuple[int, bool]] = {}
    for chunk in _chunks(slugs):
        group = Group.__table__.c
        for gid, slug, synced in await session.execute(select(group.id, group.slug, group.synced).where(_one_of(session, group.slug, chunk))):
            groups[slug] = (gid, synced)
    user_ids = sorted(students)
    own, existing, ended = await _memberships(session, user_ids)
    granted = [u for u in user_ids if u in reach.granted]
    consents = await _consents(session, reach.viewer_id, granted) if granted else {}  # type: ignore[arg-type]
    subjects = {
        u: UserSubject(u, own[u].group_ids, students[u].home_group_id, frozenset(students[u].site_roles), own[u].staff_group_ids)
        for u in user_ids
    }
    default = default_home(reach, scope_group_id)
    created: dict[str, NewAccount] = {}  # student_id -> the account an earlier row creates
    planned_emails: dict[str, int] = {}

    for row in rows:
        if not row.student:
            continue  # reported while parsing
        # accounts the caller may not see count as missing: no message tells them apart
        found = (by_external.get(row.student), by_email.get(row.student.lower()))
        external, email = (
            uid if uid is not None and reach.may(Permission.VIEW_PROFILE, subjects[uid]) else None for uid in found
        )
        if external is not None and email is not None and external != email:
            plan.errors.append(
                RowError(row.line, STUDENT, f"'{row.student}' is one user's external id and another user's email")
            )
            continue
        uid = external if external is not None else email
        subject = subjects.get(uid) if uid is not None else None
        exists = found[0] is not None or found[1] is not None
        student: Student | None = None
        if not exists and row.student in created:
            account = created[row.student]
            subject = UserSubject(account.key, frozenset(), account.home_group_id, staff_group_ids=frozenset())
            student = Student(account.key, False, (), account.home_group_id)
        elif not exists and row.creates:
            account = _new_account(row, plan, reach, groups, by_email, planned_emails, default)  # type: ignore[assignment]
            if account is None:
                continue
            created[row.student] = account
            subject = UserSubject(account.key, frozenset(), account.home_group_id, staff_group_ids=frozenset())
            student = Student(account.key, False, (), account.home_group_id)
        elif subject is None:
            plan.errors.append(RowError(row.line, STUDENT, f"unknown student '{row.student}'"))
        else:
            student = students[uid]  # type: ignore[index]
            if row.password is not None:
                if not reach.may(Permission.MANAGE_ACCOUNT, subject):
                    plan.errors.append(
                        RowError(row.line, PASSWORD, f"you may not set the password of student '{row.student}'")
                    )
                elif len(row.password) < MIN_PASSWORD:
                    plan.errors.append(
                        RowError(row.line, PASSWORD, f"the password must be at least {MIN_PASSWORD} characters")
                    )
                else:
                    plan.passwords[student.id] = (row.line, row.password)
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
        if not row_new and not (student is not None and (student.id < 0 or student.id in plan.passwords)):
            plan.unchanged += 1
    return plan


async def hash_cells(cells: dict[int, str]) -> dict[int, str]:
    """line -> argon2 hash. argon2 is slow on purpose (tens of milliseconds each): the hashes are computed
    in worker threads (argon2 releases the GIL), before the write transaction opens."""
    lines = sorted(cells)
    hashes = await asyncio.gather(*(asyncio.to_thread(hash_password, cells[line]) for line in lines))
    return dict(zip(lines, hashes, strict=True))


def _hash_of(hashes: dict[int, str], line: int) -> str:
    if line not in hashes:  # the file's plan changed between hashing and writing
        raise Conflict("Accounts changed while the file was imported; run it again.", field="file")
    return hashes[line]


async def create_accounts(session: AsyncSession, plan: Plan, hashes: dict[int, str]) -> dict[int, int]:
    """Insert the new accounts (learners); their keys -> their ids (one IN-list query per chunk)."""
    if not plan.accounts:
        return {}
    now = utcnow()
    rows = [
        {
            "email": a.email, "email_normalized": a.email.lower(), "external_id": a.external_id, "kind": "LEARNER",
            "first_name": a.first_name, "last_name": a.last_name, "last_name_normalized": fold(a.last_name)[:200],
            "site_roles": "", "status": "ACTIVE", "synced": False, "home_group_id": a.home_group_id,
            "agreed_to_download_reports": True, "password_hash": _hash_of(hashes, a.line) if a.password else None,
            "created_at": now, "login_count": 0,
        }
        for a in plan.accounts
    ]
    try:
        for chunk in _chunks(rows, 1000):
            await session.execute(insert(User.__table__), chunk)
    except IntegrityError:
        raise Conflict("Accounts changed while the file was imported; run it again.", field="file") from None
    keys = {a.email.lower(): a.key for a in plan.accounts}
    ids: dict[int, int] = {}
    user = User.__table__.c
    for chunk in _chunks(sorted(keys)):
        for uid, email in await session.execute(select(user.id, user.email_normalized).where(_one_of(session, user.email_normalized, chunk))):
            ids[keys[email]] = uid
    return ids


async def set_passwords(session: AsyncSession, plan: Plan, hashes: dict[int, str]) -> None:
    """New passwords for existing accounts; each one's sessions and API tokens end."""
    if not plan.passwords:
        return
    users = sorted(plan.passwords)
    table = User.__table__
    await session.execute(
        table.update().where(table.c.id == bindparam("uid")).values(password_hash=bindparam("hash")),
        [{"uid": u, "hash": _hash_of(hashes, plan.passwords[u][0])} for u in users],
    )
    await end_credentials_of(session, users)


async def apply_plan(session: AsyncSession, plan: Plan, hashes: dict[int, str] | None = None) -> dict[int, int]:
    """Create the new accounts, set the new passwords, insert the planned memberships (SQLite: executemany
    of a cached statement; PostgreSQL: one INSERT ... SELECT unnest(arrays) per chunk: asyncpg's executemany
    costs a round trip per row). Returns the new accounts' ids by key."""
    ids = await create_accounts(session, plan, hashes or {})
    await set_passwords(session, plan, hashes or {})
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
    pairs = [((ids.get(u, u), g), c) for (u, g), c in plan.new.items() if (u, g) not in plan.revived]
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
    return ids


# --- the one entry point ---------------------------------------------------------------------------------


def check_scope(reach: Reach, scope_group_id: int | None, exists: bool) -> None:
    """The import's scope (the home of new accounts without a home_group cell): a group the caller
    administers accounts in; NOT_FOUND when they may not see it."""
    if scope_group_id is None:
        return
    if not exists or not reach.sees_group(scope_group_id):
        raise NotFound("No such group.", field="scopeGroupId")
    if not reach.may_on_group(Permission.MANAGE_ACCOUNT, scope_group_id):
        raise Forbidden("You may not administer the accounts of this group.")


async def import_group_assignments(
    store: Store,
    settings: Settings,
    reach: Reach,
    viewer_id: int | None,
    chunks: AsyncIterator[bytes],
    dry_run: bool,
    source: str = "graphql",
    scope_group_id: int | None = None,
) -> ImportResult:
    """Read, validate, and (unless dry_run or any error) apply in one transaction, as the viewer whose reach
    this is."""
    try:
        result = await _import(store, settings, reach, viewer_id, chunks, dry_run, source, scope_group_id)
    except AppError:  # over a limit, a refusal or a conflict: nothing was written
        IMPORTS.labels(source, "rejected").inc()
        raise
    outcome = "rejected" if result.errors else "dry_run" if dry_run else "applied"
    IMPORTS.labels(source, outcome).inc()
    IMPORT_ROWS.labels(source, outcome).inc(result.row_count)
    return result


async def _import(
    store: Store, settings: Settings, reach: Reach, viewer_id: int | None, chunks: AsyncIterator[bytes],
    dry_run: bool, source: str, scope_group_id: int | None,
) -> ImportResult:
    data = await read_limited(chunks, settings.max_upload_bytes)
    parsed = parse_csv(data, settings.max_import_rows)
    if parsed.errors and not parsed.rows:
        return ImportResult(dry_run, False, 0, 0, 0, parsed.errors)
    def invalid(plan: Plan) -> ImportResult | None:
        errors = sorted([*parsed.errors, *plan.errors], key=lambda e: e.line)
        return ImportResult(dry_run, False, plan.rows, 0, 0, errors) if errors else None

    async def planned(session: AsyncSession) -> Plan:
        if scope_group_id is not None:
            check_scope(reach, scope_group_id, await session.get(Group, scope_group_id) is not None)
        return await plan_import(session, reach, parsed.rows, scope_group_id)

    def done(plan: Plan) -> ImportResult:
        return ImportResult(
            dry_run, True, plan.rows, len(plan.new), plan.unchanged, [], len(plan.accounts), len(plan.passwords)
        )

    async with store.transaction() as session:
        plan = await planned(session)
        if refused := invalid(plan):
            return refused
        if dry_run:  # `applied` says every row is valid (the contract's wording), nothing is written
            return done(plan)
        cells = plan.password_cells()
        if not cells:
            audit_import(session, viewer_id, source, plan, await apply_plan(session, plan))
            return done(plan)
    # passwords: hashed outside any transaction, then the file is planned again and written in one
    hashes = await hash_cells(cells)
    async with store.transaction() as session:
        plan = await planned(session)
        if refused := invalid(plan):
            return refused
        audit_import(session, viewer_id, source, plan, await apply_plan(session, plan, hashes))
    return done(plan)


def audit_import(session: AsyncSession, viewer_id: int | None, source: str, plan: Plan, ids: dict[int, int]) -> None:
    audit(
        session, viewer_id, "import.group_assignments", "import", None, source=source, rows=plan.rows,
        created=len(plan.new), unchanged=plan.unchanged, groups=plan.created_per_group,
        accounts_created=sorted(ids.values()), passwords_set=sorted(plan.passwords),
    )
