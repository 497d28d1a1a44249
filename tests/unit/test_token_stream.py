"""Pure parts of streaming: a row's text as it decodes, and what a reader shows of a stream."""

from __future__ import annotations

from greenq.shared.token_stream import StreamedText, StreamEntry, decode_entry
from greenq.workers.model.text import RowText

WORDS = {1: "Hel", 2: "lo", 3: " wor", 4: "ld", 9: "<eos>"}


def decode(tokens: list[int]) -> str:
    return "".join(WORDS[t] for t in tokens if t != 9)


def test_row_text_adds_up_to_the_trimmed_row_and_stops_at_a_stop_token() -> None:
    row = RowText(decode, max_new_tokens=10, stop_ids=frozenset({9}))
    pieces = [row.push(t) for t in (1, 2, 3, 9, 4)]
    assert pieces == ["Hel", "lo", " wor", "", ""]
    assert row.finish("Hello wor") == ""


def test_row_text_stops_at_its_own_limit_in_a_longer_batch() -> None:
    row = RowText(decode, max_new_tokens=2, stop_ids=frozenset({9}))
    assert [row.push(t) for t in (1, 2, 3, 4)] == ["Hel", "lo", "", ""]


def test_row_text_holds_back_an_unfinished_character_until_it_completes() -> None:
    pieces = {1: b"\xe2\x82", 2: b"\xac", 3: b"!"}  # "€" split over two tokens

    def utf8(tokens: list[int]) -> str:
        return b"".join(pieces[t] for t in tokens).decode("utf-8", errors="replace")

    row = RowText(utf8, max_new_tokens=5, stop_ids=frozenset())
    assert [row.push(t) for t in (1, 2, 3)] == ["", "€", "!"]


def test_row_text_finish_sends_what_decoding_the_whole_row_adds() -> None:
    row = RowText(decode, max_new_tokens=5, stop_ids=frozenset())
    row.push(1)
    assert row.finish("Hello") == "lo"
    assert row.finish("Something else") == ""  # never contradicts what was sent


def _entries(*items: tuple[str, str]) -> list[StreamEntry]:
    return [StreamEntry(f"{i}-0", kind, text) for i, (kind, text) in enumerate(items)]  # type: ignore[arg-type]


def test_streamed_text_shows_a_restarted_computation_once() -> None:
    shown = StreamedText()
    entries = _entries(("start", ""), ("text", "Hel"), ("text", "lo"), ("start", ""), ("text", "He"))
    entries += _entries(("text", "llo wor"), ("end", ""))
    assert [shown.add(e) for e in entries] == ["", "Hel", "lo", "", "", " wor", ""]
    assert shown.ended and shown.finish("Hello world") == "ld"


def test_streamed_text_stops_showing_a_restart_that_differs() -> None:
    shown = StreamedText()
    entries = _entries(("start", ""), ("text", "Hello"), ("start", ""), ("text", "Howdy there"))
    assert [shown.add(e) for e in entries] == ["", "Hello", "", ""]
    assert shown.finish("Howdy there") == ""  # the record differs from what was shown; a reader has the result


def test_a_job_that_streamed_nothing_shows_its_whole_result() -> None:
    assert StreamedText().finish("All of it") == "All of it"


def test_foreign_entries_are_ignored() -> None:
    assert decode_entry(b"1-0", {b"type": b"text", b"text": b"hi"}) == StreamEntry("1-0", "text", "hi")
    assert decode_entry(b"1-0", {b"other": b"x"}) is None
