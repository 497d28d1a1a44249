"""Iteration-level (continuous) batching: jobs join the running batch between decoding steps and leave it
the step they finish, so a reply that arrives while long descriptions decode starts at the next step
instead of waiting for the whole batch.

`ContinuousBatcher` is a `Batcher` (same `submit`, observers, expiry, drain and breaker) whose batch
thread runs `StepDecoder` steps instead of whole `generate` calls:

* Each iteration admits waiting jobs for the running model, most urgent first, up to the row cap
  (the largest `max_batch_size` of the job types, lowered after an out-of-memory error), prefills
  them in one forward and merges them into the running batch; then every row takes its next token,
  finished rows leave (their futures resolve at once), and one forward steps the rest.
* A job more urgent than the least urgent running row, with no free row, preempts that row: the row
  leaves the batch and resumes later by prefilling its prompt and the tokens it had (vLLM's
  recompute preemption). Its output is unchanged.
* Energy is measured around every forward and split among the rows in it by the tokens each
  processed (a prefill: its whole sequence; a step: one each), so each job's share is the sum of
  its steps' shares, and the shares of all jobs sum to what was measured.
* A forward that raises hands its rows to the static path (`Batcher._run_isolated`), which splits
  them until the failing job stands alone; a device fault trips the breaker as in static mode.

`mode="auto"` measures both on the loaded model at start (a short, fixed mixed workload) and keeps
whichever gives more tokens per second; a runtime without a step decoder always runs static.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from workers.decoding import Decoder, RunningBatch, runtime_decode, step_decoder, take_token
from workers.energy.accountant import EnergyShare
from workers.runtime import FinishReason, Generation, GenerationRequest, ModelRuntime, RowText
from workers.serving.batcher import Batcher, BatchOutcome, JobExpiredInBatcher, _Item, _metering, is_out_of_memory
from workers.serving.batching import split_expired
from workers.serving.breaker import is_device_fault

log = logging.getLogger(__name__)
RuntimeMode = Literal["static", "continuous", "auto"]
PROBE_TEXT = "Where is my parcel? I ordered a linen shirt, two mugs and a lamp last week and nothing came yet."


@dataclass
class _Row:
    item: _Item
    joined_at: float
    text: RowText | None = None  # made when it first joins; None until then
    generated: list[int] = field(default_factory=list)
    shares: list[EnergyShare] = field(default_factory=list)
    first_text_at: float | None = None
    peak_rows: int = 0

    @property
    def sequence(self) -> tuple[int, ...]:
        return (*self.item.request.prompt_ids, *self.generated)


@dataclass
class _Running:
    model: str | None = None
    decoder: Decoder | None = None
    batch: RunningBatch | None = None
    rows: list[_Row] = field(default_factory=list)
    preempted: list[_Row] = field(default_factory=list)


def sum_shares(shares: Sequence[EnergyShare]) -> EnergyShare | None:
    """One job's energy over its steps; its intensity is the energy-weighted mean of theirs."""
    if not shares:
        return None
    energy_j = sum(s.energy_j for s in shares)
    co2e_g = sum(s.co2e_g for s in shares)
    intensity = (
        sum(s.intensity_g_per_kwh * s.energy_j for s in shares) / energy_j
        if energy_j
        else shares[-1].intensity_g_per_kwh
    )
    return EnergyShare(energy_j, co2e_g, shares[-1].source, intensity, shares[-1].pue)


