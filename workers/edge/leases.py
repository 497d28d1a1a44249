"""At most one live computation per job: a lease in Redis that the computing worker keeps alive.

A job's message can reach a second worker while its first holder is still computing it
(a connection loss gives held messages back; a stock consumer's visibility timeout
redelivers them). Before computing, a task takes `greenq:lease:<job id>` with a token of
its own; a worker that finds another live holder waits for that holder's result instead of
computing. One thread per worker renews every lease it holds, so a lease outlives a slow
batch but lapses within `ttl_s` of its worker dying.

A lease can also be lost while its worker lives: the process was paused (SIGSTOP, a frozen
VM, CPU starvation) or cut off from Redis for longer than `ttl_s`, and another worker took
the job. `lost(job_ids)` says which, and the batcher asks it as a waiting job enters a batch,
so a worker that comes back does not compute jobs it knows it has lost.

>>> leases = JobLeases(redis_client, ttl_s=30).start()
>>> token = leases.acquire("job-1")      # None: someone else is computing it
>>> leases.lost(["job-1"])               # set(): still ours
>>> ...; leases.release("job-1", token)
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis

from greenq.shared import scripts
from greenq.shared.keys import LEASE_KEY_PREFIX

log = logging.getLogger(__name__)
INFRA_ERRORS = (redis.RedisError, OSError)


def lease_key(job_id: str) -> str:
    return f"{LEASE_KEY_PREFIX}{job_id}"


@dataclass
class _Held:
    token: str
    confirmed_at: float  # monotonic, when a call that set or renewed the lease was sent (it holds ttl from then)
    lost: bool = False


LostCause = Literal["paused", "redis_unreachable", "lapsed"]
LOST_CAUSES: tuple[LostCause, ...] = ("paused", "redis_unreachable", "lapsed")


def lost_cause(ttl_s: float, renewer_gap_s: float, failing_for_s: float | None) -> LostCause:
    """Why leases were lost, from what the worker saw: `renewer_gap_s` since the renew loop last ran,
    `failing_for_s` since its calls started failing to reach Redis (None while they go through)."""
    if renewer_gap_s > ttl_s:
        return "paused"
    return "redis_unreachable" if failing_for_s is not None else "lapsed"


def lost_reason(ttl_s: float, renewer_gap_s: float, failing_for_s: float | None, interval_s: float) -> str:
    """What the worker saw when it found leases lost (`lost_cause`), in words for the log."""
    cause = lost_cause(ttl_s, renewer_gap_s, failing_for_s)
    if cause == "paused":
        return (
            f"the lease renewer had not run for {renewer_gap_s:.1f} s, longer than the {ttl_s:g} s lease: "
            "the process was paused (SIGSTOP, a frozen VM or container) or starved of CPU"
        )
    if cause == "redis_unreachable":
        return f"renewals had failed to reach Redis for {failing_for_s or 0.0:.1f} s (the lease is {ttl_s:g} s)"
    return (
        f"renewals ran every {interval_s:.1f} s and went through: the lease keys lapsed or were deleted "
        "(Redis restarted without its data, or failed over to a replica behind it?)"
    )


class JobLeases:
    def __init__(
        self,
        client: Any,
        ttl_s: float,
        owner: str = "",
        clock: Callable[[], float] = time.monotonic,
        on_lost: Callable[[int, LostCause], None] | None = None,
        check_timeout_s: float | None = None,
    ) -> None:
        """`on_lost(count, cause)`: told each time leases are found lost (the worker's metric).
        `check_timeout_s`: how long `lost` waits on Redis (default a 60th of the lease, at most 1 s)."""
        self._on_lost = on_lost
        # lost() runs on the batcher thread, inside the continuous decode loop: a call that waited the
        # client's socket timeout (the result backend's is 120 s) would stall every running row that long.
        self._check_timeout_s = min(1.0, ttl_s / 60) if check_timeout_s is None else check_timeout_s
        self._checking = threading.Lock()  # held while lost()'s call to Redis runs: one at a time
        self._redis = client
        self._renew_one = scripts.register(client, "renew_job_lease")
        self._release_one = scripts.register(client, "release_job_lease")
        self._ttl_s = ttl_s
        self._ttl_ms = int(ttl_s * 1000)
        self._owner = owner
        self._clock = clock
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._interval_s = ttl_s / 3
        self._last_round_at = clock()  # when the renew loop last ran
        self._failing_since: float | None = None  # when its calls started failing to reach Redis
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name="greenq-leases", daemon=True)

    def start(self) -> JobLeases:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def acquire(self, job_id: str) -> str | None:
        """A token if this caller may compute the job now; None while another live holder has it."""
        token = f"{self._owner}:{uuid.uuid4().hex}"
        sent_at = self._clock()
        if not self._redis.set(lease_key(job_id), token, nx=True, px=self._ttl_ms):
            return None
        with self._lock:
            self._held[job_id] = _Held(token, sent_at)
        return token

    def release(self, job_id: str, token: str) -> None:
        with self._lock:
            held = self._held.get(job_id)
            if held is not None and held.token == token:
                del self._held[job_id]
        self._release_one(keys=[lease_key(job_id)], args=[token], client=self._redis)

    def holder(self, job_id: str) -> str | None:
        value = self._redis.get(lease_key(job_id))
        return None if value is None else value.decode()

    def lost(self, job_ids: Sequence[str]) -> set[str]:
        """Which of these jobs this worker took a lease on and holds no longer (a job it never took is not lost).

        Cheap while the renewer keeps up: a lease confirmed less than half its TTL ago is still ours without
        asking Redis. An older one is renewed here, if it is still ours; while Redis cannot be reached, one
        confirmed more than two thirds of its TTL ago counts as lost, since another worker may hold it by now.
        Never waits on Redis longer than `check_timeout_s`, and not at all while the renewer's calls fail."""
        now = self._clock()
        with self._lock:
            known = {job_id: self._held[job_id] for job_id in job_ids if job_id in self._held}
        lost = {job_id for job_id, held in known.items() if held.lost}
        stale = [(j, h) for j, h in known.items() if not h.lost and now - h.confirmed_at >= self._ttl_s / 2]
        if stale:
            renewed = None if self._failing_since is not None else self._renew_within_bound(stale)
            if renewed is None:  # Redis unreachable: only what is certainly still ours (its key outlives ttl_s)
                renewed = {job_id for job_id, held in stale if now - held.confirmed_at < self._ttl_s * 2 / 3}
            lost |= {job_id for job_id, _ in stale if job_id not in renewed}
        return lost

    def failing_for_s(self) -> float | None:
        """How long the renewer's calls have failed to reach Redis; None while they go through."""
        failing_since = self._failing_since
        return None if failing_since is None else self._clock() - failing_since

    def _renew_within_bound(self, held: Sequence[tuple[str, _Held]]) -> set[str] | None:
        """`_renew`, given up on after `check_timeout_s` (None, as for Redis unreachable). The call goes on in
        its own thread until the client's socket timeout; what it finds then is still recorded, and until then
        no other check calls Redis (each would only wait out the bound again)."""
        if not self._checking.acquire(blocking=False):
            return None
        replies: list[set[str] | None] = []
        done = threading.Event()

        def call() -> None:
            try:
                replies.append(self._renew(held))
            finally:
                self._checking.release()
                done.set()

        threading.Thread(target=call, name="greenq-lease-check", daemon=True).start()
        if not done.wait(self._check_timeout_s) or not replies:
            log.warning("job lease check: Redis did not answer within %.2f s", self._check_timeout_s)
            return None
        return replies[0]

    def _renew(self, held: Sequence[tuple[str, _Held]]) -> set[str] | None:
        """Renew these leases where still ours, and mark (and report) the others lost; returns those renewed,
        or None if Redis could not be reached (then nothing is marked)."""
        sent_at = self._clock()
        try:
            pipe = self._redis.pipeline(transaction=False)
            for job_id, lease in held:
                self._renew_one(keys=[lease_key(job_id)], args=[lease.token, self._ttl_ms], client=pipe)
            replies = pipe.execute()
        except INFRA_ERRORS as exc:
            log.warning("could not renew %d job leases: %s", len(held), exc)
            return None
        renewed, newly_lost = set(), 0
        with self._lock:
            for (job_id, lease), ok in zip(held, replies, strict=True):
                if ok:
                    lease.confirmed_at = max(lease.confirmed_at, sent_at)
                    renewed.add(job_id)
                elif not lease.lost:
                    lease.lost = True
                    newly_lost += 1
        if newly_lost:  # each lost lease is reported once: it is not renewed again
            failing_for_s = None if self._failing_since is None else sent_at - self._failing_since
            gap_s = sent_at - self._last_round_at
            log.warning(
                "lost the lease on %d jobs: %s; those not yet in a batch will not be computed here",
                newly_lost,
                lost_reason(self._ttl_s, gap_s, failing_for_s, self._interval_s),
            )
            if self._on_lost is not None:
                self._on_lost(newly_lost, lost_cause(self._ttl_s, gap_s, failing_for_s))
        return renewed

    def _renew_loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            with self._lock:
                held = [(job_id, lease) for job_id, lease in self._held.items() if not lease.lost]
            renewed = self._renew(held) if held else set()
            now = self._clock()
            if renewed is None:
                self._failing_since = now if self._failing_since is None else self._failing_since
            else:
                self._failing_since = None
            self._last_round_at = now
