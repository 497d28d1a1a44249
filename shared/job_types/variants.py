"""Per-type variants of a model: one subclass per job type with its payload typed, and their tagged union.

The envelope's published schema (`shared/envelope.py`) and the gateway's request bodies
(`producers/gateway/schemas.py`) both document each job type's payload this way.

>>> union = per_type_union(Envelope, "Envelope", tag="job_type", payload=("payload", lambda s: (s.payload, ...)),
...                        doc=lambda s: f"A `{s.name}` job: {s.summary}.")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar, Union

from pydantic import BaseModel, Field, create_model

from greenq.shared.job_types.registry import specs
from greenq.shared.job_types.spec import JobTypeSpec

M = TypeVar("M", bound=BaseModel)
# A variant's payload field: its name, and the (annotation, default or FieldInfo) pair a spec gives it.
PayloadField = tuple[str, Callable[[JobTypeSpec[Any]], tuple[Any, Any]]]


def per_type_model(
    spec: JobTypeSpec[Any], base: type[M], suffix: str, payload: PayloadField, doc: str, **fields: tuple[Any, Any]
) -> type[M]:
    """`base` for `spec` alone: named `<CamelName><suffix>`, its payload field typed by `payload`."""
    name, typed = payload
    model: type[M] = create_model(  # type: ignore[call-overload]
        f"{spec.camel_name}{suffix}", __base__=base, __doc__=doc, **{**fields, name: typed(spec)}
    )
    return model


def per_type_union(
    base: type[BaseModel], suffix: str, tag: str, payload: PayloadField, doc: Callable[[JobTypeSpec[Any]], str]
) -> Any:
    """One `per_type_model` for each registered job type, told apart by `tag` (fixed to the type's name)."""
    variants = tuple(
        per_type_model(spec, base, suffix, payload, doc(spec), **{tag: (spec.name_literal, ...)}) for spec in specs()
    )
    return Annotated[Union[variants], Field(discriminator=tag)]  # noqa: UP007