class ContinuousBatcher(Batcher):
    def __init__(self, *args: Any, mode: RuntimeMode = "continuous", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requested_mode: RuntimeMode = mode
        self.mode: Literal["static", "continuous"] = "static" if mode == "static" else "continuous"

    def _prepare(self) -> None:
        self.mode = self._choose_mode()

    def _serve(self) -> None:
        if self.mode == "static":
            super()._serve()
            return
        running = _Running()
        while (joining := self._take(running)) is not None:
            joining = self._still_leased_rows(joining)
            if joining:
                self._join(running, joining)
            if running.rows:
                self._advance(running)

    # -- choosing a mode -------------------------------------------------------------------

    def _choose_mode(self) -> Literal["static", "continuous"]:
        if self.requested_mode == "static":
            return "static"
        runtime = next(iter(self._runtimes.values()), None)
        decoder = step_decoder(runtime) if runtime is not None else None
        if decoder is None:
            log.warning("runtime %s has no step decoder: batching is static", getattr(runtime, "name", "?"))
            return "static"
        if self.requested_mode == "continuous":
            return "continuous"
        assert runtime is not None
        try:
            probe = probe_modes(runtime, decoder)
        except Exception:  # a probe that fails must not stop the worker: static is always there
            log.exception("runtime auto: measuring the modes failed; batching is static")
            return "static"
        chosen: Literal["static", "continuous"] = (
            "continuous" if probe["continuous_tokens_per_s"] > probe["static_tokens_per_s"] else "static"
        )
        log.info(
            "runtime auto: static %.0f tokens/s, continuous %.0f tokens/s on the probe workload: %s",
            probe["static_tokens_per_s"],
            probe["continuous_tokens_per_s"],
            chosen,
        )
        return chosen

    # -- admission ---------------------------------------------------------------------------

    def _row_cap(self, job_types: set[str]) -> int:
        """How many rows may decode together with these job types among them: the smallest of their
        `max_batch_size`s, lowered while an out-of-memory cap is in force."""
        cap = min((self._policies[t].max_batch_size for t in job_types if t in self._policies), default=1)
        return max(1, min(cap, self.size_cap() or cap))

    def _take(self, running: _Running) -> list[_Row] | None:
        """Jobs to join the running batch now (perhaps none); blocks while idle; None once stopped and empty.

        Most urgent first, preempted rows before new jobs of the same urgency; when the batch is full,
        the most urgent waiting job may preempt the least urgent running row."""
        with self._cond:
            while True:
                now = self._clock()
                alive, expired = split_expired([item.job for item in self._pending.values()], now)
                for job in expired:
                    self._pending.pop(job.seq).future.set_exception(
                        JobExpiredInBatcher("the deadline passed while the job waited for a batch")
                    )
                waiting: list[_Row | _Item] = [*running.preempted, *(self._pending[job.seq] for job in alive)]
                model = running.model if running.rows else None
                if model is None and waiting:
                    model = _item(min(waiting, key=_urgency)).model
                candidates = sorted((w for w in waiting if _item(w).model == model), key=_urgency)
                types = {row.item.job.job_type for row in running.rows}
                chosen: list[_Row | _Item] = []
                for candidate in candidates:
                    job_type = _item(candidate).job.job_type
                    if len(running.rows) + len(chosen) >= self._row_cap(types | {job_type}):
                        break
                    chosen.append(candidate)
                    types.add(job_type)
                if not chosen and candidates and running.rows and self._preempt_for(running, _item(candidates[0])):
                    continue  # room made: admit it
                if chosen or running.rows:
                    if model != running.model:
                        running.model, running.decoder = model, None
                    joining = []
                    for candidate in chosen:
                        if isinstance(candidate, _Row):
                            running.preempted.remove(candidate)
                            joining.append(candidate)
                        else:
                            self._pending.pop(candidate.job.seq)
                            joining.append(self._new_row(candidate))
                    return joining
                if self._stopping and not self._pending and not running.preempted:
                    return None
                deadlines = [j.deadline_at for j in alive if j.deadline_at is not None]
                self._cond.wait(timeout=max(0.0, min(deadlines) - now) if deadlines else None)

    def _preempt_for(self, running: _Running, urgent: _Item) -> bool:
        """Make room for `urgent` by sending the least urgent running row to wait, if it is less urgent."""
        victim = min(range(len(running.rows)), key=lambda r: (running.rows[r].item.job.priority, -r))
        row = running.rows[victim]
        if row.item.job.priority >= urgent.job.priority or running.decoder is None or running.batch is None:
            return False
        keep = [r for r in range(len(running.rows)) if r != victim]
        running.batch = running.decoder.keep(running.batch, keep) if keep else None
        running.rows.pop(victim)
        running.preempted.append(row)
        log.debug("job %s (priority %d) preempted by %s", row.item.job_id, row.item.job.priority, urgent.job_id)
        return True

    def _still_leased_rows(self, joining: list[_Row]) -> list[_Row]:
        """Rows joining for the first time keep only jobs whose lease is still held (`Batcher._still_leased`);
        a preempted row resuming is mid-computation, like the running rows, and goes on."""
        kept = {id(item) for item in self._still_leased([row.item for row in joining if row.text is None])}
        return [row for row in joining if row.text is not None or id(row.item) in kept]

    def _new_row(self, item: _Item) -> _Row:
        return _Row(item, self._clock())

    # -- the decoding loop ---------------------------------------------------------------------

    def _join(self, running: _Running, joining: list[_Row]) -> None:
        """Prefill the joining rows in one forward and merge them into the running batch."""
        assert running.model is not None
        runtime = self._runtimes[running.model]
        if running.decoder is None:
            running.decoder = step_decoder(runtime)
            assert running.decoder is not None
        decoder = running.decoder
        first = [row for row in joining if row.text is None]  # not resuming after preemption
        for row in first:
            row.text = RowText(runtime_decode(runtime), row.item.request.max_new_tokens, decoder.stop_ids)
            row.joined_at = self._clock()
        if first:
            for observer in self._observers:
                observer.before_batch(running.model, [row.item.job_id for row in first])
        meter_start = _metering(self._energy.batch_started) if self._energy else None
        try:
            joined = decoder.prefill([row.sequence for row in joining])
        except Exception as exc:
            self._forward_failed(running, joining, exc, meter_start)
            return
        self._book(meter_start, joining, [len(row.sequence) for row in joining])
        running.batch = joined if running.batch is None else decoder.merge(running.batch, joined)
        running.rows.extend(joining)

    def _advance(self, running: _Running) -> None:
        """Every row takes its next token; finished rows leave; one forward steps the rest."""
        assert running.decoder is not None and running.batch is not None and running.model is not None
        decoder, model = running.decoder, running.model
        keep: list[int] = []
        tokens: list[int] = []
        finished: list[tuple[_Row, FinishReason]] = []
        texts: dict[str, str] = {}
        now = self._clock()
        for r, row in enumerate(running.rows):
            row.peak_rows = max(row.peak_rows, len(running.rows))
            token, reason = take_token(decoder, running.batch, r, row.item.request, row.generated)
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
            for observer in self._observers:
                observer.on_text(model, texts)
        if finished:
            running.batch = decoder.keep(running.batch, keep) if keep else None
            running.rows = [running.rows[r] for r in keep]
            self._finish(model, finished)
        self.current_batch_size = len(running.rows)
        if not running.rows:
            running.batch = None
            return
        meter_start = _metering(self._energy.batch_started) if self._energy else None
        assert running.batch is not None  # rows remain
        try:
            decoder.step(running.batch, tokens)
        except Exception as exc:
            rows, running.rows, running.batch = running.rows, [], None
            self._forward_failed(running, rows, exc, meter_start)
            return
        self._book(meter_start, running.rows, [1] * len(running.rows))

    def _finish(self, model: str, finished: list[tuple[_Row, FinishReason]]) -> None:
        runtime = self._runtimes[model]
        decode = runtime_decode(runtime)
        done_at = self._clock()
        ids = [row.item.job_id for row, _ in finished]
        for observer in self._observers:
            observer.after_batch(model, ids)
        tails: dict[str, str] = {}
        outcomes = []
        for row, reason in finished:
            text = decode(row.generated)
            assert row.text is not None  # set when it joined
            if tail := row.text.finish(text):
                tails[row.item.job_id] = tail
                row.first_text_at = row.first_text_at or done_at
            generation = Generation(text=text, finish_reason=reason, generated_tokens=len(row.generated))
            energy = sum_shares(row.shares)
            outcomes.append(
                BatchOutcome(generation, max(1, row.peak_rows), row.joined_at, done_at, energy, row.first_text_at)
            )
        for observer in self._observers:
            if tails:
                observer.on_text(model, tails)
            observer.after_batch_succeeded(model, ids)
        for (row, _), outcome in zip(finished, outcomes, strict=True):
            row.item.future.set_result(outcome)

    def _book(self, meter_start: dict[Any, float] | None, rows: Sequence[_Row], tokens: list[int]) -> None:
        """Split one forward's measured energy among its rows by the tokens each processed."""
        if self._energy is None or meter_start is None:
            return
        energy = self._energy
        shares = _metering(lambda: energy.batch_finished(meter_start, tokens)) or []
        for row, share in zip(rows, shares, strict=False):
            row.shares.append(share)

    def _forward_failed(
        self, running: _Running, rows: list[_Row], exc: Exception, meter_start: dict[Any, float] | None
    ) -> None:
        """A prefill (of `rows`) or a step (of all `rows`, already taken out of `running`) raised.

        A device fault trips the breaker. Out of memory lowers the row cap to one row fewer than the
        forward held and sends its rows to wait, to resume by recompute within the cap (vLLM does the
        same). Anything else sends the rows the static way, which splits until the failing job stands
        alone."""
        if self._energy is not None and meter_start is not None:
            energy = self._energy
            _metering(lambda: energy.batch_finished(meter_start, None))  # spent, but on no job's receipt
        items = [row.item for row in rows]
        if is_device_fault(exc):
            others = [row.item for row in (*running.rows, *running.preempted)]
            running.rows, running.preempted, running.batch = [], [], None
            self._trip(exc, items + others)
            return
        held = len(rows) + len(running.rows)  # a failed prefill: the running rows were to be in it too
        if is_out_of_memory(exc) and held > 1:
            self._lower_cap(held, cap=held - 1)
            running.preempted.extend(rows)  # their attempts stay open: they resume, not restart
            return
        log.warning("a forward over %d rows failed (%s); running them as isolated static batches", len(items), exc)
        assert running.model is not None
        for observer in self._observers:
            observer.after_batch(running.model, [item.job_id for item in items])
        if len(items) == 1:
            items[0].future.set_exception(exc)
            return
        self._run_isolated(items)


def _item(waiting: _Row | _Item) -> _Item:
    return waiting.item if isinstance(waiting, _Row) else waiting


def _urgency(waiting: _Row | _Item) -> tuple[int, int]:
    """Sort key: most urgent first, then first come (a preempted row came before any job waiting now)."""
    item = _item(waiting)
    return (-item.job.priority, item.job.seq)


def decode_all(decoder: Decoder, runtime: ModelRuntime, requests: Sequence[GenerationRequest]) -> list[Generation]:
    """All requests decoded together as one continuous batch, rows leaving as they finish (the probe's run)."""
    decode = runtime_decode(runtime)
    batch = decoder.prefill([r.prompt_ids for r in requests])
    live = list(range(len(requests)))
    generated: list[list[int]] = [[] for _ in requests]
    reasons: list[FinishReason] = ["length"] * len(requests)
    while live:
        keep, tokens = [], []
        for r, i in enumerate(live):
            token, reason = take_token(decoder, batch, r, requests[i], generated[i])
            if reason is not None:
                reasons[i] = reason
            else:
                assert token is not None
                keep.append(r)
                tokens.append(token)
        if len(keep) < len(live):
            live = [live[r] for r in keep]
            if not live:
                break
            batch = decoder.keep(batch, keep)
        decoder.step(batch, tokens)
    return [
        Generation(text=decode(g), finish_reason=reason, generated_tokens=len(g))
        for g, reason in zip(generated, reasons, strict=True)
    ]


def probe_requests(runtime: ModelRuntime) -> list[GenerationRequest]:
    """A fixed mixed workload: 8 prompts of varied lengths wanting 8 to 64 new tokens, greedy, no early stop
    (one static batch decodes every row to 64; a continuous batch lets each row go when it is done)."""
    from shared.policies import GenerationSettings

    words = PROBE_TEXT.split()
    settings = GenerationSettings(max_new_tokens=64, min_new_tokens=64)
    return [
        GenerationRequest(tuple(runtime.encode(" ".join(words[: 4 + 2 * i]))), 8 * (1 + i), settings) for i in range(8)
    ]


def probe_modes(runtime: ModelRuntime, decoder: Decoder) -> dict[str, float]:
    """Tokens per second of each mode on the probe workload, each run once after one warm-up."""
    requests = probe_requests(runtime)
    tokens = sum(r.max_new_tokens for r in requests)
    figures: dict[str, float] = {}
    runs: list[tuple[str, Callable[[], list[Generation]]]] = [
        ("static", lambda: runtime.generate(requests)),
        ("continuous", lambda: decode_all(decoder, runtime, requests)),
    ]
    for name, run in runs:
        run()
        start = time.perf_counter()
        run()
        figures[f"{name}_tokens_per_s"] = tokens / max(1e-9, time.perf_counter() - start)
    return figures
