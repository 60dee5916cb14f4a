"""SQL over the JSON columns that reads the same on PostgreSQL (JSONB) and SQLite (JSON1).

SQLAlchemy's generic JSON type has no containment operator; each backend spells it its
own way, so the expression below compiles per dialect.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import BindParameter, Boolean, ColumnElement, bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal


class HasMemberWith(ColumnElement[bool]):
    """True when the JSON array ``column`` holds an object whose ``key`` is ``value``,
    e.g. a task's ``resources`` touching one of type ``"secret"``."""

    type = Boolean()
    inherit_cache = True
    # The parts are bound parameters, traversed like any other, so a cached statement
    # is reused with this expression's own values.
    _traverse_internals = [  # noqa: RUF012 (SQLAlchemy's own declaration)
        ("column", InternalTraversal.dp_clauseelement),
        ("probe", InternalTraversal.dp_clauseelement),
        ("path", InternalTraversal.dp_clauseelement),
        ("value", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: ColumnElement[Any], key: str, value: str) -> None:
        self.column = column
        self.probe: BindParameter[str] = bindparam(None, json.dumps([{key: value}]), unique=True)
        self.path: BindParameter[str] = bindparam(None, f"$.{key}", unique=True)
        self.value: BindParameter[str] = bindparam(None, value, unique=True)


@compiles(HasMemberWith, "postgresql")
def _postgresql(element: HasMemberWith, compiler: SQLCompiler, **kw: Any) -> str:
    # JSONB containment, which a GIN index could serve.
    column = compiler.process(element.column, **kw)
    return f"({column} @> CAST({compiler.process(element.probe, **kw)} AS JSONB))"


@compiles(HasMemberWith)
def _json1(element: HasMemberWith, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    path = compiler.process(element.path, **kw)
    value = compiler.process(element.value, **kw)
    return (
        f"EXISTS (SELECT 1 FROM json_each({column}) "
        f"WHERE json_extract(json_each.value, {path}) = {value})"
    )
