"""The registry of job types: `register()` a declaration once, look it up by name everywhere else.

Names are plain strings (`JobType`); a name nobody registered is an error that lists the known
ones, never a fallback to some other type. `KnownJobType` is the same check as a pydantic type,
and lists the registered names as an `enum` in JSON Schemas.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from greenq.shared.errors import ConfigError, UnknownJobType, unknown_job_type_problem
from greenq.shared.job_types.spec import JobTypeSpec

JobType = str  # a registered job type's name, e.g. "reply"
S = TypeVar("S", bound=JobTypeSpec[Any])

_registered: dict[str, JobTypeSpec[Any]] = {}


def register(spec: S) -> S:
    """Make a job type known to every part of greenq; returns the spec, so a module can keep it."""
    if spec.name in _registered:
        raise ConfigError(f"job type {spec.name!r} is already registered")
    _registered[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Forget a job type (for tests). Celery apps and settings built while it was known keep it."""
    _registered.pop(name, None)


def get(name: str) -> JobTypeSpec[Any]:
    """The declaration of `name`; raises UnknownJobType (an InvalidJob) naming the known types."""
    try:
        return _registered[name]
    except (KeyError, TypeError):  # TypeError: not even hashable
        raise UnknownJobType(str(name), names()) from None


def names() -> tuple[JobType, ...]:
    """Registered names, in registration order."""
    return tuple(_registered)


def specs() -> tuple[JobTypeSpec[Any], ...]:
    return tuple(_registered.values())


class _Registered:
    """pydantic: a string that names a registered job type."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(_known, core_schema.str_schema())

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {**handler(schema), "enum": list(names())}


def _known(name: str) -> str:
    if name not in _registered:
        raise PydanticCustomError("unknown_job_type", "{problem}", {"problem": unknown_job_type_problem(name, names())})
    return name


KnownJobType = Annotated[JobType, _Registered]
