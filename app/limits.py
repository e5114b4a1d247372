"""Query limits that run before any resolver: depth, aliases, tokens, cost, page size, introspection.

Each refusal carries its own `extensions.code` (LIMIT_CODES), so a client can tell which limit it hit.
Depth, aliases and tokens are Strawberry's own limiters; their errors are given their code by
`limit_code` (they carry none). Cost and page size are one validation rule here, built per request
so that it sees the request's variables.

The cost of an operation (after the `@listSize` idea of the GraphQL cost directive): every field costs
1; the selection under a field with a `first` argument is counted `first` times (its value, a variable's
value, or the argument's default); under any other list field it is counted ASSUMED_LIST_SIZE times
(the `edges` of a connection are already counted by its `first`). Nested lists multiply.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_list_type,
)
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)

from app.settings import Settings

ASSUMED_LIST_SIZE = 10
DEFAULT_FIRST = 50

QUERY_TOO_DEEP = "QUERY_TOO_DEEP"
TOO_MANY_ALIASES = "TOO_MANY_ALIASES"
TOO_MANY_TOKENS = "TOO_MANY_TOKENS"
QUERY_TOO_COSTLY = "QUERY_TOO_COSTLY"
PAGE_TOO_LARGE = "PAGE_TOO_LARGE"
BATCH_TOO_LARGE = "BATCH_TOO_LARGE"
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
LIMIT_CODES = (
    QUERY_TOO_DEEP, TOO_MANY_ALIASES, TOO_MANY_TOKENS, QUERY_TOO_COSTLY, PAGE_TOO_LARGE, BATCH_TOO_LARGE,
    PAYLOAD_TOO_LARGE,
)

# Strawberry's limiters report plain errors; their messages tell which limit it was.
_MESSAGES = (
    (re.compile(r"exceeds maximum operation depth of \d+"), QUERY_TOO_DEEP),
    (re.compile(r"^\d+ aliases found\. Allowed: \d+"), TOO_MANY_ALIASES),
    (re.compile(r"Document contains more than \d+ tokens"), TOO_MANY_TOKENS),
)
_SUGGESTION = re.compile(r" ?Did you mean [^?]*\?")


def limit_code(error: GraphQLError) -> str | None:
    """The limit code of a request error from Strawberry's limiters, if it is one."""
    if error.path is not None or (error.extensions or {}).get("code"):
        return None
    for pattern, code in _MESSAGES:
        if pattern.search(error.message):
            return code
    return None


def without_suggestions(message: str) -> str:
    """"Cannot query field 'nme' on type 'User'. Did you mean 'name'?" without the hint (production)."""
    return _SUGGESTION.sub("", message)


def _int_argument(field: FieldNode, name: str, variables: dict[str, Any]) -> int | None:
    for argument in field.arguments or ():
        if argument.name.value != name:
            continue
        value = argument.value
        if isinstance(value, IntValueNode):
            return int(value.value)
        if isinstance(value, VariableNode):
            given = variables.get(value.name.value)
            if isinstance(given, int) and not isinstance(given, bool):
                return given
        return None
    return None


