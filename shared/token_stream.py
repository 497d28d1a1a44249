"""A job's text as it decodes: one Redis Stream per job, which workers append to and readers replay and follow.

Entries, in order (every field a string):

    {"type": "start"}              a computation of the job begins; a second one (after a crash, or
                                   a failed batch split in halves) starts the text over
    {"type": "text", "text": ...}  text the computation added
    {"type": "end"}                its text is complete; the final result follows in the result store

The stream is trimmed to about `max_entries` and expires with the result, so a reader who
connects late replays from the start (entry id "0-0") and then follows with its last entry id,
which is also what the gateway sends as each Server-Sent Event's id. The stream is a preview:
the stored `JobResult` is the record. `StreamedText` folds the entries into what a reader shows.

>>> streams = TokenStreams(redis_client, max_entries=2000, ttl_s=86400)
>>> streams.append({"job-1": [("start", ""), ("text", "Hello")]})
>>> streams.read("job-1")            # [StreamEntry("1700000000000-0", "start", ""), ...]
>>> streams.read_many({"job-1": "0-0", "job-2": "0-0"}, block_ms=250)   # {"job-1": [...], ...}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from greenq.shared.keys import TOKENS_KEY_PREFIX

EntryKind = Literal["start", "text", "end"]
KINDS: frozenset[str] = frozenset({"start", "text", "end"})
FIRST_ID = "0-0"


def entry_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id ("<ms>-<seq>") as something that sorts in the stream's order."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def stream_key(job_id: str) -> str:
    return f"{TOKENS_KEY_PREFIX}{job_id}"


@dataclass(frozen=True)
class StreamEntry:
    entry_id: str
    kind: EntryKind
    text: str = ""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_entry(entry_id: Any, fields: Mapping[Any, Any]) -> StreamEntry | None:
    """One stream entry, or None for one greenq did not write."""
    values = {_text(k): _text(v) for k, v in fields.items()}
    kind = values.get("type", "")
    if kind not in KINDS:
        return None
    return StreamEntry(_text(entry_id), cast(EntryKind, kind), values.get("text", ""))


class TokenStreams:
    def __init__(self, client: Any, max_entries: int, ttl_s: int) -> None:
        self._redis = client
        self._max_entries = max_entries
        self._ttl_s = ttl_s

    def append(self, entries: Mapping[str, Sequence[tuple[EntryKind, str]]]) -> None:
        """Append each job's entries, in order, in one round trip."""
        if not entries:
            return
        pipe = self._redis.pipeline(transaction=False)
        for job_id, items in entries.items():
            key = stream_key(job_id)
            for kind, text in items:
                fields = {"type": kind, "text": text} if kind == "text" else {"type": kind}
                pipe.xadd(key, fields, maxlen=self._max_entries, approximate=True)
            pipe.expire(key, self._ttl_s)
        pipe.execute()

    def read(
        self, job_id: str, after: str = FIRST_ID, count: int = 512, block_ms: int | None = None
    ) -> list[StreamEntry]:
        """Entries after `after`, oldest first; with `block_ms`, waits that long for the first one."""
        return self.read_many({job_id: after}, count, block_ms).get(job_id, [])

    def read_many(
        self, after_by_job: Mapping[str, str], count: int = 512, block_ms: int | None = None
    ) -> dict[str, list[StreamEntry]]:
        """Each job's entries after its own `after`, in one XREAD; with `block_ms`, waits that long for any one.

        One reader can so follow many streams with one blocking command (the gateway's StreamHub).
        """
        if not after_by_job:
            return {}
        job_by_key = {stream_key(job_id): job_id for job_id in after_by_job}
        found = self._redis.xread(
            {stream_key(job_id): after for job_id, after in after_by_job.items()}, count=count, block=block_ms
        )
        by_job: dict[str, list[StreamEntry]] = {}
        for key, items in found or []:
            entries = by_job.setdefault(job_by_key[_text(key)], [])
            for entry_id, fields in items:
                entry = decode_entry(entry_id, fields)
                if entry is not None:
                    entries.append(entry)
        return by_job


class StreamedText:
    """What a reader shows of a stream: text only ever added to, never taken back.

    A computation that starts over (a `start` after text) sends its text again; only what goes
    beyond the text already shown is new. If the new computation's text differs from what was
    shown (sampling), nothing more is shown: the final result's text is the record.

    >>> shown = StreamedText()
    >>> [shown.add(e) for e in entries]     # the new text each entry adds ("" for none)
    """

    def __init__(self) -> None:
        self.shown = ""
        self._attempt = ""
        self.ended = False

    def add(self, entry: StreamEntry) -> str:
        if entry.kind == "start":
            self._attempt = ""
            self.ended = False
            return ""
        if entry.kind == "end":
            self.ended = True
            return ""
        self._attempt += entry.text
        return self._advance(self._attempt)

    def finish(self, final_text: str) -> str:
        """The final result's text beyond what was shown (all of it for a job that streamed nothing)."""
        return self._advance(final_text)

    def _advance(self, text: str) -> str:
        if len(text) <= len(self.shown) or not text.startswith(self.shown):
            return ""
        delta, self.shown = text[len(self.shown) :], text
        return delta
