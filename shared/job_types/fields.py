"""Building blocks of payload schemas: a strict base model and field types with size limits.

Every payload declares `schema_version`, bounds every field, and rejects unknown fields.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Language = Literal["en", "zh"]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]
Name = Annotated[str, Field(min_length=1, max_length=64)]
LongText = Annotated[str, Field(min_length=1, max_length=4000)]
Count = Annotated[int, Field(ge=0, le=10**12)]
Amount = Annotated[float, Field(ge=0, le=1e15, allow_inf_nan=False)]
ShippingModeName = Literal["ground", "express", "air", "sea", "rail", "pickup"]


class StrictModel(BaseModel):
    """Unknown fields refused, surrounding whitespace stripped, immutable."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)
