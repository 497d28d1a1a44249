"""One reader follows every open event stream (producers/gateway/stream_hub.py), on a real redis-server; and each
tenant's open streams are capped (events.OpenStreams)."""

from __future__ import annotations

import asyncio
from typing import Any

import redis

from greenq.producers.gateway.events import OpenStreams, replay
from greenq.producers.gateway.stream_hub import Follower, StreamHub
from greenq.shared.token_stream import FIRST_ID, StreamEntry, TokenStreams
from tests.unit.redis_server import real_redis_fixture

real_redis = real_redis_fixture()


def calls(client: redis.Redis, command: str) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def until_finished(streams: TokenStreams, follower: Follower) -> tuple[list[StreamEntry], bool]:
    """What a connection sends: every update up to the one saying the job's result is stored, then what its
    stream holds beyond (written just before the result, after the round's read), as job_events does."""
    entries: list[StreamEntry] = []
    while True:
        update = await follower.next(5)
        assert update is not None, "no update within 5 s"
        entries += update[0]
        if update[1]:
            return entries + replay(streams, follower.job_id, follower.after), True


def test_many_followers_share_one_blocking_read_and_each_gets_its_own_entries(real_redis: redis.Redis) -> None:
    streams = TokenStreams(real_redis, max_entries=2000, ttl_s=600)
    done: set[str] = set()
    hub = StreamHub(streams, lambda job_ids: {j for j in job_ids if j in done}, block_ms=200)
    streams.append({"job-0": [("start", ""), ("text", "Hel")]})

    async def scenario() -> tuple[list[Any], list[Any], list[Any], int]:
        idle = [hub.follow(f"idle-{n}", FIRST_ID) for n in range(30)]
        first = hub.follow("job-0", FIRST_ID)
        got_first = [await first.next(5)]
        late = hub.follow("job-0", got_first[0][0][-1].entry_id)  # a reconnection after "Hel"
        real_redis.config_resetstat()
        await asyncio.sleep(1.0)  # 31 followers with nothing new for a second
        reads = calls(real_redis, "xread")
        streams.append({"job-0": [("text", "lo"), ("end", "")]})
        done.add("job-0")
        got_first.append(await until_finished(streams, first))
        got_late = [await until_finished(streams, late)]
        for follower in [*idle, first, late]:
            hub.leave(follower)
        return got_first, got_late, idle, reads

    got_first, got_late, idle, reads = asyncio.run(scenario())
    print(f"XREADs in a second with 31 followers: {reads}")
    assert 1 <= reads <= 8  # one blocking read per round for all of them (about 5 a second), not 31 x 10
    kinds = [[(e.kind, e.text) for e in entries] for entries, _ in got_first]
    assert kinds == [[("start", ""), ("text", "Hel")], [("text", "lo"), ("end", "")]]
    assert [finished for _, finished in got_first] == [False, True]
    assert [[(e.kind, e.text) for e in entries] for entries, _ in got_late] == [[("text", "lo"), ("end", "")]]
    assert hub.following == 0


def test_a_tenants_open_streams_are_capped_and_a_slot_is_given_back_once() -> None:
    open_streams = OpenStreams(cap=2)
    first, second = open_streams.take("acme"), open_streams.take("acme")
    assert first is not None and second is not None
    assert open_streams.take("acme") is None and open_streams.take("globex") is not None
    first()
    first()  # the body's end and the background task both give it back: counted once
    assert open_streams.open("acme") == 1
    assert open_streams.take("acme") is not None and open_streams.take("acme") is None


def test_a_finished_job_is_offered_once_to_a_follower_that_has_not_read_it() -> None:
    """Review finding 11: every round offers a finished job again; a slow client must not pile up updates."""
    follower = Follower("job-0", FIRST_ID)
    entry = StreamEntry("1-1", "text", "Hi")
    follower.offer([entry], False)
    for _ in range(20):  # a second of rounds while the client reads nothing
        follower.offer([entry], True)

    async def drain() -> list[Any]:
        updates = []
        while (update := await follower.next(0.05)) is not None:
            updates.append(update)
        return updates

    updates = asyncio.run(drain())
    print("updates queued:", len(updates))
    assert updates == [([entry], False), ([], True)]
