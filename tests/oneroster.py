"""OneRoster CSV bundles for the tests and the benchmark, written to the 1.1 and 1.2 CSV bindings.

A `District` is the data (orgs, a term, courses, classes, users, enrollments); `bundle(district, version)`
writes it as the zip a SIS exports: 1.1 with `role` and `orgSourcedIds` in users.csv, 1.2 with
`primaryOrgSourcedId` in users.csv and the roles in roles.csv (its columns in another order, a BOM and
CRLF line ends, as some exporters write them).
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

ENTITIES = (
    "academicSessions", "categories", "classes", "classResources", "courses", "courseResources", "demographics",
    "enrollments", "lineItems", "orgs", "resources", "results", "users",
)
ENTITIES_12 = (*ENTITIES, "roles", "userProfiles", "userResources", "scoreScales")

ORGS = ["sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parentSourcedId"]
SESSIONS = ["sourcedId", "status", "dateLastModified", "title", "type", "startDate", "endDate", "parentSourcedId", "schoolYear"]
COURSES = ["sourcedId", "status", "dateLastModified", "schoolYearSourcedId", "title", "courseCode", "grades", "orgSourcedId", "subjects", "subjectCodes"]
CLASSES = [
    "sourcedId", "status", "dateLastModified", "title", "grades", "courseSourcedId", "classCode", "classType", "location",
    "schoolSourcedId", "termSourcedIds", "subjects", "subjectCodes", "periods",
]
USERS_11 = [
    "sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds", "role", "username", "userIds", "givenName",
    "familyName", "middleName", "identifier", "email", "sms", "phone", "agentSourcedIds", "grades", "password",
]
USERS_12 = [
    "sourcedId", "status", "dateLastModified", "enabledUser", "username", "userIds", "givenName", "familyName",
    "middleName", "identifier", "email", "sms", "phone", "agentSourcedIds", "grades", "password", "userMasterIdentifier",
    "resourceSourcedIds", "preferredGivenName", "preferredMiddleName", "preferredFamilyName", "primaryOrgSourcedId",
    "pronouns",
]
ROLES_12 = ["sourcedId", "status", "dateLastModified", "userSourcedId", "roleType", "role", "beginDate", "endDate", "orgSourcedId", "userProfileSourcedId"]
ENROLLMENTS = [
    "sourcedId", "status", "dateLastModified", "classSourcedId", "schoolSourcedId", "userSourcedId", "role", "primary",
    "beginDate", "endDate",
]
ROLE_12 = {"administrator": "districtAdministrator"}


@dataclass
class Person:
    sid: str
    role: str  # the 1.1 role
    given: str
    family: str
    orgs: tuple[str, ...]
    email: str = ""
    agents: tuple[str, ...] = ()
    enabled: bool = True
    status: str = ""


@dataclass
class District:
    orgs: list[tuple[str, str, str, str]] = field(default_factory=list)  # sid, name, type, parent
    terms: list[tuple[str, str, str, str]] = field(default_factory=list)  # sid, title, start, end
    courses: list[tuple[str, str, str]] = field(default_factory=list)  # sid, title, org
    classes: list[tuple[str, str, str, str, str, str]] = field(default_factory=list)  # sid, title, code, course, school, terms
    users: list[Person] = field(default_factory=list)
    enrollments: list[tuple[str, str, str, str, str]] = field(default_factory=list)  # sid, class, school, user, role
    statuses: dict[str, str] = field(default_factory=dict)  # enrollment sid -> status (delta files)

    def user(self, sid: str) -> Person:
        return next(u for u in self.users if u.sid == sid)


def school_district() -> District:
    """A district with two schools, a term, teachers, an aide, a district administrator, eight students and
    two guardians (linked through agentSourcedIds, from either side)."""
    d = District()
    d.orgs = [("D1", "Riverside District", "district", ""), ("S1", "North School", "school", "D1"), ("S2", "South School", "school", "D1")]
    d.terms = [("T1", "Fall 2026", "2026-08-24", "2026-12-18")]
    d.courses = [("C1", "Mathematics", "D1"), ("C2", "Science", "D1")]
    d.classes = [
        ("K1", "Math 7A", "M7A", "C1", "S1", "T1"), ("K2", "Science 7A", "S7A", "C2", "S1", "T1"),
        ("K3", "Math 7B", "M7B", "C1", "S2", "T1"), ("K4", "Science 7B", "S7B", "C2", "S2", "T1"),
    ]
    d.users = [
        Person("t1", "teacher", "Tess", "Teller", ("S1",), "tess@riverside.example"),
        Person("t2", "teacher", "Tom", "Turner", ("S2",), "tom@riverside.example"),
        Person("a1", "aide", "Ada", "Aidan", ("S1",), "ada@riverside.example"),
        Person("adm1", "administrator", "Dana", "Director", ("D1",), "dana@riverside.example"),
        *(Person(f"s{n}", "student", f"Stu{n}", f"Dent{n}", ("S1" if n <= 4 else "S2",), f"s{n}@riverside.example",
                 agents=("g1",) if n in (1, 2) else ()) for n in range(1, 9)),
        Person("g1", "guardian", "Gail", "Guard", ("D1",), "gail@home.example"),
        Person("g2", "parent", "Pat", "Parent", ("D1",), "", agents=("s5",)),
    ]
    d.enrollments = [
        ("e-t1-K1", "K1", "S1", "t1", "teacher"), ("e-t1-K2", "K2", "S1", "t1", "teacher"),
        ("e-t2-K3", "K3", "S2", "t2", "teacher"), ("e-t2-K4", "K4", "S2", "t2", "teacher"),
        ("e-a1-K1", "K1", "S1", "a1", "aide"),
    ]
    for n in range(1, 9):
        classes = ("K1", "K2") if n <= 4 else ("K3", "K4")
        school = "S1" if n <= 4 else "S2"
        d.enrollments += [(f"e-s{n}-{k}", k, school, f"s{n}", "student") for k in classes]
    return d


def _csv(header: Sequence[str], rows: Iterable[dict[str, str]], crlf: bool = True, bom: bool = False) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(c, "") for c in header])
    return (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode()


def bundle(
    d: District, version: str = "1.1", modes: dict[str, str] | None = None, extra: dict[str, bytes] | None = None,
    omit: Sequence[str] = (),
) -> bytes:
    """The zip. `modes`: file -> bulk | delta | absent (default: every file we write is bulk)."""
    v12 = version == "1.2"
    written = ["orgs", "academicSessions", "courses", "classes", "users", "enrollments", *(["roles"] if v12 else [])]
    modes = {**{name: "bulk" for name in written}, **(modes or {})}
    files: dict[str, bytes] = {}
    reorder = (lambda h: list(reversed(h))) if v12 else (lambda h: h)
    files["orgs.csv"] = _csv(reorder(ORGS), (
        {"sourcedId": s, "name": n, "type": t, "parentSourcedId": p, "dateLastModified": "2026-08-01T00:00:00Z"}
        for s, n, t, p in d.orgs
    ), bom=v12)
    files["academicSessions.csv"] = _csv(SESSIONS, (
        {"sourcedId": s, "title": t, "type": "term", "startDate": b, "endDate": e, "schoolYear": "2027"} for s, t, b, e in d.terms
    ))
    files["courses.csv"] = _csv(COURSES, ({"sourcedId": s, "title": t, "orgSourcedId": o} for s, t, o in d.courses))
    files["classes.csv"] = _csv(reorder(CLASSES), (
        {"sourcedId": s, "title": t, "classCode": c, "courseSourcedId": k, "schoolSourcedId": o, "termSourcedIds": ts,
         "classType": "scheduled"}
        for s, t, c, k, o, ts in d.classes
    ), crlf=not v12)
    people = []
    for u in d.users:
        row = {
            "sourcedId": u.sid, "status": u.status, "enabledUser": "true" if u.enabled else "false", "givenName": u.given,
            "familyName": u.family, "email": u.email, "agentSourcedIds": ",".join(u.agents), "username": u.sid,
        }
        if v12:
            row["primaryOrgSourcedId"] = u.orgs[0]
        else:
            row["orgSourcedIds"], row["role"] = ",".join(u.orgs), u.role
        people.append(row)
    files["users.csv"] = _csv(USERS_12 if v12 else USERS_11, people, bom=v12)
    if v12:
        files["roles.csv"] = _csv(ROLES_12, (
            {"sourcedId": f"r-{u.sid}-{org}", "userSourcedId": u.sid, "roleType": "primary" if i == 0 else "secondary",
             "role": ROLE_12.get(u.role, u.role), "orgSourcedId": org}
            for u in d.users for i, org in enumerate(u.orgs)
        ))
    files["enrollments.csv"] = _csv(ENROLLMENTS, (
        {"sourcedId": s, "classSourcedId": k, "schoolSourcedId": o, "userSourcedId": u, "role": r,
         "primary": "true" if r == "teacher" else "false", "status": d.statuses.get(s, "")}
        for s, k, o, u, r in d.enrollments
    ))
    manifest = [
        {"propertyName": "manifest.version", "value": "1.0"},
        {"propertyName": "oneroster.version", "value": version},
        *({"propertyName": f"file.{name}", "value": modes.get(name, "absent")} for name in (ENTITIES_12 if v12 else ENTITIES)),
        {"propertyName": "source.systemName", "value": "Test SIS"},
    ]
    files["manifest.csv"] = _csv(["propertyName", "value"], manifest)
    files.update(extra or {})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            if name[:-4] in omit:
                continue
            if name != "manifest.csv" and modes.get(name[:-4], "bulk") == "absent":
                continue
            archive.writestr(name, content)
    return buffer.getvalue()