class _Costing:
    def __init__(self, context: ValidationContext, variables: dict[str, Any], max_page: int) -> None:
        self.context = context
        self.variables = variables
        self.max_page = max_page
        self.fragments = {
            d.name.value: d for d in context.document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.page_errors: list[tuple[FieldNode, int]] = []

    def cost(self, selection_set: SelectionSetNode | None, parent: Any, seen: frozenset[str]) -> int:
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field_cost(selection, parent, seen)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.context.schema.get_type(condition.name.value) if condition else parent
                total += self.cost(selection.selection_set, target or parent, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in seen:  # unknown or cyclic: other rules report it
                    continue
                target = self.context.schema.get_type(fragment.type_condition.name.value)
                total += self.cost(fragment.selection_set, target or parent, seen | {name})
        return total

    def field_cost(self, field: FieldNode, parent: Any, seen: frozenset[str]) -> int:
        name = field.name.value
        if name.startswith("__") or not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return 0
        definition = parent.fields.get(name)
        if definition is None:
            return 0
        if "first" in definition.args:
            first = _int_argument(field, "first", self.variables)
            if first is None:
                default = definition.args["first"].default_value
                first = default if isinstance(default, int) else DEFAULT_FIRST
            if first > self.max_page:
                self.page_errors.append((field, first))
            multiplier = max(first, 0)
        elif is_list_type(get_nullable_type(definition.type)) and not (
            name == "edges" and parent.name.endswith("Connection")
        ):
            multiplier = ASSUMED_LIST_SIZE
        else:
            multiplier = 1
        return 1 + multiplier * self.cost(field.selection_set, get_named_type(definition.type), seen)


def cost_rule(settings: Settings, variables: dict[str, Any]) -> type[ValidationRule]:
    class CostAndPageSize(ValidationRule):
        per_request = True  # depends on the variables: app.query_cache runs it even for a cached document

        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            costing = _Costing(context, variables, settings.max_page_size)
            costs = [
                (d, costing.cost(d.selection_set, context.schema.get_root_type(d.operation), frozenset()))
                for d in context.document.definitions
                if isinstance(d, OperationDefinitionNode)
            ]
            if costing.page_errors:  # the page size is the error; the cost it implies is beside the point
                field, first = costing.page_errors[0]
                context.report_error(
                    GraphQLError(
                        f"first must be at most {settings.max_page_size} (got {first}).",
                        field,
                        extensions={"code": PAGE_TOO_LARGE, "field": "first", "limit": settings.max_page_size},
                    )
                )
                return
            for definition, cost in costs:
                if cost > settings.max_query_cost:
                    context.report_error(
                        GraphQLError(
                            f"The query costs {cost}, over the limit of {settings.max_query_cost}: ask for "
                            "smaller pages (first) or fewer nested lists.",
                            definition,
                            extensions={"code": QUERY_TOO_COSTLY, "cost": cost, "limit": settings.max_query_cost},
                        )
                    )

    return CostAndPageSize


class QueryCost(SchemaExtension):
    """Adds the cost and page-size rule, with this request's variables, to validation."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def on_operation(self) -> Iterator[None]:
        variables = self.execution_context.variables or {}
        self.execution_context.validation_rules = (
            *self.execution_context.validation_rules,
            cost_rule(self.settings, variables),
            nul_rule(variables),
        )
        yield


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


def nul_rule(variables: dict[str, Any]) -> type[ValidationRule]:
    """No text holds a NUL character (PostgreSQL refuses it in any string): BAD_USER_INPUT up front,
    for string literals in the document and string variables alike."""

    class NoNul(ValidationRule):
        per_request = True  # depends on the variables: app.query_cache runs it even for a cached document

        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            if _holds_nul(variables):
                context.report_error(
                    GraphQLError("Strings must not contain NUL characters.", extensions={"code": "BAD_USER_INPUT"})
                )

        def enter_string_value(self, node: StringValueNode, *_args: Any) -> None:
            if "\x00" in node.value:
                self.report_error(
                    GraphQLError(
                        "Strings must not contain NUL characters.", node, extensions={"code": "BAD_USER_INPUT"}
                    )
                )

    return NoNul


def _skip_introspection(context: Any) -> bool:
    return context.field_name.startswith("__")


def limit_extensions(settings: Settings) -> list[Any]:
    """Zero-argument factories, as Strawberry wants them (an instance would be shared across requests)."""
    extensions: list[Any] = [
        partial(QueryDepthLimiter, max_depth=settings.max_query_depth, should_ignore=_skip_introspection),
        partial(MaxAliasesLimiter, max_alias_count=settings.max_aliases),
        partial(MaxTokensLimiter, max_token_count=settings.max_tokens),
        partial(QueryCost, settings),
    ]
    if settings.production:
        from graphql.validation import NoSchemaIntrospectionCustomRule

        extensions.append(partial(AddValidationRules, [NoSchemaIntrospectionCustomRule]))
    # issue 8: a query text that passed every rule above is not parsed and validated again
    from app.query_cache import query_caches

    extensions += query_caches()
    return extensions


def operation_costs(schema: Any, query: str, variables: dict[str, Any] | None = None) -> list[int]:
    """The cost of each operation in `query` (for tests and the bench)."""
    from graphql import TypeInfo, parse

    document = parse(query)
    context = ValidationContext(schema, document, TypeInfo(schema), lambda _error: None)
    costing = _Costing(context, variables or {}, 10**18)
    return [
        costing.cost(d.selection_set, schema.get_root_type(d.operation), frozenset())
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
    ]
