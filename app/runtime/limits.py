"""Query limits that run before any resolver: depth, aliases, tokens, cost, page size, introspection.

Each refusal carries its own `extensions.code` (LIMIT_CODES), so a client can tell which limit it hit.
Tokens are Strawberry's own limiter (the parser stops); its error is given its code by `limit_code`.
Depth, aliases, cost and page size are one validation rule here: one walk that visits each fragment once
(Strawberry's depth and alias limiters walk every spread again: exponential time on a few hundred tokens
of fragments spreading fragments), made once per schema; it reads the request's variables where QueryCost puts them.

The cost of an operation (after the `@listSize` idea of the GraphQL cost directive): every field costs
1; the selection under a field with a `first` argument is counted `first` times (its value, a variable's
value, or the argument's default); under any other list field it is counted ASSUMED_LIST_SIZE times
(the `edges` of a connection are already counted by its `first`). Nested lists multiply.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import datetime
from functools import partial
from typing import Any

from dateutil.parser import isoparse
from graphql import (
    ArgumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValidationContext,
    ValidationRule,
    ValueNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_input_object_type,
    is_list_type,
)
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    SchemaExtension,
)

from app.runtime.memo import IdentityMemo
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
    """One walk of an operation giving its cost and its depth. Each (fragment, type) is walked once and
    remembered, so a document that spreads fragments into fragments ("...F1 ...F1" in F2, and so on) costs
    time linear in its size, however large the cost it describes (Strawberry's QueryDepthLimiter walks
    every spread again and took seconds on such a 300-token document)."""

    def __init__(self, context: ValidationContext, variables: dict[str, Any], max_page: int) -> None:
        self.context = context
        self.variables = variables
        self.max_page = max_page
        self.fragments = {
            d.name.value: d for d in context.document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.page_errors: list[tuple[FieldNode, int, str]] = []
        self.memo: dict[tuple[str, str], tuple[int, int, int]] = {}

    def walk(
        self, selection_set: SelectionSetNode | None, parent: Any, seen: frozenset[str]
    ) -> tuple[int, int, int]:
        """(cost, depth, aliases) of a selection set: depth 0 when it holds only leaf fields; aliases
        counted in every spread of a fragment, as Strawberry's MaxAliasesLimiter counts them."""
        if selection_set is None:
            return 0, 0, 0
        total = deepest = aliases = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                cost, depth, named = self.field(selection, parent, seen)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.context.schema.get_type(condition.name.value) if condition else parent
                cost, depth, named = self.walk(selection.selection_set, target or parent, seen)
            elif isinstance(selection, FragmentSpreadNode):
                cost, depth, named = self.spread(selection.name.value, parent, seen)
            else:
                continue
            total += cost
            deepest = max(deepest, depth)
            aliases += named
        return total, deepest, aliases

    def spread(self, name: str, parent: Any, seen: frozenset[str]) -> tuple[int, int, int]:
        fragment = self.fragments.get(name)
        if fragment is None or name in seen:  # unknown or cyclic: other rules report it
            return 0, 0, 0
        target = self.context.schema.get_type(fragment.type_condition.name.value) or parent
        key = (name, getattr(target, "name", ""))
        if key not in self.memo:
            self.memo[key] = self.walk(fragment.selection_set, target, seen | {name})
        return self.memo[key]

    def field(self, field: FieldNode, parent: Any, seen: frozenset[str]) -> tuple[int, int, int]:
        name = field.name.value
        alias = 1 if field.alias else 0
        if name.startswith("__") or not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return 0, 0, alias  # introspection (off in production) and unknown fields (refused by validation)
        definition = parent.fields.get(name)
        if definition is None:
            return 0, 0, alias
        if "first" in definition.args:
            # a page of `last` (backwards) takes precedence over `first`, as the connections read them
            last = _int_argument(field, "last", self.variables) if "last" in definition.args else None
            first = last if last is not None else _int_argument(field, "first", self.variables)
            if first is None:
                default = definition.args["first"].default_value
                first = default if isinstance(default, int) else DEFAULT_FIRST
            if first > self.max_page:
                self.page_errors.append((field, first, "last" if last is not None else "first"))
            multiplier = max(first, 0)
        elif is_list_type(get_nullable_type(definition.type)) and not (
            name == "edges" and parent.name.endswith("Connection")
        ):
            multiplier = ASSUMED_LIST_SIZE
        else:
            multiplier = 1
        if field.selection_set is None:
            return 1, 0, alias
        cost, depth, aliases = self.walk(field.selection_set, get_named_type(definition.type), seen)
        return 1 + multiplier * cost, depth + 1, alias + aliases


