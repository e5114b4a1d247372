"""Every type, field, argument and enum value in schema.graphql has a description (tools show them; the
contract's descriptions are the rules). Add it where you declare the name."""

from __future__ import annotations

from pathlib import Path

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    build_schema,
    specified_scalar_types,
)

SCHEMA = Path(__file__).resolve().parent.parent / "schema.graphql"


def undescribed(sdl: str) -> list[str]:
    schema = build_schema(sdl)
    missing: list[str] = []
    for name, type_ in schema.type_map.items():
        if name.startswith("__") or name in specified_scalar_types:
            continue
        if not type_.description:
            missing.append(name)
        if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType):
            for field_name, field in type_.fields.items():
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                for arg_name, arg in getattr(field, "args", {}).items():
                    if not arg.description:
                        missing.append(f"{name}.{field_name}({arg_name})")
        if isinstance(type_, GraphQLEnumType):
            missing += [f"{name}.{v}" for v, value in type_.values.items() if not value.description]
    return missing


def test_everything_in_the_schema_is_described() -> None:
    missing = undescribed(SCHEMA.read_text())
    assert not missing, f"{len(missing)} names without a description in schema.graphql: {', '.join(missing)}"


def test_the_check_finds_a_missing_description() -> None:
    assert undescribed('"Q" type Query { "f" f(a: Int): Int }') == ["Query.f(a)"]
