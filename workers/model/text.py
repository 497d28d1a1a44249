"""One row's text as it decodes, and its end: the final `Generation` and the tail not yet streamed.

Both ways of decoding use it: `HFRuntime.generate` (a whole batch) and the continuous loop (a row at a
time), so a streamed row's pieces add up to its result the same way in both.
"""

from __future__ import annotations

from collections.abc import Callable

from greenq.workers.model.types import FinishReason, Generation


class RowText:
    """One row's text as it decodes, a token at a time, cut as `trim_row` cuts it.

    `push` returns the text the new token adds; a token that ends inside a multi-byte character
    adds nothing until the character is complete (the tokenizer decodes it as U+FFFD meanwhile).
    `finish` returns whatever the final text adds to what was pushed, so the pieces always add up.
    """

    def __init__(self, decode: Callable[[list[int]], str], max_new_tokens: int, stop_ids: frozenset[int]) -> None:
        self._decode = decode
        self._max_new_tokens = max_new_tokens
        self._stop_ids = stop_ids
        self._tokens: list[int] = []
        self._done = False
        self.sent = ""

    def push(self, token: int) -> str:
        if self._done:
            return ""
        if token in self._stop_ids or len(self._tokens) >= self._max_new_tokens:
            self._done = True
            return ""
        self._tokens.append(token)
        text = self._decode(self._tokens)
        if text.endswith("\ufffd") or not text.startswith(self.sent):
            return ""
        delta, self.sent = text[len(self.sent) :], text
        return delta

    def finish(self, final_text: str) -> str:
        self._done = True
        if not final_text.startswith(self.sent):  # decoding changed an earlier piece: send nothing wrong
            return ""
        delta, self.sent = final_text[len(self.sent) :], final_text
        return delta


def finish_row(
    text: RowText | None, tokens: list[int], reason: FinishReason, decode: Callable[[list[int]], str]
) -> tuple[Generation, str]:
    """A finished row's generation, and the text its stream still lacks ("" without a stream)."""
    generation = Generation(text=decode(tokens), finish_reason=reason, generated_tokens=len(tokens))
    return generation, ("" if text is None else text.finish(generation.text))
