"""Shim (remove at the `greenq.*` rename): the model moved to `workers.model` (types, runtime, text)."""

from workers.model.runtime import HFRuntime, warm_up
from workers.model.text import RowText
from workers.model.types import (
    FinishReason,
    Generation,
    GenerationRequest,
    ModelRuntime,
    TextHook,
    left_pad,
    trim_row,
)

__all__ = [
    "FinishReason",
    "Generation",
    "GenerationRequest",
    "HFRuntime",
    "ModelRuntime",
    "RowText",
    "TextHook",
    "left_pad",
    "trim_row",
    "warm_up",
]
