"""One reader for every open event stream of a gateway: a round is one blocking XREAD over all the streams
followed (returning as soon as any has new entries, else after `block_ms`) and one MGET of their results,
so Redis sees a few commands a second in all however many streams are open, and no connection holds a
thread while it waits.

Lives on the server's event loop; the reading task runs only while someone follows (as ResultWaiter).

    follower = hub.follow(job_id, after="0-0")
    entries, finished = await follower.next(15.0) or ([], False)   # None: nothing within 15 s
    hub.leave(follower)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from greenq.shared.token_stream import StreamEntry, TokenStreams, entry_order

log = logging.getLogger(__name__)
BLOCK_MS = 250  # longest a round waits for new entries; also how soon a new follower's first read starts
MIN_ROUND_S = 0.05  # rounds come at most this often: busy streams are read in batches (workers write every 50 ms)
COUNT = 512  # entries per stream per round
RETRY_S = 1.0  # after a failed round (Redis away)

Update = tuple[list[StreamEntry], bool]  # new entries, and whether the job's result is now stored


class Follower:
    """One connection's place in one job's stream."""

    def __init__(self, job_id: str, after: str) -> None:
        self.job_id = job_id
        self.after = after  # the last entry `next` handed out: where a read of what is left starts
        self.read_to = after  # the last entry queued for it (ahead of `after` while updates wait)
        self._updates: asyncio.Queue[Update] = asyncio.Queue()
        self._finished_offered = False  # every round sees a finished job again: queue that news only once

    async def next(self, timeout_s: float) -> Update | None:
        """The next update, or None if none came within `timeout_s`."""
        try:
            update = await asyncio.wait_for(self._updates.get(), timeout_s)
        except asyncio.TimeoutError:
            return None
        if update[0]:
            self.after = update[0][-1].entry_id
        return update

    def offer(self, entries: list[StreamEntry], finished: bool) -> None:
        new = [e for e in entries if entry_order(e.entry_id) > entry_order(self.read_to)]
        if new:
            self.read_to = new[-1].entry_id
        if new or (finished and not self._finished_offered):
            self._updates.put_nowait((new, finished))
            self._finished_offered = self._finished_offered or finished


class StreamHub:
    def __init__(
        self,
        streams: TokenStreams,
        finished_among: Callable[[list[str]], set[str]],
        block_ms: int = BLOCK_MS,
        min_round_s: float = MIN_ROUND_S,
    ) -> None:
        self._streams = streams
        self._finished_among = finished_among  # blocking: called in a thread
        self._block_ms = block_ms
        self._min_round_s = min_round_s
        self._followers: set[Follower] = set()
        self._task: asyncio.Task[None] | None = None

    def follow(self, job_id: str, after: str) -> Follower:
        follower = Follower(job_id, after)
        self._followers.add(follower)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return follower

    def leave(self, follower: Follower) -> None:
        self._followers.discard(follower)

    @property
    def following(self) -> int:
        return len(self._followers)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._followers:
            started = loop.time()
            cursors: dict[str, str] = {}
            for follower in self._followers:  # several connections on one job: read from the earliest
                known = cursors.get(follower.job_id)
                if known is None or entry_order(follower.read_to) < entry_order(known):
                    cursors[follower.job_id] = follower.read_to
            try:
                found = await asyncio.to_thread(self._streams.read_many, cursors, COUNT, self._block_ms)
                done = await asyncio.to_thread(self._finished_among, list(cursors))
            except Exception:  # Redis away: the streams wait (with keepalives) and are read again after
                log.warning("could not read the event streams", exc_info=True)
                await asyncio.sleep(RETRY_S)
                continue
            for follower in list(self._followers):
                follower.offer(found.get(follower.job_id, []), follower.job_id in done)
            await asyncio.sleep(max(0.0, started + self._min_round_s - loop.time()))
