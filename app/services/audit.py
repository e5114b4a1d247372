"""The audit log: written inside the mutation's own transaction, so a failed change leaves none."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.store.models import AuditEvent, utcnow


def _default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value)
    return str(value)


def audit_values(
    actor_id: int | None, action: str, target_type: str, target_id: int | None, **detail: Any
) -> dict[str, Any]:
    """An audit row's columns (but its id), for a statement that writes it along with other rows."""
    return {
        "actor_id": actor_id,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "occurred_at": utcnow(),
        "detail": json.dumps(detail, default=_default, sort_keys=True) if detail else None,
    }


def audit(
    session: AsyncSession,
    actor_id: int | None,
    action: str,
    target_type: str,
    target_id: int | None,
    **detail: Any,
) -> None:
    session.add(AuditEvent(**audit_values(actor_id, action, target_type, target_id, **detail)))
