"""Releasing deferred jobs on a real Redis: in chunks, under a lease renewed while publishing, once each.

The schedulers run in this process (in threads where two run at once) with a publish that only records
what it was given, and sleeps where the broker is to be slow: what is checked is how often each job was
handed to a queue, and what one claim takes from Redis at a time.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from greenq.shared import job_types
from greenq.shared.deferral import TAKE_CHUNK_JOBS, DeferredJob, DeferredStore, ReleaseHold
from greenq.shared.envelope import Envelope
from greenq.shared.keys import DEFERRED_DUE_KEY, DEFERRED_HOLDER_KEY, DEFERRED_JOB_KEY, DEFERRED_RELEASING_KEY
from greenq.workers.scheduler.capacity import Capacity
from greenq.workers.scheduler.metrics import SchedulerMetrics
from greenq.workers.scheduler.service import PUBLISH_BATCH_JOBS, Scheduler
from tests.integration.harness import Stack, stack
from tests.integration.test_deferral_store import TableForecast

DESCRIPTION = dict(job_types.get("description").samples[0])
LEASE_S = 3.0


@pytest.fixture
def releasing(redis_port: int, tiny_model_dir: Path) -> Iterator[Stack]:
    env = {"GREENQ_SCHEDULER_RELEASE_LEASE_S": str(LEASE_S), "GREENQ_SCHEDULER_SLOT_S": "60"}
    with stack(redis_port, tiny_model_dir, env) as s:
        yield s


class RecordingPublish:
    """A publish that counts what it is given, `delay_per_job_s` a job (a broker one round trip a job away)."""

    def __init__(self, delay_per_job_s: float = 0.0, die_on_call: int | None = None) -> None:
        self.delay_per_job_s = delay_per_job_s
        self.die_on_call = die_on_call
        self.published: Counter[str] = Counter()
        self.calls: list[list[str]] = []
        self._lock = threading.Lock()

    def __call__(self, envelopes: Sequence[Envelope]) -> set[str]:
        time.sleep(self.delay_per_job_s * len(envelopes))
        with self._lock:
            self.published.update(e.job_id for e in envelopes)
            self.calls.append([e.job_id for e in envelopes])
            if self.die_on_call is not None and len(self.calls) == self.die_on_call:
                raise SchedulerDied  # the broker has the messages; the scheduler never confirms them
        return set()


class SchedulerDied(Exception):
    pass


def defer_jobs(store: DeferredStore, n: int, release_by_s: float) -> list[str]:
    now = time.time()
    jobs = [
        DeferredJob(
            Envelope(
                job_id=uuid.uuid4().hex,
                job_type="description",
                payload=DESCRIPTION,
                submitted_at=now,
                priority=5,
                run_by=release_by_s + 60,
                carbon_aware=True,
            ),
            release_by_s,
        )
        for _ in range(n)
    ]
    store.defer(jobs, slot_s=60)
    return [job.job_id for job in jobs]


def no_forecast_scheduler(
    s: Stack,
    publish: Callable[[Sequence[Envelope]], set[str]],
    store: DeferredStore | None = None,
    metrics: SchedulerMetrics | None = None,
) -> Scheduler:
    """A scheduler whose forecast fails, so it releases every waiting job at once."""
    source = TableForecast(time.time(), [50], fail=True)
    capacity = Capacity(0, 1.0, {"description"})
    return Scheduler(s.settings, store or DeferredStore(s.redis), source, publish, capacity, metrics)


def test_two_schedulers_with_a_slow_publish_release_each_job_once(releasing: Stack) -> None:
    s = releasing
    ids = defer_jobs(DeferredStore(s.redis), 1500, release_by_s=time.time() + 3600)
    publish = RecordingPublish(delay_per_job_s=0.003)  # 0.3 s a batch of 100; 4.5 s for all, past the 3-s lease
    stop = threading.Event()
    errors: list[BaseException] = []

    def run(scheduler: Scheduler) -> None:
        while not stop.is_set():
            try:
                scheduler.tick()
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                errors.append(exc)
                return
            stop.wait(0.1)

    threads = [threading.Thread(target=run, args=(no_forecast_scheduler(s, publish),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        s.wait_for(
            lambda: (
                set(publish.published) == set(ids)
                and s.redis.zcard(DEFERRED_RELEASING_KEY) == 0
                and s.redis.zcard(DEFERRED_DUE_KEY) == 0
            ),
            60,
            "every job released and confirmed",
        )
        time.sleep(LEASE_S + 1.0)  # a lease taken back late would publish again now
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert errors == []
    twice = {job_id: n for job_id, n in publish.published.items() if n > 1}
    assert len(twice) == 0, f"{len(twice)} of {len(ids)} jobs published more than once"
    assert set(publish.published) == set(ids)


def test_a_large_backlog_is_claimed_in_chunks(releasing: Stack) -> None:
    s = releasing
    claimed_per_call: list[int] = []

    class CountingStore(DeferredStore):
        def take_due(
            self, now: float, slot_start_s: float, allowance: int, lease_s: float, limit: int = TAKE_CHUNK_JOBS
        ) -> ReleaseHold:
            lease = super().take_due(now, slot_start_s, allowance, lease_s, limit)
            claimed_per_call.append(len(lease.jobs))
            return lease

    store = CountingStore(s.redis)
    ids = defer_jobs(store, 20_000, release_by_s=time.time() + 3600)
    publish = RecordingPublish()
    report = no_forecast_scheduler(s, publish, store).tick()
    assert len(report.released) == 20_000 and set(publish.published) == set(ids)
    assert max(publish.published.values()) == 1
    assert max(claimed_per_call) <= TAKE_CHUNK_JOBS, f"one claim script took {max(claimed_per_call)} jobs"
    assert max(len(call) for call in publish.calls) <= PUBLISH_BATCH_JOBS
    assert s.redis.zcard(DEFERRED_DUE_KEY) == 0 and s.redis.zcard(DEFERRED_RELEASING_KEY) == 0


def test_a_scheduler_that_dies_mid_chunk_republishes_at_most_the_batch_in_flight(releasing: Stack) -> None:
    s = releasing
    ids = defer_jobs(DeferredStore(s.redis), 300, release_by_s=time.time() + 3600)
    doomed = RecordingPublish(die_on_call=2)  # sends its second batch, then dies before confirming it
    now = time.time()
    with pytest.raises(SchedulerDied):
        no_forecast_scheduler(s, doomed).tick(now)
    survivor = RecordingPublish()
    no_forecast_scheduler(s, survivor).tick(now + LEASE_S + 30)  # after the dead one's lease

    published = doomed.published + survivor.published
    assert set(published) == set(ids)  # none lost
    twice = {job_id for job_id, n in published.items() if n > 1}
    # At least once: the batch the broker took but nobody confirmed goes out again (workers compute a job
    # id once); nothing else does.
    assert twice <= set(doomed.calls[-1]) and len(twice) <= PUBLISH_BATCH_JOBS, f"{len(twice)} published twice"
    assert s.redis.zcard(DEFERRED_DUE_KEY) == 0 and s.redis.zcard(DEFERRED_RELEASING_KEY) == 0


def test_a_scheduler_whose_lease_was_taken_stops_publishing_that_chunk(releasing: Stack) -> None:
    s = releasing
    ids = defer_jobs(DeferredStore(s.redis), 300, release_by_s=time.time() + 3600)
    now = time.time()
    rival = DeferredStore(s.redis)
    taken: list[ReleaseHold] = []

    class PausedStore(DeferredStore):
        """Before its second renewal, the lease runs out (as for a paused process) and a rival claims the rest."""

        renewals = 0

        def extend_hold(self, token: str, job_ids: Sequence[str], lease_end_s: float) -> set[str]:
            PausedStore.renewals += 1
            if PausedStore.renewals == 2:
                later = now + LEASE_S + 30
                assert rival.recover(later) == len(ids) - PUBLISH_BATCH_JOBS
                # A's claim counts in its slot's releases already: room for as many again.
                taken.append(rival.take_due(later, later - later % 60, allowance=2 * len(ids), hold_s=3600))
            return super().extend_hold(token, job_ids, lease_end_s)

    metrics = SchedulerMetrics(CollectorRegistry())
    publish = RecordingPublish()
    report = no_forecast_scheduler(s, publish, PausedStore(s.redis), metrics).tick(now)

    (first_batch,) = publish.calls  # the first batch went out; the rest of the chunk was not its own any more
    assert len(first_batch) == PUBLISH_BATCH_JOBS and report.lease_lost == len(ids) - PUBLISH_BATCH_JOBS
    assert [r.job.job_id for r in report.released] == first_batch
    assert metrics.registry.get_sample_value("greenq_deferred_release_lease_lost_total") == report.lease_lost
    (rival_lease,) = taken
    assert {job.job_id for job in rival_lease.jobs} == set(ids) - set(first_batch)
    assert rival.confirm(rival_lease.token, [job.job_id for job in rival_lease.jobs]) == len(rival_lease.jobs)
    assert s.redis.zcard(DEFERRED_RELEASING_KEY) == 0 and s.redis.hlen(DEFERRED_HOLDER_KEY) == 0
    assert s.redis.hlen(DEFERRED_JOB_KEY) == 0


def test_a_lease_is_renewed_and_confirmed_only_by_its_holder(releasing: Stack) -> None:
    s = releasing
    store = DeferredStore(s.redis)
    (first,) = defer_jobs(store, 1, release_by_s=time.time() + 3600)
    (second,) = defer_jobs(store, 1, release_by_s=time.time() + 7200)
    now = time.time()
    lease = store.take_due(now, now - now % 60, allowance=2, hold_s=LEASE_S, limit=1)
    assert [job.job_id for job in lease.jobs] == [first]  # one a call, earliest deadline first
    assert store.extend_hold(lease.token, [first], now + 100) == {first}
    assert store.recover(now + 50) == 0  # renewed: not taken back
    assert store.extend_hold("another-token", [first], now + 200) == set()
    assert store.recover(now + 101) == 1  # ran out: back to due, no holder any more
    assert store.extend_hold(lease.token, [first], now + 300) == set()
    # Published all the same (its scheduler was slow): confirming takes it out of due, so it is not sent again.
    assert store.confirm(lease.token, [first]) == 1
    assert len(store.release_deadlines()) == 1 and store.waiting_by_type() == {"description": 1}
    assert store.status(first) is None and store.status(second) is not None
    again = store.take_due(now, now - now % 60, allowance=2, hold_s=LEASE_S)
    assert [job.job_id for job in again.jobs] == [second]
    with pytest.raises(ValueError, match="limit"):
        store.take_due(now, now, allowance=1, hold_s=LEASE_S, limit=0)


def test_the_celery_publisher_sends_a_batch_in_one_round_trip(
    releasing: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kombu.transport import redis as kombu_redis

    from greenq.workers.scheduler.run import celery_publisher
    from tests.integration.test_deferral_store import queued_ids

    s = releasing
    flushes: list[int] = []
    flush = kombu_redis.PublishBatch.flush

    def counting_flush(self: kombu_redis.PublishBatch) -> None:
        if self._buffered:  # noqa: SLF001 - what the flush carries
            flushes.append(self._buffered)  # noqa: SLF001
        flush(self)

    monkeypatch.setattr(kombu_redis.PublishBatch, "flush", counting_flush)
    store = DeferredStore(s.redis)
    ids = defer_jobs(store, PUBLISH_BATCH_JOBS, release_by_s=time.time() + 3600)
    now = time.time()
    lease = store.take_due(now, now - now % 60, allowance=len(ids), hold_s=60)
    publish = celery_publisher(s.client.app, s.settings, s.redis)
    assert publish([job.released(now) for job in lease.jobs]) == set()
    assert len(flushes) == 1 and sorted(queued_ids(s)) == sorted(ids)
