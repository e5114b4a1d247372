"""Uploads: multipart only with a CSRF-safe header, size-limited, and the CSV read as text, never evaluated."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from app.store.models import AuditEvent, Membership, User
from tests.site import Site, errors_of

IMPORT = """mutation($file: Upload!, $dry: Boolean) {
  importGroupAssignments(file: $file, dryRun: $dry) { applied rowCount membershipsCreated errors { line column message } }
}"""
MAX_UPLOAD = 4096


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"max_upload_bytes": MAX_UPLOAD}


async def post_upload(
    site: Site, content: bytes, user: User | None, headers: dict[str, str], *, mime: str = "text/csv", dry: bool = False
) -> httpx.Response:
    all_headers = dict(headers)
    if user is not None:
        all_headers["Authorization"] = f"Bearer {await site.token(user)}"
    return await site.client.post(
        "/graphql",
        data={
            "operations": json.dumps({"query": IMPORT, "variables": {"file": None, "dry": dry}}),
            "map": json.dumps({"0": ["variables.file"]}),
        },
        files={"0": ("assignments.csv", content, mime)},
        headers=all_headers,
    )


async def setting_up(site: Site) -> tuple[User, str]:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    await site.user("Lea", external_id="S1")
    group = await site.group("Class")
    return admin, f"student_id,groups\nS1,{group.slug}\n"


async def test_multipart_needs_a_csrf_safe_header(site: Site) -> None:
    admin, csv_text = await setting_up(site)
    # what a cross-site HTML form (a "simple" request, no preflight) can send
    for headers in ({}, {"Origin": "https://evil.example"}, {"Content-Language": "en"}):
        response = await post_upload(site, csv_text.encode(), admin, headers)
        assert response.status_code == 400 and errors_of(response.json()) == ["BAD_USER_INPUT"]
        assert "Apollo-Require-Preflight" in response.json()["errors"][0]["message"]
    assert await site.count(Membership) == 0 and await site.count(AuditEvent) == 0
    for header in ("Apollo-Require-Preflight", "X-Requested-With", "GraphQL-Preflight"):
        body = (await post_upload(site, csv_text.encode(), admin, {header: "1"}, dry=True)).json()
        assert body["data"]["importGroupAssignments"]["applied"] is True, body
    body = (await post_upload(site, csv_text.encode(), admin, {"X-Requested-With": "fetch"})).json()
    assert body["data"]["importGroupAssignments"]["membershipsCreated"] == 1
    assert await site.count(Membership) == 1 and await site.count(AuditEvent) == 1
    # the other cross-site shapes: form-encoded or text/plain bodies are not GraphQL requests here
    mutation = json.dumps({"query": 'mutation { createApiToken(name: "x") { token } }'})
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        response = await site.client.post(
            "/graphql", content=mutation, headers={"content-type": content_type, "Authorization": f"Bearer {await site.token(admin)}"}
        )
        assert response.status_code == 400 and errors_of(response.json()) == ["BAD_USER_INPUT"]


async def test_uploads_are_size_limited(site: Site) -> None:
    admin, csv_text = await setting_up(site)
    big = (csv_text + "S1,x\n" * (MAX_UPLOAD // 5)).encode()
    response = await post_upload(site, big, admin, {"X-Requested-With": "1"})
    assert response.status_code == 413 and errors_of(response.json()) == ["PAYLOAD_TOO_LARGE"]
    operations = json.dumps({"query": IMPORT, "variables": {"file": None}})
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{operations}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"map\"\r\n\r\n{{\"0\": [\"variables.file\"]}}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"0\"; filename=\"a.csv\"\r\nContent-Type: text/csv\r\n\r\n"
    ).encode() + big + f"\r\n--{boundary}--\r\n".encode()

    async def chunked() -> Any:  # no content-length: counted while read
        for start in range(0, len(body), 1024):
            yield body[start : start + 1024]

    streamed = await site.client.post(
        "/graphql", content=chunked(),
        headers={
            "content-type": f"multipart/form-data; boundary={boundary}", "X-Requested-With": "1",
            "Authorization": f"Bearer {await site.token(admin)}",
        },
    )
    assert streamed.status_code == 413 and errors_of(streamed.json()) == ["PAYLOAD_TOO_LARGE"]
    assert await site.count(Membership) == 0 and await site.count(AuditEvent) == 0


async def test_csv_is_read_as_text_only(site: Site) -> None:
    admin, csv_text = await setting_up(site)
    formulas = 'student_id,groups\n=1+1,x\n"=HYPERLINK(""http://evil.example"",""x"")",x\n@SUM(A1),x\n'
    body = (await post_upload(site, formulas.encode(), admin, {"X-Requested-With": "1"})).json()
    report = body["data"]["importGroupAssignments"]
    assert report["applied"] is False and [e["line"] for e in report["errors"] if e["column"] == "student_id"] == [2, 3, 4]
    # a spreadsheet (zip bytes) under a CSV name and whatever MIME type the browser gives it is not text
    xlsx = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xff\xfe" + bytes(range(256))
    for mime in ("text/csv", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"):
        report = (await post_upload(site, xlsx, admin, {"X-Requested-With": "1"}, mime=mime)).json()["data"][
            "importGroupAssignments"
        ]
        assert report["applied"] is False and "not UTF-8 text" in report["errors"][0]["message"]
    nul = (await post_upload(site, b"student_id,groups\nS1\x00,x\n", admin, {"X-Requested-With": "1"})).json()
    report = nul["data"]["importGroupAssignments"]
    assert report["applied"] is False and report["errors"][0]["line"] == 2 and "NUL" in report["errors"][0]["message"]
    # the file variable must be an upload: a string in a JSON request is bad input
    body = await site.gql(IMPORT, {"file": csv_text}, as_user=admin)
    assert errors_of(body) == ["BAD_USER_INPUT"]
    assert await site.count(Membership) == 0 and await site.count(AuditEvent) == 0
