"""The Server-Sent Events wire format and where a reconnection resumes (producers/gateway/events.py)."""

from __future__ import annotations

from greenq.producers.gateway.events import entry_event, resume_after, sse
from greenq.shared.token_stream import FIRST_ID, StreamEntry


def test_each_event_is_id_event_data_and_a_blank_line() -> None:
    assert sse("text", '{"text": "Hi"}', "17-0") == 'id: 17-0\nevent: text\ndata: {"text": "Hi"}\n\n'
    assert sse("status", "{}") == "event: status\ndata: {}\n\n"


def test_text_is_json_so_newlines_stay_inside_one_data_line() -> None:
    event = entry_event(StreamEntry("5-1", "text", "line one\nline two"))
    assert event == 'id: 5-1\nevent: text\ndata: {"text": "line one\\nline two"}\n\n'
    assert entry_event(StreamEntry("5-2", "end")) == "id: 5-2\nevent: end\ndata: {}\n\n"


def test_a_reconnection_resumes_after_a_stream_id_and_otherwise_from_the_start() -> None:
    assert resume_after("1764434412345-3") == "1764434412345-3"
    for other in (None, "", "result", "0", "1-2-3", "$", "+", "1764434412345-3\nevent: x", "17-0\n"):
        assert resume_after(other) == FIRST_ID