MAX_WALKS = 256
_WALKS: IdentityMemo[tuple[list[Any], list[tuple[FieldNode, int, str]]]] = IdentityMemo(MAX_WALKS)


def _walked(
    context: ValidationContext, variables: dict[str, Any], max_page: int
) -> tuple[list[Any], list[tuple[FieldNode, int, str]]]:
    """(operation, cost, depth, aliases) of each operation of the document, and its page-size errors, as
    `_Costing` finds them; remembered per document (the parser cache gives a query text the same one) and
    values of the integer variables, the only values the walk reads (`_int_argument`): the dashboard sent again
    is not walked again."""
    document, objects = context.document, (context.schema, context.document)
    ints = tuple(sorted((k, v) for k, v in variables.items() if isinstance(v, int) and not isinstance(v, bool)))
    found = _WALKS.get(objects, (max_page, ints))
    if found is not None:
        return found
    costing = _Costing(context, variables, max_page)
    walked = [
        (d, *costing.walk(d.selection_set, context.schema.get_root_type(d.operation), frozenset()))
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
    ]
    return _WALKS.put(objects, (max_page, ints), (walked, costing.page_errors))


# the variables and the operation name of the operation being validated, for the rules below (set by QueryCost
# for its operation): the rules are classes made once per process (making three classes, with graphql-core's
# visitor bookkeeping, at every request cost ~0.5 ms)
_REQUEST: ContextVar[tuple[dict[str, Any], str | None]] = ContextVar("validated_request", default=({}, None))


def cost_rule(settings: Settings) -> type[ValidationRule]:
    class DepthCostAndPageSize(ValidationRule):
        per_request = True  # depends on the variables: app.runtime.query_cache runs it even for a cached document
        visits_cached_document = staticmethod(lambda _schema, _document: False)  # walks in __init__, visits nothing

        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            variables = _REQUEST.get()[0]
            walked, page_errors = _walked(context, variables, settings.max_page_size)
            aliases = sum(named for _, _, _, named in walked)
            if aliases > settings.max_aliases:
                context.report_error(
                    GraphQLError(
                        f"{aliases} aliases, over the limit of {settings.max_aliases}.",
                        extensions={"code": TOO_MANY_ALIASES, "aliases": aliases, "limit": settings.max_aliases},
                    )
                )
                return
            for definition, _, depth, _ in walked:
                if depth > settings.max_query_depth:
                    name = definition.name.value if definition.name else "anonymous"
                    context.report_error(
                        GraphQLError(
                            f"'{name}' is {depth} levels deep, over the limit of {settings.max_query_depth}.",
                            definition,
                            extensions={"code": QUERY_TOO_DEEP, "depth": depth, "limit": settings.max_query_depth},
                        )
                    )
                    return
            if page_errors:  # the page size is the error; the cost it implies is beside the point
                field, first, argument = page_errors[0]
                context.report_error(
                    GraphQLError(
                        f"{argument} must be at most {settings.max_page_size} (got {first}).",
                        field,
                        extensions={"code": PAGE_TOO_LARGE, "field": argument, "limit": settings.max_page_size},
                    )
                )
                return
            for definition, cost, _, _ in walked:
                if cost > settings.max_query_cost:
                    context.report_error(
                        GraphQLError(
                            f"The query costs {cost}, over the limit of {settings.max_query_cost}: ask for "
                            "smaller pages (first) or fewer nested lists.",
                            definition,
                            extensions={"code": QUERY_TOO_COSTLY, "cost": cost, "limit": settings.max_query_cost},
                        )
                    )

    return DepthCostAndPageSize


