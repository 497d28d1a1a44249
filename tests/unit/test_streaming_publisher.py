"""The token publisher's ordering promise: a job's text and its `end` are written before its result can be stored."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from greenq.workers.edge.streaming import TokenPublisher


class _Recorder:
    """Stands in for TokenStreams: records what would be appended, in order."""

    def __init__(self) -> None:
        self.written: list[tuple[str, str, str]] = []

    def append(self, entries: Mapping[str, Sequence[tuple[str, str]]]) -> None:
        self.written += [(job_id, kind, text) for job_id, items in entries.items() for kind, text in items]


def test_a_finished_batch_is_written_before_its_results_can_be_stored() -> None:
    """Seen in CI: the gateway saw a job's result before its `end` (and could have missed its last text),
    because the flusher thread wrote them up to one interval after the batch's futures resolved."""
    streams = _Recorder()
    publisher = TokenPublisher(streams, flush_interval_s=3600).start()  # type: ignore[arg-type]  # a stand-in
    try:
        publisher.before_batch("m", ["a", "b"])
        publisher.on_text("m", {"a": "Hel", "b": "Hi"})
        publisher.on_text("m", {"a": "lo"})
        publisher.after_batch_succeeded("m", ["a", "b"])  # the batcher resolves the futures after this returns

        assert [w for w in streams.written if w[0] == "a"] == [
            ("a", "start", ""),
            ("a", "text", "Hello"),
            ("a", "end", ""),
        ]
        assert [w for w in streams.written if w[0] == "b"] == [
            ("b", "start", ""),
            ("b", "text", "Hi"),
            ("b", "end", ""),
        ]
    finally:
        publisher.stop()


def test_a_redis_that_is_away_costs_the_preview_not_the_batch() -> None:
    class _Down:
        def append(self, entries: object) -> None:
            raise ConnectionError("redis is away")

    publisher = TokenPublisher(_Down(), flush_interval_s=3600)  # type: ignore[arg-type]  # a stand-in
    publisher.before_batch("m", ["a"])
    publisher.after_batch_succeeded("m", ["a"])  # must not raise into the batch thread
