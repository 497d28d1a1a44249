"""Which loop a worker runs: `static`, `continuous`, or `auto`, which measures both on the loaded model at
start (a short, fixed mixed workload) and keeps whichever gives more tokens per second. A runtime without
a step decoder always runs static.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from greenq.shared.policies import GenerationSettings
from greenq.workers.model.decoding import take_token
from greenq.workers.model.types import Decoder, FinishReason, Generation, GenerationRequest, ModelRuntime

log = logging.getLogger(__name__)
RuntimeMode = Literal["static", "continuous", "auto"]
LoopMode = Literal["static", "continuous"]
PROBE_TEXT = "Where is my parcel? I ordered a linen shirt, two mugs and a lamp last week and nothing came yet."


def choose_mode(requested: RuntimeMode, runtimes: Mapping[str, ModelRuntime]) -> LoopMode:
    """The loop to run on these (loaded) runtimes for the mode asked for."""
    if requested == "static":
        return "static"
    runtime = next(iter(runtimes.values()), None)
    if runtime is None:
        return "static"
    decoder = runtime.step_decoder()
    if decoder is None:
        log.warning("runtime %s has no step decoder: batching is static", runtime.name)
        return "static"
    if requested == "continuous":
        return "continuous"
    try:
        probe = probe_modes(runtime, decoder)
    except Exception:  # a probe that fails must not stop the worker: static is always there
        log.exception("runtime auto: measuring the modes failed; batching is static")
        return "static"
    chosen: LoopMode = "continuous" if probe["continuous_tokens_per_s"] > probe["static_tokens_per_s"] else "static"
    log.info(
        "runtime auto: static %.0f tokens/s, continuous %.0f tokens/s on the probe workload: %s",
        probe["static_tokens_per_s"],
        probe["continuous_tokens_per_s"],
        chosen,
    )
    return chosen


def decode_all(decoder: Decoder, runtime: ModelRuntime, requests: Sequence[GenerationRequest]) -> list[Generation]:
    """All requests decoded together as one continuous batch, rows leaving as they finish (the probe's run)."""
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
        Generation(text=runtime.decode(g), finish_reason=reason, generated_tokens=len(g))
        for g, reason in zip(generated, reasons, strict=True)
    ]


def probe_requests(runtime: ModelRuntime) -> list[GenerationRequest]:
    """A fixed mixed workload: 8 prompts of varied lengths wanting 8 to 64 new tokens, greedy, no early stop
    (one static batch decodes every row to 64; a continuous batch lets each row go when it is done)."""
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
