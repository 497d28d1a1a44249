"""Deferred jobs: carbon-aware jobs waiting in Redis for their planned release.

A deferred job is not on a Celery queue (nor a Celery ETA, nor in any worker's memory): its envelope
waits in a hash, indexed by the latest time it may be released (`release_by`, earliest first). The
scheduler (workers/scheduler/) plans and releases; every move is one Lua script (in `scripts/`,
named below), so that several schedulers, the gateway and producers can act on the same job at once:

* `defer` stores a job once (a retried defer of the same id is a no-op): `defer_job.lua`;
* `take_due` takes the jobs to release now from `due` to `releasing`, under a *release hold* (a token
  and an end time), at most TAKE_CHUNK_JOBS a call: one caller gets each (`take_due_deferred.lua`);
* `extend_hold` extends a hold while its scheduler publishes, and says which jobs it still holds
  (`extend_release_hold.lua`);
* `confirm` forgets jobs once their scheduler has published them to their queue (`confirm_released.lua`);
* `recover` puts back jobs whose releasing scheduler died before confirming, its hold run out
  (`recover_unconfirmed.lua`);
* `withdraw` takes a job out before release, a cancel (`withdraw_deferred.lua`).

>>> store = DeferredStore(redis_client)
>>> store.defer([DeferredJob(envelope, release_by=..., submitted_g_per_kwh=212.0)], slot_s=300)
>>> store.status(job_id).planned_start_s
"""

from __future__ import annotations

import bisect
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from greenq.shared import scripts
from greenq.shared.envelope import Envelope
from greenq.shared.keys import (
    CARBON_NOW_KEY,
    DEFERRED_ARRIVALS_KEY_PREFIX,
    DEFERRED_COUNT_KEY,
    DEFERRED_DUE_KEY,
    DEFERRED_HOLDER_KEY,
    DEFERRED_JOB_KEY,
    DEFERRED_PLAN_KEY,
    DEFERRED_RELEASING_KEY,
    DEFERRED_SLOT_KEY_PREFIX,
)

CARBON_NOW_TTL_S = 900  # a reading older than this is not put on receipts
SLOT_COUNTER_TTL_S = 7200
ARRIVALS_TTL_S = 3 * 86_400  # the scheduler reads a day of demand, and the same time the day before
# One take_due_deferred.lua call blocks Redis for about 10 µs a job (a few writes and a JSON decode each): 500 keep it
# to a few milliseconds and its reply to about half a megabyte, whatever the backlog.
TAKE_CHUNK_JOBS = 500


