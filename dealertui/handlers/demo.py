"""Demo handlers: simulated feeds with realistic latency and failures (`--demo`, `bench`).

Everything random comes from a generator seeded by (demo seed, job id, attempt), so a seeded
demo fails the same jobs every time.
"""

from __future__ import annotations

import random

import anyio

from dealertui.handlers.base import JobContext, PermanentError, TransientError

_FAILURES = {
    "homenet": "HTTP 503 from feed host homenet.example",
    "dealer_com": "HTTP 502 from dealer.com inventory API",
    "product_scrape": "timeout after 30s scraping product page",
    "url_shorten": "HTTP 429 from shortener: rate limited",
}


async def _simulate(ctx: JobContext) -> dict[str, object]:
    demo = ctx.demo
    rng = random.Random(f"{demo.seed}:{ctx.job_id}:{ctx.attempt}")
    await anyio.sleep(rng.uniform(demo.latency_ms_min, demo.latency_ms_max) / 1000)
    reason = _FAILURES.get(ctx.job_type, f"{ctx.job_type} failed")
    if ctx.dealer_id in demo.failing_dealers:
        if ctx.job_type == "homenet":
            raise TransientError(f"{reason} for dealer {ctx.dealer_id}")
        raise PermanentError(f"{ctx.job_type}: feed for dealer {ctx.dealer_id} is malformed")
    if rng.random() < demo.failure_rate:
        raise TransientError(reason)
    return {"items": rng.randint(10, 400)}


async def homenet(ctx: JobContext) -> dict[str, object]:
    return await _simulate(ctx)


async def dealer_com(ctx: JobContext) -> dict[str, object]:
    return await _simulate(ctx)


async def product_scrape(ctx: JobContext) -> dict[str, object]:
    return await _simulate(ctx)


async def url_shorten(ctx: JobContext) -> dict[str, object]:
    return await _simulate(ctx)


async def noop(ctx: JobContext) -> None:
    """Does nothing: the benchmark's handler, so it measures the engine, not the work."""
    return None
