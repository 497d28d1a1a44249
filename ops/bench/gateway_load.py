"""A small asyncio load run against a live gateway: accepted requests/s and the latency it adds.

    python ops/bench/gateway_load.py --url http://127.0.0.1:8080 --key gq_… [--seconds 20 --concurrency 32]

Posts reply jobs as fast as `concurrency` clients can for `seconds`, then prints requests/s,
status codes and POST latency percentiles. For comparison it times the same number of
direct `Client.submit` calls (Python client → Redis) in this process, so the difference is
what the HTTP layer adds. Only loopback addresses are allowed: the load stays on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from urllib.parse import urlparse

import httpx

from greenq.producers.client import Client
from greenq.producers.summary import percentile
from greenq.shared.settings import Settings

BODY = {"job": {"customer_message": "Where is my parcel?"}}


async def hammer(url: str, key: str, seconds: float, concurrency: int) -> tuple[list[float], Counter[int]]:
    latencies: list[float] = []
    codes: Counter[int] = Counter()
    deadline = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as http:

        async def one_client() -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await http.post("/v1/jobs/reply", json=BODY)
                latencies.append(time.perf_counter() - start)
                codes[response.status_code] += 1

        await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return latencies, codes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--key", required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    if urlparse(args.url).hostname not in {"127.0.0.1", "localhost", "::1"}:
        raise SystemExit("load runs target this machine only (127.0.0.1 / localhost)")
    started = time.perf_counter()
    latencies, codes = asyncio.run(hammer(args.url, args.key, args.seconds, args.concurrency))
    wall = time.perf_counter() - started
    accepted = codes.get(202, 0)
    print(
        f"gateway: {len(latencies)} requests in {wall:.1f} s with {args.concurrency} clients: "
        f"{accepted / wall:.0f} accepted/s; codes {dict(codes)}"
    )
    print(
        f"  POST latency p50 {percentile(latencies, 50) * 1000:.1f} ms, p99 {percentile(latencies, 99) * 1000:.1f} ms"
    )
    with Client(Settings()) as client:
        direct = []
        for _ in range(min(2000, max(100, accepted // 10))):
            start = time.perf_counter()
            client.submit("reply", BODY["job"])
            direct.append(time.perf_counter() - start)
    print(
        f"direct Client.submit ({len(direct)} calls, one thread): p50 {percentile(direct, 50) * 1000:.1f} ms, "
        f"p99 {percentile(direct, 99) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
