"""Latency that seawall.degrade adds on the happy path: a bounded load test on loopback.

The example's primary model server (examples/degrade_service) runs in a process of its
own on loopback. ``--concurrency`` clients send ``--requests`` transactions in all,
each two ways, one right after the other (which first, by turns), so that both see
the same load:

- direct:  the first step of the example's fallback chain, called directly (an httpx
  POST to the primary model server, its answer parsed);
- wrapped: the whole chain, which calls that step (circuit breaker, timeout, metrics,
  and the answer queued for the SQLite prediction cache).

It reports p50/p99 of each and of the per-request difference, and then the chain's own
cost in-process, around a step that does nothing (async, and a plain function run on
the step's thread pool so that its timeout holds).

Usage: python benchmarks/degrade_latency.py [--requests 1000] [--concurrency 4] [--out F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import httpx
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the examples

from examples.degrade_service.app import fraud_chain
from examples.degrade_service.model import FEATURES, SmallModel, train_primary, train_small
from examples.degrade_service.primary import spawn

from seawall.degrade import DegradeMetrics, FallbackChain, PredictionCache, Step


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 and p99 in microseconds."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_us": round(cuts[49] * 1e6, 1), "p99_us": round(cuts[98] * 1e6, 1)}


def compare(direct: list[float], wrapped: list[float]) -> dict[str, dict[str, float]]:
    d, w = percentiles(direct), percentiles(wrapped)
    return {"direct": d, "wrapped": w, "added": {k: round(w[k] - d[k], 1) for k in d}}


async def timed(call: Awaitable[Any]) -> float:
    started = time.perf_counter()  # creating the coroutine ran nothing: the call starts here
    await call
    return time.perf_counter() - started


async def over_http(work: Path, requests: int, concurrency: int) -> dict[str, Any]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = spawn(train_primary(work / "primary.npz"), port, work / "primary.log")
    small = SmallModel(train_small(work / "small.npz"))
    rng = random.Random(0)
    direct: list[float] = []
    wrapped: list[float] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            with PredictionCache(work / "cache.sqlite") as cache:
                chain = fraud_chain(
                    client, small, cache, metrics=DegradeMetrics.for_registry(CollectorRegistry())
                )

                # The chain's own first step, called directly: the same request and parsing.
                primary = cast(Callable[[list[float]], Awaitable[Any]], chain.steps[0].fn)

                async def client_loop(count: int, record: bool) -> None:
                    for i in range(count):
                        features = [rng.gauss(0, 1) for _ in range(FEATURES)]
                        # Either way first by turns: the second of two calls finds things warm.
                        if i % 2:
                            d = await timed(primary(features))
                            w = await timed(chain.apredict(features))
                        else:
                            w = await timed(chain.apredict(features))
                            d = await timed(primary(features))
                        if record:
                            direct.append(d)
                            wrapped.append(w)

                await asyncio.gather(*(client_loop(50, False) for _ in range(concurrency)))
                per_client = requests // concurrency
                await asyncio.gather(*(client_loop(per_client, True) for _ in range(concurrency)))
                chain.close()
    finally:
        server.kill()
        server.wait()
    return {
        "requests": len(direct),
        "concurrency": concurrency,
        **compare(direct, wrapped),
        # Each request's two ways were sent back to back: their difference, request by request.
        "added_median_paired_us": round(
            statistics.median(w - d for w, d in zip(wrapped, direct, strict=True)) * 1e6, 1
        ),
    }


def in_process(calls: int) -> dict[str, Any]:
    """The chain around a no-op step, against calling the step directly."""
    registry = CollectorRegistry()

    async def noop_async(x: int) -> int:
        return x

    def noop(x: int) -> int:
        return x

    out: dict[str, Any] = {}
    chain_async: FallbackChain[int, int] = FallbackChain(
        [Step("noop", noop_async, timeout=1.0)], metrics=DegradeMetrics.for_registry(registry)
    )

    async def run_async() -> tuple[list[float], list[float]]:
        direct = [await timed(noop_async(1)) for _ in range(calls)]
        wrapped = [await timed(chain_async.apredict(1)) for _ in range(calls)]
        return direct, wrapped

    direct, wrapped = asyncio.run(run_async())
    out["async step, apredict"] = compare(direct, wrapped)
    with FallbackChain(
        [Step("noop", noop, timeout=1.0)],
        name="sync",
        metrics=DegradeMetrics.for_registry(registry),
    ) as chain:
        direct, wrapped = [], []
        for _ in range(calls):
            started = time.perf_counter()
            noop(1)
            direct.append(time.perf_counter() - started)
            started = time.perf_counter()
            chain.predict(1)
            wrapped.append(time.perf_counter() - started)
    out["plain step on its thread pool, predict"] = compare(direct, wrapped)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="measured, per way")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--calls", type=int, default=20000, help="in-process calls, per way")
    parser.add_argument("--out", type=Path, help="also write the results here (JSON)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="degrade-bench-") as work:
        results = {
            "http": asyncio.run(over_http(Path(work), args.requests, args.concurrency)),
            "in_process": in_process(args.calls),
        }
    http = results["http"]
    print(
        f"happy path, loopback HTTP: {http['requests']} requests, {http['concurrency']} in flight"
    )
    for way in ("direct", "wrapped", "added"):
        print(f"  {way:8} p50 {http[way]['p50_us']:8.1f} us   p99 {http[way]['p99_us']:8.1f} us")
    print(f"  median of the per-request difference: {http['added_median_paired_us']:.1f} us")
    print("the chain in-process, around a step that does nothing")
    for name, r in results["in_process"].items():
        print(
            f"  {name}: adds p50 {r['added']['p50_us']:.1f} us, p99 {r['added']['p99_us']:.1f} us"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
