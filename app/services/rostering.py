"""Rostering: OneRoster 1.1 / 1.2 CSV bundles (a zip) read, validated, planned and applied set-based.

Orgs become a synced group tree (by parentSourcedId), classes synced groups under their school with their
term dates, users synced accounts homed in their primary org, enrollments memberships, agents guardian
links. Every file and line is checked before anything is written; any error and the run is FAILED with
every error (file, line, column). A bulk file is the whole truth for its entity: a synced membership it
no longer names is ended (kept for history), a synced account it no longer names is DENIED; nothing is
deleted. A run that would end or deny more than the hold share waits (HELD) with its bundle and the digest
of its plan; approval re-plans the same bundle and applies it only if the plan is still the same.

Statements do not grow with rows: existing state is read in a fixed handful of queries (whole tables of
synced rows, or one bound array on PostgreSQL), writes are multi-row inserts and updates (app.store.bulk).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
import zipfile
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import date
from itertools import islice
from typing import Any

from sqlalchemy import and_, case, func, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.runtime.errors import Conflict, NotFound
from app.runtime.ids import to_global_id
from app.services.audit import audit
from app.services.tree import lock_tree, move
from app.settings import Settings
from app.store import rollup
from app.store.bulk import ROWS_CHUNK, insert_rows, is_postgres, one_of, update_rows, value_chunks
from app.store.models import (
    ApiToken,
    Group,
    GroupClosure,
    GuardianLink,
    Membership,
    RosterSync,
    Session,
    User,
    utcnow,
)

Transaction = Callable[[], AbstractAsyncContextManager[AsyncSession]]
MANIFEST = "manifest.csv"
FILES = ("orgs", "academicSessions", "courses", "classes", "users", "enrollments", "roles", "demographics")
USED = ("orgs", "academicSessions", "courses", "classes", "users", "enrollments", "roles")
MAX_ERRORS = 1_000

KIND_OF_ROLE = {
    "student": "LEARNER",
    "teacher": "STAFF", "aide": "STAFF", "proctor": "STAFF", "administrator": "STAFF",
    "districtadministrator": "STAFF", "siteadministrator": "STAFF", "systemadministrator": "STAFF",
    "principal": "STAFF", "counselor": "STAFF",
    "guardian": "EXTERNAL", "parent": "EXTERNAL", "relative": "EXTERNAL",
}
ADMIN_ROLES = {"administrator", "districtadministrator", "siteadministrator", "systemadministrator", "principal"}
GROUP_ROLE_OF_ENROLLMENT = {
    "teacher": "LEADER", "administrator": "LEADER", "aide": "MENTOR", "proctor": "MENTOR", "student": "MEMBER",
}
ROLES = ("MEMBER", "MENTOR", "LEADER")  # index = rank; the strongest wins when two enrollments meet
RANK = {role: rank for rank, role in enumerate(ROLES)}
CLASS = "class"
OFFSET = 1 << 31
MASK = (1 << 32) - 1


@dataclass(frozen=True)
class RowError:
    file: str | None
    line: int
    column: str | None
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column, "message": self.message}


class Invalid(Exception):
    """Enough errors: stop reading."""


# --- reading the bundle ------------------------------------------------------------------------------------


@dataclass
class OrgRow:
    line: int
    name: str
    type: str
    parent: str | None
    active: bool


@dataclass
class SessionRow:
    line: int
    title: str
    starts: date | None
    ends: date | None


@dataclass
class ClassRow:
    line: int
    title: str
    code: str | None
    school: str
    terms: tuple[str, ...]
    active: bool


@dataclass
class UserRow:
    line: int
    active: bool  # status not tobedeleted and enabledUser not false
    deleted: bool
    role: str
    first: str
    last: str
    email: str
    orgs: tuple[str, ...]
    agents: tuple[str, ...]


@dataclass
class Bundle:
    version: str = "1.1"
    modes: dict[str, str] = field(default_factory=dict)  # file -> bulk | delta (absent files left out)
    orgs: dict[str, OrgRow] = field(default_factory=dict)
    sessions: dict[str, SessionRow] = field(default_factory=dict)
    courses: set[str] = field(default_factory=set)
    classes: dict[str, ClassRow] = field(default_factory=dict)
    users: dict[str, UserRow] = field(default_factory=dict)
    # enrollments, by sourcedId of class and user: (line, class, user, rank of the group role or -1, tobedeleted)
    enrollments: list[tuple[int, str, str, int, bool]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    def error(self, file: str | None, line: int, column: str | None, message: str) -> None:
        self.errors.append(RowError(file, line, column, message))
        if len(self.errors) >= MAX_ERRORS:
            raise Invalid

    def bulk(self, name: str) -> bool:
        return self.modes.get(name) == "bulk"


def _norm(name: str) -> str:
    return name.strip().lstrip("\ufeff").lower()


class _Reader:
    """One CSV member of the zip: header names matched case-insensitively, unknown columns ignored."""

    def __init__(self, bundle: Bundle, archive: zipfile.ZipFile, member: str, file: str) -> None:
        self.bundle, self.file = bundle, file
        self.archive, self.member = archive, member
        self.stream = io.TextIOWrapper(archive.open(member), encoding="utf-8-sig", newline="")
        self.reader = csv.reader(self.stream)
        self.columns: dict[str, int] = {}
        self.line = 1

    def header(self, required: tuple[str, ...]) -> bool:
        try:
            for record in self.reader:
                if any(cell.strip() for cell in record):
                    self.columns = {}
                    for at, cell in enumerate(record):
                        self.columns.setdefault(_norm(cell), at)
                    self.line = self.reader.line_num
                    break
            else:
                self.bundle.error(self.file, 1, None, "the file is empty; it needs a header")
                return False
        except csv.Error as exc:
            self.bundle.error(self.file, 1, None, f"the file is not valid CSV: {exc}")
            return False
        except UnicodeDecodeError:
            self.not_text()
            return False
        missing = [c for c in required if c.lower() not in self.columns]
        for column in missing:
            self.bundle.error(self.file, 1, column, f"the header has no '{column}' column")
        return not missing

    def not_text(self) -> None:
        """The error for a file that is not UTF-8, on the line of its first bad byte (text is decoded in blocks,
        so the reader cannot tell)."""
        with self.archive.open(self.member) as raw:
            for number, data in enumerate(raw, start=1):
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError:
                    self.bundle.error(self.file, number, None, "the file is not UTF-8 text (save it as 'CSV UTF-8')")
                    return
        self.bundle.error(self.file, 1, None, "the file is not UTF-8 text")

    def has(self, column: str) -> bool:
        return column.lower() in self.columns

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        line = self.line + 1
        try:
            reader = self.reader
            for record in reader:
                start, line = line, reader.line_num + 1
                if not any(record):  # a blank line ([]) or only commas
                    continue
                yield start, record
        except csv.Error as exc:
            self.bundle.error(self.file, line, None, f"the file is not valid CSV: {exc}")
        except UnicodeDecodeError:
            self.not_text()

    def getter(self, column: str) -> Any:
        at = self.columns.get(column.lower())
        if at is None:
            return lambda record: ""
        return lambda record: record[at].strip() if at < len(record) else ""


def _ids(cell: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part.strip() for part in cell.split(",") if part.strip()))


def _date(bundle: Bundle, file: str, line: int, column: str, cell: str) -> date | None:
    if not cell:
        return None
    try:
        return date.fromisoformat(cell[:10])
    except ValueError:
        bundle.error(file, line, column, f"'{cell}' is not a date (YYYY-MM-DD)")
        return None


def _status(bundle: Bundle, file: str, line: int, cell: str) -> bool:
    """True when the row says tobedeleted."""
    value = cell.lower()
    if value in ("", "active"):
        return False
    if value == "tobedeleted":
        return True
    bundle.error(file, line, "status", f"status '{cell}' is not active or tobedeleted")
    return False


def _duplicate(bundle: Bundle, file: str, line: int, seen: dict[str, Any], sid: str) -> bool:
    if not sid:
        bundle.error(file, line, "sourcedId", "sourcedId is empty")
        return True
    if sid in seen:
        first = getattr(seen[sid], "line", None)
        where = f" (first on line {first})" if first else ""
        bundle.error(file, line, "sourcedId", f"duplicate sourcedId '{sid}'{where}")
        return True
    return False


def _read_manifest(bundle: Bundle, archive: zipfile.ZipFile, members: dict[str, str]) -> dict[str, int]:
    """file -> the manifest line that names it (bulk or delta)."""
    if MANIFEST not in members:
        bundle.error(MANIFEST, 1, None, "the bundle has no manifest.csv")
        return {}
    reader = _Reader(bundle, archive, members[MANIFEST], MANIFEST)
    if not reader.header(("propertyName", "value")):
        return {}
    prop, value = reader.getter("propertyName"), reader.getter("value")
    lines: dict[str, int] = {}
    for line, record in reader.rows():
        name, cell = prop(record), value(record).lower()
        if name.lower() == "oneroster.version":
            bundle.version = cell or bundle.version
            if cell not in ("1.1", "1.2"):
                bundle.error(MANIFEST, line, "value", f"oneroster.version '{cell}' is not 1.1 or 1.2")
        elif name.lower().startswith("file."):
            entity = name[5:]
            if cell not in ("bulk", "delta", "absent"):
                bundle.error(MANIFEST, line, "value", f"'{value(record)}' is not bulk, delta or absent")
                continue
            if cell == "absent" or entity not in USED:
                continue
            bundle.modes[entity] = cell
            lines[entity] = line
            if f"{entity}.csv".lower() not in members:
                bundle.error(MANIFEST, line, "value", f"the manifest names {entity}.csv, which is not in the bundle")
    return lines


def read_bundle(data: bytes, max_bytes: int | None = None) -> Bundle:
    """Every file of the bundle parsed and checked on its own (references across files come later).
    `max_bytes`: the most its files may hold, unpacked (a zip bomb is refused before it is read)."""
    bundle = Bundle()
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        bundle.errors.append(RowError(None, 1, None, "the file is not a zip archive (a OneRoster CSV bundle)"))
        return bundle
    unpacked = sum(member.file_size for member in archive.infolist())
    if max_bytes is not None and unpacked > max_bytes:
        bundle.errors.append(RowError(None, 1, None, f"the bundle unpacks to {unpacked} bytes, over the limit of {max_bytes}"))
        return bundle
    members = {m.filename.rsplit("/", 1)[-1].lower(): m.filename for m in archive.infolist() if not m.is_dir()}
    try:
        lines = _read_manifest(bundle, archive, members)
        for entity, reader_of in (
            ("orgs", _read_orgs), ("academicSessions", _read_sessions), ("courses", _read_courses),
            ("classes", _read_classes), ("users", _read_users), ("roles", _read_roles),
            ("enrollments", _read_enrollments),
        ):
            member = members.get(f"{entity}.csv".lower())
            if entity in lines and member is not None:
                try:
                    reader_of(bundle, _Reader(bundle, archive, member, f"{entity}.csv"))
                except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as exc:
                    bundle.error(f"{entity}.csv", 1, None, f"the file cannot be unpacked from the zip: {exc}")
    except Invalid:
        pass
    return bundle


def _read_orgs(bundle: Bundle, reader: _Reader) -> None:
    if not reader.header(("sourcedId", "name")):
        return
    sid, status, name, kind, parent = (
        reader.getter(c) for c in ("sourcedId", "status", "name", "type", "parentSourcedId")
    )
    for line, record in reader.rows():
        key = sid(record)
        if _duplicate(bundle, "orgs.csv", line, bundle.orgs, key):
            continue
        deleted = _status(bundle, "orgs.csv", line, status(record))
        org_name = name(record)
        if not org_name:
            bundle.error("orgs.csv", line, "name", "name is empty")
        org_type = kind(record).lower() or "school"
        if org_type == CLASS:
            bundle.error("orgs.csv", line, "type", "'class' is not an org type")
        bundle.orgs[key] = OrgRow(line, org_name[:200], org_type[:16], parent(record) or None, not deleted)


def _read_sessions(bundle: Bundle, reader: _Reader) -> None:
    if not reader.header(("sourcedId", "title")):
        return
    sid, title, starts, ends = (reader.getter(c) for c in ("sourcedId", "title", "startDate", "endDate"))
    for line, record in reader.rows():
        key = sid(record)
        if _duplicate(bundle, "academicSessions.csv", line, bundle.sessions, key):
            continue
        begin = _date(bundle, "academicSessions.csv", line, "startDate", starts(record))
        end = _date(bundle, "academicSessions.csv", line, "endDate", ends(record))
        if begin and end and end < begin:
            bundle.error("academicSessions.csv", line, "endDate", "endDate is before startDate")
        bundle.sessions[key] = SessionRow(line, title(record)[:200], begin, end)


def _read_courses(bundle: Bundle, reader: _Reader) -> None:
    if not reader.header(("sourcedId",)):
        return
    sid = reader.getter("sourcedId")
    seen: dict[str, Any] = {}
    for line, record in reader.rows():
        key = sid(record)
        if not _duplicate(bundle, "courses.csv", line, seen, key):
            seen[key] = None
    bundle.courses = set(seen)


def _read_classes(bundle: Bundle, reader: _Reader) -> None:
    if not reader.header(("sourcedId", "title", "schoolSourcedId")):
        return
    sid, status, title, code, school, terms, course = (
        reader.getter(c)
        for c in ("sourcedId", "status", "title", "classCode", "schoolSourcedId", "termSourcedIds", "courseSourcedId")
    )
    check_courses = bundle.bulk("courses")
    for line, record in reader.rows():
        key = sid(record)
        if _duplicate(bundle, "classes.csv", line, bundle.classes, key):
            continue
        deleted = _status(bundle, "classes.csv", line, status(record))
        if not title(record):
            bundle.error("classes.csv", line, "title", "title is empty")
        if not school(record):
            bundle.error("classes.csv", line, "schoolSourcedId", "schoolSourcedId is empty")
        if check_courses and course(record) and course(record) not in bundle.courses:
            bundle.error("classes.csv", line, "courseSourcedId", f"unknown course '{course(record)}'")
        bundle.classes[key] = ClassRow(
            line, title(record)[:200], code(record)[:200] or None, school(record), _ids(terms(record)), not deleted
        )


def _read_users(bundle: Bundle, reader: _Reader) -> None:
    if not reader.header(("sourcedId", "givenName", "familyName")):
        return
    role_column = "role" if reader.has("role") else "roles"
    if not reader.has(role_column) and "roles" not in bundle.modes:
        bundle.error("users.csv", 1, "role", "the header has no 'role' column (and the bundle has no roles.csv)")
        return
    sid, status, enabled, role, given, family, email, orgs, primary, agents = (
        reader.getter(c)
        for c in (
            "sourcedId", "status", "enabledUser", role_column, "givenName", "familyName", "email", "orgSourcedIds",
            "primaryOrgSourcedId", "agentSourcedIds",
        )
    )
    for line, record in reader.rows():
        key = sid(record)
        if _duplicate(bundle, "users.csv", line, bundle.users, key):
            continue
        deleted = _status(bundle, "users.csv", line, status(record))
        enabled_cell = enabled(record).lower()
        if enabled_cell not in ("", "true", "false", "1", "0", "yes", "no"):
            bundle.error("users.csv", line, "enabledUser", f"enabledUser '{enabled(record)}' is not true or false")
        user_role = _ids(role(record).lower())
        user_role_name = user_role[0] if user_role else ""
        if user_role_name and user_role_name not in KIND_OF_ROLE:
            bundle.error("users.csv", line, role_column, f"unknown role '{role(record)}'")
        first, last = given(record), family(record)
        if not first:
            bundle.error("users.csv", line, "givenName", "givenName is empty")
        if not last:
            bundle.error("users.csv", line, "familyName", "familyName is empty")
        address = email(record)
        if address and ("@" not in address or len(address) > 320 or any(c.isspace() for c in address)):
            bundle.error("users.csv", line, "email", f"'{address}' is not an email address")
        org_ids = tuple(dict.fromkeys((*_ids(primary(record)), *_ids(orgs(record)))))
        bundle.users[key] = UserRow(
            line, not deleted and enabled_cell not in ("false", "0", "no"), deleted, user_role_name,
            first[:200], last[:200], address, org_ids, _ids(agents(record)),
        )


def _read_roles(bundle: Bundle, reader: _Reader) -> None:
    """OneRoster 1.2 roles.csv: a user's role in an org; the primary one gives the account's kind and home."""
    if not reader.header(("userSourcedId", "role", "orgSourcedId")):
        return
    user, role, org, kind, status = (
        reader.getter(c) for c in ("userSourcedId", "role", "orgSourcedId", "roleType", "status")
    )
    for line, record in reader.rows():
        if _status(bundle, "roles.csv", line, status(record)):
            continue
        target = bundle.users.get(user(record))
        if target is None:
            bundle.error("roles.csv", line, "userSourcedId", f"unknown user '{user(record)}'")
            continue
        name = role(record).lower()
        if name not in KIND_OF_ROLE:
            bundle.error("roles.csv", line, "role", f"unknown role '{role(record)}'")
            continue
        primary = kind(record).lower() in ("primary", "")
        if primary or not target.role:
            target.role = name
        if org(record):
            orgs = (org(record), *target.orgs) if primary else (*target.orgs, org(record))
            target.orgs = tuple(dict.fromkeys(orgs))


def _read_enrollments(bundle: Bundle, reader: _Reader) -> None:
    if not reader.header(("sourcedId", "classSourcedId", "userSourcedId", "role")):
        return
    at = [reader.columns.get(c.lower(), -1) for c in ("sourcedId", "status", "classSourcedId", "userSourcedId", "role")]
    width = max(at) + 1
    i_key, i_status, i_class, i_user, i_role = at  # all but status are required by the header check
    has_status = i_status >= 0
    seen: set[str] = set()
    rows = bundle.enrollments
    names: dict[str, str] = {}  # one string per distinct class and user id (a million rows name few)
    rank_of = {name: RANK[role] for name, role in GROUP_ROLE_OF_ENROLLMENT.items()}
    statuses: dict[str, bool] = {}
    for line, record in reader.rows():  # the hot loop of a district's million rows: no per-cell calls
        if len(record) < width:
            record = record + [""] * (width - len(record))
        key, class_id, user_id, role = (
            record[i_key].strip(), record[i_class].strip(), record[i_user].strip(), record[i_role].strip()
        )
        status = record[i_status].strip() if has_status else ""
        if not key:
            bundle.error("enrollments.csv", line, "sourcedId", "sourcedId is empty")
        elif key in seen:
            bundle.error("enrollments.csv", line, "sourcedId", f"duplicate sourcedId '{key}'")
        seen.add(key)
        deleted = statuses.get(status)
        if deleted is None:
            deleted = _status(bundle, "enrollments.csv", line, status)
            if status.lower() in ("", "active", "tobedeleted"):
                statuses[status] = deleted
        rank = rank_of.get(role) if role in rank_of else rank_of.get(role.lower(), -1)
        if rank < 0:
            bundle.error("enrollments.csv", line, "role", f"unknown enrollment role '{role}'")
        rows.append((line, names.setdefault(class_id, class_id), names.setdefault(user_id, user_id), rank, deleted))


# --- the plan -------------------------------------------------------------------------------------------------


@dataclass
class Existing:
    groups: dict[str, tuple[int, str, str | None, int | None, str | None, str | None, date | None, date | None, bool]]
    group_sid: dict[int, str]
    users: dict[str, tuple[int, str, str, str, str, str, int | None, bool, str]]


@dataclass
class Plan:
    errors: list[RowError] = field(default_factory=list)
    new_groups: list[dict[str, Any]] = field(default_factory=list)
    group_updates: list[tuple[Any, ...]] = field(default_factory=list)
    moves: list[tuple[int, str | None]] = field(default_factory=list)  # existing group id -> new parent sid
    new_users: list[dict[str, Any]] = field(default_factory=list)
    user_updates: list[tuple[Any, ...]] = field(default_factory=list)
    denied: list[int] = field(default_factory=list)
    new_memberships: list[tuple[str, str, str]] = field(default_factory=list)  # user sid, group sid, role
    role_changes: list[tuple[int, str]] = field(default_factory=list)  # membership id, role
    restores: list[tuple[int, str]] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    new_links: list[tuple[str, str]] = field(default_factory=list)  # guardian sid, pupil sid
    unchanged: int = 0
    active_memberships: int = 0
    active_accounts: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "groups_created": len(self.new_groups),
            "groups_updated": len(self.group_updates) + len({g for g, _ in self.moves} - {u[0] for u in self.group_updates}),
            "users_created": len(self.new_users),
            "users_updated": len(self.user_updates),
            "users_denied": len(self.denied),
            "memberships_created": len(self.new_memberships) + len(self.restores),
            "memberships_updated": len(self.role_changes),
            "memberships_ended": len(self.ends),
            "guardian_links_created": len(self.new_links),
            "unchanged": self.unchanged,
        }

    def digest(self) -> str:
        """What the plan would write, canonically: approval applies a held run only while this is the same."""
        h = hashlib.sha256()
        for part in (
            sorted((g["sid"], g["name"], g["parent"] or "", g["kind"]) for g in self.new_groups),
            sorted(map(repr, self.group_updates)), sorted(map(repr, self.moves)),
            sorted((u["sid"], u["email"], u["kind"], u["status"]) for u in self.new_users),
            sorted(map(repr, self.user_updates)), sorted(self.denied), sorted(self.new_memberships),
            sorted(self.role_changes), sorted(self.restores), sorted(self.ends), sorted(self.new_links),
        ):
            h.update(json.dumps(part, default=str).encode())
        return h.hexdigest()


def _slug_base(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:180] or "group"


def _placeholder_email(sid: str) -> str:
    return f"{_slug_base(sid)[:60]}.{hashlib.sha256(sid.encode()).hexdigest()[:8]}@roster.invalid"


async def _existing(session: AsyncSession) -> Existing:
    g = Group.__table__.c
    groups: dict[str, Any] = {}
    group_sid: dict[int, str] = {}
    rows = await session.execute(
        select(
            g.external_id, g.id, g.name, g.roster_kind, g.parent_id, g.class_code, g.term_title, g.term_starts_on,
            g.term_ends_on, g.synced,
        ).where(g.external_id.is_not(None))
    )
    for sid, *rest in rows:
        groups[sid] = tuple(rest)
        group_sid[rest[0]] = sid
    u = User.__table__.c
    users: dict[str, Any] = {}
    rows = await session.execute(
        select(
            u.external_id, u.id, u.email_normalized, u.kind, u.first_name, u.last_name, u.status, u.home_group_id,
            u.synced, u.email,
        ).where(u.external_id.is_not(None))
    )
    for sid, *rest in rows:
        users[sid] = tuple(rest)
    return Existing(groups, group_sid, users)


UNMANAGED = len(ROLES)


async def _synced_memberships(session: AsyncSession) -> AsyncIterator[Iterable[tuple[int, int, int, int]]]:
    """Every membership of a synced user in a group the sync made: (id, user, group, flags), flags = rank of
    the role * 4 (UNMANAGED for a consent-based or ANALYST membership) + 2 if ended + 1 if a class.
    PostgreSQL: one row of four arrays (decoded in C: a million rows as Row objects cost ~10 s more);
    SQLite: streamed a partition at a time."""
    m, g, u = Membership.__table__.c, Group.__table__.c, User.__table__.c
    rank = case(
        *((and_(m.role == role, m.access_request_id.is_(None)), literal(n * 4)) for n, role in enumerate(ROLES)),
        else_=literal(UNMANAGED * 4),
    )
    flags = rank + case((m.ended_at.is_(None), literal(0)), else_=literal(2)) + case(
        (g.roster_kind == CLASS, literal(1)), else_=literal(0)
    )
    source = (
        select(m.id, m.user_id, m.group_id, flags)
        .select_from(Membership.__table__)
        .join(Group.__table__, g.id == m.group_id)
        .join(User.__table__, u.id == m.user_id)
        .where(g.roster_kind.is_not(None), g.synced, u.synced)
    )
    if is_postgres(session):
        inner = source.subquery("synced")
        row = (await session.execute(select(*(func.array_agg(column) for column in inner.c)))).one()
        if row[0] is not None:
            yield zip(*row, strict=True)
        return
    stream = await session.stream(source.execution_options(yield_per=20_000))
    async for partition in stream.partitions():  # rows a partition at a time: no await per row
        yield partition


def _error_order(error: RowError) -> tuple[int, int]:
    name = (error.file or "")[:-4]
    return (FILES.index(name) if name in FILES else -1, error.line)


def _pair(user_key: int, group_key: int) -> int:
    return ((user_key + OFFSET) << 32) | (group_key + OFFSET)


async def plan_bundle(session: AsyncSession, bundle: Bundle) -> Plan:
    """Check references across files against the bundle and the database; on no errors, the plan."""
    plan = Plan()
    errors = plan.errors
    existing = await _existing(session)
    ex_groups, ex_users = existing.groups, existing.users

    def org_known(sid: str) -> bool:
        if sid in bundle.orgs:
            return True
        row = ex_groups.get(sid)
        return row is not None and row[2] not in (None, CLASS)

    def class_known(sid: str) -> bool:
        if sid in bundle.classes:
            return True
        row = ex_groups.get(sid)
        return row is not None and row[2] == CLASS

    # groups: orgs, then classes
    for sid, org in bundle.orgs.items():
        if org.parent and not org_known(org.parent):
            errors.append(RowError("orgs.csv", org.line, "parentSourcedId", f"unknown org '{org.parent}'"))
        if org.parent == sid:
            errors.append(RowError("orgs.csv", org.line, "parentSourcedId", "an org cannot be its own parent"))
        if sid in bundle.classes:
            errors.append(RowError("orgs.csv", org.line, "sourcedId", f"'{sid}' is also a class's sourcedId"))
        row = ex_groups.get(sid)
        if row is not None and (not row[8] or row[2] == CLASS):
            errors.append(RowError("orgs.csv", org.line, "sourcedId", f"'{sid}' is the id of a group the sync does not manage as an org"))
    # cycles among the file's orgs (the database's tree has none, and existing parents are outside the file)
    reported: set[str] = set()
    for sid in bundle.orgs:
        seen: list[str] = []
        at: str | None = sid
        while at is not None and at in bundle.orgs and at not in seen:
            seen.append(at)
            at = bundle.orgs[at].parent
        if at is not None and at in seen and at not in reported:
            cycle = seen[seen.index(at):]
            reported.update(cycle)
            line = min(bundle.orgs[s].line for s in cycle)
            errors.append(RowError("orgs.csv", line, "parentSourcedId", "the orgs' parents form a cycle: " + " -> ".join([*cycle, at])))
    for sid, klass in bundle.classes.items():
        if klass.school and not org_known(klass.school):
            errors.append(RowError("classes.csv", klass.line, "schoolSourcedId", f"unknown org '{klass.school}'"))
        row = ex_groups.get(sid)
        if row is not None and (not row[8] or row[2] != CLASS):
            errors.append(RowError("classes.csv", klass.line, "sourcedId", f"'{sid}' is the id of a group the sync does not manage as a class"))
        for term in klass.terms:
            if term not in bundle.sessions and bundle.bulk("academicSessions"):
                errors.append(RowError("classes.csv", klass.line, "termSourcedIds", f"unknown academic session '{term}'"))

    # users
    emails: dict[str, str] = {}
    for sid, user in bundle.users.items():
        if not user.role:
            errors.append(RowError("users.csv", user.line, "role", "the user has no role"))
        for org in user.orgs:
            if not org_known(org):
                errors.append(RowError("users.csv", user.line, "orgSourcedIds", f"unknown org '{org}'"))
        for agent in user.agents:
            if agent not in bundle.users and not (agent in ex_users and ex_users[agent][7]):
                errors.append(RowError("users.csv", user.line, "agentSourcedIds", f"unknown user '{agent}'"))
        row = ex_users.get(sid)
        if row is not None and not row[7]:
            errors.append(RowError(
                "users.csv", user.line, "sourcedId",
                f"'{sid}' is the external id of an account the sync does not manage (not synced)",
            ))
        if user.email:
            key = user.email.lower()
            if key in emails:
                errors.append(RowError("users.csv", user.line, "email", f"'{user.email}' is also user '{emails[key]}''s email"))
            emails[key] = sid
    if emails:
        u = User.__table__.c
        postgres = is_postgres(session)
        for chunk in value_chunks(postgres, emails):
            for email, external in await session.execute(
                select(u.email_normalized, u.external_id).where(one_of(postgres, u.email_normalized, chunk))
            ):
                if external != emails[email]:
                    line = bundle.users[emails[email]].line
                    errors.append(RowError("users.csv", line, "email", f"'{email}' is another account's email"))

    # enrollments: references (class, user) resolved to keys; new rows get negative keys
    group_key: dict[str, int] = {}
    for sid, row in ex_groups.items():
        group_key[sid] = row[0]
    new_group_order = [*bundle.orgs, *bundle.classes]
    for n, sid in enumerate(new_group_order):
        group_key.setdefault(sid, -(n + 1))
    # groups the files end: a class or org tobedeleted, or missing from a bulk file (their memberships end)
    dead = {group_key[sid] for sid, row in [*bundle.orgs.items(), *bundle.classes.items()] if not row.active}
    for name, kind_is_class, listed in (("orgs", False, bundle.orgs), ("classes", True, bundle.classes)):
        if bundle.bulk(name):
            dead.update(row[0] for sid, row in ex_groups.items() if row[8] and (row[2] == CLASS) == kind_is_class and sid not in listed)
    user_key: dict[str, int] = {sid: row[0] for sid, row in ex_users.items() if row[7]}
    for n, sid in enumerate(bundle.users):
        user_key.setdefault(sid, -(n + 1))
    desired: dict[int, int] = {}  # pair -> rank of role
    ended_by_file: set[int] = set()
    # the hot loop (a million rows): keys pre-shifted, so that a pair is one addition
    class_part = {sid: key + OFFSET for sid, key in group_key.items() if class_known(sid)}
    user_part = {sid: (key + OFFSET) << 32 for sid, key in user_key.items()}
    dead_parts = {key + OFFSET for key in dead}
    for line, klass, user, rank, deleted in bundle.enrollments:
        gp = class_part.get(klass)
        up = user_part.get(user)
        if gp is None or up is None:
            if gp is None:
                errors.append(RowError("enrollments.csv", line, "classSourcedId", f"unknown class '{klass}'"))
            if up is None:
                errors.append(RowError("enrollments.csv", line, "userSourcedId", f"unknown user '{user}'"))
            continue
        if rank < 0:
            continue
        pair = up | gp
        if deleted or gp in dead_parts:
            ended_by_file.add(pair)
        elif desired.get(pair, -1) < rank:
            desired[pair] = rank
    del class_part, user_part
    plan.errors = sorted([*bundle.errors, *errors], key=_error_order)[:MAX_ERRORS]
    if plan.errors:
        return plan

    # --- groups to create or update
    for sid, org in bundle.orgs.items():
        row = ex_groups.get(sid)
        if row is None:
            plan.new_groups.append({"sid": sid, "name": org.name, "kind": org.type, "parent": org.parent, "code": None,
                                    "term": (None, None, None)})
            continue
        gid, name, kind, parent_id, *_ = row
        parent_sid = existing.group_sid.get(parent_id) if parent_id is not None else None
        changed = name != org.name or kind != org.type
        if changed:
            plan.group_updates.append((gid, org.name, org.name.lower(), org.type, None, None, None, None))
        if parent_sid != org.parent and not (org.parent is None and parent_id is not None and parent_sid is None):
            plan.moves.append((gid, org.parent))
        elif not changed:
            plan.unchanged += 1
    for sid, klass in bundle.classes.items():
        sessions = [bundle.sessions[t] for t in klass.terms if t in bundle.sessions]
        row = ex_groups.get(sid)
        if sessions or row is None:
            starts = [s.starts for s in sessions if s.starts]
            ends = [s.ends for s in sessions if s.ends]
            term = (", ".join(s.title for s in sessions)[:200] or None, min(starts) if starts else None, max(ends) if ends else None)
        else:
            term = (row[5], row[6], row[7])
        if row is None:
            plan.new_groups.append({"sid": sid, "name": klass.title, "kind": CLASS, "parent": klass.school,
                                    "code": klass.code, "term": term})
            continue
        gid, name, _, parent_id, code, *_ = row
        now = (klass.title, CLASS, klass.code, *term)
        if (name, row[2], code, row[5], row[6], row[7]) != now:
            plan.group_updates.append((gid, klass.title, klass.title.lower(), CLASS, klass.code, *term))
        elif existing.group_sid.get(parent_id) == klass.school:  # type: ignore[arg-type]
            plan.unchanged += 1
        if existing.group_sid.get(parent_id) != klass.school:  # type: ignore[arg-type]
            plan.moves.append((gid, klass.school))

    # --- users to create or update; accounts to deny
    placeholder = {sid: _placeholder_email(sid) for sid, u in bundle.users.items() if not u.email}
    for sid, user in bundle.users.items():
        email = user.email or placeholder[sid]
        kind = KIND_OF_ROLE.get(user.role, "STAFF")
        status = "ACTIVE" if user.active else "DENIED"
        home = user.orgs[0] if user.orgs else None
        row = ex_users.get(sid)
        if row is None:
            plan.new_users.append({"sid": sid, "email": email, "kind": kind, "first": user.first, "last": user.last,
                                   "status": status, "home": home})
            continue
        uid, _normalized, old_kind, first, last, old_status, home_id, _, old_email = row
        home_id_new = ex_groups[home][0] if home in ex_groups else None
        same_home = (home is None and home_id is None) or (home_id is not None and existing.group_sid.get(home_id) == home)
        if (old_email, old_kind, first, last, old_status) == (email, kind, user.first, user.last, status) and same_home:
            plan.unchanged += 1
            continue
        plan.user_updates.append((uid, email, email.lower(), kind, user.first, user.last, user.last.lower(), status,
                                  home_id_new if not same_home else home_id, None if same_home else home))
        if status == "DENIED" and old_status != "DENIED":
            plan.denied.append(uid)
    synced_active = [row for row in ex_users.values() if row[7] and row[5] == "ACTIVE"]
    plan.active_accounts = len(synced_active)
    if bundle.bulk("users"):
        listed = bundle.users
        for sid, row in ex_users.items():
            if row[7] and row[5] != "DENIED" and sid not in listed:
                plan.user_updates.append((row[0], row[8], row[1], row[2], row[3], row[4], row[4].lower(), "DENIED", row[6], None))
                plan.denied.append(row[0])

    # --- org memberships of administrators (from users.csv)
    org_desired: dict[int, int] = {}
    users_with_org_roles: set[int] = set()
    sid_of_user_key = {key: sid for sid, key in user_key.items()}
    for sid, user in bundle.users.items():
        uk = user_key[sid]
        users_with_org_roles.add(uk)
        if user.role in ADMIN_ROLES and not user.deleted:
            for org in user.orgs:
                gk = group_key[org]
                if gk not in dead:
                    org_desired[_pair(uk, gk)] = RANK["LEADER"]

    # --- memberships: what exists among the synced ones, against what the files want
    enrollments_bulk = bundle.bulk("enrollments")
    users_bulk = bundle.bulk("users")
    async for partition in _synced_memberships(session):
        for mid, uid, gid, flags in partition:
            pair = _pair(uid, gid)
            rank, ended, is_class = flags >> 2, flags & 2, flags & 1
            want = desired.pop(pair, None) if is_class else org_desired.pop(pair, None)
            if rank == UNMANAGED:
                continue  # rostering never touches memberships it does not manage
            if not ended:
                plan.active_memberships += 1
            if want is not None:
                if ended:
                    plan.restores.append((mid, ROLES[want]))
                elif rank != want:
                    plan.role_changes.append((mid, ROLES[want]))
                elif is_class:
                    plan.unchanged += 1
                continue
            if ended:
                continue
            if gid in dead or (
                (enrollments_bulk or pair in ended_by_file) if is_class else (users_bulk or uid in users_with_org_roles)
            ):
                plan.ends.append(mid)
    for source in (desired, org_desired):
        for pair, rank in source.items():
            uk, gk = ((pair >> 32) & MASK) - OFFSET, (pair & MASK) - OFFSET
            group_sid = existing.group_sid[gk] if gk > 0 else new_group_order[-gk - 1]
            plan.new_memberships.append((sid_of_user_key[uk], group_sid, ROLES[rank]))
    del desired, org_desired

    # --- guardian links (agents between a student and a guardian, parent or relative)
    pairs: set[tuple[str, str]] = set()
    for sid, user in bundle.users.items():
        for agent in user.agents:
            other_kind = KIND_OF_ROLE.get(bundle.users[agent].role) if agent in bundle.users else ex_users[agent][2]
            mine = KIND_OF_ROLE.get(user.role)
            if mine == "LEARNER" and other_kind == "EXTERNAL":
                pairs.add((agent, sid))
            elif mine == "EXTERNAL" and other_kind == "LEARNER":
                pairs.add((sid, agent))
    known = {(a, b) for a, b in pairs if a in ex_users and b in ex_users}
    if known:
        id_pairs = {(ex_users[a][0], ex_users[b][0]): (a, b) for a, b in known}
        found = await _existing_links(session, list(id_pairs))
        pairs -= {id_pairs[p] for p in found}
    plan.new_links = sorted(pairs)
    return plan


async def _existing_links(session: AsyncSession, pairs: list[tuple[int, int]]) -> set[tuple[int, int]]:
    from app.store.bulk import existing_pairs

    link = GuardianLink.__table__.c
    return await existing_pairs(session, link.external_user_id, link.pupil_id, pairs)


# --- applying the plan -------------------------------------------------------------------------------------


async def _ids_by_external(session: AsyncSession, table: Any, sids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    postgres = is_postgres(session)
    for chunk in value_chunks(postgres, sids):
        for sid, ident in await session.execute(select(table.c.external_id, table.c.id).where(one_of(postgres, table.c.external_id, chunk))):
            found[sid] = ident
    return found


async def _insert(session: AsyncSession, table: Any, names: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
    """insert_rows a chunk at a time from an iterable: never a second copy of a million rows in memory (SQLite's
    executemany takes a dict per row)."""
    iterator = iter(rows)
    while chunk := list(islice(iterator, ROWS_CHUNK)):
        await insert_rows(session, table, names, chunk)


async def _update(session: AsyncSession, table: Any, names: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> None:
    iterator = iter(rows)
    while chunk := list(islice(iterator, ROWS_CHUNK)):
        await update_rows(session, table, names, chunk)


async def apply_plan(session: AsyncSession, plan: Plan) -> None:
    now = utcnow()
    g, closure = Group.__table__, GroupClosure.__table__
    group_ids: dict[str, int] = {}
    # existing groups' ids by sid (for parents, homes, memberships)
    for sid, ident in await session.execute(select(g.c.external_id, g.c.id).where(g.c.external_id.is_not(None))):
        group_ids[sid] = ident
    if plan.new_groups:
        taken = set(await session.scalars(select(g.c.slug)))
        rows = []
        for new in plan.new_groups:
            base = _slug_base(new["name"])
            slug, n = base, 2
            while slug in taken:
                slug, n = f"{base}-{n}", n + 1
            taken.add(slug)
            title, starts, ends = new["term"]
            rows.append((new["name"], new["name"].lower(), slug, True, new["sid"], new["kind"], new["code"], title, starts, ends, 0, now))
        await insert_rows(
            session, g,
            ("name", "name_normalized", "slug", "synced", "external_id", "roster_kind", "class_code", "term_title",
             "term_starts_on", "term_ends_on", "depth", "created_at"),
            rows,
        )
        group_ids.update(await _ids_by_external(session, g, [new["sid"] for new in plan.new_groups]))
    if plan.new_groups:
        # closure rows and depth of the new groups: their parents' ancestors (existing parents read once)
        parent_of = {new["sid"]: new["parent"] for new in plan.new_groups}
        new_sids = set(parent_of)
        outside = sorted({group_ids[p] for p in parent_of.values() if p and p not in new_sids})
        ancestors_of: dict[int, list[tuple[int, int]]] = {}
        postgres = is_postgres(session)
        for chunk in value_chunks(postgres, outside):
            for ancestor, descendant, depth in await session.execute(
                select(closure.c.ancestor_id, closure.c.descendant_id, closure.c.depth).where(one_of(postgres, closure.c.descendant_id, chunk))
            ):
                ancestors_of.setdefault(descendant, []).append((ancestor, depth))
        chains: dict[str, list[tuple[int, int]]] = {}

        def chain(sid: str) -> list[tuple[int, int]]:
            """(ancestor, distance) for the new group `sid`, itself included."""
            if sid in chains:
                return chains[sid]
            me = group_ids[sid]
            parent = parent_of[sid]
            above: list[tuple[int, int]] = []
            if parent in new_sids:
                above = chain(parent)  # type: ignore[arg-type]
            elif parent:
                above = ancestors_of.get(group_ids[parent], [])
            chains[sid] = [(me, 0), *((a, d + 1) for a, d in above)]
            return chains[sid]

        closure_rows = [(a, group_ids[sid], d) for sid in parent_of for a, d in chain(sid)]
        await _insert(session, closure, ("ancestor_id", "descendant_id", "depth"), closure_rows)
        await _update(
            session, g, ("parent_id", "depth"),
            [(group_ids[sid], group_ids[p] if p else None, len(chain(sid)) - 1) for sid, p in parent_of.items()],
        )
    # rare: a school moved to another district, a class to another school. After the new groups' closure
    # rows, so that a new group under a moved one moves with it.
    for gid, parent_sid in plan.moves:
        await move(session, gid, group_ids[parent_sid] if parent_sid else None)
    await _update(
        session, g, ("name", "name_normalized", "roster_kind", "class_code", "term_title", "term_starts_on", "term_ends_on"),
        plan.group_updates,
    )

    # users
    user = User.__table__
    user_ids: dict[str, int] = {}
    if plan.new_users:
        await _insert(
            session, user,
            ("email", "email_normalized", "external_id", "kind", "first_name", "last_name", "last_name_normalized",
             "site_roles", "status", "synced", "home_group_id", "agreed_to_download_reports", "created_at", "login_count"),
            (
                (n["email"], n["email"].lower(), n["sid"], n["kind"], n["first"], n["last"], n["last"].lower(), "",
                 n["status"], True, group_ids.get(n["home"]) if n["home"] else None, True, now, 0)
                for n in plan.new_users
            ),
        )
    await _update(
        session, user,
        ("email", "email_normalized", "kind", "first_name", "last_name", "last_name_normalized", "status", "home_group_id"),
        [(*row[:8], group_ids[row[9]] if row[9] else row[8]) for row in plan.user_updates],
    )
    if plan.denied:  # a DENIED account's sessions and API tokens end with it
        postgres = is_postgres(session)
        for chunk in value_chunks(postgres, plan.denied):
            for table in (Session.__table__, ApiToken.__table__):
                await session.execute(
                    update(table).where(one_of(postgres, table.c.user_id, chunk), table.c.revoked_at.is_(None)).values(revoked_at=now)
                )
    wanted_users = {s for s, _, _ in plan.new_memberships} | {a for pair in plan.new_links for a in pair}
    if wanted_users:
        user_ids = await _ids_by_external(session, user, sorted(wanted_users))

    # memberships and guardian links
    membership = Membership.__table__
    await _insert(
        session, membership, ("user_id", "group_id", "role", "created_at"),
        ((user_ids[u], group_ids[gs], role, now) for u, gs, role in plan.new_memberships),
    )
    await _update(session, membership, ("role",), plan.role_changes)
    await _update(session, membership, ("role", "ended_at"), ((mid, role, None) for mid, role in plan.restores))
    if plan.ends:
        postgres = is_postgres(session)
        for chunk in value_chunks(postgres, plan.ends):
            await session.execute(update(membership).where(one_of(postgres, membership.c.id, chunk)).values(ended_at=now))
    await _insert(
        session, GuardianLink.__table__, ("external_user_id", "pupil_id", "licence_type", "created_at"),
        ((user_ids[a], user_ids[b], "PARENT_GUARDIAN", now) for a, b in plan.new_links),
    )


# --- the runs ---------------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    sync: RosterSync

    @property
    def errors(self) -> list[RowError]:
        return [RowError(**e) for e in json.loads(self.sync.errors or "[]")]

    def as_json(self) -> dict[str, Any]:
        s = self.sync
        return {
            "id": to_global_id("RosterSync", s.id),  # type: ignore[arg-type]
            "status": s.status, "startedAt": s.started_at.isoformat(),
            "finishedAt": s.finished_at.isoformat() if s.finished_at else None, "heldReason": s.held_reason,
            "groupsCreated": s.groups_created, "groupsUpdated": s.groups_updated, "usersCreated": s.users_created,
            "usersUpdated": s.users_updated, "usersDenied": s.users_denied, "membershipsCreated": s.memberships_created,
            "membershipsUpdated": s.memberships_updated, "membershipsEnded": s.memberships_ended,
            "guardianLinksCreated": s.guardian_links_created, "unchanged": s.unchanged,
            "errors": [e.as_json() for e in self.errors],
        }


# memberships written (created, restored, ended, given another role) from which a sync pauses the rolled-up
# progress summary's triggers and rebuilds it once at the end: the triggers cost ~0.5 ms a membership
# (a first sync of 100,000 memberships: 60 s instead of 6 s on PostgreSQL), a rebuild a few seconds
ROLLUP_REBUILD_FROM = 5_000


def membership_writes(plan: Plan) -> int:
    return len(plan.new_memberships) + len(plan.role_changes) + len(plan.restores) + len(plan.ends)


async def _apply(session: AsyncSession, plan: Plan) -> None:
    """A large sync writes with the rollup paused, then rebuilds it in the same transaction (its rows stay
    locked until the sync commits: progress recorded meanwhile waits for it)."""
    bulk = membership_writes(plan) >= ROLLUP_REBUILD_FROM
    try:
        if bulk:
            await rollup.run(session, rollup.pause_statements(rollup.dialect_of(session)))
        await apply_plan(session, plan)
        if bulk:
            await rollup.run(session, (*rollup.REBUILD, *rollup.resume_statements(rollup.dialect_of(session))))
    except IntegrityError:  # another writer took an email or a slug between the plan and the write
        raise Conflict("The data changed while the bundle was imported; run it again.", field="file") from None


def held_reason(plan: Plan, percent: float) -> str | None:
    reasons = []
    share = percent / 100
    if plan.ends and len(plan.ends) > share * plan.active_memberships:
        reasons.append(
            f"it would end {len(plan.ends)} of {plan.active_memberships} synced memberships (more than {percent:g}%)"
        )
    if plan.denied and len(plan.denied) > share * plan.active_accounts:
        reasons.append(f"it would deny {len(plan.denied)} of {plan.active_accounts} synced accounts (more than {percent:g}%)")
    return "; ".join(reasons) or None


def _set_counts(sync: RosterSync, plan: Plan) -> None:
    for name, value in plan.counts().items():
        setattr(sync, name, value)


async def run_import(
    transaction: Transaction, settings: Settings, actor_id: int | None, data: bytes, dry_run: bool, source: str,
    approve: bool = False,
) -> RunResult:
    """Read, validate, plan and (unless dry_run, held or failed) apply, in one transaction; the run is
    recorded and audited whatever its outcome."""
    bundle = read_bundle(data, settings.roster_max_bundle_bytes)
    sync = RosterSync(status="FAILED", source=source, actor_id=actor_id)
    async with transaction() as session:
        await lock_tree(session, exclusive=True)  # one rostering run (and no re-nest) at a time
        plan = await plan_bundle(session, bundle)  # reports the bundle's own errors with those across files
        errors = plan.errors
        if errors:
            sync.errors = json.dumps([e.as_json() for e in errors[:MAX_ERRORS]])
        else:
            _set_counts(sync, plan)
            reason = held_reason(plan, settings.roster_hold_percent)
            if dry_run:
                sync.status, sync.held_reason = "DRY_RUN", reason
            elif reason and not approve:
                sync.status, sync.held_reason = "HELD", reason
                sync.plan_digest, sync.bundle = plan.digest(), data
            else:
                await _apply(session, plan)
                sync.status, sync.held_reason = "APPLIED", reason
                if reason:
                    sync.decided_by_id, sync.decided_at = actor_id, utcnow()
        sync.finished_at = utcnow()
        session.add(sync)
        await session.flush()
        superseded: list[int] = []
        if sync.status in ("APPLIED", "HELD"):  # a newer run answers for the SIS: older held runs are discarded
            table = RosterSync.__table__
            superseded = list(await session.scalars(
                update(table).where(table.c.status == "HELD", table.c.id != sync.id)
                .values(status="REJECTED", bundle=None, decided_at=utcnow())
                .returning(table.c.id)
            ))
        audit(session, actor_id, "roster.import", "roster_sync", sync.id, source=source, status=sync.status,
              errors=len(errors), superseded=sorted(superseded), **({} if errors else plan.counts()))
    return RunResult(sync)


async def decide(transaction: Transaction, actor_id: int | None, sync_id: int, approve: bool) -> RunResult:
    """Approve (apply exactly the held plan, or CONFLICT when it would now differ) or reject a HELD run."""
    async with transaction() as session:
        await lock_tree(session, exclusive=True)
        sync = await session.get(RosterSync, sync_id)
        if sync is None:
            raise NotFound("No such roster sync.", field="id")
        if sync.status != "HELD":
            raise Conflict(f"The run is {sync.status}, not HELD.", field="id")
        if approve:
            plan = await plan_bundle(session, read_bundle(sync.bundle or b""))
            if plan.errors or plan.digest() != sync.plan_digest:
                raise Conflict(
                    "The data changed since the run was held: it would no longer do what it was held with. "
                    "Reject it and run the bundle again.",
                    field="id",
                )
            await _apply(session, plan)
            sync.status = "APPLIED"
        else:
            sync.status = "REJECTED"
        sync.decided_by_id, sync.decided_at, sync.bundle = actor_id, utcnow(), None
        session.add(sync)
        audit(session, actor_id, "roster.approve" if approve else "roster.reject", "roster_sync", sync.id,
              held_reason=sync.held_reason, memberships_ended=sync.memberships_ended, users_denied=sync.users_denied)
    return RunResult(sync)

