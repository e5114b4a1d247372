"""graphql-core's field execution, shortened for plain leaf attributes.

Most fields of a large answer (a members page: names, percentages, counts) are Strawberry "basic" fields: an
attribute of the object, no resolver, no extension (so no permission), no argument, a scalar or enum type.
graphql-core still builds a resolve info, calls Strawberry's wrapper, checks for an awaitable and walks
`complete_value` for each. Here such a field reads the attribute and coerces it directly; anything else
(a null for a non-null field, a value that does not coerce, an awaitable, an exception) goes the ordinary way,
which raises and reports exactly as before. Fields carrying an extension (every `@requires` permission) are
never basic, so they always run their checks.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from graphql import GraphQLField, GraphQLObjectType, OperationType, is_leaf_type, is_non_null_type
from graphql.pyutils import Undefined as _UNDEFINED
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from app.runtime import subtrees

_BACKREF = "strawberry-definition"
# id(GraphQLField) -> (the field, (attribute name, leaf type, non-null) or None)
_PLAIN: dict[int, tuple[GraphQLField, tuple[str, Any, bool] | None]] = {}


def plain_leaf(field_def: GraphQLField) -> tuple[str, Any, bool] | None:
    """(attribute name, leaf type, non-null) when `field_def` is a basic Strawberry leaf field read with
    `getattr`; None otherwise. Decided once per field of the schema."""
    entry = _PLAIN.get(id(field_def))
    if entry is not None and entry[0] is field_def:
        return entry[1]
    found: tuple[str, Any, bool] | None = None
    definition = (field_def.extensions or {}).get(_BACKREF)
    resolve = field_def.resolve
    if (
        definition is not None
        and getattr(definition, "is_basic_field", False)
        and getattr(resolve, "__name__", "") == "_get_basic_result"  # Strawberry's path without exception handlers
        and getattr(definition, "default_resolver", getattr) is getattr
        and not field_def.args
    ):
        kind = field_def.type
        non_null = is_non_null_type(kind)
        inner = kind.of_type if non_null else kind  # type: ignore[union-attr]
        if is_leaf_type(inner):
            found = (definition.python_name, inner, non_null)
    _PLAIN[id(field_def)] = (field_def, found)
    return found


class PlainFieldsExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager = self.middleware_manager
        # a schema extension wrapping every field (a `resolve` hook) must see every field: no short cut then
        self.plain_fields = manager is None or manager._middleware_resolvers is None
        # whole subtrees completed at once (app.runtime.subtrees): queries only, resolvers may run twice
        self.subtrees = (
            subtrees.plans_for(self)
            if self.plain_fields and self.operation.operation is OperationType.QUERY
            else None
        )
        self.subtree_counts = [0, 0]  # completed, abandoned
        # per guarded field of a subtree: whether its permission classes allow it on every object (asked once)
        self.subtree_allowed: dict[int, bool] = {}

    def execute_field(
        self, parent_type: GraphQLObjectType, source: Any, field_details_list: Any, path: Any, position_context: Any
    ) -> Any:
        if self.plain_fields:
            field_def = self.schema.get_field(parent_type, field_details_list[0].node.name.value)
            leaf = plain_leaf(field_def) if field_def is not None else None
            if leaf is not None:
                name, leaf_type, non_null = leaf
                try:
                    value = getattr(source, name)
                except Exception:  # the ordinary path raises it again, and reports it
                    value = Exception
                if value is None:
                    if not non_null:
                        return None
                elif value is not Exception and not isinstance(value, Exception) and not self.is_awaitable(value):
                    try:
                        coerced = leaf_type.coerce_output_value(value)
                    except Exception:
                        coerced = None
                    if coerced is not None and coerced is not _UNDEFINED:
                        return coerced
            plans = self.subtrees
            if plans is not None and subtrees.ENABLED and subtrees.worth_trying(self.subtree_counts):
                runner = plans.field_runner(self, parent_type, field_details_list)
                if runner is not None:
                    try:
                        return plans.complete(self, runner, source, path)
                    except subtrees.Abandon:
                        pass
        return super().execute_field(parent_type, source, field_details_list, path, position_context)



# --- sync method fields: the same resolver and the same permission extensions, called directly -----------

_PLAIN_SCALARS = frozenset({"String", "Int", "Float", "Boolean", "ID"})


def _plain_argument(kind: Any) -> bool:
    """A nullable or non-null built-in scalar, or a list of them: graphql-core's coerced value is what
    Strawberry would hand the resolver (no input object, no enum to convert)."""
    while hasattr(kind, "of_type"):
        kind = kind.of_type
    return getattr(kind, "name", None) in _PLAIN_SCALARS


def direct_resolver(schema: Any, field_def: GraphQLField) -> Any:
    """For a field with a synchronous method resolver (taking `self`, maybe `info`, and built-in scalar
    arguments) whose extensions are only permission extensions that decide synchronously: a resolve function
    doing what Strawberry's wrapper does (its Info, the same extension chain built once, so every
    `has_permission` and `on_unauthorized` runs as before, then the method) without converting arguments
    generically, rebuilding the chain and checking for handlers on every call. None when the field is not of
    that kind."""
    from strawberry.extensions.field_extension import build_field_extension_resolvers
    from strawberry.permission import PermissionExtension

    field = (field_def.extensions or {}).get(_BACKREF)
    resolver = getattr(field, "base_resolver", None)
    converter = schema.schema_converter
    if (
        resolver is None
        or field.is_async
        or field.is_subscription
        or converter._exception_handler_specs
        or getattr(field_def.resolve, "__name__", "") != "_resolver"
        or resolver.self_parameter is None
        or resolver.root_parameter is not None
        or resolver.parent_parameter is not None
        or not callable(resolver.wrapped_func)
        or not all(isinstance(e, PermissionExtension) and e.supports_sync for e in field.extensions)
        or not all(_plain_argument(a.type) for a in field_def.args.values())
    ):
        return None
    names = {arg.graphql_name or converter.config.name_converter.get_graphql_name(arg): arg.python_name
             for arg in field.arguments}
    if set(names) != set(field_def.args):
        return None
    method = resolver.wrapped_func
    info_name = resolver.info_parameter.name if resolver.info_parameter is not None else None
    info_class = converter.config.info_class
    extensions = field.extensions

    def call(source: Any, info: Any, **kwargs: Any) -> Any:
        if info_name is not None:
            kwargs[info_name] = info
        return method(source, **kwargs)

    chain: Any = call
    for extension_resolver in build_field_extension_resolvers(field):
        chain = partial(extension_resolver, chain)

    def resolve(source: Any, info: Any, **args: Any) -> Any:
        kwargs = {names[name]: value for name, value in args.items()}
        for extension in extensions:
            kwargs = extension.map_arguments(kwargs)
        return chain(source, info_class(_raw_info=info, _field=field), **kwargs)

    return resolve


def direct_resolvers(schema: Any) -> int:
    """Give every eligible field of `schema` its direct resolver (see direct_resolver). Returns how many."""
    count = 0
    for named in schema._schema.type_map.values():
        if not isinstance(named, GraphQLObjectType) or named.name.startswith("__"):
            continue
        for field_def in named.fields.values():
            fast = direct_resolver(schema, field_def)
            if fast is not None:
                field_def.resolve = fast
                count += 1
    return count
