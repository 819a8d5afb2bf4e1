"""Arguments of the Shop's queries, validated like commands before anything is read.

A query's arguments are few and plain (an id, a version, a moment), so each is checked
against its type on its own rather than through a command model; a bad one raises
``InvalidCommand`` naming the query and every problem, the same on every store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from pydantic import Field, TypeAdapter, ValidationError

from ecomcore.domain.catalogue import Id
from ecomcore.domain.errors import InvalidCommand
from ecomcore.domain.values import Moment

__all__ = ["AggregateId", "Id", "Maybe", "MaybeId", "MaybeMoment", "MaybeVersion", "Version", "checked"]



@dataclass(frozen=True)
class Maybe:
    """An argument that may be ``None`` (left out), else of type ``of``."""

    of: Any


#: An aggregate's version: its first event is version 1; stores keep versions as BIGINT.
Version = Annotated[int, Field(ge=1, le=2**63 - 1, strict=True)]
MaybeVersion = Maybe(Version)
AggregateId = UUID
MaybeId = Maybe(Id)
MaybeMoment = Maybe(Moment)

_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def checked(query: str, **arguments: tuple[Any, Any]) -> list[Any]:
    """Each ``name=(type, value)`` validated against its type, in order; ``InvalidCommand``
    naming ``query`` and every bad argument otherwise."""
    values: list[Any] = []
    problems: list[dict[str, Any]] = []
    for name, (type_, value) in arguments.items():
        if isinstance(type_, Maybe):
            if value is None:
                values.append(None)
                continue
            type_ = type_.of
        adapter = _ADAPTERS.get(type_)
        if adapter is None:
            adapter = _ADAPTERS[type_] = TypeAdapter(type_)
        try:
            values.append(adapter.validate_python(value))
        except ValidationError as error:
            for problem in error.errors(include_url=False, include_context=False, include_input=False):
                problems.append({**problem, "loc": (name, *problem["loc"])})
    if problems:
        raise InvalidCommand(query, problems)
    return values
