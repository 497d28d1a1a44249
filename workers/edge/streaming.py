"""Each job's text as it decodes, written to its token stream (`greenq.shared.token_stream`) off the batch thread.

The batch thread only buffers (`on_text` runs once per decoding step); a flusher thread writes
every job's buffered text in one pipeline each `flush_interval_s`, merging a job's pieces into
one entry. Decoding never waits on Redis; only a batch's end does (its jobs' last text and `end`
are written before their results are stored). A Redis that is away costs the preview, never the
job: what could not be written is logged and dropped (the stored result still has all of it).

>>> publisher = TokenPublisher(TokenStreams(redis_client, 2000, 86400), flush_interval_s=0.05).start()
>>> batcher = Batcher(runtimes, policies, observers=[publisher, ...])
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from greenq.shared.token_stream import EntryKind, TokenStreams
from greenq.workers.serving.observers import BaseObserver

log = logging.getLogger(__name__)
WARN_EVERY_S = 60.0


class TokenPublisher(BaseObserver):
    def __init__(self, streams: TokenStreams, flush_interval_s: float) -> None:
        self._streams = streams
        self._interval_s = flush_interval_s
        self._buffer: defaultdict[str, list[tuple[EntryKind, str]]] = defaultdict(list)
        self._lock = threading.Lock()  # guards the buffer
        self._writing = threading.Lock()  # held while a buffer is written
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="greenq-token-stream", daemon=True)
        self._warned_at = -WARN_EVERY_S

    def start(self) -> TokenPublisher:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Write what is buffered, then stop."""
        self._stop.set()
        self._thread.join(timeout_s)

    def before_batch(self, model: str, job_ids: Sequence[str]) -> None:
        self._add((job_id, "start", "") for job_id in job_ids)

    def on_text(self, model: str, texts: Mapping[str, str]) -> None:
        self._add((job_id, "text", text) for job_id, text in texts.items())

    def after_batch_succeeded(self, model: str, job_ids: Sequence[str]) -> None:
        """Written now, on the batch thread: these jobs' results are stored only after this returns, so a
        reader who sees a result has already been able to read all of its text and its `end`."""
        self._add((job_id, "end", "") for job_id in job_ids)
        self.flush()

    def _add(self, entries: Iterable[tuple[str, EntryKind, str]]) -> None:
        with self._lock:
            for job_id, kind, text in entries:
                pieces = self._buffer[job_id]
                if kind == "text" and pieces and pieces[-1][0] == "text":
                    pieces[-1] = ("text", pieces[-1][1] + text)
                else:
                    pieces.append((kind, text))

    def flush(self) -> None:
        with self._writing:  # one write at a time, so entries reach Redis in the order they were added
            with self._lock:
                buffered, self._buffer = self._buffer, defaultdict(list)
            if buffered:
                self._write(buffered)

    def _write(self, buffered: Mapping[str, Sequence[tuple[EntryKind, str]]]) -> None:
        try:
            self._streams.append(buffered)
        except Exception as exc:  # the stream is a preview: never let it cost a job
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY_S:
                self._warned_at = now
                log.warning(
                    "could not write %d jobs' token streams (%s); their results are unaffected", len(buffered), exc
                )

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.flush()
        self.flush()
