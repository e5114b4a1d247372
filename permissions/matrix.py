"""The role-by-permission matrix of docs/permissions.md, printed from the rules themselves so the page cannot
drift from the code (tests/test_docs.py compares them)."""

from __future__ import annotations

from permissions.reach import ACCOUNT_GIVES, CONSENT_GIVES, GUARDIAN_GIVES, SELF_MAY, Permission, roles_over

HOME_GROUP_LEADER = "LEADER of the home group"
COLUMNS = (
    "site admin", "LEADER", "MENTOR", "ANALYST", "MEMBER", "self", "consent grantee", "guardian", HOME_GROUP_LEADER,
)


def _holders(permission: Permission) -> set[str]:
    holders = {"site admin", *roles_over(permission)}
    if permission in ACCOUNT_GIVES:
        holders.add(HOME_GROUP_LEADER)
    if permission in SELF_MAY:
        holders.add("self")
    if permission in CONSENT_GIVES:
        holders.add("consent grantee")
    if permission in GUARDIAN_GIVES:
        holders.add("guardian")
    return holders


def permission_matrix_markdown() -> str:
    """One row per permission, one column per way of holding it ("over" the user, or on the group and its
    nested groups for the group permissions; the last column: LEADER of the account's home group or of an
    ancestor of it)."""
    header = "| permission | " + " | ".join(COLUMNS) + " |"
    rule = "|---|" + "---|" * len(COLUMNS)
    rows = [
        f"| `{p.value}` | " + " | ".join("yes" if c in _holders(p) else "" for c in COLUMNS) + " |"
        for p in Permission
    ]
    return "\n".join([header, rule, *rows]) + "\n"
