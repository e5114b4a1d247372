"""Admin user mutations and the User type's own fields."""

from __future__ import annotations

from app.store.models import AuditEvent, User
from tests.site import Site, errors_of, gid

CREATE = """mutation($input: CreateUserInput!) {
  createUser(input: $input) { id email firstName kind roles status synced agreedToDownloadReports }
}"""


async def test_admin_creates_a_user_and_sees_admin_fields(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    body = await site.gql(
        CREATE,
        {"input": {"email": "Kim@Example.com", "firstName": "Kim", "lastName": "Lee", "kind": "LEARNER", "password": "long enough"}},
        as_user=admin,
    )
    assert "errors" not in body, body
    assert body["data"]["createUser"] | {"id": None} == {
        "id": None, "email": "Kim@Example.com", "firstName": "Kim", "kind": "LEARNER", "roles": [],
        "status": "ACTIVE", "synced": False, "agreedToDownloadReports": True,
    }
    assert await site.count(AuditEvent, AuditEvent.action == "user.create") == 1


async def test_create_user_refusals_change_nothing(site: Site) -> None:
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    learner = await site.user("Lou", email="lou@example.com")
    base = {"firstName": "X", "lastName": "Y", "kind": "LEARNER"}
    taken = await site.gql(CREATE, {"input": {**base, "email": "LOU@example.com"}}, as_user=admin)
    assert errors_of(taken) == ["CONFLICT"]
    bad = await site.gql(CREATE, {"input": {**base, "email": "not-an-email"}}, as_user=admin)
    assert errors_of(bad) == ["BAD_USER_INPUT"] and bad["errors"][0]["extensions"]["field"] == "email"
    empty = await site.gql(CREATE, {"input": {**base, "firstName": " ", "email": "z@example.com"}}, as_user=admin)
    assert errors_of(empty) == ["BAD_USER_INPUT"]
    denied = await site.gql(CREATE, {"input": {**base, "email": "q@example.com"}}, as_user=learner)
    assert errors_of(denied) == ["FORBIDDEN"]
    assert await site.count(User) == 2
    assert await site.count(AuditEvent) == 0


async def test_self_sees_own_contact_but_not_admin_fields(site: Site) -> None:
    learner = await site.user("Mo", email="mo@example.com", company="Acme")
    body = await site.gql("{ viewer { firstName email company roles status lastLoginAt loginCount } }", as_user=learner)
    assert body["data"]["viewer"] == {
        "firstName": "Mo", "email": "mo@example.com", "company": "Acme", "roles": [],
        "status": None, "lastLoginAt": None, "loginCount": None,
    }
    assert sorted(errors_of(body)) == ["FORBIDDEN"] * 3


async def test_outsider_cannot_see_another_user(site: Site) -> None:
    one = await site.user("Ned")
    other = await site.user("Ola")
    body = await site.gql("query($id: ID!) { user(id: $id) { firstName } node(id: $id) { id } }", {"id": gid("User", other)}, as_user=one)
    assert body == {"data": {"user": None, "node": None}}


async def test_set_site_roles(site: Site) -> None:
    owner = await site.user("Oz", kind="STAFF", roles="OWNER")
    staff = await site.user("Pia", kind="STAFF")
    mutation = "mutation($id: ID!, $roles: [SiteRole!]!) { setSiteRoles(userId: $id, roles: $roles) { roles } }"
    body = await site.gql(mutation, {"id": gid("User", staff), "roles": ["ADMIN", "GROUP_ANALYST"]}, as_user=owner)
    assert body == {"data": {"setSiteRoles": {"roles": ["ADMIN", "GROUP_ANALYST"]}}}
    # an admin who is not an owner cannot make owners
    made_admin = await site.gql("{ viewer { roles } }", as_user=staff)
    assert made_admin["data"]["viewer"]["roles"] == ["ADMIN", "GROUP_ANALYST"]
    third = await site.user("Quin", kind="STAFF")
    refused = await site.gql(mutation, {"id": gid("User", third), "roles": ["OWNER"]}, as_user=staff)
    assert errors_of(refused) == ["FORBIDDEN"]
    assert await site.count(User, User.site_roles == "") == 1


async def test_an_admin_cannot_touch_an_owner_in_any_number_of_calls(site: Site) -> None:
    """Owners are above admins: an ADMIN neither strips OWNER (the first of the two calls that used to get past
    the owner-only guards) nor changes an owner's other roles, status or account; only an OWNER does."""
    owner = await site.user("Oz", kind="STAFF", roles="OWNER")
    other_owner = await site.user("Otto", kind="STAFF", roles="OWNER")
    admin = await site.user("Ann", kind="STAFF", roles="ADMIN")
    roles = "mutation($id: ID!, $roles: [SiteRole!]!) { setSiteRoles(userId: $id, roles: $roles) { roles } }"
    status = "mutation($ids: [ID!]!) { setAccountStatus(userIds: $ids, status: DENIED) { status } }"
    delete = "mutation($ids: [ID!]!) { deleteUsers(userIds: $ids) }"
    target = gid("User", owner)
    for attempt in (
        await site.gql(roles, {"id": target, "roles": []}, as_user=admin),
        await site.gql(roles, {"id": target, "roles": ["ADMIN"]}, as_user=admin),
        await site.gql(roles, {"id": target, "roles": ["OWNER", "GROUP_ANALYST"]}, as_user=admin),
        await site.gql(roles, {"id": gid("User", admin), "roles": ["ADMIN", "OWNER"]}, as_user=admin),
        await site.gql(status, {"ids": [target]}, as_user=admin),
        await site.gql(delete, {"ids": [target]}, as_user=admin),
    ):
        assert errors_of(attempt) == ["FORBIDDEN"], attempt
    async with site.database.session() as session:
        stored = await session.get(User, owner.id)
        assert stored is not None and stored.site_roles == "OWNER" and stored.status == "ACTIVE"
        assert (await session.get(User, admin.id)).site_roles == "ADMIN"  # type: ignore[union-attr]
    assert await site.count(AuditEvent) == 0

    # an owner may change another owner's roles, and then the former owner is an admin like any other
    demoted = await site.gql(roles, {"id": gid("User", other_owner), "roles": ["ADMIN"]}, as_user=owner)
    assert demoted == {"data": {"setSiteRoles": {"roles": ["ADMIN"]}}}
    assert errors_of(await site.gql(roles, {"id": target, "roles": []}, as_user=other_owner)) == ["FORBIDDEN"]
    assert await site.count(AuditEvent, AuditEvent.action == "user.roles") == 1