@dataclass(frozen=True)
class DeferredJob:
    """One job waiting for release; `release_by` is the latest Unix time it may wait until."""

    envelope: Envelope
    release_by: float
    submitted_g_per_kwh: float | None = None  # grid intensity at submission, as the scheduler last read it

    @property
    def job_id(self) -> str:
        return self.envelope.job_id

    def encode(self) -> str:
        return json.dumps(
            {
                "job_type": self.envelope.job_type,
                "release_by": self.release_by,
                "submitted_g_per_kwh": self.submitted_g_per_kwh,
                "envelope": self.envelope.encode(),
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> DeferredJob:
        record = json.loads(raw)
        return cls(Envelope.decode(record["envelope"]), float(record["release_by"]), record["submitted_g_per_kwh"])

    def released(self, at: float) -> Envelope:
        """The envelope to publish: stamped with its release time and its intensity at submission."""
        return self.envelope.model_copy(
            update={"released_at": at, "intensity_at_submission_g_per_kwh": self.submitted_g_per_kwh}
        )


@dataclass(frozen=True)
class ReleaseHold:
    """A release hold: the jobs one `take_due` took, the caller's to publish while `token` holds them
    (see `extend_hold`)."""

    token: str
    jobs: tuple[DeferredJob, ...]


@dataclass(frozen=True)
class DeferredStatus:
    job_id: str
    run_by: float | None
    release_by: float
    planned_start_s: float | None  # from the latest plan; None before the scheduler has planned it
    releasing: bool  # a scheduler is publishing it right now


@dataclass(frozen=True)
class StoredPlan:
    """The latest plan, as the status view reads it: cumulative jobs per slot, in deadline order."""

    made_at: float
    slot_starts_s: tuple[float, ...]
    cumulative_jobs: tuple[int, ...]

    def planned_start_s(self, rank: int) -> float | None:
        index = bisect.bisect_right(self.cumulative_jobs, rank)
        return self.slot_starts_s[index] if index < len(self.slot_starts_s) else None


class DeferredStore:
    def __init__(self, client: Any) -> None:
        self._redis = client
        self._defer = scripts.register(client, "defer_job")
        self._take_due = scripts.register(client, "take_due_deferred")
        self._extend_hold = scripts.register(client, "extend_release_hold")
        self._confirm = scripts.register(client, "confirm_released")
        self._recover = scripts.register(client, "recover_unconfirmed")
        self._withdraw = scripts.register(client, "withdraw_deferred")

    # -- producers ----------------------------------------------------------------------

    def defer(self, jobs: Sequence[DeferredJob], slot_s: float) -> None:
        """Store jobs for later release (a job already stored stays as it was), and count them as demand."""
        pipe = self._redis.pipeline(transaction=False)
        for job in jobs:
            slot_start_s = math.floor(job.envelope.submitted_at / slot_s) * slot_s
            window = max(0, math.floor((job.release_by - slot_start_s) / slot_s))
            keys = (DEFERRED_JOB_KEY, DEFERRED_DUE_KEY, DEFERRED_COUNT_KEY, arrivals_key(slot_start_s))
            args = (job.job_id, job.encode(), job.release_by, job.envelope.job_type, window, ARRIVALS_TTL_S)
            self._defer(keys=keys, args=args, client=pipe)
        pipe.execute()

    def carbon_now(self) -> float | None:
        """The grid intensity the scheduler last read (g/kWh), if it is recent."""
        raw = self._redis.get(CARBON_NOW_KEY)
        return None if raw is None else float(json.loads(raw)["g_per_kwh"])

    # -- the gateway --------------------------------------------------------------------

    def status(self, job_id: str) -> DeferredStatus | None:
        """Where a deferred job stands, or None if it is not (or no longer) deferred."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(DEFERRED_JOB_KEY, job_id)
        pipe.zrank(DEFERRED_DUE_KEY, job_id)
        pipe.zscore(DEFERRED_RELEASING_KEY, job_id)
        pipe.get(DEFERRED_PLAN_KEY)
        raw, rank, releasing, plan = pipe.execute()
        if raw is None or (rank is None and releasing is None):
            return None
        job = DeferredJob.decode(raw)
        planned = None if rank is None or plan is None else decode_plan(plan).planned_start_s(int(rank))
        return DeferredStatus(job_id, job.envelope.run_by, job.release_by, planned, releasing is not None)

    def withdraw(self, job_id: str) -> bool:
        """Take a job out before its release; False if it was not waiting (released, or never deferred)."""
        keys = (DEFERRED_DUE_KEY, DEFERRED_JOB_KEY, DEFERRED_COUNT_KEY)
        return bool(self._withdraw(keys=keys, args=[job_id], client=self._redis))

    # -- the scheduler ------------------------------------------------------------------

    def release_deadlines(self) -> list[float]:
        """Every waiting job's `release_by`, earliest first (the planner's input)."""
        return [float(score) for _, score in self._redis.zrange(DEFERRED_DUE_KEY, 0, -1, withscores=True)]

    def waiting_by_type(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self._redis.hgetall(DEFERRED_COUNT_KEY).items()}

    def arrivals(self, until_s: float, span_s: float, slot_s: float) -> dict[float, dict[int, int]]:
        """Jobs deferred per slot in [until_s - span_s, until_s): slot start → {window in slots: jobs}."""
        first = math.floor((until_s - span_s) / slot_s)
        starts = [n * slot_s for n in range(first, math.floor(until_s / slot_s))]
        pipe = self._redis.pipeline(transaction=False)
        for start_s in starts:
            pipe.hgetall(arrivals_key(start_s))
        return {
            start_s: {int(w): int(n) for w, n in counts.items()}
            for start_s, counts in zip(starts, pipe.execute(), strict=True)
            if counts
        }

    def released_in_slot(self, slot_start_s: float) -> int:
        return int(self._redis.get(slot_key(slot_start_s)) or 0)

    def take_due(
        self, now: float, slot_start_s: float, allowance: int, hold_s: float, limit: int = TAKE_CHUNK_JOBS
    ) -> ReleaseHold:
        """Take jobs to release now, at most `limit`: those already due, then more up to the slot's `allowance`,
        under a release hold that ends `hold_s` from `now`.

        Call again while it returns `limit` jobs: each call does a bounded share of the work.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        token = uuid.uuid4().hex
        keys = (
            DEFERRED_DUE_KEY,
            DEFERRED_RELEASING_KEY,
            DEFERRED_JOB_KEY,
            DEFERRED_COUNT_KEY,
            slot_key(slot_start_s),
            DEFERRED_HOLDER_KEY,
        )
        args = (now, allowance, now + hold_s, SLOT_COUNTER_TTL_S, limit, token)
        reply = self._take_due(keys=keys, args=args, client=self._redis)
        return ReleaseHold(token, tuple(DeferredJob.decode(raw) for raw in reply[1::2]))

    def extend_hold(self, token: str, job_ids: Sequence[str], hold_end_s: float) -> set[str]:
        """Extend the release hold `token` to `hold_end_s` on those of `job_ids` it still holds; returns them."""
        if not job_ids:
            return set()
        keys = (DEFERRED_RELEASING_KEY, DEFERRED_HOLDER_KEY)
        held = self._extend_hold(keys=keys, args=[token, hold_end_s, *job_ids], client=self._redis)
        return {raw.decode() if isinstance(raw, bytes) else str(raw) for raw in held}

    def confirm(self, token: str, job_ids: Sequence[str]) -> int:
        """Forget jobs the release hold `token` published (those another scheduler took meanwhile are its own)."""
        if not job_ids:
            return 0
        keys = (DEFERRED_RELEASING_KEY, DEFERRED_JOB_KEY, DEFERRED_HOLDER_KEY, DEFERRED_DUE_KEY, DEFERRED_COUNT_KEY)
        return int(self._confirm(keys=keys, args=[token, *job_ids], client=self._redis))

    def recover(self, now: float, limit: int = TAKE_CHUNK_JOBS) -> int:
        """Put back jobs whose releasing scheduler died before confirming them, `limit` a script call."""
        keys = (DEFERRED_RELEASING_KEY, DEFERRED_JOB_KEY, DEFERRED_DUE_KEY, DEFERRED_COUNT_KEY, DEFERRED_HOLDER_KEY)
        total = 0
        while True:
            back, seen = self._recover(keys=keys, args=[now, limit], client=self._redis)
            total += int(back)
            if int(seen) < limit:
                return total

    def save_plan(self, made_at: float, slot_starts_s: Sequence[float], counts: Sequence[int]) -> None:
        starts, cumulative, total = [], [], 0
        for start, count in zip(slot_starts_s, counts, strict=True):
            if count:
                total += count
                starts.append(start)
                cumulative.append(total)
        plan = {"made_at": made_at, "slot_starts_s": starts, "cumulative_jobs": cumulative}
        self._redis.set(DEFERRED_PLAN_KEY, json.dumps(plan, separators=(",", ":")))

    def publish_carbon_now(self, g_per_kwh: float, at: float, source: str) -> None:
        value = json.dumps({"g_per_kwh": g_per_kwh, "at": at, "source": source})
        self._redis.set(CARBON_NOW_KEY, value, ex=CARBON_NOW_TTL_S)


def arrivals_key(slot_start_s: float) -> str:
    return f"{DEFERRED_ARRIVALS_KEY_PREFIX}{int(slot_start_s)}"


def slot_key(slot_start_s: float) -> str:
    return f"{DEFERRED_SLOT_KEY_PREFIX}{int(slot_start_s)}"


def decode_plan(raw: bytes | str) -> StoredPlan:
    plan = json.loads(raw)
    return StoredPlan(float(plan["made_at"]), tuple(plan["slot_starts_s"]), tuple(plan["cumulative_jobs"]))


def release_by_s(envelope: Envelope, objective_s: float) -> float | None:
    """The latest time a job may be released so that it still runs by its `run_by`; None: not deferrable.

    A released job is due within its type's latency objective, so that much is kept in hand.
    """
    if not envelope.carbon_aware or envelope.run_by is None:
        return None
    return envelope.run_by - objective_s
