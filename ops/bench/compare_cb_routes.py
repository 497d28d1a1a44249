"""Which continuous-batching route to build on, measured: the same 8 requests (64 new tokens at most, greedy)
through static `generate`, greenq's StepDecoder (workers/model/decoding.py) and transformers' own
continuous-batching manager (`generate_batch`, paged cache), each timed on its second run.

Usage: .venv/bin/python ops/bench/compare_cb_routes.py [MODEL_DIR]   (default: the bundled store-assistant)
Figures from this project's 2-core CPU machine are in ops/bench/RESULTS.md ("Continuous batching").
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from transformers import GenerationConfig

from greenq.shared.policies import GenerationSettings
from greenq.workers.model.runtime import HFRuntime
from greenq.workers.model.types import GenerationRequest
from greenq.workers.serving.probe import decode_all


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    run()  # warm-up: shapes, caches, lazy initialisation
    start = time.perf_counter()
    out = run()
    return time.perf_counter() - start, out


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else "workers/model/bundled/store-assistant"
    runtime = HFRuntime(path)
    prompts = [runtime.encode("Where is my parcel? I ordered " + "a lamp " * i) for i in range(8)]
    settings = GenerationSettings(max_new_tokens=64, min_new_tokens=1)
    requests = [GenerationRequest(tuple(p), 64, settings) for p in prompts]
    decoder = runtime.step_decoder()
    config = GenerationConfig(
        max_new_tokens=64, do_sample=False, eos_token_id=sorted(runtime.stop_ids), pad_token_id=runtime.pad_id
    )

    static_s, static = timed(lambda: runtime.generate(requests))
    steps_s, stepped = timed(lambda: decode_all(decoder, runtime, requests))
    manager_s, managed = timed(lambda: runtime.model.generate_batch(inputs=prompts, generation_config=config))
    print(f"static generate:                 {static_s:.3f} s, {sum(g.generated_tokens for g in static)} tokens")
    print(f"greenq StepDecoder:              {steps_s:.3f} s, {sum(g.generated_tokens for g in stepped)} tokens")
    tokens = sum(len(out.generated_tokens) for out in managed.values())
    print(f"transformers generate_batch:     {manager_s:.3f} s, {tokens} tokens")
    print(f"StepDecoder output equals static: {stepped == static}")


if __name__ == "__main__":
    main()
