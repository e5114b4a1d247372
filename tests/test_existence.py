"""What the caller may not see reads exactly as what does not exist: in import messages, and in the work
`user(id:)` does."""

from __future__ import annotations

from tests.site import Site, gid
from tests.test_imports import upload

USER = "query($id: ID!) { user(id: $id) { firstName } }"


async def test_import_messages_do_not_tell_hidden_accounts_from_missing_ones(site: Site) -> None:
    leader = await site.user("Lia", kind="STAFF")
    group = await site.group("Class")
    await site.member(leader, group, "LEADER")
    # two accounts the leader cannot see: one holds 'x@example.com' as external id, the other as email
    await site.user("Hid", external_id="x@example.com")
    await site.user("Den", email="x@example.com")
    csv = f"student_id,groups\nx@example.com,{group.slug}\nnobody@example.com,{group.slug}\n".encode()
    body = await upload(site, csv, leader, dry_run=True)
    messages = [e["message"] for e in body["data"]["importGroupAssignments"]["errors"]]
    assert messages == ["unknown student 'x@example.com'", "unknown student 'nobody@example.com'"], body
    # one of them visible to the caller: it is the student, the other stays unknown
    visible = await site.user("Vis", external_id="v@example.com")
    await site.user("Other", email="v@example.com")
    await site.member(visible, group)
    body = await upload(site, f"student_id,groups\nv@example.com,{group.slug}\n".encode(), leader, dry_run=True)
    assert body["data"]["importGroupAssignments"]["errors"] == [], body


async def test_user_by_id_does_the_same_work_for_hidden_and_missing_users(site: Site) -> None:
    viewer = await site.user("Vic", kind="STAFF")
    hidden = await site.user("Hidden")
    await site.token(viewer)
    counts = []
    for user_id in (gid("User", hidden), gid("User", hidden.id + 1000)):
        with site.statements() as counted:
            body = await site.gql(USER, {"id": user_id}, as_user=viewer)
        assert body == {"data": {"user": None}}
        counts.append((counted.count, [s.split(" WHERE")[0] for s in counted.statements]))
    assert counts[0] == counts[1]