class QueryCost(SchemaExtension):
    """Adds the cost and page-size rule, the NUL rule and the input checks (`rules`: `request_rules`), with this
    request's variables, to validation."""

    def __init__(self, settings: Settings, rules: tuple[type[ValidationRule], ...]) -> None:
        self.settings = settings
        self.rules = rules

    def on_operation(self) -> Iterator[None]:
        _REQUEST.set((self.execution_context.variables or {}, self.execution_context.operation_name))
        self.execution_context.validation_rules = (*self.execution_context.validation_rules, *self.rules)
        yield

    def on_validate(self) -> Iterator[None]:
        yield
        # made for this request's variables and done with: a subscription keeps its execution context (and
        # these classes, a few kB) as long as it runs
        rules = self.execution_context.validation_rules
        self.execution_context.validation_rules = tuple(r for r in rules if not getattr(r, "per_request", False))


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


def nul_rule() -> type[ValidationRule]:
    """No text holds a NUL character (PostgreSQL refuses it in any string): BAD_USER_INPUT up front,
    for string literals in the document and string variables alike."""

    class NoNul(ValidationRule):
        per_request = True  # depends on the variables: app.runtime.query_cache runs it even for a cached document
        # a cached document's string literals passed when it was first validated: only the variables are new
        visits_cached_document = staticmethod(lambda _schema, _document: False)

        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            if _holds_nul(_REQUEST.get()[0]):
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


# DateTime arguments are accepted between these wall-clock times (any UTC offset): far from the calendar's
# ends, so that converting to UTC or stepping back to a week's Monday never leaves Python's range.
DATETIME_MIN = datetime(1900, 1, 1)
DATETIME_MAX = datetime(2999, 12, 31, 23, 59, 59, 999999)


