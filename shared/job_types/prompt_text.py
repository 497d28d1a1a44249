"""Text helpers the built-in prompt builders share: language rules and bullet lists."""

from __future__ import annotations

from collections.abc import Sequence

NONE_GIVEN = "- (none given)"
LANGUAGE_RULES = {
    "en": "Write in English.",
    "zh": "请用简体中文写作。Write in Simplified Chinese.",
}


def bullets(lines: Sequence[str]) -> str:
    return "\n".join(f"- {line}" for line in lines) if lines else NONE_GIVEN


def join(values: Sequence[str]) -> str:
    return ", ".join(values)
