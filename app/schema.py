"""Schema assembly: every domain's queries and mutations, the error rules and the deny-by-default check."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.permission import PermissionExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext
from strawberry.types.private import is_private

from app.runtime import tracing
from app.runtime.errors import AppError, ConcurrentChange
from app.runtime.logs import log, note_operation
from app.runtime.metrics import ERRORS, KNOWN_OPERATIONS, OPERATION_SECONDS, OPERATION_TYPES, bounded
from app.settings import Settings, get_settings
from app.store.db import concurrent_change
from resolvers.audit import AuditEvent, AuditQueries
from resolvers.consent import AccessRequest, ConsentMutations, ConsentQueries
from resolvers.courses import Course, CourseMutations, CourseQueries, Step
from resolvers.descriptions import describe
from resolvers.exports import ExportJob, ExportMutations, ExportQueries, ExportSchedule
from resolvers.groups import Group, GroupMutations, GroupQueries
from resolvers.guardians import GuardianLink, GuardianMutations, GuardianQueries
from resolvers.imports import ImportMutations, ImportQueries
from resolvers.memberships import Membership, MembershipMutations
from resolvers.node import NodeQueries
from resolvers.outbox import OutboxQueries
from resolvers.progress import ProgressMutations
from resolvers.reviews import ReviewMutations, Submission
from resolvers.rostering import RosterMutations, RosterQueries, RosterSync
from resolvers.scalars import SCALARS
from resolvers.sessions import SessionMutations, SessionQueries
from resolvers.subscriptions import LiveSubscriptions
from resolvers.users import User, UserListQueries, UserMutations, UserQueries

QUERIES: tuple[type, ...] = (
    NodeQueries, UserQueries, GroupQueries, ConsentQueries, GuardianQueries, ImportQueries,
    CourseQueries,
    UserListQueries,
    AuditQueries,
    RosterQueries,
    ExportQueries,
    SessionQueries,
    OutboxQueries,
)
MUTATIONS: tuple[type, ...] = (
    SessionMutations, UserMutations, GroupMutations, ConsentMutations, GuardianMutations, ImportMutations,
    # membership mutations
    MembershipMutations,
    CourseMutations, ProgressMutations, ReviewMutations,
    RosterMutations,
    ExportMutations,
)

# Fields of protected types that anyone who may see the object may read. Everything else on these
# types must carry a permission class, or building the schema fails.
PUBLIC_FIELDS: dict[type, set[str]] = {
    User: {
        "id", "database_id", "external_id", "kind", "first_name", "last_name", "title", "roles", "synced",
        "agreed_to_download_reports", "created_at", "memberships", "home_group",
    },
    Group: {
        "id", "database_id", "name", "slug", "description", "synced", "created_at", "parent", "ancestors",
        "children", "depth", "viewer_role", "viewer_permissions", "members", "member_count", "external_id",
        "class_code", "term",
    },
    Membership: {"id", "database_id", "user", "group", "role", "created_at", "access_request", "ended_at"},
    # Seen only by the requester, the subject and site admins; `subject` applies its own rule (null otherwise).
    AccessRequest: {
        "id", "requester", "subject_email", "subject", "message", "status", "created_at", "expires_at", "decided_at",
    },
    # a link shows only where the viewer may see both of its users (resolvers.guardians)
    GuardianLink: {"id", "external_user", "pupil", "licence_type", "created_at"},
    # the catalogue is open to every signed-in user; a submission is shown only to those who may see
    # the submitter's progress (resolvers.reviews), and then whole.
    Course: {"id", "database_id", "name", "steps", "step_count", "reviewed_work_completes"},
    Step: {"id", "database_id", "course", "title", "position", "kind", "max_points"},
    Submission: {
        "id", "database_id", "user", "step", "course", "body", "submitted_at", "status", "points", "feedback",
        "reviewed_by", "reviewed_at", "reviews",
    },
    # only site admins reach audit events (auditLog, node)
    AuditEvent: {"id", "actor", "action", "target_type", "target_id", "occurred_at", "detail"},
    # only site admins reach roster syncs (rosterSyncs, the rostering mutations, node)
    RosterSync: {
        "id", "status", "started_at", "finished_at", "held_reason", "source", "groups_created", "groups_updated",
        "users_created", "users_updated", "users_denied", "memberships_created", "memberships_updated",
        "memberships_ended", "guardian_links_created", "unchanged", "errors", "decided_at",
    },
    # only the owner and site admins reach jobs and schedules (resolvers.exports); the file's link is
    # re-checked against the reader's permission at download
    ExportJob: {
        "id", "status", "format", "report", "rows_written", "rows_total", "progress_percent", "created_at", "attempts",
        "started_at", "finished_at", "expires_at", "file_name", "download_url", "error", "schedule",
    },
    ExportSchedule: {
        "id", "report", "format", "date_format", "group", "course_id", "include_nested", "licence_type", "scope_group",
        "frequency", "time", "time_zone", "weekday", "day_of_month", "recipients", "paused", "next_run_at",
        "last_run_at", "created_at",
    },
}


class SchemaNotDenyByDefault(RuntimeError):
    pass


def check_deny_by_default(public_fields: dict[type, set[str]]) -> None:
    for cls, public in public_fields.items():
        for field in cls.__strawberry_definition__.fields:
            if is_private(field.type):
                continue
            guarded = any(isinstance(e, PermissionExtension) for e in field.extensions)
            if not guarded and field.python_name not in public:
                raise SchemaNotDenyByDefault(
                    f"{cls.__name__}.{field.python_name} carries no permission and is not on the public list"
                )


class RequestScope(SchemaExtension):
    """Mutations get a write session (BEGIN IMMEDIATE on SQLite); latency is observed per operation (the
    name as a label only when it is a known one); with tracing on, the operation is a span named like
    "query Dashboard", the parent of its SQL statements' spans."""

    def _name_and_type(self) -> tuple[str | None, str]:
        context = self.execution_context
        try:
            kind = context.operation_type.value
        except Exception:  # no document (a parse error) or no such operation: the request failed before
            kind = "unknown"
        return context.operation_name, kind

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        tracer = tracing.TRACER
        if tracer is None:
            yield
            name, kind = self._name_and_type()
        else:
            with tracer.start_as_current_span("graphql") as span:
                yield
                name, kind = self._name_and_type()
                span.update_name(f"{kind} {name[:100]}" if name else kind)
                span.set_attribute("graphql.operation.type", kind)
                if name:
                    span.set_attribute("graphql.operation.name", name[:100])
                request_id = getattr(self.execution_context.context, "request_id", None)
                if request_id:
                    span.set_attribute(tracing.REQUEST_ID_ATTRIBUTE, request_id)
        note_operation(name)
        OPERATION_SECONDS.labels(bounded(name, KNOWN_OPERATIONS), kind if kind in OPERATION_TYPES else "other").observe(
            time.perf_counter() - started
        )

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context.context
        operation = self.execution_context.operation_type
        if getattr(operation, "value", operation) == "mutation":
            begin_writing = getattr(context, "begin_writing", None)
            if begin_writing is not None:
                await begin_writing()
            elif hasattr(context, "store"):
                context.store.write = True
        yield


class GroupGraphSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        context: Any = execution_context.context if execution_context else None
        request_id = getattr(context, "request_id", None)
        for error in errors:
            if error_code(error) != "INTERNAL_SERVER_ERROR":
                continue
            original = error.original_error or error
            log.error(
                "unexpected_error", request_id=request_id, path=error.path, message=error.message,
                exc_info=(type(original), original, original.__traceback__),
            )


def error_code(error: GraphQLError) -> str:
    """Our errors carry their code; request errors (no path) are validation or variable errors; anything
    else raised while executing is unexpected."""
    original = error.original_error
    if isinstance(original, AppError):
        return original.code
    if original is not None and concurrent_change(original):
        return "CONFLICT"
    code = (error.extensions or {}).get("code")
    if code:
        return str(code)
    if error.path is None:
        if error.message.startswith("Variable '$"):
            return "BAD_USER_INPUT"
        return "GRAPHQL_VALIDATION_FAILED"
    return "INTERNAL_SERVER_ERROR"


def format_error(error: GraphQLError, request_id: str | None) -> dict[str, Any]:
    """The client's view of an error: a code always; unexpected ones masked."""
    code = error_code(error)
    ERRORS.labels(code=code).inc()
    formatted = error.formatted
    if code == "INTERNAL_SERVER_ERROR":
        formatted = {k: v for k, v in formatted.items() if k in ("locations", "path")}
        formatted["message"] = "Internal server error."
        formatted["extensions"] = {"code": code, "requestId": request_id}
        return formatted
    if code == "CONFLICT" and not isinstance(error.original_error, AppError | None):
        formatted["message"] = ConcurrentChange.MESSAGE  # a database collision outside a transaction block
    extensions = dict(formatted.get("extensions") or {})
    extensions["code"] = code
    formatted["extensions"] = extensions
    return formatted


def build_schema(settings: Settings | None = None, *, sorted_for_printing: bool = False) -> strawberry.Schema:
    """The schema. `sorted_for_printing` only for schema.graphql: graphql-core's sorted copy of the schema
    loses Strawberry's enum serializers, so the served schema is never sorted."""
    from app.runtime.limits import limit_extensions
    from app.runtime.plain_fields import PlainFieldsExecutionContext, direct_resolvers

    settings = settings or get_settings()
    check_deny_by_default(PUBLIC_FIELDS)
    query = merge_types("Query", QUERIES)
    mutation = merge_types("Mutation", MUTATIONS)
    schema = GroupGraphSchema(
        query=query,
        mutation=mutation,
        subscription=LiveSubscriptions,
        types=[
            User, Group, Membership, AccessRequest, GuardianLink, Course, Step, Submission, AuditEvent, ExportJob,
            ExportSchedule,
        ],
        extensions=[RequestScope, *limit_extensions(settings), *trusted_only(settings)],
        execution_context_class=PlainFieldsExecutionContext,
        config=StrawberryConfig(
            scalar_map=SCALARS,
            sort_schema=sorted_for_printing,
            batching_config={"max_operations": settings.max_batch_size},
        ),
    )
    describe(schema._schema)
    direct_resolvers(schema)
    return schema


def trusted_only(settings: Settings) -> list[Any]:
    """With GROUPGRAPH_TRUSTED_DOCUMENTS, validation refuses every other document (HTTP and WebSocket alike)."""
    if not settings.trusted_documents:
        return []
    from functools import partial

    from strawberry.extensions import AddValidationRules

    from app.services.persisted import trusted_documents, trusted_documents_rule

    return [partial(AddValidationRules, [trusted_documents_rule(trusted_documents(settings.trusted_documents))])]


def schema_sdl(schema: strawberry.Schema | None = None) -> str:
    return (schema or build_schema(sorted_for_printing=True)).as_str() + "\n"