def json_depth(value: Any) -> int:
    """How deeply lists and objects nest in a decoded JSON value (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _datetime_value(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return isoparse(value)
        except (ValueError, OverflowError):
            return None  # the scalar itself refuses it
    return None


def _holds_datetime(type_: Any, seen: frozenset[str] = frozenset()) -> bool:
    named = get_named_type(type_)
    if getattr(named, "name", None) == "DateTime":
        return True
    if not is_input_object_type(named) or named.name in seen:
        return False
    return any(_holds_datetime(f.type, seen | {named.name}) for f in named.fields.values())


def _datetime_variables(schema: Any, document: Any) -> Iterator[tuple[str, Any]]:
    """(name, type) of each variable of `document` whose type holds DateTime (itself, in a list or an input
    object); the type is None when the schema does not know it."""
    from graphql import type_from_ast

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            for variable in definition.variable_definitions or ():
                type_ = type_from_ast(schema, variable.type)
                if type_ is None or _holds_datetime(type_):
                    yield variable.variable.name.value, type_


def _in_input_object(type_: Any) -> bool:
    """A variable whose DateTimes lie in input objects: its value is checked field by field, under the fields'
    names, whatever argument it is passed to."""
    return type_ is not None and is_input_object_type(get_named_type(type_))


def declares_datetime_variable(schema: Any, document: Any) -> bool:
    """Whether a variable of `document` is a DateTime (or a list of them): its value is checked under the name of
    the argument it is passed to, which only a visit of the document finds (a variable holding DateTimes in
    input objects is checked without one)."""
    return any(not _in_input_object(type_) for _, type_ in _datetime_variables(schema, document))


def input_rule(settings: Settings) -> type[ValidationRule]:
    """Checks on the request's inputs that the GraphQL rules do not make: a document with several operations
    names the one to run; variables nest at most `max_variable_depth` levels; DateTime arguments (literal or
    variable, in input objects too) lie between DATETIME_MIN and DATETIME_MAX."""

    class InputChecks(ValidationRule):
        per_request = True  # depends on the variables: app.runtime.query_cache runs it even for a cached document
        # a cached document's literals passed when it was first validated; a variable's value reaches a
        # DateTime argument only through a variable whose declared type holds DateTime
        visits_cached_document = staticmethod(declares_datetime_variable)

        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self.variables, operation_name = _REQUEST.get()
            variables = self.variables
            operations = [d for d in context.document.definitions if isinstance(d, OperationDefinitionNode)]
            if len(operations) > 1 and not operation_name:
                context.report_error(
                    GraphQLError(
                        "The document holds several operations: give operationName to say which one to run.",
                        extensions={"code": "GRAPHQL_VALIDATION_FAILED"},
                    )
                )
            depth = json_depth(variables)
            if depth > settings.max_variable_depth + 1:  # the variables object itself is one level
                context.report_error(
                    GraphQLError(
                        f"Variables nest deeper than {settings.max_variable_depth} levels.",
                        extensions={"code": "BAD_USER_INPUT", "limit": settings.max_variable_depth},
                    )
                )
            self.reported: set[str] = set()
            # variables holding DateTimes in input objects: checked here, by their declared types (a valid
            # document passes a variable only where its type fits), so a cached document needs no visit for them
            self.checked: set[str] = set()
            for name, type_ in _datetime_variables(context.schema, context.document):
                if _in_input_object(type_):
                    self.checked.add(name)
                    self.walk_value(variables.get(name), type_, name)

        def enter_argument(self, node: ArgumentNode, *_args: Any) -> None:
            argument = self.context.get_argument()
            if argument is not None:
                self.walk_node(node.value, argument.type, node.name.value)

        def walk_node(self, node: ValueNode, type_: Any, name: str) -> None:
            if isinstance(node, VariableNode):
                if node.name.value not in self.checked:
                    self.walk_value(self.variables.get(node.name.value), type_, name)
                return
            type_ = get_nullable_type(type_)
            if is_list_type(type_):
                for item in node.values if isinstance(node, ListValueNode) else [node]:
                    self.walk_node(item, type_.of_type, name)
            elif is_input_object_type(type_) and isinstance(node, ObjectValueNode):
                for field in node.fields:
                    definition = type_.fields.get(field.name.value)
                    if definition is not None:
                        self.walk_node(field.value, definition.type, field.name.value)
            elif getattr(type_, "name", None) == "DateTime" and isinstance(node, StringValueNode):
                self.check(node.value, name)

        def walk_value(self, value: Any, type_: Any, name: str) -> None:
            type_ = get_nullable_type(type_)
            if value is None:
                return
            if is_list_type(type_):
                for item in value if isinstance(value, list) else [value]:
                    self.walk_value(item, type_.of_type, name)
            elif is_input_object_type(type_) and isinstance(value, dict):
                for key, item in value.items():
                    definition = type_.fields.get(key)
                    if definition is not None:
                        self.walk_value(item, definition.type, key)
            elif getattr(type_, "name", None) == "DateTime":
                self.check(value, name)

        def check(self, value: Any, name: str) -> None:
            moment = _datetime_value(value)
            if moment is None or name in self.reported:
                return
            if not DATETIME_MIN <= moment.replace(tzinfo=None) <= DATETIME_MAX:
                self.reported.add(name)
                self.context.report_error(
                    GraphQLError(
                        f"{name} must lie between {DATETIME_MIN.date()} and {DATETIME_MAX.date()}.",
                        extensions={"code": "BAD_USER_INPUT", "field": name},
                    )
                )

    return InputChecks


def request_rules(settings: Settings) -> tuple[type[ValidationRule], ...]:
    """The rules that read the request's variables, made once per schema: they find the variables of the
    operation being validated where QueryCost put them."""
    return cost_rule(settings), nul_rule(), input_rule(settings)


def limit_extensions(settings: Settings) -> list[Any]:
    """Zero-argument factories, as Strawberry wants them (an instance would be shared across requests)."""
    extensions: list[Any] = [
        partial(MaxTokensLimiter, max_token_count=settings.max_tokens),
        partial(QueryCost, settings, request_rules(settings)),
    ]
    if settings.production:
        from graphql.validation import NoSchemaIntrospectionCustomRule

        extensions.append(partial(AddValidationRules, [NoSchemaIntrospectionCustomRule]))
    # a query text that passed every rule above is not parsed and validated again
    from app.runtime.query_cache import query_caches

    extensions += query_caches()
    return extensions


def operation_costs(schema: Any, query: str, variables: dict[str, Any] | None = None) -> list[int]:
    """The cost of each operation in `query` (for tests and the bench)."""
    from graphql import TypeInfo, parse

    document = parse(query)
    context = ValidationContext(schema, document, TypeInfo(schema), lambda _error: None)
    costing = _Costing(context, variables or {}, 10**18)
    return [
        costing.walk(d.selection_set, schema.get_root_type(d.operation), frozenset())[0]
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
    ]
