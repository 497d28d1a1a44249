"""The jobs waiting in one worker for a batch: submitted, announced, expired, drained.

One condition variable guards it; both loops read the queue and wait on it, task threads add to it.
A job's future resolves exactly once: with its outcome (by a loop), `JobExpiredInBatcher` (its
deadline passed while it waited), or `Requeue` (the worker is stopping, or its device failed).

>>> queue = WaitingQueue(time.time)
>>> future = queue.submit("job-1", "reply", "m", request, priority=8)
>>> with queue.cond:
...     jobs = queue.alive(now)   # expired ones leave with JobExpiredInBatcher
...     taken = queue.take(jobs)
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass

from greenq.shared.job_types import JobType
from greenq.workers.model.types import GenerationRequest
from greenq.workers.serving.batching import PendingJob, split_expired
from greenq.workers.serving.outcomes import BatchOutcome, JobExpiredInBatcher, Requeue

EXPECT_TTL_S = 10.0  # an announced job that has not arrived by then is no longer waited for


@dataclass
class Waiting:
    """A job in the batcher: what admission reads (`job`), what the model needs, and who waits on it."""

    job_id: str
    job: PendingJob
    request: GenerationRequest
    future: Future[BatchOutcome]

    @property
    def model(self) -> str:
        return self.job.model


class WaitingQueue:
    def __init__(self, clock: Callable[[], float], on_arrival: Callable[[JobType, float], None] = lambda t, at: None):
        self.cond = threading.Condition()  # reentrant: methods take it too
        self._clock = clock
        self._on_arrival = on_arrival
        self._pending: dict[int, Waiting] = {}
        self._expecting: dict[str, tuple[JobType, float]] = {}  # job id → its type, since when
        self._seq = itertools.count()
        self.stopping = False

    def submit(
        self,
        job_id: str,
        job_type: JobType,
        model: str,
        request: GenerationRequest,
        priority: int,
        deadline_at: float | None = None,
        solo: bool = False,
        submitted_at: float | None = None,
    ) -> Future[BatchOutcome]:
        future: Future[BatchOutcome] = Future()
        with self.cond:
            self._expecting.pop(job_id, None)
            if self.stopping:
                raise Requeue("the worker is stopping; the job goes back to the queue")
            now = self._clock()
            self._on_arrival(job_type, now)
            job = PendingJob(
                seq=next(self._seq),
                job_type=job_type,
                batch_key=(model, request.settings.batch_key()),
                priority=priority,
                arrived_at=now,
                prompt_tokens=len(request.prompt_ids),
                max_new_tokens=request.max_new_tokens,
                deadline_at=deadline_at,
                solo=solo,
                submitted_at=submitted_at,
                model=model,
            )
            self._pending[job.seq] = Waiting(job_id, job, request, future)
            self.cond.notify_all()
        return future

    def expect(self, job_id: str, job_type: JobType) -> None:
        """This worker has received the job and is bringing it here: a forming batch that could take it
        waits for it. Ends at `submit`, at `unexpect`, or after `EXPECT_TTL_S`."""
        with self.cond:
            self._expecting[job_id] = (job_type, self._clock())

    def unexpect(self, job_id: str) -> None:
        """The job will not reach this batcher after all (it was finished elsewhere, or failed early)."""
        with self.cond:
            if self._expecting.pop(job_id, None) is not None:
                self.cond.notify_all()

    def expecting(self, now: float) -> Counter[JobType]:
        """Jobs announced and not yet here, by type (announcements older than `EXPECT_TTL_S` lapse)."""
        with self.cond:
            return Counter(t for t, since in self._expecting.values() if now - since < EXPECT_TTL_S)

    def alive(self, now: float) -> list[PendingJob]:
        """The waiting jobs whose deadline has not passed; the others leave now with `JobExpiredInBatcher`."""
        with self.cond:
            alive, expired = split_expired([w.job for w in self._pending.values()], now)
            for job in expired:
                self._pending.pop(job.seq).future.set_exception(
                    JobExpiredInBatcher("the deadline passed while the job waited for a batch")
                )
            return alive

    def get(self, job: PendingJob) -> Waiting:
        with self.cond:
            return self._pending[job.seq]

    def take(self, jobs: Iterable[PendingJob]) -> list[Waiting]:
        """These jobs leave the queue for a batch."""
        with self.cond:
            return [self._pending.pop(job.seq) for job in jobs]

    def __len__(self) -> int:
        with self.cond:
            return len(self._pending)

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def wait(self, timeout_s: float | None) -> None:
        with self.cond:
            self.cond.wait(timeout=timeout_s)

    def stop(self) -> None:
        """Take no new jobs; the loops finish what waits, then end."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()

    def drain(self) -> int:
        """Take no new jobs and hand back every job still waiting (`Requeue`); returns how many."""
        with self.cond:
            self.stopping = True
            waiting = list(self._pending.values())
            self._pending.clear()
            self.cond.notify_all()
        for item in waiting:
            item.future.set_exception(Requeue("the worker is stopping; the job goes back to the queue"))
        return len(waiting)
