"""Whole subtrees of a query answer completed in one pass, for pages of thousands of fields.

graphql-core completes every field and object one by one (a resolve info, a path, `complete_value`,
`complete_object_value`, the subfields collected, an awaitable check). For an object or list field of a query
whose whole selection below is made of fields known to complete synchronously, `SubtreePlans` builds the
answer directly: the selection is collected by graphql-core's own `collect_subfields` (aliases, fragments,
`@include`/`@skip`, `__typename`, variables as graphql-core reads them), plain attributes are read and leaves
coerced with the type's `coerce_output_value`. A field guarded by permission extensions asks each of their
permission classes (`has_permission`, with the Strawberry `Info` of the resolve info graphql-core would build,
path included, and the same arguments), then reads its attribute or calls its method; any other field is
called through its own resolve function. A method marked `preloaded_in(attribute)` is answered from that
attribute when a list resolver set it (no resolve info then, unless a permission class must decide object by
object). Objects pass their type's `is_type_of`: asked once per class when the answer depends on the class
only (`decided_by_class`, and Strawberry's own for a type with interfaces when the object carries no type
cast).

Anything the ordinary path would report or wait for (an exception, a denied permission, a null for a non-null
field, a value that does not coerce, an awaitable, a value that is not a list) abandons the subtree: the
ordinary path then completes it again from the start and reports exactly what it always did. So the fields
called here must be safe to call twice: plain attributes, attributes guarded only by permission extensions,
and resolver methods marked `side_effect_free`. Only query operations use it, never with `@defer`/`@stream`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from enum import EnumMeta
from keyword import iskeyword
from types import CoroutineType, GeneratorType
from typing import Any, TypeVar
from uuid import UUID

from graphql import (
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLField,
    GraphQLFloat,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLString,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path
from graphql.pyutils import Undefined as _UNDEFINED

from app.runtime.memo import IdentityMemo

_BACKREF = "strawberry-definition"
ENABLED = True  # tests switch it off to compare with the ordinary path
COUNTS = {"completed": 0, "abandoned": 0}  # subtrees, since the process started

F = TypeVar("F", bound=Callable[..., Any])
# types whose values are never exceptions or awaitables: no __await__, no attribute hook of their own (an
# instance attribute named __await__ is not looked for)
_SETTLED: set[type] = {str, int, float, bool, datetime, date, time, Decimal, UUID, list, tuple}
_UNSETTLED: set[type] = set()
# the built-in scalars' coercion of their own Python type, written inline into the plans: the value itself
# (graphql-core's serializers return it unchanged: a finite float, a 32-bit int, a str, a bool)
_SAME = {
    id(GraphQLFloat): "type(v) is float and v - v == 0.0",
    id(GraphQLInt): "type(v) is int and -2147483648 <= v <= 2147483647",
    id(GraphQLString): "type(v) is str",
    id(GraphQLBoolean): "type(v) is bool",
}
# of those, the scalars whose coercion returns every value of one Python type unchanged
_SAME_TYPE: dict[int, type] = {id(GraphQLString): str, id(GraphQLBoolean): bool}


def side_effect_free(method: F) -> F:
    """Marks a synchronous resolver method that only reads its object (and the request's caches): the fast
    path may call it, and call it again when it abandons a subtree."""
    method.side_effect_free = True  # type: ignore[attr-defined]
    return method


def preloaded_in(attribute: str) -> Callable[[F], F]:
    """Marks a `side_effect_free` resolver method that, called with its arguments at their defaults, returns its
    object's `attribute` whenever that is not None (a list resolver loaded it for the whole page), without
    reading its info: the fast path then reads the attribute and builds no resolve info for it (the field's
    permission classes still decide as before)."""

    def mark(method: F) -> F:
        method.preloaded_in = attribute  # type: ignore[attr-defined]
        return method

    return mark


def decided_by_class(is_type_of: F) -> F:
    """Marks an `is_type_of` whose answer depends only on the object's class (an isinstance check) and never
    reads its info: the fast path asks it once per class of value and passes no resolve info."""
    is_type_of.decided_by_class = True  # type: ignore[attr-defined]
    return is_type_of


T = TypeVar("T", bound=type)


def never_pending(cls: T) -> T:
    """Marks a class whose instances are never awaitables or exceptions although it answers unknown
    attributes itself (a view forwarding its row's columns): its values skip graphql-core's awaitable check
    in subtrees."""
    _SETTLED.add(cls)
    return cls


class Abandon(Exception):
    """The subtree goes the ordinary way. Raised afresh each time: a raised instance keeps the frames it
    passed through."""


_NO_PLAN: Any = object()


def plain_attribute(field_def: GraphQLField) -> str | None:
    """The attribute a basic Strawberry field reads with `getattr` (no resolver, extension or argument)."""
    definition = (field_def.extensions or {}).get(_BACKREF)
    if (
        definition is not None
        and definition.is_basic_field
        and getattr(field_def.resolve, "__name__", "") == "_get_basic_result"
        and getattr(definition, "default_resolver", getattr) is getattr
        and not field_def.args
    ):
        return str(definition.python_name)
    return None


def safe_to_resolve(field_def: GraphQLField) -> bool:
    """A synchronous Strawberry field whose resolve function may be called twice: an attribute guarded only by
    permission extensions, or a method marked `side_effect_free` with at most permission extensions."""
    from strawberry.permission import PermissionExtension

    definition = (field_def.extensions or {}).get(_BACKREF)
    if definition is None or field_def.resolve is None or definition.is_async or definition.is_subscription:
        return False
    if not all(isinstance(e, PermissionExtension) for e in definition.extensions):
        return False
    resolver = definition.base_resolver
    return resolver is None or getattr(resolver.wrapped_func, "side_effect_free", False) is True


Completer = Callable[[Any, Any, Any], Any]  # (value, path, info) -> completed value

_PLAIN_SCALARS = frozenset({"String", "Int", "Float", "Boolean", "ID"})


def _direct_spec(schema: Any, field_def: GraphQLField) -> tuple[Any, ...] | None:
    """(method or None, attribute or None, permission classes, {argument: python name} of its built-in scalar
    arguments, the method's info parameter, Strawberry's Info class, the Strawberry field, the attribute the
    method answers from when preloaded (`preloaded_in`) or None) for a field
    `safe_to_resolve` whose resolve function is Strawberry's own (or app.runtime.plain_fields' direct one);
    None for any other, which is then resolved through its resolve function."""
    from strawberry.permission import PermissionExtension

    strawberry_schema = getattr(schema, "_strawberry_schema", None)
    field = (field_def.extensions or {}).get(_BACKREF)
    qualname = getattr(field_def.resolve, "__qualname__", "")
    if (
        strawberry_schema is None
        or field is None
        or strawberry_schema.schema_converter._exception_handler_specs
        or not qualname.endswith(("from_resolver.<locals>._resolver", "direct_resolver.<locals>.resolve"))
        or any(type(e) is not PermissionExtension for e in field.extensions)
        or getattr(field, "default_resolver", getattr) is not getattr
    ):
        return None
    converter = strawberry_schema.schema_converter
    names = {a.graphql_name or converter.config.name_converter.get_graphql_name(a): a for a in field.arguments}
    if set(names) != set(field_def.args):
        return None
    plain: dict[str, str] = {}
    for graphql_name, argument in names.items():
        kind = field_def.args[graphql_name].type
        while hasattr(kind, "of_type"):
            kind = kind.of_type
        if getattr(kind, "name", None) in _PLAIN_SCALARS:
            plain[graphql_name] = argument.python_name
    permissions = [p for e in field.extensions for p in e.permissions]
    if any(not callable(getattr(p, "has_permission", None)) for p in permissions):
        return None
    resolver = field.base_resolver
    if resolver is None:
        return (None, field.python_name, permissions, plain, None, converter.config.info_class, field, None)
    if (
        resolver.self_parameter is None
        or resolver.root_parameter is not None
        or resolver.parent_parameter is not None
        or not callable(resolver.wrapped_func)
    ):
        return None
    info_name = resolver.info_parameter.name if resolver.info_parameter is not None else None
    preloaded = getattr(resolver.wrapped_func, "preloaded_in", None)
    return (
        resolver.wrapped_func, None, permissions, plain, info_name, converter.config.info_class, field,
        preloaded if isinstance(preloaded, str) else None,
    )


_FACTS: dict[int, tuple[GraphQLField, str | None, bool, tuple[Any, ...] | None]] = {}


def field_facts(schema: Any, field_def: GraphQLField) -> tuple[str | None, bool, tuple[Any, ...] | None]:
    """`plain_attribute`, `safe_to_resolve` and `_direct_spec` of a field of the schema, decided once."""
    facts = _FACTS.get(id(field_def))
    if facts is None or facts[0] is not field_def:
        safe = safe_to_resolve(field_def)
        facts = (field_def, plain_attribute(field_def), safe, _direct_spec(schema, field_def) if safe else None)
        _FACTS[id(field_def)] = facts
    return facts[1], facts[2], facts[3]


def _direct_call(spec: tuple[Any, ...] | None, args: dict[str, Any]) -> tuple[Any, ...] | None:
    """The spec with this request's keyword arguments, when every argument given is a built-in scalar."""
    if spec is None:
        return None
    method, attribute, permissions, plain, info_name, info_class, field, preloaded = spec
    if not set(args) <= set(plain):
        return None
    kwargs = {plain[n]: v for n, v in args.items()}
    if preloaded is not None and kwargs:  # `preloaded_in` holds for a call without arguments: each at its default
        defaults = {a.python_name: a.default for a in field.arguments}
        if not all(k in defaults and _same(defaults[k], v) for k, v in kwargs.items()):
            preloaded = None
    return (method, attribute, permissions, kwargs, info_name, info_class, field, preloaded)


def _same(default: Any, value: Any) -> bool:
    return default is value or (type(default) is type(value) and type(value) in (str, int, float, bool) and default == value)


MAX_SHARED = 128
_SHARED: IdentityMemo[SubtreePlans] = IdentityMemo(MAX_SHARED)


def plans_for(execution: Any) -> SubtreePlans:
    """The plans of this operation with these variables, shared by every request that sends them (the parsed
    document is cached: its nodes are the same objects). Each request's own execution builds the resolve
    infos: completing is synchronous, so `execution` is set on entry and read within."""
    try:
        variables = repr(execution.variable_values.coerced)
    except Exception:
        return SubtreePlans(execution)
    objects = (execution.schema, execution.operation)
    found = _SHARED.get(objects, variables)
    return found if found is not None else _SHARED.put(objects, variables, SubtreePlans(execution))


class SubtreePlans:
    """The plans of one operation with its variables, built on first use; keyed by the field nodes, which
    every execution of the (cached) document shares."""

    def __init__(self, execution: Any) -> None:
        self.execution: Any = None  # the request being served, while it is (never kept after)
        self.fragments = execution.fragment_definitions  # kept: the nodes' ids are keys
        self.fields: dict[tuple[str, tuple[int, ...]], Any] = {}  # (parent type, field nodes) -> runner or None
        self.objects: dict[tuple[str, tuple[int, ...]], Any] = {}
        self.is_awaitable = execution.is_awaitable

    # --- planning ----------------------------------------------------------------------------------------

    def field_runner(self, execution: Any, parent_type: GraphQLObjectType, field_details_list: Any) -> Any:
        """A function (source, field path) -> the completed value of this field, or None when the fast path
        does not know how to complete it exactly."""
        key = (parent_type.name, tuple([id(d.node) for d in field_details_list]))
        runner = self.fields.get(key, _NO_PLAN)
        if runner is _NO_PLAN:
            self.fields[key] = None  # a recursive selection never plans itself
            previous, self.execution = self.execution, execution
            try:
                runner = self._plan_field(parent_type, field_details_list)
            except Exception:
                runner = None
            finally:
                self.execution = previous
            self.fields[key] = runner
        return runner

    def _plan_field(self, parent_type: GraphQLObjectType, field_details_list: Any) -> Any:
        execution = self.execution
        first = field_details_list[0]
        for details in field_details_list:
            if details.defer_usage is not None or details.fragment_variable_values is not None:
                return None
            for directive in details.node.directives or ():
                if directive.name.value in ("defer", "stream"):
                    return None
        name = first.node.name.value
        if name.startswith("__"):
            return None
        field_def = execution.schema.get_field(parent_type, name)
        if field_def is None:
            return None
        complete = self._completer(field_def.type, field_details_list)
        if complete is None:
            return None
        attribute, safe, spec = field_facts(execution.schema, field_def)
        nodes = [d.node for d in field_details_list]
        plans = self
        if attribute is not None:
            needs_info = _checks_type(field_def.type)

            def attribute_value(source: Any, path: Path) -> Any:
                value = getattr(source, attribute)
                info = plans.execution.build_resolve_info(field_def, nodes, parent_type, path) if needs_info else None
                return complete(value, path, info)

            if not needs_info:  # the object's plan may read the attribute and complete it itself
                attribute_value.inline = (attribute, complete)  # type: ignore[attr-defined]
            return _path_free(attribute_value, not needs_info and _is_path_free(complete))
        if not safe:
            return None
        args = (
            get_argument_values(
                field_def, first.node, execution.variable_values, None, execution.hide_suggestions
            )
            if field_def.args or first.node.arguments
            else {}
        )
        resolve = field_def.resolve

        complete_resolved = self._completer(field_def.type, field_details_list, checked=True)
        is_awaitable = self.is_awaitable
        direct = _direct_call(spec, args)
        if direct is not None:
            return self._called(direct, field_def, nodes, parent_type, complete_resolved)

        def resolved_value(source: Any, path: Path) -> Any:
            info = plans.execution.build_resolve_info(field_def, nodes, parent_type, path)
            value = resolve(source, info, **args)
            if type(value) not in _SETTLED:
                _refuse_called(value, is_awaitable)
            return complete_resolved(value, path, info)

        return resolved_value

    def _called(
        self, direct: tuple[Any, ...], field_def: GraphQLField, nodes: list[Any], parent_type: GraphQLObjectType,
        complete: Completer,
    ) -> Any:
        """What Strawberry's resolve function does for the field, without its generic wrappers: each permission
        class of its permission extensions decides (`has_permission` with the same arguments), then the method
        is called (or the attribute read)."""
        method, attribute, permissions, kwargs, info_name, info_class, field, preloaded = direct
        plans = self
        needs_info = bool(permissions) or info_name is not None or _checks_type(field_def.type)
        checks_type = _checks_type(field_def.type)
        is_awaitable = self.is_awaitable
        askers = [getattr(p, "allows_every_object", None) for p in permissions]
        uniform = bool(permissions) and all(callable(a) for a in askers)
        key = id(field)

        runner = None
        if preloaded is not None and not checks_type:

            def preloaded_value(source: Any, path: Path) -> Any:
                # read without a resolve info when no permission class guards the field, or every one of them
                # said once for this request that it allows every object; else (or when the attribute was not
                # loaded with the page) the method, with its info
                if not permissions or (uniform and plans.execution.subtree_allowed.get(key) is True):
                    value = getattr(source, preloaded)
                    if value is not None:
                        if type(value) not in _SETTLED:
                            _refuse_called(value, is_awaitable)
                        return complete(value, path, None)
                return called_value(source, path)

            runner = preloaded_value
            if not permissions or uniform:
                preloaded_value.inlined = ("preloaded", preloaded, key if permissions else None, complete)  # type: ignore[attr-defined]

        def called_value(source: Any, path: Path) -> Any:
            if uniform and info_name is None and plans.execution.subtree_allowed.get(key) is True:
                # every permission class said, once for this request, that it allows every object
                info = plans.execution.build_resolve_info(field_def, nodes, parent_type, path) if checks_type else None
                value = method(source, **kwargs) if method is not None else getattr(source, attribute)
                if type(value) not in _SETTLED:
                    _refuse_called(value, is_awaitable)
                return complete(value, path, info)
            info = plans.execution.build_resolve_info(field_def, nodes, parent_type, path) if needs_info else None
            if permissions or info_name is not None:
                strawberry_info = info_class(_raw_info=info, _field=field)
                allowed_here = plans.execution.subtree_allowed
                if uniform and allowed_here.get(key) is None:
                    allowed_here[key] = all(a(strawberry_info) is True for a in askers)  # type: ignore[misc]
                if allowed_here.get(key) is not True:
                    for permission in permissions:
                        allowed = permission.has_permission(source, strawberry_info, **kwargs)
                        if allowed is not True:
                            close = getattr(allowed, "close", None)
                            if close is not None:
                                close()
                            raise Abandon
                if info_name is not None:
                    value = method(source, **kwargs, **{info_name: strawberry_info})
                elif method is not None:
                    value = method(source, **kwargs)
                else:
                    value = getattr(source, attribute)
            elif method is not None:
                value = method(source, **kwargs)
            else:
                value = getattr(source, attribute)
            if type(value) not in _SETTLED:
                _refuse_called(value, is_awaitable)
            return complete(value, path, info)

        if runner is not None:
            return _path_free(runner, False)
        if info_name is None and not checks_type and not kwargs and (not permissions or uniform):
            called_value.inlined = (  # type: ignore[attr-defined]
                "called", method, attribute, key if permissions else None, complete
            )
        return _path_free(called_value, not needs_info and _is_path_free(complete))

    def _completer(self, kind: GraphQLOutputType, field_details_list: Any, checked: bool = False) -> Completer | None:
        """Completes a value of `kind`; `checked`: the value is known to be neither an exception nor an
        awaitable (list items are checked again)."""
        non_null = is_non_null_type(kind)
        if non_null:
            kind = kind.of_type  # type: ignore[union-attr]
        if is_list_type(kind):
            item = self._completer(kind.of_type, field_details_list)  # type: ignore[union-attr]
            if item is None:
                return None
            needs_path = not _is_path_free(item)
            new = tuple.__new__  # a Path made without its Python-level __new__

            def listed(value: Any, path: Path, info: Any) -> Any:
                if value is None:
                    if non_null:
                        raise Abandon
                    return None
                if type(value) is not list and type(value) is not tuple:
                    raise Abandon
                if needs_path:
                    return [item(v, new(Path, (path, i, None)), info) for i, v in enumerate(value)]
                return [item(v, None, info) for v in value]

            if not needs_path:
                listed.inlined = ("list", non_null, item)  # type: ignore[attr-defined]
            return _path_free(listed, not needs_path)
        is_awaitable = self.is_awaitable
        if is_leaf_type(kind):
            coerce = _coercion(kind)
            same = _SAME_TYPE.get(id(kind))

            def leaf(value: Any, path: Any, info: Any) -> Any:
                if value is None:
                    if non_null:
                        raise Abandon
                    return None
                if type(value) is same:  # a str for String, a bool for Boolean: its own coercion
                    return value
                if not checked and type(value) not in _SETTLED:
                    _refuse_pending(value, is_awaitable)
                coerced = coerce(value)
                if coerced is None or coerced is _UNDEFINED:
                    raise Abandon
                return coerced

            leaf.inlined = ("leaf", non_null, same, checked, _SAME.get(id(kind)), coerce)  # type: ignore[attr-defined]
            return _path_free(leaf, True)
        if is_object_type(kind):
            plan = self._object_plan(kind, field_details_list)  # type: ignore[arg-type]
            if plan is None:
                return None
            is_type_of = kind.is_type_of  # type: ignore[union-attr]
            by_class = getattr(is_type_of, "decided_by_class", False) is True
            if by_class or _strawberry_is_type_of(kind):  # type: ignore[arg-type]
                classes: set[type] = set()  # the classes it accepted
                cast = None if by_class else _CAST  # a Strawberry type cast on the object decides instead

                def obj(value: Any, path: Path, info: Any) -> Any:
                    if value is None:
                        if non_null:
                            raise Abandon
                        return None
                    kind_of_value = type(value)
                    if kind_of_value not in classes or (cast is not None and getattr(value, cast, None) is not None):
                        if not checked and kind_of_value not in _SETTLED:
                            _refuse_pending(value, is_awaitable)
                        if is_type_of(value, None) is not True:
                            raise Abandon
                        if (kind_of_value in _SETTLED if by_class else _class_decides(kind_of_value)) and len(classes) < 100:
                            classes.add(kind_of_value)
                    return plan(value, path)

                obj.inlined = ("object", non_null, cast, classes, plan)  # type: ignore[attr-defined]
                return _path_free(obj, _is_path_free(plan))

            def obj(value: Any, path: Path, info: Any) -> Any:
                if value is None:
                    if non_null:
                        raise Abandon
                    return None
                if not checked and type(value) not in _SETTLED:
                    _refuse_pending(value, is_awaitable)
                if is_type_of is not None and is_type_of(value, info) is not True:
                    raise Abandon
                return plan(value, path)

            if is_type_of is None:  # any value of a settled type goes to the plan
                obj.inlined = ("object", non_null, None, _SETTLED, plan)  # type: ignore[attr-defined]
            return _path_free(obj, _is_path_free(plan))
        return None  # interfaces and unions go the ordinary way

    def _object_plan(self, kind: GraphQLObjectType, field_details_list: Any) -> Any:
        key = (kind.name, tuple([id(d.node) for d in field_details_list]))
        if key in self.objects:
            return self.objects[key]
        self.objects[key] = None
        grouped, defer_usages, forbidden = self.execution.collect_subfields(kind, field_details_list)
        if defer_usages or forbidden:
            return None
        # (0: __typename, 1: leaf, 2: other, 3: an attribute completed as it is), name, ...
        entries: list[tuple[int, str, Any, Any]] = []
        for response_key, sub_details in grouped.items():
            node = sub_details[0].node
            for details in sub_details:
                if details.defer_usage is not None or details.fragment_variable_values is not None:
                    return None
            if node.name.value == "__typename":
                entries.append((0, response_key, kind.name, None))
                continue
            field_def = self.execution.schema.get_field(kind, node.name.value)
            if field_def is None:
                return None
            attribute = field_facts(self.execution.schema, field_def)[0]
            leaf_type = field_def.type.of_type if is_non_null_type(field_def.type) else field_def.type
            if attribute is not None and is_leaf_type(leaf_type):
                entries.append((1, response_key, attribute, (
                    _coercion(leaf_type), is_non_null_type(field_def.type), _SAME.get(id(leaf_type))
                )))
                continue
            runner = self.field_runner(self.execution, kind, sub_details)
            if runner is None:
                return None
            inline = getattr(runner, "inline", None)
            if inline is not None:
                entries.append((3, response_key, inline[1], inline[0]))
                continue
            entries.append((2, response_key, runner, None))
        shape_entries: list[tuple[Any, ...]] = []
        parts: list[Any] = []
        for n, (which, response_key, what, leaf) in enumerate(entries):
            inlined = _Inline.field(self, n, which, response_key, what, leaf) if which in (2, 3) else None
            if inlined is not None:  # (4, key, number of objects, path free, the code)
                shape_entries.append((4, response_key, len(inlined[1]), _is_path_free(what), inlined[0]))
                parts.append(inlined[1])
                continue
            shape_entries.append((
                which,
                response_key,
                what if which == 1 else leaf if which == 3 else None,
                bool(leaf and leaf[1]) if which == 1 else which in (2, 3) and _is_path_free(what),
                leaf[2] if which == 1 else None,
            ))
            parts.append(leaf[0] if which == 1 else what)
        shape = tuple(shape_entries)
        plan = _plan_factory(shape)(
            Abandon, _SETTLED, _refuse_pending, self.is_awaitable, Path, _UNDEFINED, kind.name, parts
        )
        _path_free(plan, all(which < 2 or _is_path_free(what) for which, _key, what, _leaf in entries))
        self.objects[key] = plan
        return plan

    # --- running -----------------------------------------------------------------------------------------

    def complete(self, execution: Any, runner: Any, source: Any, path: Path) -> Any:
        """The completed value, or `Abandon` raised; counted on `execution.subtree_counts` (completed,
        abandoned)."""
        counts = execution.subtree_counts
        previous, self.execution = self.execution, execution
        try:
            value = runner(source, path)
        except Exception:
            counts[1] += 1
            COUNTS["abandoned"] += 1
            raise Abandon from None
        finally:
            self.execution = previous
        counts[0] += 1
        COUNTS["completed"] += 1
        return value


def worth_trying(counts: list[int]) -> bool:
    """Stop trying once most subtrees of a request were abandoned."""
    return counts[1] < 3 or counts[1] <= counts[0]


def _refuse_pending(value: Any, is_awaitable: Callable[[Any], bool]) -> None:
    """Abandons on an exception or an awaitable read from an attribute or a list (left as it is: the ordinary
    path awaits that very one). Remembers the types whose values never are either."""
    if isinstance(value, Exception) or is_awaitable(value):
        raise Abandon
    _settle(type(value))


def _refuse_called(value: Any, is_awaitable: Callable[[Any], bool]) -> None:
    """As `_refuse_pending`, for a value a resolver call returned: a coroutine it made and never started is
    closed (nothing of it ran; the ordinary path calls the resolver again)."""
    if isinstance(value, Exception) or is_awaitable(value):
        close = getattr(value, "close", None)
        if close is not None:
            close()
        raise Abandon
    _settle(type(value))


def _settle(kind: type) -> None:
    if kind in _UNSETTLED:
        return
    if (
        not hasattr(kind, "__await__")
        and not issubclass(kind, BaseException | CoroutineType | GeneratorType)
        and not any("__getattr__" in k.__dict__ for k in kind.__mro__)  # an enum's metaclass has one, not its members
        and kind.__getattribute__ is object.__getattribute__
        and len(_SETTLED) < 10_000
    ):
        _SETTLED.add(kind)
    elif len(_UNSETTLED) < 10_000:
        _UNSETTLED.add(kind)  # checked value by value (a view forwarding attributes to its row)


_V = re.compile(r"\bv\b")  # the value in a `_SAME` test


class _Inline:
    """The code completing one field of an object plan inside the plan itself, for a field runner or an attribute's
    completer that describes itself (`inlined`): a read of a preloaded attribute, a call of a resolver method, a
    leaf's coercion, an object checked by its class then given to its own plan, a list of those. Each step does
    what the runner or completer would, in the same order; whenever a value is not what the inlined step expects
    (an unknown class, a type not known to be settled, a permission not decided yet for the request), the
    runner or completer itself is called for that value, as the plan would have called it."""

    MAX_DEPTH = 4

    def __init__(self, plans: SubtreePlans, n: int, response_key: str) -> None:
        self.plans = plans
        self.n = n
        self.key = repr(response_key)
        self.objects: list[Any] = []
        self.lines: list[str] = []
        self.count = 0

    @classmethod
    def field(
        cls, plans: SubtreePlans, n: int, which: int, response_key: str, what: Any, attribute: Any
    ) -> tuple[tuple[str, ...], tuple[Any, ...]] | None:
        """(code lines, the objects they name) for entry `n` of a plan (2: a field runner, 3: an attribute and
        its completer), or None when it does not describe itself."""
        desc = getattr(what, "inlined", None)
        if desc is None:
            return None
        made = cls(plans, n, response_key)
        if which == 3:
            value = made.var()
            made.emit(0, f"{value} = {made.read(attribute)}")
            result = made.completed(what, value, made.path_of(what), 0, 0)
            made.emit(0, f"out[{made.key}] = {result}")
        else:
            made.runner(what, desc)
        return tuple(made.lines), tuple(made.objects)

    def name(self, value: Any) -> str:
        self.objects.append(value)
        return f"part_{self.n}_{len(self.objects) - 1}"

    def var(self) -> str:
        self.count += 1
        return f"v_{self.n}_{self.count}"

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("        " + "    " * indent + line)

    def path_of(self, function: Any) -> str:
        return "None" if _is_path_free(function) else f"NEW(Path, (path, {self.key}, TYPE))"

    @staticmethod
    def read(attribute: str) -> str:
        if attribute.isidentifier() and not iskeyword(attribute):
            return f"source.{attribute}"
        return f"getattr(source, {attribute!r})"

    def runner(self, runner: Any, desc: tuple[Any, ...]) -> None:
        """A preloaded attribute read (when loaded, and allowed for the request) or a method called (or an
        attribute read, when allowed for the request), then completed; else the runner itself."""
        value = self.var()
        if desc[0] == "preloaded":
            _kind, attribute, key, complete = desc
            self.emit(0, f"{value} = {self.read(attribute)}")
            test = f"{value} is not None"
            if key is not None:
                test += f" and {self.allowed(key)}"
            self.emit(0, f"if {test}:")
            indent = 1
        else:
            _kind, method, attribute, key, complete = desc
            indent = 0
            if key is not None:
                self.emit(0, f"if {self.allowed(key)}:")
                indent = 1
            read = f"{self.name(method)}(source)" if method is not None else self.read(attribute)
            self.emit(indent, f"{value} = {read}")
        self.emit(indent, f"if type({value}) not in SETTLED:")
        self.emit(indent + 1, f"{self.name(_refuse_called)}({value}, is_awaitable)")
        result = self.completed(complete, value, self.path_of(complete), indent, 0)
        self.emit(indent, f"out[{self.key}] = {result}")
        if indent:
            self.emit(0, "else:")
            self.emit(1, f"out[{self.key}] = {self.name(runner)}(source, {self.path_of(runner)})")

    def allowed(self, key: int) -> str:
        """Whether every permission class of the field said, once for this request, that it allows every object."""
        return f"{self.name(self.plans)}.execution.subtree_allowed.get({key!r}) is True"

    def completed(self, complete: Any, value: str, where: str, indent: int, depth: int) -> str:
        """Emits the completion of the variable `value` by `complete` (given `where` as its path and no resolve
        info) into a new variable, whose name it returns."""
        target = self.var()
        desc = getattr(complete, "inlined", None)
        if desc is None or depth >= self.MAX_DEPTH:
            self.emit(indent, f"{target} = {self.name(complete)}({value}, {where}, None)")
            return target
        kind, non_null = desc[0], desc[1]
        self.emit(indent, f"if {value} is None:")
        self.emit(indent + 1, "raise ABANDON" if non_null else f"{target} = None")
        if kind == "leaf":
            _kind, _non_null, same, checked, same_test, coerce = desc
            if same is not None:
                self.emit(indent, f"elif type({value}) is {self.name(same)}:")
                self.emit(indent + 1, f"{target} = {value}")
            if same_test is not None:
                self.emit(indent, "elif " + _V.sub(value, same_test) + ":")
                self.emit(indent + 1, f"{target} = {value}")
            self.emit(indent, "else:" if checked else f"elif type({value}) in SETTLED:")
            self.emit(indent + 1, f"{target} = {self.name(coerce)}({value})")
            self.emit(indent + 1, f"if {target} is None or {target} is UNDEFINED:")
            self.emit(indent + 2, "raise ABANDON")
        elif kind == "object":
            _kind, _non_null, cast, classes, plan = desc
            test = f"type({value}) in {self.name(classes)}"
            if cast is not None:
                test += f" and getattr({value}, {cast!r}, None) is None"
            self.emit(indent, f"elif {test}:")
            self.emit(indent + 1, f"{target} = {self.name(plan)}({value}, {where})")
        else:  # a list of items completed without paths
            item = desc[2]
            self.emit(indent, f"elif type({value}) is list or type({value}) is tuple:")
            self.emit(indent + 1, f"{target} = []")
            each = self.var()
            self.emit(indent + 1, f"for {each} in {value}:")
            done = self.completed(item, each, "None", indent + 2, depth + 1)
            self.emit(indent + 2, f"{target}.append({done})")
        if kind != "leaf" or not desc[3]:
            self.emit(indent, "else:")
            self.emit(indent + 1, f"{target} = {self.name(complete)}({value}, {where}, None)")
        return target


_FACTORIES: dict[tuple[Any, ...], Any] = {}


def _plan_factory(shape: tuple[tuple[int, str, str | None, bool, str | None], ...]) -> Any:
    """A function completing an object for a selection of this shape, written out field by field (a loop
    over the entries costs twice as much per object): `shape` holds, per response key, its kind (0:
    `__typename`, 1: a plain leaf attribute, 2: a field runner, 3: an attribute completed by the completer of its
    type), the key, the attribute, and a flag: the leaf is non-null, or the field needs no path; and for a built-in scalar the test under which its
    coercion returns the value itself (`_SAME`). Compiled once per shape for the process; the request's parts
    (coercions, field runners, the type name) are bound when it is called."""
    factory = _FACTORIES.get(shape)
    if factory is not None:
        return factory
    body = ["    def plan(source, path):", "        out = {}"]
    for n, (which, response_key, attribute, flag, same) in enumerate(shape):
        key = repr(response_key)
        if which == 0:
            body.append(f"        out[{key}] = part_{n}")
        elif which == 1:
            assert attribute is not None
            read = f"source.{attribute}" if attribute.isidentifier() and not iskeyword(attribute) else (
                f"getattr(source, {attribute!r})"
            )
            body += [
                f"        v = {read}",
                "        if v is None:",
                "            raise ABANDON" if flag else f"            out[{key}] = None",
            ]
            if same is not None:
                body += [f"        elif {same}:", f"            out[{key}] = v"]
            body += [
                "        else:",
                "            if type(v) not in SETTLED:",
                "                refuse(v, is_awaitable)",
                f"            c = part_{n}(v)",
                "            if c is None or c is UNDEFINED:",
                "                raise ABANDON",
                f"            out[{key}] = c",
            ]
        elif which == 4:
            body += list(same)  # type: ignore[arg-type]
        elif which == 3:
            assert attribute is not None
            read = f"source.{attribute}" if attribute.isidentifier() and not iskeyword(attribute) else (
                f"getattr(source, {attribute!r})"
            )
            where = "None" if flag else f"NEW(Path, (path, {key}, TYPE))"  # no resolve info below: no path needed
            body.append(f"        out[{key}] = part_{n}({read}, {where}, None)")
        else:
            where = "None" if flag else f"NEW(Path, (path, {key}, TYPE))"
            body.append(f"        out[{key}] = part_{n}(source, {where})")
    body += ["        return out", "    return plan"]
    unpack = "".join(f"part_{n}, " for n in range(len(shape)))
    inner = "".join(  # the objects an inlined field's code names
        f"    ({''.join(f'part_{n}_{i}, ' for i in range(entry[2]))}) = part_{n}\n"
        for n, entry in enumerate(shape)
        if entry[0] == 4 and entry[2]
    )
    source = (
        "def factory(ABANDON, SETTLED, refuse, is_awaitable, Path, UNDEFINED, TYPE, parts):\n"
        + (f"    ({unpack}) = parts\n" if shape else "")
        + inner
        + "\n".join(body)
        + "\n"
    )
    namespace: dict[str, Any] = {"NEW": tuple.__new__}  # a Path made without its Python-level __new__
    exec(compile(source, f"<subtree plan {len(_FACTORIES)}>", "exec"), namespace)
    factory = namespace["factory"]
    if len(_FACTORIES) < 1000:
        _FACTORIES[shape] = factory
    return factory


def _coercion(kind: Any) -> Callable[[Any], Any]:
    """The leaf type's `coerce_output_value`; for an enum type, remembered per member of a Python enum (fixed
    when the schema was built: Strawberry's enum type looks a member's name up by comparing every value)."""
    coerce = kind.coerce_output_value
    if not isinstance(kind, GraphQLEnumType):
        return coerce
    # id(member) -> (member, name): keyed by identity (an Enum's __hash__ is a Python method), the member kept
    # and compared so that an id is never taken for another object's
    names: dict[int, tuple[Any, Any]] = {}

    def coerce_enum(value: Any) -> Any:
        known = names.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
        if not isinstance(type(value), EnumMeta):
            return coerce(value)
        name = coerce(value)
        if name is not None and name is not _UNDEFINED and len(names) < 1000:
            names[id(value)] = (value, name)
        return name

    return coerce_enum


def _path_free(function: Any, free: bool) -> Any:
    """Marks a runner, completer or plan that never reads its path (nothing below builds a resolve info)."""
    function.path_free = free
    return function


def _is_path_free(function: Any) -> bool:
    return getattr(function, "path_free", False) is True


def _named(kind: Any) -> Any:
    while isinstance(kind, GraphQLNonNull | GraphQLList):
        kind = kind.of_type
    return kind


_CAST = "__as_strawberry_type__"  # strawberry.types.cast's attribute


def _strawberry_is_type_of(kind: GraphQLObjectType) -> bool:
    """Whether `kind.is_type_of` is Strawberry's own for a type with interfaces and no generic origin: it reads no
    info and, for an object without a type cast, answers `isinstance` of its class."""
    is_type_of = kind.is_type_of
    definition = (kind.extensions or {}).get(_BACKREF)
    return (
        is_type_of is not None
        and is_type_of.__qualname__.endswith("._get_is_type_of.<locals>.is_type_of")
        and definition is not None
        and getattr(definition, "concrete_of", None) is None
        and not _checks_type(kind)
    )


def _class_decides(kind: type) -> bool:
    """Values of `kind` are never pending, and reading an attribute they lack is a plain miss (no hook)."""
    return kind in _SETTLED and not any("__getattr__" in k.__dict__ for k in kind.__mro__)


def _checks_type(kind: GraphQLOutputType) -> bool:
    """Whether completing a value of `kind` calls an `is_type_of` that is given the field's resolve info.
    Strawberry's own `is_type_of` (for types with interfaces) never reads it: None is given then."""
    named = _named(kind)
    if not is_object_type(named) or named.is_type_of is None:
        return False
    if getattr(named.is_type_of, "decided_by_class", False) is True:
        return False
    code = getattr(named.is_type_of, "__code__", None)
    return not (
        code is not None
        and named.is_type_of.__qualname__.endswith("._get_is_type_of.<locals>.is_type_of")
        and code.co_varnames[:2] == ("obj", "_info")
        and "_info" not in code.co_names + code.co_freevars + code.co_cellvars
    )
