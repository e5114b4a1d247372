"""Enums of the contract that several domains share."""

from __future__ import annotations

from enum import Enum, StrEnum

import strawberry


@strawberry.enum
class SubmissionStatus(Enum):
    NEEDS_REVIEW = "NEEDS_REVIEW"
    REVIEWED = "REVIEWED"


@strawberry.enum
class SiteRole(Enum):
    OWNER = "OWNER"
    ADMIN = "ADMIN"
    GROUP_ANALYST = strawberry.enum_value(
        "GROUP_ANALYST", description="May be assigned groups as ANALYST. Seats are limited by the site's plan."
    )


@strawberry.enum
class UserKind(Enum):
    STAFF = strawberry.enum_value("STAFF", description="Staff, teachers, mentors.")
    LEARNER = strawberry.enum_value("LEARNER", description="Students / learners whose progress is tracked.")
    EXTERNAL = strawberry.enum_value(
        "EXTERNAL", description="Parents, guardians and other external users of the gateway."
    )


@strawberry.enum
class AccountStatus(Enum):
    ACTIVE = "ACTIVE"
    DENIED = strawberry.enum_value(
        "DENIED", description="Signing in behaves exactly as if the account did not exist."
    )


@strawberry.enum
class GroupRole(Enum):
    LEADER = "LEADER"
    MENTOR = "MENTOR"
    ANALYST = "ANALYST"
    MEMBER = "MEMBER"


@strawberry.enum
class LicenceType(Enum):
    PARENT_GUARDIAN = "PARENT_GUARDIAN"
    PUPIL = "PUPIL"
    OTHER = "OTHER"


@strawberry.enum
class ExportFormat(StrEnum):  # a str enum: its default value prints in the sorted schema.graphql
    CSV = "CSV"
    XLSX = "XLSX"


@strawberry.enum(description="Which way a list runs.")
class OrderDirection(StrEnum):  # a str enum: its default value prints in the sorted schema.graphql
    ASC = "ASC"
    DESC = "DESC"


def describe_values(enum: type, descriptions: dict[str, str]) -> None:
    """Value descriptions for a str enum (strawberry.enum_value does not make a str)."""
    for value in enum.__strawberry_definition__.values:  # type: ignore[attr-defined]
        value.description = descriptions[value.name]


describe_values(OrderDirection, {"ASC": "Smallest (A, oldest) first.", "DESC": "Largest (Z, newest) first."})
