"""The continuous loop (iteration-level batching): jobs join the running batch between decoding steps and
leave it the step they finish, so a reply that arrives while long descriptions decode starts at the next
step instead of waiting for the whole batch.

Each iteration is a decision, then its effects (vLLM's `schedule()` / `update_from_output()`):

* `batching.admit` decides, over the running rows and the waiting jobs, which rows leave to wait
  (preempted by a more urgent job: they resume later by prefilling their prompt and the tokens they
  had, so their output is unchanged) and which jobs join, by every rule of `batching.fill` (size caps,
  the out-of-memory cap, `max_batch_tokens`, `solo`);
* the joining rows are prefilled in one forward and merged into the running batch; then every row
  takes its next token, finished rows leave (their futures resolve at once), one forward steps the rest.

Energy is measured around every forward (`greenq.workers.serving.metering`) and split among the rows in it by
the tokens each processed (a prefill: its whole sequence; a step: one each), so each job's share is the
sum of its forwards' shares. A forward that raises is triaged (`greenq.workers.serving.triage`): a device fault
trips the breaker; out of memory lowers the cap to one row fewer than the forward held and sends its
rows to wait, to resume within the cap (vLLM does the same); anything else runs the rows as `generate`
batches split until the failing job stands alone (`greenq.workers.serving.generate`).

Nothing is held open here (a job joins at the next step), so the adaptive policy does not apply: the
batcher runs every job type by the fixed rule in this mode and refuses `mode=adaptive`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from greenq.workers.energy.accountant import EnergyShare
from greenq.workers.model.decoding import take_token
from greenq.workers.model.text import RowText, finish_row
from greenq.workers.model.types import Decoder, FinishReason, RunningBatch
from greenq.workers.serving.batching import PendingJob, admit
from greenq.workers.serving.core import ServingCore
from greenq.workers.serving.generate import run_batch
from greenq.workers.serving.metering import Reading, sum_shares
from greenq.workers.serving.outcomes import BatchOutcome
from greenq.workers.serving.queue import Waiting
from greenq.workers.serving.triage import triage

log = logging.getLogger(__name__)


@dataclass
class _Row:
    item: Waiting
    joined_at: float
    text: RowText | None = None  # made when it first joins; None until then
    generated: list[int] = field(default_factory=list)
    shares: list[EnergyShare] = field(default_factory=list)
    first_text_at: float | None = None
    peak_rows: int = 0

    @property
    def sequence(self) -> tuple[int, ...]:
        return (*self.item.request.prompt_ids, *self.generated)


class ContinuousLoop:
    def __init__(self, core: ServingCore) -> None:
        self._core = core
        self._model: str | None = None
        self._decoder: Decoder | None = None
        self._batch: RunningBatch | None = None
        self._rows: list[_Row] = []
        self._preempted: list[_Row] = []
        self._joining: list[_Row] = []  # taken by admission, not yet in the running batch

    def held(self) -> list[Waiting]:
        rows = (*self._rows, *self._preempted, *self._joining)
        return [row.item for row in rows if not row.item.future.done()]

    def serve(self) -> None:
        """Decode until the queue is stopping and no job is left, waiting or running."""
        while (joining := self._admit()) is not None:
            self._joining = joining
            joining = self._still_leased(joining)
            if joining:
                self._join(joining)
            self._joining = []
            if self._rows:
                self._advance()

    # -- admission: the decision (`batching.admit`), then its effects ---------------------------------

    def _admit(self) -> list[_Row] | None:
        """Rows to join the running batch now (perhaps none); blocks while idle; None once stopped and empty."""
        core, queue = self._core, self._core.queue
        with queue.cond:
            while True:
                now = core.clock()
                waiting: list[PendingJob] = [*(row.item.job for row in self._preempted), *queue.alive(now)]
                decision = admit([row.item.job for row in self._rows], waiting, core.policies_now())
                chosen = {job.seq for job in decision.join}
                joining = [row for row in self._preempted if row.item.job.seq in chosen]
                self._preempted = [row for row in self._preempted if row.item.job.seq not in chosen]
                self._preempt(decision.preempt)
                resumed = {row.item.job.seq for row in joining}
                joining += [_Row(item, now) for item in queue.take(j for j in decision.join if j.seq not in resumed)]
                joining.sort(key=lambda row: row.item.job.order())
                if joining or self._rows:
                    if not self._rows and joining[0].item.model != self._model:
                        self._model, self._decoder = joining[0].item.model, None
                    return joining
                if queue.stopping and not len(queue) and not self._preempted:
                    return None
                queue.wait(None)

    def _preempt(self, jobs: tuple[PendingJob, ...]) -> None:
        """These running rows leave the batch to wait; they resume later by recompute (same output)."""
        for job in jobs:
            r = next(i for i, row in enumerate(self._rows) if row.item.job.seq == job.seq)
            keep = [i for i in range(len(self._rows)) if i != r]
            assert self._decoder is not None and self._batch is not None  # rows are running
            self._batch = self._decoder.keep(self._batch, keep) if keep else None
            row = self._rows.pop(r)
            self._preempted.append(row)
            log.debug("job %s (priority %d) preempted", row.item.job_id, job.priority)

    def _still_leased(self, joining: list[_Row]) -> list[_Row]:
        """Rows joining for the first time keep only jobs whose lease is still held (`ServingCore.still_leased`);
        a preempted row resuming is mid-computation, like the running rows, and goes on."""
        kept = {id(item) for item in self._core.still_leased([row.item for row in joining if row.text is None])}
        return [row for row in joining if row.text is not None or id(row.item) in kept]

    # -- decoding ----------------------------------------------------------------------------------

    def _join(self, joining: list[_Row]) -> None:
        """Prefill the joining rows in one forward and merge them into the running batch."""
        core = self._core
        assert self._model is not None
        runtime = core.runtimes[self._model]
        if self._decoder is None:
            self._decoder = runtime.step_decoder()
            assert self._decoder is not None, "the batcher chose continuous for a runtime without a step decoder"
        decoder = self._decoder
        first = [row for row in joining if row.text is None]  # not resuming after preemption
        for row in first:
            row.text = RowText(runtime.decode, row.item.request.max_new_tokens, decoder.stop_ids)
            row.joined_at = core.clock()
        if first:
            core.observers.before_batch(self._model, [row.item.job_id for row in first])
        reading = core.metering.start()
        try:
            joined = decoder.prefill([row.sequence for row in joining])
        except Exception as exc:
            self._failed(joining, exc, reading)
            return
        self._book(reading, joining, [len(row.sequence) for row in joining])
        self._batch = joined if self._batch is None else decoder.merge(self._batch, joined)
        self._rows.extend(joining)

    def _advance(self) -> None:
        """Every row takes its next token; finished rows leave; one forward steps the rest."""
        core = self._core
        assert self._decoder is not None and self._batch is not None and self._model is not None
        decoder, model = self._decoder, self._model
        keep: list[int] = []
        tokens: list[int] = []
        finished: list[tuple[_Row, FinishReason]] = []
        texts: dict[str, str] = {}
        now = core.clock()
        for r, row in enumerate(self._rows):
            row.peak_rows = max(row.peak_rows, len(self._rows))
            token, reason = take_token(decoder, self._batch, r, row.item.request, row.generated)
            assert row.text is not None  # set when it joined
            if token is not None and (piece := row.text.push(token)):
                texts[row.item.job_id] = piece
                row.first_text_at = row.first_text_at or now
            if reason is not None:
                finished.append((row, reason))
            else:
                assert token is not None  # only a stop token comes without one
                keep.append(r)
                tokens.append(token)
        if texts:
            core.observers.on_text(model, texts)
        if finished:
            self._batch = decoder.keep(self._batch, keep) if keep else None
            self._rows = [self._rows[r] for r in keep]
            self._finish(model, finished)
        core.current_batch_size = len(self._rows)
        if not self._rows or self._batch is None:
            self._batch = None
            return
        reading = core.metering.start()
        try:
            decoder.step(self._batch, tokens)
        except Exception as exc:
            rows, self._rows, self._batch = self._rows, [], None
            self._failed(rows, exc, reading)
            return
        self._book(reading, self._rows, [1] * len(self._rows))

    def _finish(self, model: str, finished: list[tuple[_Row, FinishReason]]) -> None:
        core = self._core
        decode = core.runtimes[model].decode
        done_at = core.clock()
        ids = [row.item.job_id for row, _ in finished]
        core.observers.after_batch(model, ids)
        tails: dict[str, str] = {}
        outcomes = []
        for row, reason in finished:
            generation, tail = finish_row(row.text, row.generated, reason, decode)
            if tail:
                tails[row.item.job_id] = tail
                row.first_text_at = row.first_text_at or done_at
            energy = sum_shares(row.shares)
            outcomes.append(
                BatchOutcome(generation, max(1, row.peak_rows), row.joined_at, done_at, energy, row.first_text_at)
            )
        if tails:
            core.observers.on_text(model, tails)
        core.observers.after_batch_succeeded(model, ids)
        for (row, _), outcome in zip(finished, outcomes, strict=True):
            row.item.future.set_result(outcome)

    def _book(self, reading: Reading | None, rows: list[_Row], tokens: list[int]) -> None:
        """Split one forward's measured energy among its rows by the tokens each processed."""
        for row, share in zip(rows, self._core.metering.finish(reading, tokens) or [], strict=False):
            row.shares.append(share)

    def _failed(self, rows: list[_Row], exc: Exception, reading: Reading | None) -> None:
        """A prefill (of `rows`; the running rows stay in the batch) or a step (of all `rows`, already taken
        out of the batch) raised: triage it (see the module's docstring)."""
        core = self._core
        core.metering.abandon(reading)
        items = [row.item for row in rows]
        decision = triage(exc, len(rows))
        if decision.action == "trip":
            others = [row.item for row in (*self._rows, *self._preempted)]
            self._rows, self._preempted, self._batch = [], [], None
            core.trip(exc, items + others)
            return
        held = len(rows) + len(self._rows)  # a failed prefill: the running rows were to be in it too
        if decision.out_of_memory and held > 1:
            core.lower_cap(held, cap=held - 1)
            self._preempted.extend(rows)  # their attempts stay open: they resume, not restart
            return
        log.warning("a forward over %d rows failed (%s); running them as isolated static batches", len(rows), exc)
        assert self._model is not None
        core.observers.after_batch(self._model, [item.job_id for item in items])
        if decision.action == "fail":
            items[0].future.set_exception(exc)
            return
        run_batch(core, items)
